"""The code version of a run: commit, dirty flag and the uncommitted diff.

Files the pipeline itself writes (``dvc.lock``, the ``.gitignore`` entries DVC
adds, committed metrics under ``reports/``) are outputs, not code: they change
during every run and must not mark it dirty. Everything else that differs
from the commit (params, notebooks, library code, untracked files) does.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

PIPELINE_OUTPUTS = (":(exclude)dvc.lock", ":(exclude,glob)**/.gitignore", ":(exclude)reports")


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
    status = _git(root, "status", "--porcelain", "--untracked-files=all", "--", ".", *PIPELINE_OUTPUTS) or ""
    diff = _git(root, "diff", "HEAD", "--binary", "--", ".", *PIPELINE_OUTPUTS) or ""
    return CodeVersion(commit=commit.strip(), dirty=bool(status.strip()), diff=diff, status=status)
