"""Processes: whether one still lives (orphaned runs, the running-stage count), and which executable to start.

A command started by reprobook (``dvc``, ``reprobook`` itself) is the one
installed beside the running Python, the project's virtual environment,
whatever the PATH says: the PATH of a notebook server or a CI step may
name another environment's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def alive(pid: int) -> bool:
    """True if ``pid`` exists (signal 0 checks without sending anything; another user's process counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def console_script(name: str) -> str:
    """The console script ``name`` installed beside this Python, else ``name`` (found on the PATH)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name
