"""Compare run records side by side: params, data, code, environment, serving contract, metrics.

Only what differs is shown (metrics are always shown, with deltas against the
first run). The serving contract is the input columns a run's model reads
(:mod:`reprobook.tracking.contract`): between two modeling runs, the columns
added (a caller must send them) and removed (sent and ignored). The same
comparison drives ``reprobook compare`` and the verdict of ``reprobook
reproduce``; it renders as rich tables, JSON or Markdown (for a pull-request
comment).
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table

from reprobook.tracking import contract
from reprobook.tracking.record import RunRecord, code_changes

ENVIRONMENT_FIELDS = ("python", "implementation", "platform", "machine")


@dataclass(frozen=True)
class Row:
    key: str
    values: list[Any]


@dataclass
class Comparison:
    runs: list[dict[str, Any]]
    params: list[Row] = field(default_factory=list)
    data: list[Row] = field(default_factory=list)
    code: list[Row] = field(default_factory=list)
    changed_files: dict[str, list[str]] = field(default_factory=dict)
    """Files changed between the first run's commit and each other commit (``git diff --name-only``)."""
    environment: list[Row] = field(default_factory=list)
    serving_contract: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    """Input columns added and removed between the first run's model and each other run's (when both are known
    and differ), keyed like ``changed_files``."""
    metrics: list[Row] = field(default_factory=list)
    deltas: dict[str, list[float | None]] = field(default_factory=dict)


def differing(maps: list[dict[str, Any]]) -> list[Row]:
    """Keys whose value is not the same in every map (absent counts as None)."""
    keys = sorted(set().union(*maps)) if maps else []
    rows = [Row(key, [m.get(key) for m in maps]) for key in keys]
    return [row for row in rows if len({json.dumps(v, sort_keys=True) for v in row.values}) > 1]


def all_keys(maps: list[dict[str, Any]]) -> list[Row]:
    keys = sorted(set().union(*maps)) if maps else []
    return [Row(key, [m.get(key) for m in maps]) for key in keys]


def delta(first: float | None, other: float | None) -> float | None:
    return None if first is None or other is None else other - first


def metrics_match(first: float | None, other: float | None, rtol: float = 0.0, atol: float = 0.0) -> bool:
    """Equal within the tolerance; a metric present on one side only never matches."""
    if first is None or other is None:
        return False
    if math.isnan(first) and math.isnan(other):
        return True
    return math.isclose(first, other, rel_tol=rtol, abs_tol=atol)


def data_digests(record: RunRecord) -> dict[str, str]:
    return {path: entry.get("md5") for path, entry in record.inputs.items()}


def environment_summary(record: RunRecord) -> dict[str, Any]:
    """Interpreter, platform and every package version, as flat comparable keys."""
    env = record.environment
    return {
        **{name: env.get(name) for name in ENVIRONMENT_FIELDS if name in env},
        **{f"package {name}": version for name, version in env.get("packages", {}).items()},
    }


def code_summary(record: RunRecord) -> dict[str, Any]:
    changes = code_changes(record)
    return {
        "commit": record.commit,
        "dirty": record.dirty,
        "uncommitted code changes": ", ".join(changes) if changes else "none",
        "dvc experiment": record.tags.get("reprobook.dvc_exp_name"),
    }


def changed_files(repo: Path, first: str | None, other: str | None) -> list[str] | None:
    """``git diff --name-only first other``; None when a commit is unknown to ``repo``."""
    if not first or not other or first == other:
        return [] if first == other else None
    from reprobook.tracking.gitinfo import is_commit_id

    # Commit strings come from the tracking store: only full ids reach git, and never as options.
    if not (is_commit_id(first) and is_commit_id(other)):
        return None
    result = subprocess.run(["git", "diff", "--name-only", first, other, "--"], cwd=repo, capture_output=True,
                            text=True)
    return result.stdout.split() if result.returncode == 0 else None


def record_inputs(record: RunRecord, client=None) -> tuple[str, ...] | None:
    """The input columns of a run's model: its tag, else (with a ``client``) its logged model's signature."""
    tagged = contract.parse_inputs(record.tags.get(contract.TAG_INPUTS))
    if tagged is not None or client is None:
        return tagged
    return contract.run_inputs(client, record.run_id, record.tags)


def contract_changes(records: list[RunRecord], inputs: list[tuple[str, ...] | None]) -> dict[str, dict[str, list[str]]]:
    """Added and removed inputs from the first run to each other one; runs whose inputs are unknown are left out."""
    first = inputs[0] if inputs else None
    changes: dict[str, dict[str, list[str]]] = {}
    if first is None:
        return changes
    for record, other in zip(records[1:], inputs[1:]):
        change = contract.diff(first, other) if other is not None else None
        if change is not None and change.changed:
            changes[f"{records[0].run_id[:8]}..{record.run_id[:8]}"] = {"added": list(change.added),
                                                                         "removed": list(change.removed)}
    return changes


def compare_records(records: list[RunRecord], repo: Path | None = None, client=None) -> Comparison:
    """Side-by-side differences of ``records`` (any stages; fields a run lacks show as None).

    With a ``client``, a run without the inputs tag (logged by an older
    reprobook) has its serving contract read from its logged model's signature.
    """
    comparison = Comparison(
        runs=[
            {"run_id": r.run_id, "stage": r.stage, "status": r.status, "commit": r.commit,
             "prediction_digest": r.prediction_digest}
            for r in records
        ],
        params=differing([r.params for r in records]),
        data=differing([data_digests(r) for r in records]),
        code=differing([code_summary(r) for r in records]),
        environment=differing([environment_summary(r) for r in records]),
        metrics=all_keys([r.metrics for r in records]),
    )
    digests = differing([{"prediction digest": r.prediction_digest} for r in records])
    comparison.data.extend(digests)
    comparison.deltas = {
        row.key: [delta(row.values[0], value) for value in row.values[1:]] for row in comparison.metrics
    }
    comparison.serving_contract = contract_changes(records, [record_inputs(r, client) for r in records])
    if repo is not None:
        first = records[0].commit
        for record in records[1:]:
            files = changed_files(repo, first, record.commit)
            if files:
                comparison.changed_files[f"{(first or '?')[:8]}..{(record.commit or '?')[:8]}"] = files
    return comparison


def to_json(comparison: Comparison) -> str:
    return json.dumps(asdict(comparison), indent=2, sort_keys=True, default=str)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text[:12] if len(text) == 32 and all(c in "0123456789abcdef" for c in text) else text


def contract_cell(change: dict[str, list[str]]) -> str:
    """``+timestamp_ms −id``: added inputs (callers must send them) and removed ones."""
    return contract.ContractChange(tuple(change["added"]), tuple(change["removed"])).short()


def delta_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:+.6g}"


def _sections(comparison: Comparison) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for every section: one layout for every output format."""
    labels = [f"{run['run_id'][:8]} ({run['stage']})" for run in comparison.runs]
    sections = [("runs", ["", *labels], [
        ["commit", *[cell(r["commit"])[:12] for r in comparison.runs]],
        ["status", *[r["status"] for r in comparison.runs]],
    ])]
    for title, rows in (("params that differ", comparison.params), ("data that differs", comparison.data),
                        ("code", comparison.code), ("environment differences", comparison.environment)):
        if rows:
            sections.append((title, ["", *labels], [[row.key, *map(cell, row.values)] for row in rows]))
    if comparison.changed_files:
        sections.append(("files changed between commits", ["commits", "files"],
                         [[span, ", ".join(files)] for span, files in comparison.changed_files.items()]))
    if comparison.serving_contract:
        sections.append(("serving contract (model input columns)", ["runs", "serving contract"], [
            [span, contract_cell(change)] for span, change in comparison.serving_contract.items()
        ]))
    delta_labels = [f"Δ {label}" for label in labels[1:]]
    sections.append(("metrics", ["", *labels, *delta_labels], [
        [row.key, *map(cell, row.values), *map(delta_cell, comparison.deltas[row.key])]
        for row in comparison.metrics
    ]))
    return sections


def to_markdown(comparison: Comparison) -> str:
    parts: list[str] = []
    for title, header, rows in _sections(comparison):
        parts.append(f"**{title}**\n")
        parts.append("| " + " | ".join(header) + " |")
        parts.append("|" + "---|" * len(header))
        parts.extend("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows)
        parts.append("")
    return "\n".join(parts)


def to_rich(comparison: Comparison) -> Group:
    tables = []
    for title, header, rows in _sections(comparison):
        table = Table(title=title, title_justify="left")
        for name in header:
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*row)
        tables.append(table)
    return Group(*tables)
