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


def run_checked(args: list[str], cwd: Path, what: str) -> None:
    """Run a tool (``dvc`` or ``reprobook`` as installed here); its last error line as a message if it fails."""
    import subprocess

    from reprobook.errors import ReprobookError

    if args[0] in ("dvc", "reprobook"):
        args = [console_script(args[0]), *args[1:]]
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise ReprobookError(f"{what} failed in {cwd}: {lines[-1] if lines else f'exit {done.returncode}'}")
