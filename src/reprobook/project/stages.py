"""Stages are data: read from ``dvc.yaml``, the one declaration of the pipeline.

A reprobook stage is a ``dvc.yaml`` stage whose command is ``reprobook stage
NAME`` and whose ``meta.notebook`` names the notebook it executes. Its
``params`` (the keys it reads), ``deps``, ``outs``, ``metrics`` and ``plots``
are DVC's own fields; reprobook reads them to inject params, record input
digests and find upstream stages. Other DVC stages (the code fingerprints,
shell commands) are left to DVC. Kept free of heavy imports: the outer
``reprobook stage`` process reads this before the kernel starts.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reprobook.errors import ReprobookError, UsageError
from reprobook.project.paths import DVC_FILE, PARAMS_FILE

FINGERPRINT_DIR = ".reprobook/code"
"""One JSON file per stage: the digest of the code it executes (see execution.fingerprint)."""
FINGERPRINT_STAGE = "code_fingerprints"


@dataclass(frozen=True)
class Stage:
    name: str
    notebook: str
    """Notebook path, relative to the project root."""
    params: tuple[str, ...]
    """Dotted keys of params.yaml the stage reads (DVC reruns it when one changes)."""
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    """Every path the stage writes: outs, metrics and plots."""

    @property
    def fingerprint(self) -> str:
        return f"{FINGERPRINT_DIR}/{self.name}.json"

    @property
    def reports(self) -> str:
        return f"reports/{self.name}"

    def reads(self, key: str) -> bool:
        """Whether the dotted params key (or a part of it) is declared."""
        return any(key == d or key.startswith(d + ".") or d.startswith(key + ".") for d in self.params)


def stage_command(name: str) -> str:
    return f"reprobook stage {name}"


def read_dvc_yaml(root: Path) -> dict[str, Any]:
    import yaml

    path = root / DVC_FILE
    if not path.is_file():
        raise UsageError(f"{path}: not found; a reprobook project declares its stages in {DVC_FILE}")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ReprobookError(f"{path}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(document, dict) or not isinstance(document.get("stages", {}), dict):
        raise ReprobookError(f"{path}: expected a mapping with a 'stages' mapping")
    return document


def _paths(entries: list[Any] | None) -> tuple[str, ...]:
    """Paths of a deps/outs/metrics/plots list (plain strings or one-key mappings)."""
    found: list[str] = []
    for entry in entries or []:
        if isinstance(entry, str):
            found.append(entry)
        elif isinstance(entry, dict):
            found.extend(str(key) for key in entry)
    return tuple(found)


def _param_keys(entries: list[Any] | None) -> tuple[str, ...]:
    """Keys read from params.yaml (entries naming another params file are DVC's business)."""
    keys: list[str] = []
    for entry in entries or []:
        if isinstance(entry, str):
            keys.append(entry)
        elif isinstance(entry, dict):
            for file, listed in entry.items():
                if file == PARAMS_FILE and isinstance(listed, list):
                    keys.extend(str(key) for key in listed)
    return tuple(keys)


def _parse(name: str, entry: dict[str, Any], root: Path) -> Stage | None:
    command = entry.get("cmd")
    words = shlex.split(command) if isinstance(command, str) else []
    if words[:2] != ["reprobook", "stage"]:
        return None
    where = f"{root / DVC_FILE}: stage '{name}'"
    if words[2:3] != [name]:
        raise ReprobookError(f"{where}: cmd is '{command}'; expected '{stage_command(name)}'")
    notebook = (entry.get("meta") or {}).get("notebook")
    if not isinstance(notebook, str) or not notebook.endswith(".ipynb"):
        raise ReprobookError(
            f"{where}: meta.notebook names no notebook (found {notebook!r}); expected a path like notebooks/{name}.ipynb"
        )
    outs = _paths(entry.get("outs")) + _paths(entry.get("metrics")) + _paths(entry.get("plots"))
    return Stage(name, notebook, _param_keys(entry.get("params")), _paths(entry.get("deps")), outs)


def load_stages(root: Path) -> dict[str, Stage]:
    """The reprobook stages of ``dvc.yaml``, in pipeline order (upstream first)."""
    declared = read_dvc_yaml(root).get("stages") or {}
    parsed = {name: _parse(str(name), entry or {}, root) for name, entry in declared.items() if isinstance(entry, dict)}
    stages = {name: stage for name, stage in parsed.items() if stage is not None}
    return {name: stages[name] for name in _topological(stages)}


def get_stage(root: Path, name: str) -> Stage:
    stages = load_stages(root)
    if name not in stages:
        raise UsageError(f"unknown stage '{name}'; {DVC_FILE} declares: {', '.join(stages) or 'none'}")
    return stages[name]


def _overlaps(a: str, b: str) -> bool:
    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def direct_upstream(stages: dict[str, Stage], name: str) -> list[str]:
    """Stages whose outputs the stage depends on."""
    deps = stages[name].deps
    return [other for other, stage in stages.items()
            if other != name and any(_overlaps(dep, out) for dep in deps for out in stage.outs)]


def upstream(stages: dict[str, Stage], name: str) -> list[str]:
    """Every stage before ``name`` in the graph, in pipeline order."""
    seen: set[str] = set()
    todo = direct_upstream(stages, name)
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(direct_upstream(stages, current))
    return [other for other in stages if other in seen]


def _topological(stages: dict[str, Stage]) -> list[str]:
    """Declaration order, moved only where a stage reads another's outputs."""
    order: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in trail:
            raise ReprobookError(f"{DVC_FILE}: stages depend on each other in a cycle: {' -> '.join(trail + (name,))}")
        for before in direct_upstream(stages, name):
            visit(before, trail + (name,))
        order.append(name)

    for name in stages:
        visit(name, ())
    return order


def declared_sections(root: Path) -> set[str]:
    """Top-level params sections some stage reads (a user's own sections are allowed if read)."""
    return {key.split(".")[0] for stage in load_stages(root).values() for key in stage.params}
