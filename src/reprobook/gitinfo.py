"""The code version of a run: commit, dirty flag and the uncommitted diff."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CodeVersion:
    commit: str | None
    dirty: bool
    diff: str
    status: str


def _git(root: Path, *args: str) -> str | None:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def code_version(root: Path) -> CodeVersion:
    """Commit and dirty state; outside git the commit is None (not reproducible)."""
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return CodeVersion(commit=None, dirty=True, diff="", status="not a git repository")
    status = _git(root, "status", "--porcelain") or ""
    diff = _git(root, "diff", "HEAD", "--binary") or ""
    return CodeVersion(commit=commit.strip(), dirty=bool(status.strip()), diff=diff, status=status)
