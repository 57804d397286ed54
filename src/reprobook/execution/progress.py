"""Which cell a stage's kernel is running, shown as one live line in a terminal.

nbclient calls hooks as a notebook runs (``on_notebook_start``,
``on_cell_execute``, ``on_cell_executed``); :class:`CellTracker` keeps what
they say. Two readers: the progress line (``stage modeling · cell 7/23 ·
12.3s · model = train(...)``, drawn on stderr only when stderr is a terminal,
and gone when the stage ends), and the kernel's shutdown, which interrupts a
kernel only when a cell is still running (see
:func:`reprobook.execution.notebook.execute`). :func:`step_printer` does the
same for a command made of steps (``reprobook reproduce``): a line per step.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

SKIP_TAG = "skip-execution"
"""nbclient's tag for a code cell it does not run."""
REFRESH_PER_SECOND = 4


def _runs(cell: Any) -> bool:
    """Whether nbclient executes this cell (a non-empty code cell without the skip tag)."""
    return (
        cell.get("cell_type") == "code"
        and bool(str(cell.get("source", "")).strip())
        and SKIP_TAG not in cell.get("metadata", {}).get("tags", [])
    )


def first_line(source: str) -> str:
    """The cell's first line of code (comments and blank lines skipped), else its first line."""
    lines = [line.strip() for line in source.splitlines() if line.strip()]
    code = [line for line in lines if not line.startswith("#")]
    return (code or lines or [""])[0]


class CellTracker:
    """The cell running now, its number among the cells that run, and since when.

    ``hooks()`` are nbclient's (papermill passes them through to the client).
    ``running`` is true from a cell's execute request until its reply: only
    then is the kernel busy.
    """

    def __init__(self, label: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.total = 0
        self.number = 0
        self.line = ""
        self.running = False
        self._clock = clock
        self.started = clock()
        self.cell_started = self.started
        self.on_change: Callable[[], None] | None = None
        """Called when a cell starts or ends (the display redraws at once, not at its next tick)."""

    def hooks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_notebook_start": self.notebook_start,
            "on_cell_execute": self.cell_execute,
            "on_cell_executed": self.cell_executed,
        }

    def notebook_start(self, notebook: Any, **_: Any) -> None:
        self.total = sum(_runs(cell) for cell in notebook.cells)
        self._changed()

    def cell_execute(self, cell: Any, **_: Any) -> None:
        self.number += 1
        self.line = first_line(str(cell.get("source", "")))
        self.cell_started = self._clock()
        self.running = True
        self._changed()

    def cell_executed(self, **_: Any) -> None:
        self.running = False
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def describe(self) -> str:
        """``stage NAME · cell N/M · S.Ss · first line``: the cell running and for how long.

        Before the first cell the kernel is starting; after the last, stopping.
        """
        if not self.number:
            return f"stage {self.label} · starting the kernel · {self._clock() - self.started:.1f}s"
        total = max(self.total, self.number)
        if not self.running and self.number == total:
            return f"stage {self.label} · {total} cells run · stopping the kernel"
        return (f"stage {self.label} · cell {self.number}/{total} · "
                f"{self._clock() - self.cell_started:.1f}s · {self.line}")

    def __rich__(self) -> Any:
        from rich.text import Text

        return Text(self.describe(), no_wrap=True, overflow="ellipsis", end="")


def terminal_stderr() -> bool:
    """Progress is for a person at a terminal: stderr a TTY, and not a dumb one."""
    return sys.stderr.isatty() and os.environ.get("TERM", "") not in ("dumb", "unknown")


@contextmanager
def shown(tracker: CellTracker, enabled: bool) -> Iterator[CellTracker]:
    """Draw ``tracker`` as one live line on stderr while the block runs, if enabled and a terminal.

    The line is transient: when the block ends it is erased, so what stays on
    screen is what the command prints after it. Otherwise nothing is written.
    """
    if not (enabled and terminal_stderr()):
        yield tracker
        return
    from rich.console import Console
    from rich.live import Live

    console = Console(stderr=True, highlight=False)
    # stderr written meanwhile (warnings) goes above the line; stdout may be a pipe: left alone.
    with Live(tracker, console=console, refresh_per_second=REFRESH_PER_SECOND, transient=True,
              redirect_stdout=False, redirect_stderr=True) as live:
        tracker.on_change = live.refresh
        try:
            yield tracker
        finally:
            tracker.on_change = None


def step_printer() -> Callable[[str], None]:
    """Steps of a long command, one line each as it starts, with the seconds since the first.

    On a terminal's stderr only; otherwise a callable that prints nothing, so
    a script or a log gets the command's result and no running commentary.
    """
    if not terminal_stderr():
        return lambda message: None
    from rich.console import Console
    from rich.text import Text

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    started = time.monotonic()

    def step(message: str) -> None:
        console.print(Text.assemble((f"{time.monotonic() - started:6.1f}s ", "dim"), message))

    return step
