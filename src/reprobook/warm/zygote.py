"""The warm process: load once what every stage process needs, then fork one fresh process per stage.

Started by :func:`reprobook.warm.client.start` (``python -P``, working folder
``/``, its own session, output to a log in the socket folder). It holds its
lock for its whole life, so there is one per environment key, imports
:data:`PRELOAD` and builds the report's HTML exporter (about 2 s of CPU,
once), freezes those objects out of the garbage collector (a fork then
shares their memory instead of copying it as the collector touches them),
and only then binds its socket, so a client that can connect gets a ready
process.

Forking is safe because nothing here starts a thread or opens a connection
before the fork (checked: one thread after the preload); the stage's
MLflow store, kernel and report are opened by the fork, as they would be by a
stage in its own process. Each fork takes the client's file descriptors,
working folder, environment, umask and import path before it runs
``reprobook.cli.main``, whose consoles are built after that (the command
line module is not preloaded, so its terminal detection sees the client's
terminal).

The warm process sends each client its fork's wait status once it has reaped
it. It exits when its socket has been idle for ``REPROBOOK_WARM_IDLE``
seconds, or on SIGTERM; either way it stops accepting first and lets running
stages finish.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from pathlib import Path

from reprobook.warm import location
from reprobook.warm.client import HEADER

PRELOAD = (
    # the command line's libraries (reprobook.cli itself is imported by each fork: see the module's docstring)
    "typer", "rich.console", "rich.live", "rich.progress", "rich.table",
    # the stage: kernel, papermill, the report
    "jupyter_client.manager", "papermill", "nbclient", "nbformat", "nbconvert",
    "reprobook.execution.runner", "reprobook.execution.kernel", "reprobook.execution.notebook",
    # the run record and the tracking store
    "mlflow", "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store",
    "reprobook.tracking.writer", "reprobook.tracking.store", "reprobook.tracking.record",
    # registering a model: MLflow's sklearn flavor, skops, scikit-learn
    "mlflow.sklearn", "skops.io", "reprobook.tracking.registry", "reprobook.ml.modeling", "reprobook.ml.persistence",
    # monitoring stages
    "reprobook.monitoring.stage",
)
SINGLE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
"""The warm process's own numeric libraries use one thread (and start none before a fork); each stage's
kernel gets its own budget from its environment."""


def preload() -> None:
    """Import what a stage process needs and build what it builds every time."""
    for name in SINGLE_THREAD:
        os.environ[name] = "1"
    for module in PRELOAD:
        importlib.import_module(module)
    from reprobook.execution import notebook

    notebook.html_exporter()
    with contextlib.suppress(ImportError):  # MLflow's map of installed modules to distributions (a private helper)
        from mlflow.utils.requirements_utils import _init_modules_to_packages_map

        _init_modules_to_packages_map()


def serve(key: str, path: list[str]) -> None:
    """Be the warm process of environment ``key`` (import path ``path``) until idle or stopped."""
    import fcntl

    sys.path[:] = path
    where = location.folder()
    if where is None:
        return
    lock = open(location.lock_path(where, key), "a+")  # noqa: SIM115  held until exit
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another one runs or is starting
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n{sys.executable}")
    lock.flush()
    started = time.perf_counter()
    try:
        preload()
    except BaseException:
        location.failed_path(where, key).write_text(traceback.format_exc())
        raise
    if threading.active_count() > 1:  # a fork copies only the forking thread: locks held by others stay held
        reason = f"loading started threads ({', '.join(t.name for t in threading.enumerate())}); not forking"
        location.failed_path(where, key).write_text(reason + "\n")
        print(reason, flush=True)
        return
    print(f"warm process {os.getpid()} ready in {time.perf_counter() - started:.2f} s", flush=True)
    gc.collect()
    gc.freeze()
    listener = _listen(location.socket_path(where, key))
    _retire_others(where, key)
    _accept(location.socket_path(where, key), listener, lock)


def _retire_others(where: Path, key: str) -> None:
    """Stop the warm processes of this interpreter under other keys: an upgrade or an edit of reprobook
    made them stale, and each holds a few hundred megabytes. They finish their running stages first."""
    from reprobook.warm.client import holder

    for other in where.glob("*.lock"):
        if other.stem == key:
            continue
        found = holder(other)
        if found is not None and found[1] == sys.executable:
            with contextlib.suppress(OSError):
                os.kill(found[0], signal.SIGTERM)


def _listen(path: Path) -> socket.socket:
    """Bind under a temporary name and rename: a client never connects to a socket that is not listening."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    temporary = path.with_name(f"{path.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    listener.bind(str(temporary))
    listener.listen(64)
    os.replace(temporary, path)
    return listener


def _accept(path: Path, listener: socket.socket, lock) -> None:
    inode = path.stat().st_ino
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    idle, last = location.idle_seconds(), time.monotonic()
    while True:
        if not children and time.monotonic() - last >= idle:
            stopping = True
        if stopping and listener.fileno() >= 0:
            selector.unregister(listener)
            listener.close()
            with contextlib.suppress(OSError):
                if path.stat().st_ino == inode:
                    path.unlink()
        if stopping and not children:
            return
        timeout = None if children or stopping else max(0.0, last + idle - time.monotonic())
        for ready, _ in selector.select(timeout):
            if ready.fileobj is wake_read:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_read, 512):
                        pass
            elif not stopping:
                connection, _ = listener.accept()
                if not _same_user(connection):
                    connection.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    _child(connection, closing=(listener.fileno(), wake_read, wake_write, lock.fileno(),
                                                *(other.fileno() for other in children.values())))
                children[pid] = connection
        last = _reap(children, last)


def _same_user(connection: socket.socket) -> bool:
    """The folder is private already; a peer of another user is refused all the same."""
    try:
        credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return False
    return struct.unpack("3i", credentials)[1] == os.getuid()


def _reap(children: dict[int, socket.socket], last: float) -> float:
    """Send each ended fork's wait status to its client; the time of the last one (the idle clock)."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        connection = children.pop(pid, None)
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.sendall(json.dumps({"status": status}).encode() + b"\n")
            connection.close()
        last = time.monotonic()
    return last


def _child(connection: socket.socket, closing: tuple[int, ...]) -> None:
    """In the fork: become the client's stage process, run the command, exit with its code (never returns)."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in closing:
            with contextlib.suppress(OSError):
                os.close(fd)
        request = _receive(connection)
        try:
            connection.sendall(json.dumps({"started": os.getpid()}).encode() + b"\n")
        except OSError:  # the client gave up waiting and runs the stage itself: nothing to do here
            os._exit(0)
        threading.Thread(target=_relay_signals, args=(connection,), name="warm-client", daemon=True).start()
        code = _run_command(request["argv"])
    except BaseException:  # noqa: BLE001  whatever happens, the fork must not return into the accept loop
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _receive(connection: socket.socket) -> dict:
    """Read the client's request and take its place: descriptors, folder, umask, environment, import path."""
    data, fds, _flags, _address = socket.recv_fds(connection, HEADER.size, 3)
    (length,) = HEADER.unpack(data)
    body = b""
    while len(body) < length:
        chunk = connection.recv(length - len(body))
        if not chunk:
            raise EOFError("the client went away before its request was complete")
        body += chunk
    request = json.loads(body)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.umask(int(request["umask"]))
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()  # the client's TZ
    sys.path[:] = request["path"]
    sys.argv[:] = ["reprobook", *request["argv"]]
    import tempfile

    tempfile.tempdir = None  # TMPDIR is the client's now
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=stream.isatty())
    return request


def _relay_signals(connection: socket.socket) -> None:
    """Deliver the signals the client forwards; the client gone (its socket closed) is a SIGTERM, so the
    stage still ends its run and stops its kernel."""
    buffer = b""
    while True:
        try:
            chunk = connection.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            with contextlib.suppress(ValueError, KeyError, OSError):
                os.kill(os.getpid(), int(json.loads(line)["signal"]))


def _run_command(argv: list[str]) -> int:
    """``reprobook ARGV`` as the console script runs it; its exit code, after the exit handlers."""
    code: int = 0
    try:
        from reprobook.cli import main

        main(argv)
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001  as the interpreter would: the traceback, exit 1
        traceback.print_exc()
        code = 1
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()  # what the interpreter runs at exit (os._exit does not)
    return code
