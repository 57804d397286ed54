"""Progress on a terminal, silence elsewhere; a kernel stopped without a false alarm.

The cell tracker and the kernel manager's shutdown rule are unit-tested; the
kernel's log is read at the file descriptor (the kernel inherits it); the
command line runs under a real pseudo-terminal (``os.openpty``) and then
with its output to pipes.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import nbformat
import pytest
from conftest import BIN, copy_project, tool_env

from reprobook.execution import kernel, notebook
from reprobook.execution.progress import CellTracker, first_line, shown, step_printer

ANSI = "\x1b"
PROGRESS = re.compile(r"stage scoping · cell (\d+)/(\d+) · \d+\.\d+s")
FINISHED = re.compile(r"^stage scoping finished in \d+\.\ds: reports/scoping/notebook\.html, MLflow run [0-9a-f]{32}$")
TERMINAL_ENV = {"TERM": "xterm-256color"}
"""A plain terminal, whatever the environment the tests run in says."""
COLOR_OVERRIDES = ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "COLUMNS", "LINES")


def terminal_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in tool_env(**TERMINAL_ENV).items() if k not in COLOR_OVERRIDES}
    env.update(extra)
    return env


def run_in_pty(args: list[str], cwd: Path, env: dict[str, str], *, stdout_too: bool = True,
               columns: int = 120, timeout: float = 600) -> tuple[int, str, str]:
    """Run ``args`` with stderr on a pseudo-terminal, and stdout too (or, ``stdout_too=False``, on a pipe).

    Returns the exit code, what the terminal received and what the pipe received.
    """
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    process = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                               stdout=slave if stdout_too else subprocess.PIPE, stderr=slave)
    os.close(slave)
    pipe = process.stdout.fileno() if process.stdout is not None else None
    received = {master: bytearray()}
    if pipe is not None:
        received[pipe] = bytearray()
    open_fds = set(received)
    deadline = time.monotonic() + timeout
    try:
        while open_fds:
            if time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"{args} did not end in {timeout}s:\n{received[master].decode(errors='replace')}")
            for fd in select.select(list(open_fds), [], [], 1.0)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the terminal's last writer has closed it
                    chunk = b""
                if chunk:
                    received[fd] += chunk
                else:
                    open_fds.discard(fd)
        code = process.wait(timeout=60)
    finally:
        os.close(master)
        if process.stdout is not None:
            process.stdout.close()
    piped = received[pipe] if pipe is not None else bytearray()
    return code, received[master].decode(errors="replace"), piped.decode(errors="replace")


# --- the tracker ------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def code_cell(source: str, **metadata) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata.update(metadata)
    return cell


def test_tracker_counts_the_cells_that_run_and_times_the_current_one():
    clock = Clock()
    tracker = CellTracker("modeling", clock=clock)
    notebook_node = nbformat.v4.new_notebook(cells=[
        code_cell("params = None"), nbformat.v4.new_markdown_cell("# title"), code_cell("   \n"),
        code_cell("# fit it\n\nmodel = fit(x)\nprint(model)"), code_cell("skipped()", tags=["skip-execution"]),
        code_cell("score(model)"),
    ])
    clock.now = 101.5
    assert tracker.describe() == "stage modeling · starting the kernel · 1.5s"
    tracker.notebook_start(notebook=notebook_node)
    assert tracker.total == 3, "empty, markdown and skipped cells do not count"
    tracker.cell_execute(cell=notebook_node.cells[0], cell_index=0)
    tracker.cell_executed(cell=notebook_node.cells[0], cell_index=0, execute_reply={})
    tracker.cell_execute(cell=notebook_node.cells[3], cell_index=3)
    clock.now = 113.8
    assert tracker.running
    assert tracker.describe() == "stage modeling · cell 2/3 · 12.3s · model = fit(x)"
    tracker.cell_executed(cell=notebook_node.cells[3], cell_index=3, execute_reply={})
    tracker.cell_execute(cell=notebook_node.cells[5], cell_index=5)
    tracker.cell_executed(cell=notebook_node.cells[5], cell_index=5, execute_reply={})
    assert not tracker.running
    assert tracker.describe() == "stage modeling · 3 cells run · stopping the kernel"


def test_first_line_is_the_first_line_of_code():
    assert first_line("# Parameters\n\n  x = 1\ny = 2") == "x = 1"
    assert first_line("# only a comment") == "# only a comment"
    assert first_line("") == ""


def test_nothing_is_drawn_when_stderr_is_not_a_terminal(capfd):
    tracker = CellTracker("scoping")
    with shown(tracker, enabled=True):
        tracker.cell_execute(cell=code_cell("x = 1"))
    step_printer()("a step")
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


# --- the kernel's shutdown ------------------------------------------------------------------------------


def test_an_idle_kernel_is_not_interrupted_on_shutdown_but_a_busy_one_is():
    tracker = CellTracker("x")
    manager = kernel.ipc_kernel_manager(tracker)(kernel_name=notebook.KERNEL_NAME)
    manager.shutting_down = True
    asyncio.run(manager._async_interrupt_kernel())  # idle: returns without signalling
    tracker.running = True
    with pytest.raises(RuntimeError, match="No kernel is running"):  # busy: on to jupyter_client's interrupt
        asyncio.run(manager._async_interrupt_kernel())


SLOW_KERNEL_INFO = """\
import time
kernel = get_ipython().kernel
reply_kernel_info = kernel.shell_handlers["kernel_info_request"]

async def slow_kernel_info(*args):
    await reply_kernel_info(*args)
    time.sleep(0.5)  # still in the handler after replying

kernel.shell_handlers["kernel_info_request"] = slow_kernel_info
"""


def test_no_keyboard_interrupt_alarm_when_the_kernel_stops(tmp_path, capfd):
    """papermill's last request (kernel_info) may still be in its handler when the kernel is stopped.

    jupyter_client interrupted the kernel (SIGINT) before every shutdown, and
    the kernel logged ``ERROR | KeyboardInterrupt caught in kernel.``; this
    notebook makes that race certain.
    """
    source = tmp_path / "slow.ipynb"
    nbformat.write(nbformat.v4.new_notebook(
        cells=[code_cell("x = 1"), code_cell(SLOW_KERNEL_INFO)],
        metadata={"kernelspec": {"name": notebook.KERNEL_NAME, "display_name": "reprobook", "language": "python"}},
    ), source)
    assert notebook.execute(source, tmp_path / "out" / "slow.ipynb", {}, tmp_path, progress=False) is None
    captured = capfd.readouterr()
    assert "KeyboardInterrupt" not in captured.err + captured.out
    assert "ERROR" not in captured.err


# --- the command line, on a terminal and not -----------------------------------------------------------------


@pytest.fixture(scope="module")
def scoping_project(tmp_path_factory) -> Path:
    """A project copy; scoping needs no upstream outputs."""
    return copy_project(tmp_path_factory.mktemp("progress") / "project")


@pytest.mark.e2e
def test_stage_shows_cell_progress_on_a_terminal(scoping_project):
    code, screen, _ = run_in_pty([str(BIN / "reprobook"), "stage", "scoping"], scoping_project, terminal_env())
    assert code == 0, screen
    numbers = [(int(n), int(m)) for n, m in PROGRESS.findall(screen)]
    assert numbers, f"no 'cell N/M' progress on the terminal:\n{screen!r}"
    total = numbers[0][1]
    assert total > 1 and all(m == total and 1 <= n <= total for n, m in numbers)
    assert "from reprobook" in screen, "the running cell's first line of code is shown"
    assert "stage scoping finished" in screen and "KeyboardInterrupt" not in screen


@pytest.mark.e2e
def test_stage_is_quiet_and_unwrapped_off_a_terminal(scoping_project):
    """Output to pipes: no progress, no escape codes, and the summary one line however narrow the console."""
    result = subprocess.run([str(BIN / "reprobook"), "stage", "scoping"], cwd=scoping_project,
                            env=terminal_env(COLUMNS="80"), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert ANSI not in output and "cell " not in output and "KeyboardInterrupt" not in output
    lines = result.stderr.strip().splitlines()
    assert any(FINISHED.match(line) for line in lines), lines
