"""The stage's kernel: handed to papermill already booting, stopped cleanly and quickly."""

from __future__ import annotations

import tempfile
from pathlib import Path

import nbformat
import psutil

from reprobook.execution import notebook
from reprobook.execution.kernel import KERNEL_DIR_PREFIX, KERNEL_NAME, STAGE_KERNEL_MODULE, Kernel
from reprobook.execution.progress import CellTracker

ATEXIT_CELL = """\
import atexit, pathlib
atexit.register(lambda: pathlib.Path("written-at-exit.txt").write_text("bye"))
"""


def _notebook(path: Path, *sources: str) -> Path:
    nbformat.write(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in sources],
        metadata={"kernelspec": {"name": KERNEL_NAME, "display_name": "reprobook", "language": "python"}},
    ), path)
    return path


def _kernel_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True)
            if {"ipykernel_launcher", STAGE_KERNEL_MODULE} & set(p.cmdline())]


def test_a_stopped_kernel_has_run_its_exit_handlers_and_left_nothing(tmp_path):
    """Stopping is a shutdown, not a kill: what a notebook does on exit is done, and no process or folder stays."""
    source = _notebook(tmp_path / "exit.ipynb", "x = [1, 2, 3]\nx", ATEXIT_CELL)
    cells = CellTracker("exit")
    kernel = Kernel(cells)
    kernel.start(tmp_path)
    private = Path(kernel.manager.connection_file).parent
    assert private.name.startswith(KERNEL_DIR_PREFIX) and private.parent == Path(tempfile.gettempdir())
    error = notebook.execute(source, tmp_path / "out" / "exit.ipynb", {}, tmp_path, False,
                             kernel=kernel.manager, cells=cells)
    assert error is None
    kernel.stop()
    assert (tmp_path / "written-at-exit.txt").read_text() == "bye"
    assert not private.exists()
    assert not _kernel_children()


def test_stopping_leaves_the_executed_notebook_as_the_cells_made_it(tmp_path):
    """The freeze before exit is a silent execution: no output, no execution count, no trace in the notebook."""
    source = _notebook(tmp_path / "plain.ipynb", "1 + 1", "print('two')")
    executed = tmp_path / "out" / "plain.ipynb"
    assert notebook.execute(source, executed, {}, tmp_path, progress=False) is None
    cells = nbformat.read(executed, as_version=4).cells
    assert [c.execution_count for c in cells if c.cell_type == "code"] == [1, 2]
    assert cells[-1].outputs[0]["text"] == "two\n"
    assert not _kernel_children()


def test_the_stage_kernel_starts_without_the_debugger_yet_a_notebook_can_import_it(tmp_path):
    """debugpy is a quarter of a kernel's start-up: a stage's kernel skips it, and hides nothing from a notebook."""
    source = _notebook(tmp_path / "debugpy.ipynb", "import sys\nprint('debugpy' in sys.modules)",
                       "import debugpy\nprint(debugpy.__name__)")
    executed = tmp_path / "out" / "debugpy.ipynb"
    assert notebook.execute(source, executed, {}, tmp_path, progress=False) is None
    printed = [c.outputs[0]["text"] for c in nbformat.read(executed, as_version=4).cells]
    assert printed == ["False\n", "debugpy\n"]


def test_the_executed_notebook_is_written_at_the_end_with_every_cell(tmp_path):
    """Cell boundaries write the notebook at most every 30 s (papermill wrote it twice per cell); the end
    writes it whole, and a failing cell is marked in the file."""
    source = _notebook(tmp_path / "cells.ipynb", *[f"print({i})" for i in range(6)], "raise ValueError('boom')")
    executed = tmp_path / "out" / "cells.ipynb"
    error = notebook.execute(source, executed, {}, tmp_path, progress=False)
    assert error is not None and "ValueError: boom" in error
    cells = nbformat.read(executed, as_version=4).cells
    assert [c.outputs[0]["text"] for c in cells[1:-1] if c.cell_type == "code"] == [f"{i}\n" for i in range(6)]
    assert cells[-1].metadata.papermill["exception"] is True
