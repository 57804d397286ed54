"""``reprobook warm``: show, start or stop the warm processes stages are forked from (:mod:`reprobook.warm`).

Exit codes: 0 done, 1 a warm process asked for could not be started (its log is named).
"""

from __future__ import annotations

from typing import Annotated

import typer

from reprobook.errors import ReprobookError

START_TIMEOUT_S = 120.0


def warm_command(
    start: Annotated[bool, typer.Option("--start", help="start this environment's warm process and wait until it is ready")] = False,
    stop: Annotated[bool, typer.Option("--stop", help="stop every warm process of this user (running stages finish first)")] = False,
) -> None:
    """Show the warm processes `reprobook stage` is forked from (one per environment; they exit after
    REPROBOOK_WARM_IDLE seconds idle, 1800 by default; REPROBOOK_WARM=0 turns them off)."""
    from reprobook.warm import client, location

    if stop:
        stopped = client.stop_all()
        print(f"stopped {len(stopped)} warm process{'es' if len(stopped) != 1 else ''}" +
              (f" ({', '.join(map(str, stopped))})" if stopped else ""))
        return
    if start:
        if not location.enabled():
            raise ReprobookError(f"warm processes are off here ({location.ENABLE_VARIABLE}=0, or not Linux)")
        _start_and_wait(client, location)
    found = client.running()
    if not found:
        print("no warm process running")
    for entry in found:
        mark = "this environment" if entry["current"] else "another environment (or an older reprobook)"
        print(f"pid {entry['pid']}  {mark}  {entry['socket']}")


def _start_and_wait(client, location) -> None:
    import time

    where = location.folder()
    if where is None:
        raise ReprobookError("the warm processes' folder is not private to this user; set REPROBOOK_WARM_DIR")
    key = location.environment_key()
    socket = location.socket_path(where, key)
    client.start(where, key)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        connection = client.connect(socket)
        if connection is not None:
            connection.close()
            return
        failed = location.failed_path(where, key)
        if failed.exists():
            raise ReprobookError(f"the warm process failed to load; see {failed}")
        time.sleep(0.05)
    raise ReprobookError(f"the warm process was not ready after {START_TIMEOUT_S:.0f} s; see {location.log_path(where, key)}")


def register(app: typer.Typer) -> None:
    app.command("warm")(warm_command)
