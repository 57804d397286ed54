"""Execute a stage notebook through papermill, then make the executed copy a stable report.

The kernel is a fresh process per stage (a clean state is what reproduction
needs), on local IPC sockets: no TCP port is opened (:mod:`.kernel`). The
executed notebook is normalised so that the same code, params and data give
the same bytes, in the notebook and in its HTML: no timestamps, durations,
kernel ids or absolute paths of the machine. A cell tagged ``volatile``
(timings, say) keeps no output in the report; what it computes goes to files
and MLflow instead.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reprobook.errors import UsageError
from reprobook.execution.kernel import KERNEL_NAME, Kernel
from reprobook.execution.progress import CellTracker, shown
from reprobook.tracking import secrets

_exporter: Any = None
_exporter_lock = threading.Lock()

VOLATILE_TAG = "volatile"
VOLATILE_NOTE = "(output not kept in the report: this cell is tagged 'volatile', its output varies between runs)\n"
VOLATILE_CELL_KEYS = ("start_time", "end_time", "duration")


def _readable_translator() -> type:
    """papermill's Python translator, writing dicts and long lists one item per line.

    papermill injects ``params = {...}`` on one line that runs off the page of
    the report. This one writes the same Python values (papermill's own scalar
    translations, keys in the order given) indented by four spaces, so the
    injected cell reads like a params file and is the same text for the same
    params.
    """
    from papermill.translators import PythonTranslator

    class ReadablePythonTranslator(PythonTranslator):
        INDENT = "    "
        WIDTH = 88

        @classmethod
        def translate_dict(cls, val: dict, level: int = 0) -> str:
            if not val:
                return "{}"
            pad = cls.INDENT * (level + 1)
            items = [f"{pad}{cls.translate_str(key)}: {cls._nested(item, level + 1)}," for key, item in val.items()]
            return "{\n" + "\n".join(items) + "\n" + cls.INDENT * level + "}"

        @classmethod
        def translate_list(cls, val: list, level: int = 0) -> str:
            flat = "[" + ", ".join(cls._nested(item, level + 1) for item in val) + "]"
            if "\n" not in flat and len(cls.INDENT * (level + 1)) + len(flat) <= cls.WIDTH:
                return flat
            pad = cls.INDENT * (level + 1)
            items = [f"{pad}{cls._nested(item, level + 1)}," for item in val]
            return "[\n" + "\n".join(items) + "\n" + cls.INDENT * level + "]"

        @classmethod
        def _nested(cls, val: Any, level: int) -> str:
            if isinstance(val, dict):
                return cls.translate_dict(val, level)
            if isinstance(val, list):
                return cls.translate_list(val, level)
            return cls.translate(val)

        @classmethod
        def codify(cls, parameters: dict, comment: str = "Parameters") -> str:
            # The base class's codify, without its optional pass through Black (installed or not,
            # the injected text must not depend on it).
            lines = [cls.comment(comment)] + [cls.assign(name, cls._nested(value, 0)) for name, value in parameters.items()]
            return "\n".join(lines) + "\n"

    return ReadablePythonTranslator


ENGINE_NAME = "reprobook"


def _engine() -> type:
    """papermill's nbclient engine, writing the executed notebook less often between cells.

    papermill writes the whole notebook to disk when the notebook starts, when
    every cell (markdown included) starts and completes, and at the end: 50
    writes of a growing notebook for the modeling stage (2.5 ms each once it
    holds its figures, 0.13 s in all), each one in the stage's process while
    the kernel waits for its next cell. Here a cell boundary writes only if
    ``autosave_cell_every`` seconds (papermill's 30) have passed since the last
    write, as papermill's own autosave during a long cell does; the start, a
    failure and the end are written as before, so a failing cell is marked in
    the file and a long notebook is on disk as it goes.
    """
    import datetime

    from papermill.engines import NBClientEngine, NotebookExecutionManager

    class CellBoundaryThrottle(NotebookExecutionManager):
        _at_boundary = False

        def cell_start(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
            self._at_boundary = True
            try:
                super().cell_start(cell, cell_index, **kwargs)
            finally:
                self._at_boundary = False

        def cell_complete(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
            self._at_boundary = not cell.metadata.papermill.get("exception")
            try:
                super().cell_complete(cell, cell_index, **kwargs)
            finally:
                self._at_boundary = False

        def save(self, **kwargs: Any) -> None:
            since = self.now() - self.last_save_time
            if self._at_boundary and since < datetime.timedelta(seconds=self.autosave_cell_every):
                return
            super().save(**kwargs)

    class ReprobookEngine(NBClientEngine):
        @classmethod
        def execute_notebook(cls, nb: Any, kernel_name: str, output_path: str | None = None, progress_bar: bool = True,
                             log_output: bool = False, autosave_cell_every: int = 30, **kwargs: Any) -> Any:
            # papermill's Engine.execute_notebook, with the manager above.
            nb_man = CellBoundaryThrottle(nb, output_path=output_path, progress_bar=progress_bar,
                                          log_output=log_output, autosave_cell_every=autosave_cell_every)
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            finally:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

    return ReprobookEngine


def use_papermill_extensions() -> None:
    """Register with papermill the ``reprobook`` kernel's readable parameter injection
    (:func:`_readable_translator`) and the engine that writes the notebook less often (:func:`_engine`)."""
    from papermill.translators import papermill_translators

    papermill_translators.register(KERNEL_NAME, _readable_translator())
    from papermill.engines import papermill_engines

    papermill_engines.register(ENGINE_NAME, _engine())


def execute(
    source: Path,
    executed: Path,
    parameters: dict[str, Any],
    root: Path,
    progress: bool,
    *,
    kernel: Any = None,
    cells: CellTracker | None = None,
    before_cell: Callable[[], None] | None = None,
) -> str | None:
    """Run ``source`` into ``executed``; return the error ("cell N: Name: value") or None.

    ``kernel`` is the manager of a kernel the caller started (and stops):
    see :mod:`reprobook.execution.kernel`; without one, a kernel is started
    and stopped here. ``cells`` tracks the cell running (the kernel's manager
    must share it). ``before_cell`` runs before each cell and may raise to
    stop the notebook there. The notebook is always written, failing cell
    marked by papermill, so a failure can be read where it happened. With
    ``progress``, a terminal shows which cell runs and for how long
    (:mod:`reprobook.execution.progress`).
    """
    if not source.is_file():
        raise UsageError(f"{source.relative_to(root)}: stage notebook not found")
    cells = cells or CellTracker(executed.parent.name)  # the report's folder is named after the stage
    if kernel is None:
        own = Kernel(cells)
        own.start(root)
        try:
            error = execute(source, executed, parameters, root, progress, kernel=own.manager, cells=cells,
                            before_cell=before_cell)
        except BaseException:
            own.stop_now()
            raise
        own.stop()
        return error
    import papermill
    from papermill.exceptions import PapermillExecutionError

    executed.parent.mkdir(parents=True, exist_ok=True)
    use_papermill_extensions()
    hooks = cells.hooks()
    if before_cell is not None:
        track = hooks["on_cell_execute"]

        def checked(**kwargs: Any) -> None:
            before_cell()
            track(**kwargs)

        hooks["on_cell_execute"] = checked
    try:
        with shown(cells, progress):
            papermill.execute_notebook(
                str(source),
                str(executed),
                parameters=parameters,
                kernel_name=KERNEL_NAME,
                engine_name=ENGINE_NAME,
                km=kernel,
                cwd=str(root),
                progress_bar=False,
                log_output=False,
                **hooks,
            )
    except PapermillExecutionError as exc:
        return f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
    return None


def _scrub(value: Any, replacements: list[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        for old, new in replacements:
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [_scrub(item, replacements) for item in value]
    if isinstance(value, dict):
        return {key: _scrub(item, replacements) for key, item in value.items()}
    return value


def machine_paths(root: Path) -> list[tuple[str, str]]:
    """Absolute paths of this machine that outputs may print, and what replaces them."""
    pairs = [(str(root.resolve()), "<project>"), (sys.prefix, "<python>"), (str(Path.home()), "~")]
    return sorted({(old, new) for old, new in pairs if len(old) > 1}, key=lambda pair: -len(pair[0]))


def normalize(notebook: Any, root: Path) -> Any:
    """The executed notebook without what varies between identical runs (in place; returned).

    Removed: papermill's timestamps and durations, execution timing metadata,
    the input and output paths; outputs of ``volatile`` cells. Replaced: the
    project root, the Python prefix and the home folder in outputs. Cell ids
    become their position, so an inserted cell (papermill's parameters) has a
    stable id.
    """
    from nbformat import from_dict

    replacements = machine_paths(root)
    meta = notebook.metadata.get("papermill", {})
    for key in ("start_time", "end_time", "duration", "input_path", "output_path", "environment_variables"):
        meta.pop(key, None)
    if "parameters" in meta:
        meta["parameters"] = secrets.redact_params(_scrub(meta["parameters"], replacements), quiet=True)
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index}"
        cell.metadata.pop("execution", None)
        for key in VOLATILE_CELL_KEYS:
            cell.metadata.get("papermill", {}).pop(key, None)
        cell.source = secrets.redact_text(cell.source)
        if cell.cell_type != "code":
            continue
        if VOLATILE_TAG in cell.metadata.get("tags", []):
            cell.outputs = [{"output_type": "stream", "name": "stdout", "text": VOLATILE_NOTE}]
        cell.outputs = from_dict(secrets.redact_tree(_scrub(_coalesce_streams(cell.outputs), replacements)))
        cell.source = _scrub(cell.source, replacements)
    return notebook


def _coalesce_streams(outputs: list) -> list:
    """Consecutive stream outputs of one stream as one output, as nbconvert's ``coalesce_streams`` does.

    How the kernel cuts printed text into messages depends on timing (its
    output buffer is flushed on a timer): under load one ``print`` arrived as
    two outputs, its text and its newline, and the same run gave other bytes.
    """
    merged: list = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (output.get("output_type") == "stream" and previous is not None
                and previous.get("output_type") == "stream" and previous.get("name") == output.get("name")):
            text = "".join(previous["text"]) + "".join(output["text"])
            merged[-1] = {**previous, "text": text}
        else:
            merged.append(output)
    return merged


def html_exporter() -> Any:
    """The HTML exporter, built once per process (importing nbconvert and loading its templates
    take about half a second: :func:`warm_up_report` does it while the kernel runs)."""
    global _exporter
    with _exporter_lock:
        if _exporter is None:
            import nbformat
            from nbconvert import HTMLExporter

            exporter = HTMLExporter()
            exporter.from_notebook_node(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("")]))
            _exporter = exporter
        return _exporter


def warm_up_report() -> threading.Thread:
    """Build the HTML exporter in a background thread (the stage's process waits on the kernel meanwhile)."""
    thread = threading.Thread(target=html_exporter, name="report-warm-up", daemon=True)
    thread.start()
    return thread


def finish_report(executed: Path, root: Path) -> Path:
    """Normalise the executed notebook in place and export it as HTML beside it; return the HTML path."""
    import nbformat

    notebook = normalize(nbformat.read(executed, as_version=4), root)
    nbformat.write(notebook, executed)
    html, _ = html_exporter().from_notebook_node(notebook)
    target = executed.with_suffix(".html")
    target.write_text(html)
    return target
