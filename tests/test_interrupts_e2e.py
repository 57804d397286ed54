"""An interrupted pipeline leaves every run in a terminal state and no kernel files behind.

`reprobook run` is started in its own process group like a user's terminal job
and sent SIGTERM while the modeling notebook executes (real DVC, papermill
kernel and MLflow on SQLite).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, copy_project, tool_env

pytestmark = pytest.mark.e2e


def _runs(root: Path) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("reprobook")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def _stage_status(root: Path, stage: str) -> str | None:
    """Read the store read-only (an MLflow client here would race the run's own schema setup)."""
    import sqlite3

    database = root / "mlflow.db"
    if not database.is_file():
        return None
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
            row = connection.execute(
                "SELECT r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                "WHERE t.key = 'reprobook.stage' AND t.value = ? ORDER BY r.status = 'RUNNING' DESC", (stage,)
            ).fetchone()
    except sqlite3.OperationalError:  # tables not created yet
        return None
    return row[0] if row else None


def _wait_for_running_stage(root: Path, stage: str, process: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, "reprobook run ended before the stage started"
        if _stage_status(root, stage) == "RUNNING":
            return
        time.sleep(0.2)
    raise AssertionError(f"stage {stage} never showed as RUNNING")


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> dict:
    root = copy_project(tmp_path_factory.mktemp("interrupt") / "project")
    process = subprocess.Popen(
        [str(BIN / "reprobook"), "run"], cwd=root, env=tool_env(), start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        _wait_for_running_stage(root, "modeling", process)
        time.sleep(2)  # inside the notebook, the kernel busy
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return {"root": root, "code": process.returncode, "output": output, "runs": _runs(root)}


def test_sigterm_exits_130_and_says_interrupted(interrupted):
    assert interrupted["code"] == 130, interrupted["output"]
    assert "interrupted (SIGTERM)" in interrupted["output"]
    assert "Traceback" not in interrupted["output"]


def test_no_run_is_left_running(interrupted):
    by_stage = {r.data.tags.get("reprobook.stage"): r for r in interrupted["runs"]}
    assert {r.info.status for r in interrupted["runs"]} <= {"FINISHED", "KILLED"}
    assert by_stage["pipeline"].info.status == "KILLED"
    modeling = by_stage["modeling"]
    assert modeling.info.status == "KILLED" and modeling.info.end_time
    assert "interrupted" in modeling.data.tags.get("reprobook.error", "")
    assert modeling.data.tags.get("mlflow.parentRunId") == by_stage["pipeline"].info.run_id
    assert by_stage["data"].info.status == "FINISHED"


def test_no_kernel_files_are_left(interrupted):
    root = interrupted["root"]
    assert not list(root.glob("kernel-ipc-*")) and not list(root.glob("kernel-*.json"))


def test_after_sigkill_the_next_stage_ends_the_orphaned_run(tmp_path):
    """SIGKILL leaves no chance to clean up: the next stage marks the run KILLED and removes the kernel's folder."""
    import tempfile

    from conftest import sh

    import nbformat

    root = copy_project(tmp_path / "project")
    # Without the warm process (a killed client's fork ends its run itself): the stage in its own process.
    cold = {"REPROBOOK_WARM": "0"}
    # A first run creates the store (its schema takes seconds); the second is on record from its first
    # cell, and a last cell that waits keeps it RUNNING long enough to be killed there.
    sh([str(BIN / "reprobook"), "stage", "scoping"], root, **cold)
    source = root / "notebooks" / "01_scoping.ipynb"
    original = source.read_text()
    slow = nbformat.read(source, as_version=4)
    slow.cells.append(nbformat.v4.new_code_cell("import time\ntime.sleep(30)"))
    nbformat.write(slow, source)
    process = subprocess.Popen([str(BIN / "reprobook"), "stage", "scoping"], cwd=root, env=tool_env(**cold),
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_running_stage(root, "scoping", process)
        private = list(Path(tempfile.gettempdir()).glob(f"reprobook-kernel-{process.pid}-*"))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert _stage_status(root, "scoping") == "RUNNING"
    source.write_text(original)
    result = sh([str(BIN / "reprobook"), "stage", "scoping"], root, **cold)
    assert "marked KILLED" in result.stderr
    statuses = sorted(r.info.status for r in _runs(root))
    assert statuses == ["FINISHED", "FINISHED", "KILLED"]
    assert not list(root.glob("kernel-ipc-*"))
    assert not any(folder.exists() for folder in private)
