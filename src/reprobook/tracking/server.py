"""A shared MLflow tracking server for a team: PostgreSQL as the store, artifacts served by the server.

Why a server and not the SQLite file: SQLite serialises writers, and with many
processes writing at once (queued experiments, CI jobs, a colleague's laptop)
MLflow's own users report "database is locked" and a schema race at start-up;
a file is also only reachable from one machine. PostgreSQL takes concurrent
writers, and ``mlflow server --serve-artifacts`` proxies artifact uploads, so
clients need only the server's URL: no database driver, no bucket credentials.

``reprobook server`` starts one for a user who has none: PostgreSQL from the
``pgserver`` package (a real PostgreSQL build, installed with reprobook; it
listens on a Unix socket only, so no database port is opened), and ``mlflow
server`` on it, bound to 127.0.0.1 unless ``--host`` says otherwise. A team
that already runs PostgreSQL passes ``--backend-store-uri``; artifacts go to a
directory or to an S3-compatible bucket (``--artifacts-destination s3://...``
with the usual ``AWS_*`` / ``MLFLOW_S3_ENDPOINT_URL`` variables in the
server's environment, never in a client's).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reprobook.errors import ReprobookError, UsageError

DATABASE = "mlflow"
START_TIMEOUT_S = 180.0  # the first start creates MLflow's schema: about 40 migrations


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    data_dir: Path
    artifacts: str
    backend_store_uri: str | None = None
    workers: int = 2

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def default_data_dir() -> Path:
    """Where a local server keeps its database and artifacts: ``$XDG_DATA_HOME/reprobook/server``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "reprobook" / "server"


def port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def local_postgres(data_dir: Path) -> Iterator[str]:
    """A PostgreSQL server on ``data_dir/postgres`` (created on first use): its SQLAlchemy URI for MLflow.

    Stopped on exit, unless another process (a second ``reprobook server`` on
    the same folder) still uses it.
    """
    import warnings

    with warnings.catch_warnings():  # platformdirs' note that XDG_RUNTIME_DIR is unset: not the user's concern
        warnings.simplefilter("ignore")
        import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(data_dir / "postgres", cleanup_mode="stop")
    except Exception as error:  # noqa: BLE001 - pgserver raises plain exceptions with its log's text
        raise ReprobookError(f"PostgreSQL did not start in {data_dir / 'postgres'}: {error}") from error
    try:
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';")
        if "1 row" not in exists:
            server.psql(f"CREATE DATABASE {DATABASE};")
        yield server.get_uri(DATABASE)
    finally:
        server.cleanup()
        _wait_stopped(data_dir / "postgres")


def _wait_stopped(pgdata: Path, timeout_s: float = 60.0) -> None:
    """Return once PostgreSQL has finished its shutdown (its ``postmaster.pid`` is gone), so the command
    ends after the database, never while it still writes its shutdown checkpoint."""
    deadline = time.monotonic() + timeout_s
    while (pgdata / "postmaster.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def mlflow_server_command(settings: ServerSettings) -> list[str]:
    """The server's command line; the store's URI (it may hold a password) goes in its environment, not here."""
    return [
        sys.executable, "-m", "mlflow", "server",
        "--serve-artifacts", "--artifacts-destination", settings.artifacts,
        "--host", settings.host, "--port", str(settings.port),
        "--workers", str(settings.workers),
    ]


def server_environment(backend_store_uri: str) -> dict[str, str]:
    """The server's environment: the store's URI, and no GenAI job runners unless the user asks.

    MLflow 3's server starts seven ``huey`` job-runner processes for its GenAI
    features (scorers, online evaluation), which reprobook does not use; they
    stay off unless ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION`` is set.
    """
    return {**os.environ, "MLFLOW_BACKEND_STORE_URI": backend_store_uri,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")}


def wait_until_healthy(url: str, process: subprocess.Popen, log: Path, timeout_s: float = START_TIMEOUT_S) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ReprobookError(f"mlflow server exited with code {process.returncode} before it answered: "
                                 f"{last_line(log)} (log: {log})")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise ReprobookError(f"mlflow server did not answer {url}/health within {timeout_s:.0f} s (log: {log})")


def last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "no output"


def stop(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """Stop the server and its workers (their own process group)."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def check_settings(settings: ServerSettings) -> None:
    """Refuse, before starting anything, what cannot work."""
    if not port_free(settings.host, settings.port):
        raise UsageError(f"port {settings.port} on {settings.host} is in use (another server?): choose one with --port")
    if settings.backend_store_uri and settings.backend_store_uri.startswith("sqlite"):
        raise UsageError("--backend-store-uri: a shared server needs a database that takes concurrent writers "
                         f"(postgresql://...); found {settings.backend_store_uri}")


@contextlib.contextmanager
def running(settings: ServerSettings, log: Path) -> Iterator[subprocess.Popen]:
    """The database (unless given) and ``mlflow server`` on it, up and healthy; both stopped on exit."""
    check_settings(settings)
    if "://" not in settings.artifacts:  # a directory (a bucket is the user's to create)
        Path(settings.artifacts).mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        backend = settings.backend_store_uri or stack.enter_context(local_postgres(settings.data_dir))
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as sink:
            process = subprocess.Popen(mlflow_server_command(settings), stdout=sink, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True,
                                       env=server_environment(backend))
        stack.callback(stop, process)
        wait_until_healthy(settings.url, process, log)
        yield process


def serve(settings: ServerSettings, announce) -> int:
    """Run the server until interrupted (Ctrl-C or SIGTERM); the exit code of ``reprobook server``."""
    log = settings.data_dir / "mlflow-server.log"
    stopping = {"now": False}

    def on_signal(signum, frame) -> None:  # noqa: ARG001
        stopping["now"] = True

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        with running(settings, log) as process:
            announce(settings, log)
            with contextlib.suppress(KeyboardInterrupt):
                while not stopping["now"] and process.poll() is None:
                    time.sleep(0.5)
            if process.poll() not in (None, 0) and not stopping["now"]:
                raise ReprobookError(f"mlflow server stopped with code {process.returncode}: {last_line(log)} (log: {log})")
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
