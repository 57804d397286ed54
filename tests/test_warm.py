"""`reprobook stage` forked from the environment's warm process behaves like a stage in its own process.

One project copy and one warm process (``reprobook warm --start``, in this
module's own private socket folder) serve the module; the cheap ``scoping``
stage runs through the real console script, a real kernel and MLflow on
SQLite. A stage is proved to run in a fork of the warm process by watching
the warm process's children while it runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import BIN, copy_project, sh, tool_env

from reprobook.execution.kernel import STAGE_KERNEL_MODULE

pytestmark = pytest.mark.e2e

REPROBOOK = str(BIN / "reprobook")
NOTEBOOK = Path("notebooks") / "01_scoping.ipynb"
REPORT_FILES = ("notebook.ipynb", "metrics.json", "outputs/targets.json")
RUN_ID = re.compile(r"MLflow run ([0-9a-f]{32})")


def _private_folder() -> Path:
    """A socket folder of its own (mkdtemp: mode 0700), short enough for a Unix socket's path."""
    return Path(tempfile.mkdtemp(prefix="rb-warm-"))


@pytest.fixture(scope="module")
def warm(tmp_path_factory) -> SimpleNamespace:
    """The module's project copy and its ready warm process (stopped at the end)."""
    base = tmp_path_factory.mktemp("warm")
    folder = _private_folder()
    extra = {"REPROBOOK_WARM_DIR": str(folder)}
    root = copy_project(base / "project")
    try:
        sh([REPROBOOK, "warm", "--start"], root, **extra)
        listed = sh([REPROBOOK, "warm"], root, **extra).stdout
        found = re.search(r"pid (\d+)\s+this environment", listed)
        assert found, listed
        yield SimpleNamespace(root=root, folder=folder, extra=extra, pid=int(found.group(1)), base=base)
    finally:
        sh([REPROBOOK, "warm", "--stop"], root, check=False, **extra)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def cold(warm) -> SimpleNamespace:
    """The stage run in its own process (REPROBOOK_WARM=0, a fresh socket folder): its report's files."""
    folder = _private_folder()
    try:
        result = sh([REPROBOOK, "stage", "scoping"], warm.root, REPROBOOK_WARM="0", REPROBOOK_WARM_DIR=str(folder))
        report = {name: (warm.root / "reports" / "scoping" / name).read_bytes() for name in REPORT_FILES}
        yield SimpleNamespace(result=result, report=report, folder=folder, left=sorted(p.name for p in folder.iterdir()))
    finally:
        sh([REPROBOOK, "warm", "--stop"], warm.root, check=False, REPROBOOK_WARM_DIR=str(folder))  # if one was started
        shutil.rmtree(folder, ignore_errors=True)


# --- helpers -------------------------------------------------------------------------------------


def _query(database: Path, sql: str, *args: object) -> list[tuple]:
    """Read the store read-only (an MLflow client here would race the stage's own schema setup)."""
    if not database.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
            return connection.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []


def _status(database: Path, run_id: str) -> str | None:
    rows = _query(database, "SELECT status FROM runs WHERE run_uuid = ?", run_id)
    return rows[0][0] if rows else None


def _tag(database: Path, run_id: str, key: str) -> str | None:
    rows = _query(database, "SELECT value FROM tags WHERE run_uuid = ? AND key = ?", run_id, key)
    return rows[0][0] if rows else None


def _running_scoping_run(database: Path) -> str | None:
    rows = _query(database, "SELECT r.run_uuid FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                            "WHERE t.key = 'reprobook.stage' AND t.value = 'scoping' AND r.status = 'RUNNING'")
    return rows[0][0] if rows else None


def _run_id(output: str) -> str:
    found = RUN_ID.search(output)
    assert found, output
    return found.group(1)


class _ForkWatcher:
    """Record the children of the warm process that work in ``root`` (the stage forks: each takes its client's
    working folder) while a stage runs."""

    def __init__(self, warm_pid: int, root: Path) -> None:
        self.warm_pid, self.root = warm_pid, root.resolve()
        self.forks: set[int] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        import psutil

        warm_process = psutil.Process(self.warm_pid)
        while not self._done.is_set():
            for child in warm_process.children():
                with contextlib.suppress(psutil.Error):
                    if Path(child.cwd()).resolve() == self.root:
                        self.forks.add(child.pid)
            time.sleep(0.01)

    def __enter__(self) -> _ForkWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def _stage_fork(warm, timeout: float = 60.0):
    """The warm process's fork running a stage in the project (psutil.Process)."""
    import psutil

    deadline = time.time() + timeout
    while time.time() < deadline:
        for child in psutil.Process(warm.pid).children():
            with contextlib.suppress(psutil.Error):
                if Path(child.cwd()).resolve() == warm.root.resolve():
                    return child
        time.sleep(0.05)
    raise AssertionError("no fork of the warm process works in the project")


def _kernels(root: Path) -> list:
    """Jupyter kernels working in ``root``."""
    import psutil

    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if any(part in {"ipykernel_launcher", STAGE_KERNEL_MODULE} for part in process.cmdline()) \
                    and Path(process.cwd()).resolve() == root.resolve():
                found.append(process)
    return found


def _kernel_folders(pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"reprobook-kernel-{pid}-*"))


def _gone(process, timeout: float = 15.0) -> bool:
    import psutil

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def _appended_cell(root: Path, source: str):
    """The scoping notebook with one more cell at the end, put back afterwards."""
    import nbformat

    path = root / NOTEBOOK
    original = path.read_bytes()
    changed = nbformat.read(path, as_version=4)
    changed.cells.append(nbformat.v4.new_code_cell(source))
    nbformat.write(changed, path)
    try:
        yield
    finally:
        path.write_bytes(original)


def _start_slow_stage(warm, **popen) -> tuple[subprocess.Popen, str, object, list, list[Path]]:
    """Start a stage whose last cell sleeps 30 s; return it once its run is RUNNING, with its run id, the
    fork that runs it, that fork's kernel(s) and private kernel folder(s)."""
    database = warm.root / "mlflow.db"
    process = subprocess.Popen([REPROBOOK, "stage", "scoping"], cwd=warm.root, env=tool_env(**warm.extra),
                               start_new_session=True, **popen)
    try:
        deadline = time.time() + 240
        run_id = None
        while run_id is None:
            assert process.poll() is None, "the stage ended before its run showed as RUNNING"
            assert time.time() < deadline, "the stage's run never showed as RUNNING"
            run_id = _running_scoping_run(database)
            time.sleep(0.2)
        time.sleep(2)  # inside the sleeping cell, the kernel busy
        fork = _stage_fork(warm)
        kernels = _kernels(warm.root)
        folders = _kernel_folders(fork.pid)
    except BaseException:
        process.kill()
        process.wait()
        raise
    assert process.pid != fork.pid
    assert kernels and all(kernel.ppid() == fork.pid for kernel in kernels), "the kernel is not the fork's"
    assert folders, "no private kernel folder named after the fork"
    return process, run_id, fork, kernels, folders


# --- a warm stage is the same stage --------------------------------------------------------------


def test_a_warm_stage_writes_the_same_report_as_a_cold_one_from_a_fork_of_the_warm_process(warm, cold):
    with _ForkWatcher(warm.pid, warm.root) as watcher:
        client = subprocess.Popen([REPROBOOK, "stage", "scoping"], cwd=warm.root, env=tool_env(**warm.extra),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        stdout, stderr = client.communicate(timeout=300)
    assert client.returncode == 0, stderr
    assert watcher.forks and client.pid not in watcher.forks, "the stage did not run in a fork of the warm process"
    # The fork wrote to the client's stderr (its file descriptors were handed over).
    assert "stage scoping finished" in stderr
    for name in REPORT_FILES:
        assert (warm.root / "reports" / "scoping" / name).read_bytes() == cold.report[name], name
    database = warm.root / "mlflow.db"
    warm_run, cold_run = _run_id(stderr), _run_id(cold.result.stderr)
    assert warm_run != cold_run
    assert _status(database, warm_run) == _status(database, cold_run) == "FINISHED"
    assert _tag(database, warm_run, "reprobook.stage") == "scoping"


def test_the_clients_environment_and_working_folder_reach_the_stage(warm, tmp_path):
    other = tmp_path / "other.db"
    subfolder = warm.root / "notebooks"  # the project is found from the working folder's parents
    with _ForkWatcher(warm.pid, subfolder) as watcher:
        result = sh([REPROBOOK, "stage", "scoping"], subfolder,
                    MLFLOW_TRACKING_URI=f"sqlite:///{other}", **warm.extra)
    assert watcher.forks, "the stage did not run in a fork of the warm process"
    run_id = _run_id(result.stderr)
    assert _status(other, run_id) == "FINISHED"
    assert _tag(other, run_id, "reprobook.stage") == "scoping"
    assert _status(warm.root / "mlflow.db", run_id) is None, "the run went to the project's store, not the client's"


def test_a_failing_stage_exits_1_with_the_failing_cell_and_no_traceback(warm):
    with _appended_cell(warm.root, 'raise ValueError("boom")'):
        result = sh([REPROBOOK, "stage", "scoping"], warm.root, check=False, **warm.extra)
    assert result.returncode == 1, result.stderr  # StageFailed: a ReprobookError (exit 1)
    first = result.stderr.splitlines()[0]
    assert re.fullmatch(r"error: stage 'scoping' failed in cell \d+: ValueError: boom", first), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    run_id = re.search(r"MLflow run ([0-9a-f]{32}) marked FAILED", result.stderr).group(1)
    assert _status(warm.root / "mlflow.db", run_id) == "FAILED"


def test_sigterm_to_the_client_stops_the_stage_exits_130_and_marks_the_run_killed(warm):
    with _appended_cell(warm.root, "import time\ntime.sleep(30)"):
        process, run_id, fork, kernels, folders = _start_slow_stage(warm, stdout=subprocess.PIPE,
                                                                    stderr=subprocess.PIPE, text=True)
        try:
            started = time.time()
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 130, stderr
    assert time.time() - started < 20, "the stage ran on after SIGTERM"
    assert "Traceback" not in stdout + stderr
    assert "stage scoping interrupted (SIGTERM)" in stderr and "KILLED" in stderr, stderr
    database = warm.root / "mlflow.db"
    assert _status(database, run_id) == "KILLED"
    reason = _tag(database, run_id, "reprobook.error") or ""
    assert "interrupted" in reason and "SIGTERM" in reason, reason
    assert _gone(fork) and all(_gone(kernel) for kernel in kernels)
    assert not _kernels(warm.root)
    assert not any(folder.exists() for folder in folders)


def test_a_killed_client_has_its_stage_end_the_run_killed_at_once(warm):
    """SIGKILL leaves the client no chance to forward anything: the fork sees its socket close."""
    database = warm.root / "mlflow.db"
    with _appended_cell(warm.root, "import time\ntime.sleep(30)"):
        process, run_id, fork, kernels, folders = _start_slow_stage(warm, stdout=subprocess.DEVNULL,
                                                                    stderr=subprocess.DEVNULL)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        deadline = time.time() + 30
        while _status(database, run_id) == "RUNNING" and time.time() < deadline:
            time.sleep(0.2)
    # Within seconds, not after the 30 s cell (nor at the next stage, as for a stage in its own process).
    assert _status(database, run_id) == "KILLED"
    assert "interrupted" in (_tag(database, run_id, "reprobook.error") or "")
    assert _gone(fork) and all(_gone(kernel) for kernel in kernels)
    assert not _kernels(warm.root)
    assert not any(folder.exists() for folder in folders)


def test_warm_off_runs_the_stage_and_starts_no_warm_process(warm, cold):
    assert "stage scoping finished" in cold.result.stderr
    assert cold.left == [], f"REPROBOOK_WARM=0 left {cold.left} in its socket folder"
    listed = sh([REPROBOOK, "warm"], warm.root, REPROBOOK_WARM_DIR=str(cold.folder)).stdout
    assert "no warm process running" in listed


# --- where the warm process listens, and for which environment (no kernel) ------------------------


def test_a_socket_folder_others_can_open_is_refused_and_the_stage_runs_here(tmp_path, monkeypatch):
    from reprobook.warm import client, location

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    monkeypatch.setenv(location.DIR_VARIABLE, str(shared))
    monkeypatch.delenv(location.ENABLE_VARIABLE, raising=False)
    touched = []
    monkeypatch.setattr(client, "connect", lambda path: touched.append(("connect", path)))
    monkeypatch.setattr(client, "start", lambda where, key: touched.append(("start", where)))
    assert location.enabled()
    assert location.folder() is None
    assert client.delegate(["stage", "scoping"]) is None
    assert touched == [], "a socket in a folder others can write to was used"
    shared.chmod(0o700)
    assert location.folder() == shared


def test_a_warm_process_exiting_as_the_stage_connects_lets_the_stage_run_here(monkeypatch):
    """Idle or stopped, a warm process closes its socket with connections it never accepted: nothing ran
    there, so the stage runs in the client's process (no traceback)."""
    import select
    import socket

    from reprobook.warm import client, location

    folder = _private_folder()
    monkeypatch.setenv(location.DIR_VARIABLE, str(folder))
    monkeypatch.delenv(location.ENABLE_VARIABLE, raising=False)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(location.socket_path(folder, location.environment_key())))
    listener.listen(1)

    def exit_unaccepted() -> None:
        select.select([listener], [], [], 10)  # the stage has connected
        time.sleep(0.3)  # and sent its request
        listener.close()

    exiting = threading.Thread(target=exit_unaccepted)
    exiting.start()
    try:
        assert client.delegate(["stage", "scoping"]) is None
    finally:
        exiting.join()
        shutil.rmtree(folder, ignore_errors=True)


def test_the_environment_key_follows_the_import_path(tmp_path):
    from reprobook.warm import location

    installed = tmp_path / "site-packages"
    installed.mkdir()
    path = ["/the/script/folder", str(installed)]
    key = location.environment_key(path)
    assert location.environment_key(list(path)) == key
    assert location.environment_key(["/another/script/folder", *path[1:]]) == key  # the script's own folder
    assert location.environment_key([*path, str(tmp_path)]) != key
    modified = installed.stat().st_mtime_ns + 10**9  # what `pip install` does to the folder
    os.utime(installed, ns=(modified, modified))
    assert location.environment_key(path) != key
