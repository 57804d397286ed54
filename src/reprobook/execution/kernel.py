"""The stage's Jupyter kernel: launched first, so that it boots while the stage imports the rest.

A kernel is a fresh process per stage (a clean state is what reproduction
needs). Starting one takes about half a second: it is launched before the
stage's own imports (papermill and the kernel client), which then happen
while it boots, and it is handed to papermill ready-made. Stopping it takes
0.07 s instead of half a second (:meth:`Kernel.stop`) and waits for its exit,
so what a kernel writes on its way out is on disk before the stage's files
are logged.

A stage stopped by an error or a signal stops its kernel at once instead:
interrupted first when a cell is running.

The kernel talks over local IPC sockets in a private folder: no TCP port is
opened and nothing is sent in clear. The folder is named after the stage's
process, so a later stage removes what a killed one left behind.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from reprobook.execution.progress import CellTracker

KERNEL_NAME = "reprobook"
KERNEL_DIR_PREFIX = "reprobook-kernel-"
INTERRUPT_GRACE_SECONDS = 0.5
STOP_POLL_SECONDS = 0.02
SHUTDOWN_WAIT_SECONDS = 2.0
"""jupyter_client's grace for a kernel asked to stop: SIGTERM after half of it, SIGKILL after the rest."""
FREEZE_CODE = "__import__('gc').freeze()"
FREEZE_TIMEOUT_SECONDS = 5
STAGE_KERNEL_MODULE = "reprobook.execution.kernel_main"
"""What runs in the stage's kernel process instead of ``ipykernel_launcher`` (without the debugger)."""
KERNEL_ARGUMENTS = ["--HistoryManager.hist_file=:memory:"]
"""What nbclient passes to a kernel it starts itself: no IPython history database on disk."""


def remove_orphan_kernel_dirs() -> list[str]:
    """Remove the private kernel folders of stage processes that no longer exist (killed with SIGKILL)."""
    from reprobook.execution.processes import alive

    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{KERNEL_DIR_PREFIX}*"):
        pid = folder.name.removeprefix(KERNEL_DIR_PREFIX).split("-")[0]
        if folder.is_dir() and pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    return removed


def ipc_kernel_manager(cells: CellTracker | None = None) -> type:
    """A kernel manager on local IPC sockets that interrupts the kernel on shutdown only while one of
    its ``cells`` runs.

    jupyter_client's ``shutdown_kernel`` sends SIGINT to the kernel before the
    shutdown request, always. After the last cell the kernel is idle, but
    papermill's closing ``kernel_info`` request may still be in its handler
    when the signal lands, and the kernel then logs ``ERROR | KeyboardInterrupt
    caught in kernel.``: an alarm that means nothing. An idle kernel stops on
    the shutdown request alone; a running cell (the stage stopped by Ctrl-C or
    SIGTERM) is still interrupted first, so the kernel stops at once.
    """
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        transport = "ipc"

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._private = tempfile.mkdtemp(prefix=f"{KERNEL_DIR_PREFIX}{os.getpid()}-")
            self.ip = os.path.join(self._private, "kernel-ipc")
            self.connection_file = os.path.join(self._private, "kernel.json")
            self.clients: list[Any] = []

        def client(self, **kwargs: Any) -> Any:
            # Kept, so their sockets are closed when the kernel stops (nbclient leaves a client of
            # a kernel it did not start open).
            created = super().client(**kwargs)
            self.clients.append(created)
            return created

        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            # The stage's kernel starts without the debugger (kernel_main's docstring); a kernelspec
            # that does not run ipykernel_launcher is left as it is.
            command = super().format_kernel_cmd(extra_arguments)
            return [STAGE_KERNEL_MODULE if part == "ipykernel_launcher" else part for part in command]

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            # The kernel process's own stderr (its logging: shutdown races after an interrupt) goes to
            # a log in the private folder; what cells print reaches the notebook over IOPub as always.
            self._log = open(os.path.join(self._private, "kernel.log"), "wb")  # noqa: SIM115  closed at cleanup
            kw.setdefault("stdout", self._log)
            kw.setdefault("stderr", self._log)
            await super()._async_launch_kernel(kernel_cmd, **kw)

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            if getattr(self, "_cleaned", False):
                return
            self._cleaned = not restart
            for opened in self.clients:
                opened.stop_channels()
            self.clients.clear()
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

        # AsyncKernelManager binds its public names to KernelManager's functions, not to overrides.
        cleanup_resources = _async_cleanup_resources
        interrupt_kernel = _async_interrupt_kernel

    return IPCKernelManager


async def _request_shutdown_on_shell(client: Any) -> None:
    """Send ``shutdown_request`` on ``client``'s shell channel (see :meth:`Kernel.stop` for why not control)."""
    import asyncio

    client.shell_channel.send(client.session.msg("shutdown_request", {"restart": False}))
    await asyncio.sleep(0)  # let the event loop hand the message to the socket


class Kernel:
    """One stage's kernel process: :meth:`start`, then :meth:`stop`, or :meth:`stop_now` when the stage
    is failing or interrupted."""

    def __init__(self, cells: CellTracker) -> None:
        self.manager: Any = None
        self._cells = cells

    def start(self, root: Path, variables: dict[str, str] | None = None) -> Any:
        """Launch the kernel in ``root``, with ``variables`` added to this process's environment (it boots
        while the caller goes on); return its manager."""
        from jupyter_client.kernelspec import NoSuchKernel
        from jupyter_core.utils import run_sync

        from reprobook.errors import UsageError

        remove_orphan_kernel_dirs()
        self.manager = ipc_kernel_manager(self._cells)(kernel_name=KERNEL_NAME,
                                                       shutdown_wait_time=SHUTDOWN_WAIT_SECONDS)
        try:
            run_sync(self.manager.start_kernel)(extra_arguments=KERNEL_ARGUMENTS, cwd=str(root),
                                                env={**os.environ, **(variables or {})})
        except NoSuchKernel:
            self._cleanup()
            raise UsageError(
                f"Jupyter kernel '{KERNEL_NAME}' is not installed; run `make setup` "
                f"(or `{sys.executable} -m ipykernel install --sys-prefix --name {KERNEL_NAME}`)"
            ) from None
        return self.manager

    def stop(self) -> None:
        """Stop the idle kernel: freeze its objects, ask it to exit, wait for the exit.

        After the last cell, a silent execution (no output, no history, no
        execution count) calls ``gc.freeze()`` in the kernel: its interpreter
        then skips the final garbage collection over everything the notebook
        loaded, which is most of a kernel's exit (0.07 s instead of 0.35-0.5 s,
        measured over 30 stops). Nothing the notebook computed depends on it;
        what is skipped is running finalizers of objects left in reference
        cycles at exit, which Python does not promise (the ``__del__`` note in
        the language reference). Objects outside cycles are released, files
        closed and ``atexit`` handlers run as always.

        The shutdown request goes on the shell channel, which ipykernel
        accepts as well as control: asked on the control channel, ipykernel
        7.4 hung on exit in 2 stops of 40 (its control thread flushes stdout
        after the reply while the main thread stops the IOPub thread, then
        waits out a timeout: posit-dev/positron#7142), and in about one of
        seven when the stage's process kept the cores busy meanwhile; asked on
        the shell channel, where the main thread handles it itself, none in 70.
        A kernel that hangs anyway gets SIGTERM after 1 s (jupyter_client's
        default: 2.5 s). The exit is polled every 20 ms rather than 100 ms.
        """
        from jupyter_core.utils import run_sync

        if self.manager is None:
            return
        try:
            if self.manager.clients and run_sync(self.manager.is_alive)():
                run_sync(self.manager.clients[-1].execute_interactive)(
                    FREEZE_CODE, silent=True, store_history=False, timeout=FREEZE_TIMEOUT_SECONDS)
        except Exception:  # noqa: BLE001  only a shortcut: the kernel stops all the same
            pass
        self.manager.shutting_down = True
        try:
            if self.manager.clients:
                run_sync(_request_shutdown_on_shell)(self.manager.clients[-1])
            else:
                run_sync(self.manager.request_shutdown)()
            run_sync(self.manager.finish_shutdown)(pollinterval=STOP_POLL_SECONDS)
        finally:
            self._cleanup()

    def stop_now(self) -> None:
        """Stop the kernel on the way out of a failure or a signal: interrupt a running cell, then shut down."""
        from jupyter_core.utils import run_sync

        if self.manager is None:
            return
        try:
            if run_sync(self.manager.is_alive)():
                run_sync(self.manager.shutdown_kernel)(now=False)
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        from jupyter_core.utils import run_sync

        manager, self.manager = self.manager, None
        if manager is not None:
            run_sync(manager.cleanup_resources)()
