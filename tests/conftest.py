"""Shared fixtures: a real copy of the project in a real git repository.

End-to-end tests copy the project (its git-tracked files) to a temporary
directory, initialise git with a local identity and run the real tools:
DVC, papermill with the `reprobook` Jupyter kernel, MLflow on SQLite.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

GIT_ENV = {
    "GIT_AUTHOR_NAME": "reprobook-tests",
    "GIT_AUTHOR_EMAIL": "tests@reprobook.invalid",
    "GIT_COMMITTER_NAME": "reprobook-tests",
    "GIT_COMMITTER_EMAIL": "tests@reprobook.invalid",
    "DVC_NO_ANALYTICS": "1",
}


# The longest modules first (each runs whole on one xdist worker): started last, one of them
# kept a worker busy for minutes after the other had finished everything else.
LONGEST_FIRST = ("test_team_e2e.py", "test_ci_e2e.py", "test_sqlite_writers.py", "test_monitoring_e2e.py",
                 "test_deployment_e2e.py", "test_pipeline_e2e.py")


def pytest_collection_modifyitems(config, items) -> None:
    """Longest-processing-time-first scheduling of the modules; the order within a module is kept."""
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


WARM_DIR = Path(tempfile.mkdtemp(prefix="reprobook-warm-tests-"))
"""This test process's warm processes (reprobook.warm): their own private folder, stopped at the end
(also for commands started with this process's environment rather than :func:`tool_env`)."""
os.environ["REPROBOOK_WARM_DIR"] = str(WARM_DIR)


def tool_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "REPROBOOK_"))}
    env.update(GIT_ENV)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["MPLBACKEND"] = "Agg"
    env["REPROBOOK_WARM_DIR"] = str(WARM_DIR)
    env.update(extra)
    return env


def pytest_sessionfinish(session, exitstatus) -> None:
    """Stop the warm processes the tests started (they would otherwise wait out their idle time)."""
    from reprobook.warm import client

    os.environ["REPROBOOK_WARM_DIR"] = str(WARM_DIR)  # a test may have changed it
    client.stop_all()
    shutil.rmtree(WARM_DIR, ignore_errors=True)


COMMAND_TIMEOUT = 420  # seconds: below pytest-timeout's 600, so a hang is diagnosed here, not just killed


def _stacks_of(root_pid: int, cwd: Path) -> str:
    """The processes under ``root_pid`` or working in ``cwd`` (a daemon that escaped the tree
    but holds the output pipe), with command lines and, for Python processes, py-spy's stacks."""
    import psutil

    tree = {}
    with contextlib.suppress(psutil.Error):
        tree = {p.pid: p for p in [psutil.Process(root_pid), *psutil.Process(root_pid).children(recursive=True)]}
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.pid not in tree and Path(process.cwd()).is_relative_to(cwd):
                tree[process.pid] = process
    tree = list(tree.values())
    lines = []
    for process in tree:
        try:
            lines.append(f"--- pid {process.pid} ppid {process.ppid()} {process.status()}: {' '.join(process.cmdline())[:300]}")
        except psutil.Error:
            continue
        dumped = subprocess.run([str(BIN / "py-spy"), "dump", "--pid", str(process.pid)], capture_output=True, text=True)
        if dumped.returncode == 0:  # a Python process
            lines.append(dumped.stdout[-4000:])
    return "\n".join(lines)


def sh(args: list[str], cwd: Path, check: bool = True, timeout: float = COMMAND_TIMEOUT,
       **extra: str) -> subprocess.CompletedProcess:
    """Run a real command; on unexpected failure show its output, on a hang the stacks of its processes."""
    process = subprocess.Popen(args, cwd=cwd, env=tool_env(**extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stacks = _stacks_of(process.pid, Path(cwd).resolve())
        os.killpg(process.pid, 9)
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            stdout, stderr = "", "(output pipe still held by a process outside the command's group)"
        raise AssertionError(f"{' '.join(args)} still running after {timeout:.0f}s\n{stdout[-3000:]}\n"
                             f"{stderr[-3000:]}\nprocesses:\n{stacks}") from None
    except BaseException:
        os.killpg(process.pid, 9)
        raise
    result = subprocess.CompletedProcess(args, process.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen) -> int:
    """Stop a server as a user's Ctrl-C or a service manager would (SIGTERM); its exit code."""
    import signal

    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=60)


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    return [f for f in listed if f and (ROOT / f).is_file()]


def copy_project(target: Path, *, commit: bool = True) -> Path:
    """Copy the project's source files (not its outputs) into a fresh git repository."""
    target.mkdir(parents=True, exist_ok=True)
    for relative in tracked_files():
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, destination)
    if commit:
        sh(["git", "init", "-q", "-b", "main"], target)
        sh(["git", "add", "-A"], target)
        sh(["git", "commit", "-qm", "project copy"], target)
        # Each copy pushes to its own DVC remote, never to the user's ~/.cache store.
        sh([str(BIN / "dvc"), "remote", "add", "--local", "-f", "-d", "storage", str(target.parent / "dvc-storage")], target)
    return target


def set_params(root: Path, **dotted: object) -> None:
    """Edit params.yaml by dotted keys (what `dvc exp run -S` does)."""
    import yaml

    path = root / "params.yaml"
    tree = yaml.safe_load(path.read_text())
    for key, value in dotted.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    path.write_text(yaml.safe_dump(tree, sort_keys=False))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "project")


@contextlib.contextmanager
def mlflow_store_uris(uri: str):
    """Point MLflow's process-wide tracking and registry URIs at ``uri``, then put them back.

    They are module globals: a test that left them set would send a later test's
    registrations, in the same xdist worker, to this store.
    """
    import mlflow

    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")  # mlflow.set_*_uri writes these too
    previous = tracking_utils._tracking_uri, registry_utils._registry_uri, {k: os.environ.get(k) for k in keys}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = previous[0], previous[1]
        for key, value in previous[2].items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
