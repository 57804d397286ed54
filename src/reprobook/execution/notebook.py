"""Execute a stage notebook through papermill, then make the executed copy a stable report.

The kernel is a fresh process per stage (a clean state is what reproduction
needs), on local IPC sockets: no TCP port is opened. The executed notebook is
normalised so that the same code, params and data give the same bytes, in the
notebook and in its HTML: no timestamps, durations, kernel ids or absolute
paths of the machine. A cell tagged ``volatile`` (timings, say) keeps no
output in the report; what it computes goes to files and MLflow instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from reprobook.errors import UsageError
from reprobook.execution.progress import CellTracker, shown
from reprobook.tracking import secrets

KERNEL_NAME = "reprobook"
KERNEL_DIR_PREFIX = "reprobook-kernel-"
INTERRUPT_GRACE_SECONDS = 0.5
VOLATILE_TAG = "volatile"
VOLATILE_NOTE = "(output not kept in the report: this cell is tagged 'volatile', its output varies between runs)\n"
VOLATILE_CELL_KEYS = ("start_time", "end_time", "duration")


def remove_orphan_kernel_dirs() -> list[str]:
    """Remove the private kernel folders of stage processes that no longer exist (killed with SIGKILL)."""
    import shutil
    import tempfile

    from reprobook.execution.processes import alive

    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{KERNEL_DIR_PREFIX}*"):
        pid = folder.name.removeprefix(KERNEL_DIR_PREFIX).split("-")[0]
        if folder.is_dir() and pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    return removed


def _ipc_kernel_manager(cells: CellTracker | None = None) -> type:
    """A kernel manager on local IPC sockets (no TCP ports opened, nothing sent in clear)
    that interrupts the kernel on shutdown only while one of its ``cells`` runs.

    jupyter_client's ``shutdown_kernel`` sends SIGINT to the kernel before the
    shutdown request, always. After the last cell the kernel is idle, but
    papermill's closing ``kernel_info`` request may still be in its handler
    when the signal lands, and the kernel then logs ``ERROR | KeyboardInterrupt
    caught in kernel.``: an alarm that means nothing. An idle kernel stops on
    the shutdown request alone; a running cell (the stage stopped by Ctrl-C or
    SIGTERM) is still interrupted first, so the kernel stops at once.
    """
    import os
    import shutil
    import tempfile

    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        transport = "ipc"

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            # Sockets and connection file in a private folder, never the project root; named
            # by this process so a sweep can remove what a killed stage left behind.
            self._private = tempfile.mkdtemp(prefix=f"{KERNEL_DIR_PREFIX}{os.getpid()}-")
            self.ip = os.path.join(self._private, "kernel-ipc")
            self.connection_file = os.path.join(self._private, "kernel.json")

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            # The kernel process's own stderr (its logging: shutdown races after an interrupt) goes to
            # a log in the private folder; what cells print reaches the notebook over IOPub as always.
            self._log = open(os.path.join(self._private, "kernel.log"), "wb")  # noqa: SIM115  closed at cleanup
            kw.setdefault("stdout", self._log)
            kw.setdefault("stderr", self._log)
            await super()._async_launch_kernel(kernel_cmd, **kw)

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            if getattr(self, "_log", None) is not None:
                self._log.close()
            if not restart:
                shutil.rmtree(self._private, ignore_errors=True)

        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down and cells is not None and not cells.running:
                return
            await super()._async_interrupt_kernel()
            if self.shutting_down:
                # Let the interrupted cell's reply leave before the shutdown request closes the
                # kernel's sockets; otherwise the kernel prints a ZMQError traceback on its way out.
                import asyncio

                await asyncio.sleep(INTERRUPT_GRACE_SECONDS)

    return IPCKernelManager


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


def use_readable_parameters() -> None:
    """Make papermill inject the parameters of the ``reprobook`` kernel readably (see :func:`_readable_translator`)."""
    from papermill.translators import papermill_translators

    papermill_translators.register(KERNEL_NAME, _readable_translator())


def execute(source: Path, executed: Path, parameters: dict[str, Any], root: Path, progress: bool) -> str | None:
    """Run ``source`` into ``executed``; return the error ("cell N: Name: value") or None.

    The notebook is always written, failing cell marked by papermill, so a
    failure can be read where it happened. With ``progress``, a terminal shows
    which cell runs and for how long (:mod:`reprobook.execution.progress`).
    """
    import papermill
    from jupyter_client.kernelspec import NoSuchKernel
    from papermill.exceptions import PapermillExecutionError

    remove_orphan_kernel_dirs()
    if not source.is_file():
        raise UsageError(f"{source.relative_to(root)}: stage notebook not found")
    executed.parent.mkdir(parents=True, exist_ok=True)
    use_readable_parameters()
    cells = CellTracker(executed.parent.name)  # the report's folder is named after the stage
    try:
        with shown(cells, progress):
            papermill.execute_notebook(
                str(source),
                str(executed),
                parameters=parameters,
                kernel_name=KERNEL_NAME,
                cwd=str(root),
                progress_bar=False,
                log_output=False,
                kernel_manager_class=_ipc_kernel_manager(cells),
                **cells.hooks(),
            )
    except PapermillExecutionError as exc:
        return f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
    except NoSuchKernel:
        raise UsageError(
            f"Jupyter kernel '{KERNEL_NAME}' is not installed; run `make setup` "
            f"(or `{sys.executable} -m ipykernel install --sys-prefix --name {KERNEL_NAME}`)"
        ) from None
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
        cell.outputs = from_dict(secrets.redact_tree(_scrub(cell.outputs, replacements)))
        cell.source = _scrub(cell.source, replacements)
    return notebook


def finish_report(executed: Path, root: Path) -> Path:
    """Normalise the executed notebook in place and export it as HTML beside it; return the HTML path."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = normalize(nbformat.read(executed, as_version=4), root)
    nbformat.write(notebook, executed)
    html, _ = HTMLExporter().from_notebook_node(notebook)
    target = executed.with_suffix(".html")
    target.write_text(html)
    return target
