"""The code version of a run: commit, dirty flag and the uncommitted diff.

Files the pipeline itself writes (``dvc.lock``, the ``.gitignore`` entries DVC
adds, committed metrics under ``reports/``, every out a stage declares in
``dvc.yaml``) are outputs, not code: they change
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
    outputs = (*PIPELINE_OUTPUTS, *declared_outputs(root))
    status = _git(root, "status", "--porcelain", "--untracked-files=all", "--", ".", *outputs) or ""
    diff = _git(root, "diff", "HEAD", "--binary", "--", ".", *outputs) or ""
    return CodeVersion(commit=commit.strip(), dirty=bool(status.strip()), diff=diff, status=status)


def declared_outputs(root: Path) -> list[str]:
    """Git pathspecs leaving out what the stages in dvc.yaml declare they write (the model, the splits):
    a fresh project's first run writes them before DVC lists them in a ``.gitignore``."""
    try:
        from reprobook.project.stages import load_stages

        outs = sorted({out for stage in load_stages(root).values() for out in stage.outs})
    except Exception:  # noqa: BLE001  no or a broken dvc.yaml: nothing more to leave out
        return []
    return [f":(exclude,literal){out}" for out in outs]


def has_identity(root: Path) -> bool:
    """Whether git can commit here: a user name and email from config or ``GIT_*`` variables."""
    return all(_git(root, "var", which) is not None for which in ("GIT_AUTHOR_IDENT", "GIT_COMMITTER_IDENT"))


def ensure_identity(root: Path) -> str | None:
    """Give the repository a local identity when git has none (DVC experiments commit); say what was set."""
    if has_identity(root):
        return None
    import getpass

    user = getpass.getuser() or "reprobook"
    for key, value in (("user.name", user), ("user.email", f"{user}@localhost")):
        subprocess.run(["git", "config", "--local", key, value], cwd=root, check=True, capture_output=True)
    return (
        f"git had no user name/email: set a repository-local identity '{user} <{user}@localhost>' "
        "(DVC experiments commit); change it with `git config user.name/user.email`"
    )


def require_identity(root: Path) -> None:
    """Fail with a clear message before DVC would fail (or do nothing) without a git identity."""
    from reprobook.errors import ReprobookError

    if _git(root, "rev-parse", "--git-dir") is None:
        raise ReprobookError(f"{root}: not a git repository; DVC experiments need one (`git init`, then commit)")
    if not has_identity(root):
        raise ReprobookError(
            "git has no user name/email here, and DVC experiments commit: run "
            "`git config user.name 'Your Name'` and `git config user.email you@example.com` "
            f"in {root} (or `make setup`, which sets a repository-local identity when none exists)"
        )


def uncommitted_results(root: Path) -> list[str]:
    """Pipeline results git tracks that differ from the commit: ``dvc.lock`` and the committed metrics."""
    status = _git(root, "status", "--porcelain", "--", "dvc.lock", "reports", ".reprobook") or ""
    return sorted(line[3:] for line in status.splitlines() if line.strip())


def is_commit_id(value: str | None) -> bool:
    """A full commit id (40 hex characters): what a record may hand to git, never an option or a ref name."""
    import re

    return bool(value) and re.fullmatch(r"[0-9a-f]{40}", value or "") is not None
