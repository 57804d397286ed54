"""Thread budgets: cores divided by the stages running at once, handed to the kernel through the environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from reprobook.execution import threads


def test_budget_divides_the_cores_keeps_one_for_the_stage_process_and_never_gives_zero():
    assert threads.budget(8, 1) == 7 and threads.budget(8, 2) == 3 and threads.budget(2, 3) == 1
    assert threads.budget(2, 1) == 1 and threads.budget(1, 0) == 1


def test_running_stages_counts_live_processes_and_forgets_dead_ones(tmp_path):
    (tmp_path / f"{os.getpid()}.pid").touch()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"{dead.pid}.pid").touch()
    assert threads.running_stages(tmp_path) == 1
    assert not (tmp_path / f"{dead.pid}.pid").exists()


def test_stage_budget_gives_the_kernel_its_variables_and_leaves_this_process_alone(tmp_path, monkeypatch):
    for name in threads.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(threads.BUDGET_VARIABLE, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # the user's own choice is kept
    before = dict(os.environ)
    with threads.stage_budget(tmp_path) as variables:
        budget = int(variables[threads.BUDGET_VARIABLE])
        assert budget == max(1, threads.available_cores() - 1)  # alone on the machine
        assert variables["OMP_NUM_THREADS"] == str(budget) and variables["MKL_NUM_THREADS"] == "3"
        assert dict(os.environ) == before  # background threads read it meanwhile
        assert list(tmp_path.glob("*.pid")) == [tmp_path / f"{os.getpid()}.pid"]
    assert not list(tmp_path.glob("*.pid"))


def test_the_kernel_runs_with_its_budget(tmp_path):
    from jupyter_core.utils import run_sync

    from reprobook.execution.kernel import Kernel
    from reprobook.execution.progress import CellTracker

    outputs: list[str] = []
    kernel = Kernel(CellTracker("budget"))
    with threads.stage_budget(tmp_path) as variables:
        kernel.start(tmp_path, variables)
    try:
        client = kernel.manager.client()
        client.start_channels()
        run_sync(client.wait_for_ready)(timeout=60)
        reply = run_sync(client.execute_interactive)(
            "import os; from reprobook.execution.threads import stage_threads; "
            "print(os.environ['OMP_NUM_THREADS'], stage_threads())",
            output_hook=lambda msg: outputs.append(msg["content"].get("text", "")), timeout=60)
        assert reply["content"]["status"] == "ok"
    finally:
        kernel.stop()
    assert "".join(outputs).split() == [variables["OMP_NUM_THREADS"], variables[threads.BUDGET_VARIABLE]]



def test_two_stages_at_once_share_the_cores(tmp_path, monkeypatch):
    """A second stage process (as a queued experiment worker is) halves the first one's share."""
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / f"{other.pid}.pid").touch()  # registered as stage_budget does
        with threads.stage_budget(tmp_path) as variables:
            assert variables[threads.BUDGET_VARIABLE] == "3"
    finally:
        other.kill()
        other.wait()
    time.sleep(0.1)
    with threads.stage_budget(tmp_path) as variables:
        assert variables[threads.BUDGET_VARIABLE] == "7"


def test_the_user_can_choose_the_budget(tmp_path, monkeypatch):
    monkeypatch.setenv(threads.BUDGET_VARIABLE, "1")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with threads.stage_budget(tmp_path) as variables:
        assert variables[threads.BUDGET_VARIABLE] == "1" and variables["OMP_NUM_THREADS"] == "1"
