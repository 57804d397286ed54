"""Runs left RUNNING by a process that no longer exists (SIGKILL, a power cut) end as KILLED.

Every run reprobook opens carries the host and process id that owns it. A
process killed with SIGKILL cannot close its run; the next stage that starts on
the same host finds such runs (RUNNING, owner gone) and ends them KILLED, with
a note, so nothing stays RUNNING forever.
"""

from __future__ import annotations

import os
import socket

from reprobook.execution.processes import alive
from reprobook.tracking import store

TAG_HOST = "reprobook.host"
TAG_PID = "reprobook.pid"
OWNER_PID_ENV = "REPROBOOK_OWNER_PID"
"""Set by ``reprobook run``: the process that owns (and will end) the pipeline run."""


def owner_tags(pid: int | None = None) -> dict[str, str]:
    return {TAG_HOST: socket.gethostname(), TAG_PID: str(pid or os.getpid())}


def end_orphans(client, experiment: str) -> list[str]:
    """End this host's RUNNING runs whose owner process is gone; return their ids."""
    host = socket.gethostname()
    ended = []
    for run in client.search_runs([experiment], filter_string="attributes.status = 'RUNNING'", max_results=200):
        tags = run.data.tags
        pid = tags.get(TAG_PID, "")
        if tags.get(TAG_HOST) != host or not pid.isdigit() or alive(int(pid)):
            continue
        client.set_tag(run.info.run_id, store.TAG_ERROR,
                       f"process {pid} ended without closing this run (killed?); marked KILLED by a later run")
        client.set_terminated(run.info.run_id, "KILLED")
        ended.append(run.info.run_id)
    return ended
