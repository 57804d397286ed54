"""What a reproduction takes from the tracking store, and which of it needs the user's consent.

``reprobook reproduce`` rebuilds a run from its record: ``record/git.diff`` is
applied to the recorded commit and ``record/params.yaml`` replaces the
commit's params. Both come from the tracking store, so whoever can write to
the store chooses them. A diff that changes code (a module, a notebook, a
stage command in ``dvc.yaml``) or params that name code (an estimator's import
path, the model's trusted types) or feed a stage command (``${...}`` in a
``cmd``) would make the reproduction run code the user never saw. Those are
applied only with ``--allow-code-changes``; everything applied is shown.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml

NOT_APPLIED = ("params.yaml", "dvc.lock", "reports/*", "*.gitignore")
"""Paths of the recorded diff that are never applied (params come from the record, outputs from DVC)."""

NOT_CODE_SUFFIXES = (".md", ".rst", ".txt", ".csv", ".tsv", ".png", ".svg", ".jpg", ".dvc")
"""Documentation, tables, images, and DVC's data pointers (``.dvc`` files; one that adds a ``cmd`` is code)."""
DERIVED = (".reprobook/code/",)
"""Code fingerprints: rewritten from the code itself, they run nothing."""

CODE_PARAMS = ("model.estimator", "model.trusted_types")
"""Params whose values name code to import or types to instantiate."""

ALLOW_FLAG = "--allow-code-changes"

_DIFF_HEADER = re.compile(r"^diff --git a/(?P<old>.+?) b/(?P<new>.+)$", re.MULTILINE)
_INTERPOLATION = re.compile(r"\$\{\s*([^}\s]+)\s*\}")


@dataclass(frozen=True)
class Applied:
    """What the reproduction will take from the record."""

    diff_files: list[str] = field(default_factory=list)
    code_files: list[str] = field(default_factory=list)
    params: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    """Dotted key -> (value at the commit, value in the record), for the keys that differ."""
    code_params: list[str] = field(default_factory=list)

    @property
    def needs_consent(self) -> bool:
        return bool(self.code_files or self.code_params)

    def describe(self) -> list[str]:
        """One line per thing applied, as the steps and the verdict show it."""
        lines = []
        if self.diff_files:
            lines.append(f"the run's uncommitted diff: {len(self.diff_files)} file(s): {', '.join(self.diff_files)}")
        for key, (before, after) in self.params.items():
            lines.append(f"param {key}: {show(before)} at the commit -> {show(after)} in the record")
        return lines


def show(value: Any) -> str:
    text = "(absent)" if value is _ABSENT else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_ABSENT = object()


def diff_files(diff: str) -> list[str]:
    """The paths a git diff changes, minus those reproduction never applies."""
    paths: list[str] = []
    for match in _DIFF_HEADER.finditer(diff):
        for path in (match["old"], match["new"]):
            if path not in paths and not any(fnmatch.fnmatch(path, pattern) for pattern in NOT_APPLIED):
                paths.append(path)
    return paths


def is_code(path: str, added: str = "") -> bool:
    """Anything that may run: every file but documentation, tables, images, data pointers and fingerprints.

    ``added`` is the text the diff adds to ``path``: a ``.dvc`` file that gains
    a ``cmd`` (DVC's old single-stage files) runs it.
    """
    if PurePosixPath(path).suffix == ".dvc":
        return re.search(r"^\s*cmd\s*:", added, re.MULTILINE) is not None
    return not path.startswith(DERIVED) and PurePosixPath(path).suffix.lower() not in NOT_CODE_SUFFIXES


def added_text(diff: str, path: str) -> str:
    """The lines the diff adds to ``path`` (without their ``+``)."""
    text, current = [], None
    for line in diff.splitlines():
        header = _DIFF_HEADER.match(line)
        if header:
            current = header["new"]
        elif current == path and line.startswith("+") and not line.startswith("+++"):
            text.append(line[1:])
    return "\n".join(text)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"model": {"params": {"max_depth": 4}}}`` -> ``{"model.params.max_depth": 4}``."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def command_params(dvc_yaml: str) -> set[str]:
    """Params keys interpolated into stage commands (``cmd: python train.py ${model.lr}``)."""
    try:
        stages = (yaml.safe_load(dvc_yaml) or {}).get("stages", {}) or {}
    except yaml.YAMLError:
        return set()
    keys: set[str] = set()
    for stage in stages.values():
        commands = stage.get("cmd", []) if isinstance(stage, dict) else []
        for command in [commands] if isinstance(commands, str) else commands:
            keys.update(_INTERPOLATION.findall(str(command)))
    return keys


def _touches(key: str, names: set[str] | tuple[str, ...]) -> bool:
    return any(key == name or key.startswith(name + ".") or name.startswith(key + ".") for name in names)


def as_recorded(params_yaml: str | None) -> dict[str, Any]:
    """A params file as the run record stores it: validated (defaults filled in) and redacted."""
    from pydantic import ValidationError

    from reprobook.project.params import Params
    from reprobook.tracking import secrets

    try:
        tree = yaml.safe_load(params_yaml or "") or {}
    except yaml.YAMLError:
        return {}
    try:
        tree = Params.model_validate(tree).model_dump(mode="json")
    except ValidationError:
        pass  # compared as written
    return secrets.redact_params(tree, quiet=True)


def assess(diff: str, commit_params: str | None, recorded_params: str, commit_dvc_yaml: str | None) -> Applied:
    """Compare the record with the commit: what will be applied, and what of it changes code."""
    files = diff_files(diff)
    before = flatten(as_recorded(commit_params))
    after = flatten(as_recorded(recorded_params))  # the record is validated already; a hand-made one is not
    changed = {key: (before.get(key, _ABSENT), after.get(key, _ABSENT))
               for key in sorted(set(before) | set(after)) if before.get(key, _ABSENT) != after.get(key, _ABSENT)}
    sensitive = set(CODE_PARAMS) | command_params(commit_dvc_yaml or "")
    return Applied(
        diff_files=files,
        code_files=[path for path in files if is_code(path, added_text(diff, path))],
        params=changed,
        code_params=[key for key in changed if _touches(key, sensitive)],
    )


def refusal(run_id: str, applied: Applied) -> str:
    """Why the reproduction stops, and how to go on once the user has looked."""
    parts = []
    if applied.code_files:
        parts.append(f"its recorded diff changes code: {', '.join(applied.code_files)}")
    if applied.code_params:
        parts.append(f"its recorded params change what code runs: {', '.join(applied.code_params)}")
    return (f"run {run_id}'s record would run code that is not in the commit ({'; '.join(parts)}). "
            f"The record comes from the tracking store: review it (mlflow artifacts record/git.diff, "
            f"record/params.yaml), then rerun with {ALLOW_FLAG}")
