"""Where partition tasks run: in this process, or on Dask workers, behind one small interface.

Both runners take the same functions and the same arguments, and results are
merged in the same tree (:func:`tree_reduce`, shaped by the number of inputs
only, in the partitions' fixed order), so a data set gives the same bytes
whichever runner computed it and whichever worker finished first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from reprobook.errors import UsageError


class InProcess:
    """Runs each task at once, here: the reference for the cluster, and the default without a scheduler."""

    def submit(self, function: Callable[..., Any], *args: Any) -> Any:
        return function(*args)

    def result(self, handle: Any) -> Any:
        return handle

    def on_done(self, handle: Any, callback: Callable[[], None]) -> None:
        callback()

    def results(self, handles: list[Any]) -> list[Any]:
        return list(handles)


class OnDask:
    """Runs tasks on a ``distributed.Client``; handles are futures, results stay on the workers until asked."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def submit(self, function: Callable[..., Any], *args: Any) -> Any:
        return self.client.submit(function, *args, pure=False)

    def result(self, handle: Any) -> Any:
        return handle.result()

    def on_done(self, handle: Any, callback: Callable[[], None]) -> None:
        handle.add_done_callback(lambda _future: callback())

    def results(self, handles: list[Any]) -> list[Any]:
        return self.client.gather(handles)


def tree_reduce(runner: Any, handles: Iterable[Any], merge: Callable[[Any, Any], Any]) -> Any:
    """Merge handles pairwise in a binary tree fixed by their order (a binary counter).

    Each input is pushed with rank 0; two neighbours of equal rank merge into
    one of the next rank; what is left merges from the right. In process this
    keeps at most log2(n) summaries alive; on Dask the merges start as soon as
    their two inputs are done.
    """
    stack: list[tuple[int, Any]] = []
    for handle in handles:
        rank = 0
        while stack and stack[-1][0] == rank:
            _, left = stack.pop()
            handle = runner.submit(merge, left, handle)
            rank += 1
        stack.append((rank, handle))
    if not stack:
        raise ValueError("nothing to merge")
    _, result = stack.pop()
    while stack:
        _, left = stack.pop()
        result = runner.submit(merge, left, result)
    return result


@contextlib.contextmanager
def runner_for(scheduler: str | None, workers: int | None = None, memory_limit: str | None = None) -> Iterator[Any]:
    """An in-process runner (``scheduler`` None), or one on the Dask scheduler at that address or ``local``."""
    if scheduler is None:
        yield InProcess()
        return
    from reprobook.execution.cluster import ClusterError, dask_client

    with contextlib.ExitStack() as stack:
        try:
            client = stack.enter_context(dask_client(scheduler, workers=workers, memory_limit=memory_limit))
        except ClusterError as exc:
            raise UsageError(str(exc)) from None
        yield OnDask(client)


@contextlib.contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[], None]]:
    """A callable marking one partition done, drawn as a progress bar on a terminal's stderr (else silent)."""
    from reprobook.execution.progress import terminal_stderr

    if not terminal_stderr() or total == 0:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("partitions"),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)
