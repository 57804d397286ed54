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


RESULT_FOLDERS = ("reports", ".reprobook")
"""Where the stages write: what git does not ignore there is a result to commit."""


def uncommitted_results(root: Path) -> list[str]:
    """Every file the pipeline writes for git that differs from the commit, by name: ``dvc.lock``, the
    ``cache: false`` outs (the committed metrics, the code fingerprints), the rest of ``reports/`` and
    ``.reprobook/`` git does not ignore, and the ``.gitignore`` files DVC keeps beside its cached outs
    (``data/processed/``, ``models/``). ``git add`` of them leaves the tree as clean as the run found it."""
    try:
        from reprobook.project.ignores import declared_outs

        outs = declared_outs(root)
    except Exception:  # noqa: BLE001  no or a broken dvc.yaml: the lock and the result folders still count
        outs = []
    declared = {out.gitignore if out.cached else out.path for out in outs}
    pathspecs = ["dvc.lock", *RESULT_FOLDERS, *(f":(literal){path}" for path in sorted(declared))]
    status = _git(root, "status", "--porcelain", "-z", "--untracked-files=all", "--", *pathspecs) or ""
    paths: set[str] = set()
    fields = iter(status.split("\0"))
    for record in fields:
        if record[:1] in ("R", "C"):
            next(fields, "")  # a staged rename's or copy's source: staged already, and no path `git add` knows
        if len(record) > 3 and record[:2] != "D ":  # a staged deletion is in the commit without `git add`
            paths.add(record[3:])
    return sorted(paths, key=lambda path: (path != "dvc.lock", path))


def is_commit_id(value: str | None) -> bool:
    """A full commit id (40 hex characters): what a record may hand to git, never an option or a ref name."""
    import re

    return bool(value) and re.fullmatch(r"[0-9a-f]{40}", value or "") is not None
