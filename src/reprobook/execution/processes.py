"""Whether a process still lives: the one check behind orphaned runs and the running-stage count."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True if ``pid`` exists (signal 0 checks without sending anything; another user's process counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
