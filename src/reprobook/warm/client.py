"""The thin side of a warm stage: hand the command to the environment's warm process, relay signals,
return the stage's exit status.

Imported on every ``reprobook`` call, so standard library only, and nothing
done for a command that does not go to a warm process. The hand-over:

1. connect to the environment's socket (:mod:`.location`); none there: start
   the warm process in the background for the next stage, and run this one
   here (``None``);
2. send the arguments, working folder, environment, umask and import path,
   with the terminal's three file descriptors (``SCM_RIGHTS``), so the
   forked stage reads and writes where this process would;
3. wait for ``started`` (the fork has the command), then for ``status``
   (the fork's wait status, sent by the warm process once it has reaped it).
   Ctrl-C, SIGTERM, SIGHUP and SIGQUIT received meanwhile are forwarded to the
   fork, which handles them as a stage in its own process does (kernel
   stopped, run marked KILLED). If this process dies, the fork sees the
   socket close and stops the same way.

A warm process that goes away before ``started`` (it was exiting when we
connected) means nothing ran: the stage runs here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path

from reprobook.warm import WARM_COMMANDS, command_of, location

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
HEADER = struct.Struct(">Q")
STARTED_TIMEOUT_S = 10.0
_SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "KEY")


class WarmProcessLost(RuntimeError):
    """The warm process went away after the stage had started: its outcome is unknown."""


def delegate(args: list[str]) -> int | None:
    """Run ``reprobook ARGS`` in a fork of the warm process and return its exit code; None when it must
    run in this process (not a warm command, warm processes off, none running yet: one is started)."""
    if command_of(args) not in WARM_COMMANDS or "--help" in args:
        return None
    found = _this_environment()
    if found is None:
        return None
    where, key, connection = found
    if connection is None:
        start(where, key)
        return None
    with connection:
        return _run(connection, args)


def prestart() -> bool:
    """Start this environment's warm process now unless it runs (``reprobook run`` does, before DVC's own
    start-up, so that its stages find it ready); True if one was started."""
    found = _this_environment()
    if found is None:
        return False
    where, key, connection = found
    if connection is not None:
        connection.close()
        return False
    return start(where, key)


def _this_environment() -> tuple[Path, str, socket.socket | None] | None:
    """This environment's socket folder and key, with a connection to its warm process if one is ready;
    None where warm processes are off (``REPROBOOK_WARM=0``, not Linux, a folder others can open)."""
    if not location.enabled():
        return None
    where = location.folder()
    if where is None:
        return None
    key = location.environment_key()
    return where, key, connect(location.socket_path(where, key))


def connect(path: Path) -> socket.socket | None:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(str(path))
    except OSError:  # no socket yet, or one left by a warm process that was killed
        connection.close()
        return None
    return connection


def _standard_fds() -> list[int]:
    """This process's stdin, stdout and stderr; /dev/null in place of a closed one."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open(os.devnull, os.O_RDWR))
    return fds


def _run(connection: socket.socket, args: list[str]) -> int | None:
    umask = os.umask(0)
    os.umask(umask)
    header = json.dumps({"argv": args, "cwd": os.getcwd(), "env": dict(os.environ), "umask": umask,
                         "path": sys.path}).encode()
    # A warm process that does not fork within seconds is stuck (stopped, swapped out): run here. Closing
    # the connection first makes a late fork see its client gone and stop before the command runs.
    connection.settimeout(STARTED_TIMEOUT_S)
    try:
        socket.send_fds(connection, [HEADER.pack(len(header))], _standard_fds())
        connection.sendall(header)
    except OSError:  # the warm process is exiting: run here
        return None

    def forward(signum: int, frame: object) -> None:
        try:
            connection.sendall(json.dumps({"signal": signum}).encode() + b"\n")
        except OSError:
            pass

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED_SIGNALS}
    try:
        started = False
        try:
            for message in _messages(connection):
                if "started" in message:
                    started = True
                    connection.settimeout(None)  # a stage takes as long as it takes
                elif "status" in message:
                    code = os.waitstatus_to_exitcode(int(message["status"]))
                    return code if code >= 0 else 128 - code
        except TimeoutError:
            return None
        if not started:
            return None
        raise WarmProcessLost("the warm process ended before the stage's exit status reached this process; "
                              "`reprobook runs` shows how the stage ended")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _messages(connection: socket.socket):
    """The JSON lines the warm process and the fork send, until the connection closes."""
    buffer = b""
    while True:
        try:
            chunk = connection.recv(4096)
        except ConnectionResetError:  # it exited with our request unread (never accepted): closed all the same
            chunk = b""
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield json.loads(line)


def start(where: Path, key: str) -> bool:
    """Start the warm process of this environment in the background, unless one runs or is starting
    (it holds its lock) or the last one failed to load; True if one was started."""
    import fcntl

    if location.failed_path(where, key).exists():
        return False
    lock = location.lock_path(where, key)
    try:
        with open(lock, "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    import subprocess

    # The warm process keeps the environment it starts with for its imports only (every stage gets its
    # client's); it has no business holding anyone's credentials meanwhile.
    env = {name: value for name, value in os.environ.items() if not any(word in name.upper() for word in _SECRET_WORDS)}
    with open(location.log_path(where, key), "wb") as log:
        subprocess.Popen(
            [sys.executable, "-P", "-c", "import sys; from reprobook.warm.zygote import serve; serve(sys.argv[1], sys.argv[2:])",
             key, *sys.path],
            cwd="/", env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True, start_new_session=True,
        )
    return True


def running() -> list[dict]:
    """The warm processes of this user (key, pid, whether it is this environment's)."""
    where = location.folder()
    if where is None:
        return []
    current = location.environment_key()
    found = []
    for lock in sorted(where.glob("*.lock")):
        held = holder(lock)
        if held is not None:
            found.append({"key": lock.stem, "pid": held[0], "current": lock.stem == current,
                          "socket": str(location.socket_path(where, lock.stem))})
    return found


def holder(lock: Path) -> tuple[int, str] | None:
    """The pid and interpreter of the warm process holding ``lock``, or None if nobody holds it."""
    import fcntl

    try:
        with open(lock, "r") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                pid, _, executable = handle.read().partition("\n")
                return (int(pid), executable.strip()) if pid.strip().isdigit() else None
            return None
    except OSError:
        return None


def stop_all(wait_seconds: float = 10.0) -> list[int]:
    """Ask every warm process of this user to exit (SIGTERM: it lets running stages finish first); return
    their pids once they are gone (or the wait is over)."""
    import time

    stopped = []
    for entry in running():
        try:
            os.kill(entry["pid"], signal.SIGTERM)
            stopped.append(entry["pid"])
        except OSError:
            pass
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline and any(entry["pid"] in stopped for entry in running()):
        time.sleep(0.05)
    return stopped
