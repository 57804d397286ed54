"""Run one stage: open its run, execute its notebook, keep the report, complete the record.

A chain in papermill's manner: read the stage from ``dvc.yaml`` and the
params it declares, start the kernel, open the stage's MLflow run (RUNNING,
in a background thread while the cells run), execute the notebook with those
params injected, make the executed copy a stable report (notebook and HTML),
then complete the run record from the stage's files. Tracking happens outside the kernel, so the notebook stays
a plain notebook that also runs in Jupyter. Every run ends in a terminal
state: FINISHED, FAILED, or KILLED on SIGINT or SIGTERM (the kernel is
stopped on the way out).

The order is the overhead budget (docs/performance.md): nothing the kernel
does not need comes before its launch, everything that does not need the
executed notebook happens while the cells run.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reprobook.errors import ReprobookError
from reprobook.execution import notebook, threads
from reprobook.execution.kernel import Kernel
from reprobook.execution.progress import CellTracker
from reprobook.project.params import Params, project_params, stage_params
from reprobook.project.paths import MODEL_FILE, report_files, running_stages_dir
from reprobook.project.stages import Stage, get_stage
from reprobook.tracking import secrets
from reprobook.tracking.writer import RunExtras


class StageFailed(ReprobookError):
    """A stage notebook raised; the message names the cell and the error."""


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    run_id: str
    status: str
    notebook: Path
    html: Path
    seconds: float
    error: str | None = None


class _ModelLogger:
    """Log the model to the stage's run as soon as the notebook has saved it, while the kernel goes on.

    Logging a model to MLflow (serialising it again, its signature, the input
    example and MLflow's check that it serves) took 0.8 s after the modeling
    notebook's last cell. The notebook saves its model right after fitting it,
    so that work runs beside the evaluation, plots and latency cells. The
    model is logged only: it is registered after the stage has succeeded
    (:func:`reprobook.tracking.registry.log_and_register`). A model file saved
    again later than that is logged again at the end, as is one whose early
    logging failed (its error is then reported there).
    """

    def __init__(self, root: Path, params: Params, started: float) -> None:
        self._root, self._params, self._started = root, params, started
        self._path = root / MODEL_FILE
        self._thread: threading.Thread | None = None
        self._stamp: tuple[int, int] | None = None
        self._model_id: str | None = None

    def start_if_saved(self, run_id: str) -> None:
        """Start logging (once) if the model file was written since the stage started."""
        if self._thread is not None:
            return
        try:
            info = self._path.stat()
        except OSError:
            return
        if info.st_mtime < self._started:
            return
        self._stamp = (info.st_mtime_ns, info.st_size)
        self._thread = threading.Thread(target=self._log, args=(run_id,), name="model-logger", daemon=True)
        self._thread.start()

    def _log(self, run_id: str) -> None:
        from reprobook.tracking import store
        from reprobook.tracking.registry import log_model

        try:
            self._model_id = log_model(store.client(self._root), run_id, self._root, self._params)
        except Exception:  # noqa: BLE001  logged again at registration, which reports the error
            self._model_id = None

    def result(self) -> str | None:
        """The logged model's id, if it is the model file as it is now; else None (log it again)."""
        if self._thread is None:
            return None
        self._thread.join()
        try:
            info = self._path.stat()
        except OSError:
            return None
        return self._model_id if (info.st_mtime_ns, info.st_size) == self._stamp else None


class _RunOpener:
    """Create the stage's MLflow run in a background thread while the kernel boots and runs the cells.

    Importing MLflow and opening the store take about a second: done beside
    the kernel, the run is on record (RUNNING) from the stage's first seconds
    at no cost to the stage's duration. It starts once the main thread has
    imported papermill, not before (a thread importing MLflow beside that
    import holds the GIL most of the time: the kernel was ready after
    0.8-1.0 s instead of 0.46 s); the HTML exporter is built from the first
    cell on (:meth:`before_cell`). A stage that registers a model first checks that the
    registered model belongs to this project; a refusal (or a store that
    cannot be written) stops the notebook before its next cell (:meth:`check`).
    """

    def __init__(self, stage: Stage, root: Path, params: Params, started: float, extras: RunExtras) -> None:
        self.run_id: str | None = None
        self.error: BaseException | None = None
        self._warm_up: threading.Thread | None = None
        self._model: _ModelLogger | None = None
        self._thread = threading.Thread(target=self._open, args=(stage, root, params, started, extras), daemon=True,
                                        name="mlflow-run-opener")

    def start(self) -> None:
        """Start opening the run (once)."""
        if self._thread.ident is None:
            self._thread.start()

    def _open(self, stage: Stage, root: Path, params: Params, started: float, extras: RunExtras) -> None:
        from reprobook.tracking.writer import registers_model, start_stage_run, will_register

        try:
            from reprobook.tracking import registry, store

            if registers_model(stage):
                # Refuse a model of another task, target or classes before training, not after.
                registry.check_project_binding(store.client(root), root, params.model.registered_name)
            self.run_id = start_stage_run(stage, root, params, started_ms=int(started * 1000), extras=extras)
        except BaseException as exc:  # re-raised in the main thread by check() or result()
            self.error = exc
            return
        if will_register(stage, {**store.context_tags(), **extras.tags}):
            self._model = _ModelLogger(root, params, started)
        if registers_model(stage):
            try:
                registry.prepare(store.client(root), root, params)
            except Exception:  # noqa: BLE001  a warm-up only: registering imports again and reports the error
                pass

    def check(self) -> None:
        """Raise the opener's error, if it has failed by now."""
        if self.error is not None:
            raise self.error

    def before_cell(self) -> None:
        """Before each cell: build the report's exporter in the background (once: the kernel is ready and
        the main thread idle from now on); stop the notebook if opening the run failed."""
        self.start()
        if self._warm_up is None:
            self._warm_up = notebook.warm_up_report()
        self.check()
        if self._model is not None and not self._thread.is_alive() and self.run_id is not None:
            self._model.start_if_saved(self.run_id)

    def result(self) -> str:
        """The run's id, once the opener and the report's warm-up are done; the opener's error if it failed."""
        self.start()
        self._thread.join()
        if self._warm_up is not None:
            self._warm_up.join()
        self.check()
        assert self.run_id is not None
        return self.run_id

    def logged_model(self) -> str | None:
        """The id of the model logged while the stage ran, if it is still the saved one."""
        return self._model.result() if self._model is not None else None

    def opened(self) -> str | None:
        """The run's id once the opener is done, or None if it created no run."""
        self.start()
        self._thread.join()
        return self.run_id


class StageInterrupted(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the kernel is stopped and the run marked KILLED."""


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM into an exception in the main thread, so cleanup (kernel, run status) happens."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise StageInterrupted(f"terminated by signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_stage(name: str, root: Path, *, progress: bool = True) -> StageOutcome:
    """Execute stage ``name`` of ``dvc.yaml`` and record it; raise :class:`StageFailed` if the notebook failed."""
    return execute_stage(get_stage(root, name), root, progress=progress)


def execute_stage(stage: Stage, root: Path, *, progress: bool = True, inject: dict | None = None,
                  extras: RunExtras = RunExtras()) -> StageOutcome:
    """Execute a stage's notebook with its params (and ``inject``ed parameters) and record it in MLflow.

    ``inject`` and ``extras`` serve a stage run outside the pipeline: the
    monitoring of one batch gets the batch as a parameter, and its run the
    batch's tags and index.
    """
    from reprobook.tracking.writer import registers_model

    name = stage.name
    with _sigterm_interrupts():
        params = project_params(root)
        secrets.check_names(params, registers_model=registers_model(stage))
        injected = {"params": stage_params(params, stage.params, stage.name), "project_dir": ".", **(inject or {})}
        started = time.time()
        executed = report_files(root, name)["notebook"]
        cells = CellTracker(name)
        kernel = Kernel(cells)
        opener: _RunOpener | None = None
        try:
            with threads.stage_budget(running_stages_dir()) as thread_variables:
                kernel.start(root, thread_variables)
                opener = _RunOpener(stage, root, params, started, extras)
                notebook.use_papermill_extensions()  # imports papermill while the kernel boots
                opener.start()
                error = notebook.execute(root / stage.notebook, executed, injected, root, progress,
                                         kernel=kernel.manager, cells=cells, before_cell=opener.before_cell)
            run_id = opener.result()  # the work beside the cells ends before the kernel stops (Kernel.stop)
            kernel.stop()
            html = notebook.finish_report(executed, root)
        except KeyboardInterrupt as exc:
            kernel.stop_now()
            _end_interrupted(opener, root, f"stage '{name}' interrupted: {exc or 'KeyboardInterrupt'}")
            raise
        except BaseException as exc:
            kernel.stop_now()
            _end_interrupted(opener, root, f"stage '{name}' failed: {type(exc).__name__}: {exc}", status="FAILED")
            raise
        from reprobook.tracking.writer import finish_stage_run

        finish_stage_run(run_id, stage, root, params, error=error, extras=extras,
                         logged_model=None if error else opener.logged_model())
    if error:
        raise StageFailed(
            f"stage '{name}' failed in {error}\n"
            f"  executed notebook (failing cell marked): {executed.relative_to(root)}\n"
            f"  MLflow run {run_id} marked FAILED"
        )
    return StageOutcome(name, run_id, "FINISHED", executed, html, time.time() - started)


def _end_interrupted(opener: _RunOpener | None, root: Path, reason: str, status: str = "KILLED") -> None:
    """Give the stage's run, if it was created, a terminal state; never hide the original exception."""
    import logging

    # The interrupted cell's task in papermill's event loop ends with "Kernel died" once the
    # kernel is stopped; asyncio would report it at exit as a never-retrieved exception.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    run_id = opener.opened() if opener is not None else None
    if run_id is None:
        return
    from reprobook.tracking.writer import end_run

    try:
        end_run(root, run_id, reason, status)
    except BaseException as exc:  # noqa: BLE001  the interruption is what the user must see
        sys.stderr.write(f"warning: the stage's MLflow run could not be ended {status}: {exc}\n")
