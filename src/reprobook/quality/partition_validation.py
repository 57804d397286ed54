"""Validation of a partitioned data set: each partition checked on a worker, the anomalies merged.

Each worker runs the in-memory :func:`~reprobook.quality.validation.validate`
on one partition (at most ``TARGET_ROWS`` rows) and returns its anomalies
and missing counts, never its rows. Merged here: counts add up, shares are
over all rows, examples come from the first partitions that have them, and
checks of the whole data set (no rows at all, too few values present) are
decided on the totals, so counts equal the single-process figures. One
difference: duplicate rows are found within each partition, not across
partitions (which would need every row hash in one place).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reprobook.quality.partitions import Partition, discover
from reprobook.quality.policy import ValidationPolicy
from reprobook.quality.runner import InProcess, progress
from reprobook.quality.schema import Schema
from reprobook.quality.validation import Anomaly, ValidationReport

WHOLE_DATA_SET = ("empty_dataset", "presence_below_minimum")
STRUCTURE = ("missing_column", "unexpected_column")


@dataclass
class PartitionFindings:
    """What one partition contributes: its rows, its missing counts per column, its anomalies."""

    key: str
    rows: int
    missing: dict[str, int]
    anomalies: list[dict[str, Any]]


def check_partition(partition: Partition, schema: dict[str, Any], environment: str,
                    policy: dict[str, Any]) -> PartitionFindings:
    """Validate one partition (run on a worker); whole-data-set checks are left to the merge."""
    import pyarrow.parquet as pq

    from reprobook.quality.validation import validate

    frame = pq.ParquetFile(partition.path).read_row_groups(
        list(range(partition.first_group, partition.end_group))).to_pandas()
    local_policy = ValidationPolicy.model_validate({**policy, **{kind: "ignore" for kind in WHOLE_DATA_SET}})
    report = validate(frame, Schema.model_validate(schema), environment=environment, policy=local_policy)
    missing = {str(name): int(frame[name].isna().sum()) for name in frame.columns}
    anomalies = [{**a.to_dict(), "examples": list(a.examples)} for a in report.anomalies]
    return PartitionFindings(partition.key, len(frame), missing, anomalies)


def _merge(findings: list[PartitionFindings], policy: ValidationPolicy) -> list[Anomaly]:
    total = sum(f.rows for f in findings)
    merged: dict[tuple[str, str | None], Anomaly] = {}
    seen_in: dict[tuple[str, str | None], int] = {}
    for part in findings:
        for raw in part.anomalies:
            key = (raw["kind"], raw["column"])
            if key not in merged:
                merged[key] = Anomaly(**raw)
                seen_in[key] = 1
                continue
            anomaly = merged[key]
            seen_in[key] += 1
            anomaly.count += raw["count"]
            anomaly.examples += [e for e in raw["examples"] if e not in anomaly.examples]
            anomaly.examples = anomaly.examples[: policy.max_examples]
    for key, anomaly in merged.items():
        if anomaly.kind in STRUCTURE:
            anomaly.count = total
        anomaly.share = anomaly.count / total if total else 0.0
        if seen_in[key] > 1:
            anomaly.message += f" [first of {seen_in[key]} partitions with this anomaly; {anomaly.count} in all]"
        if anomaly.kind == "duplicate_rows":
            anomaly.message += " (within partitions)"
    return list(merged.values())


def _whole_data_set(findings: list[PartitionFindings], schema: Schema, environment: str,
                    policy: ValidationPolicy) -> list[Anomaly]:
    total = sum(f.rows for f in findings)
    found = []
    if total == 0:
        found.append(Anomaly("empty_dataset", None, "", 0, 0.0, [], "data set: expected at least one row, found none"))
        return found
    present_columns = set(findings[0].missing)
    for name, spec in schema.columns.items():
        if name not in present_columns or not spec.expected_in(environment):
            continue
        missing = sum(f.missing.get(name, 0) for f in findings)
        present = 1 - missing / total
        if present < spec.min_presence:
            found.append(Anomaly(
                "presence_below_minimum", name, "", missing, missing / total, [],
                f"column {name!r}: expected at least {spec.min_presence:.0%} of rows with a value, "
                f"found {int(present * 1000) / 10:g}% ({missing} of {total} missing)"))
    return found


def validate_partitions(data: str | Path, schema: Schema, *, environment: str = "TRAINING",
                        policy: ValidationPolicy | None = None, runner: Any | None = None) -> ValidationReport:
    """:func:`~reprobook.quality.validation.validate` for a directory of Parquet files (or a file, a glob)."""
    from reprobook.errors import ReprobookError

    if environment not in schema.environments:
        raise ReprobookError(f"environment {environment!r} is not in the schema; known: {schema.environments}")
    runner = runner or InProcess()
    policy = policy or ValidationPolicy()
    partitions, names = discover(data)
    with progress(len(partitions), f"validate: {Path(str(data)).name}") as advance:
        handles = []
        for partition in partitions:
            handle = runner.submit(check_partition, partition, schema.model_dump(), environment, policy.model_dump())
            runner.on_done(handle, advance)
            handles.append(handle)
        findings = runner.results(handles)
    anomalies = _merge(findings, policy)
    for anomaly in _whole_data_set(findings, schema, environment, policy):
        anomaly.severity = policy.severity(anomaly.kind)
        if anomaly.severity != "ignore":
            anomalies.append(anomaly)
    order = {name: i for i, name in enumerate(schema.columns)}
    anomalies.sort(key=lambda a: (a.kind not in STRUCTURE + ("empty_dataset",), a.kind == "duplicate_rows",
                                  order.get(a.column, len(order)), a.kind != "presence_below_minimum"))
    total = sum(f.rows for f in findings)
    return ValidationReport(anomalies=anomalies, n_rows=total, n_columns=len(names), environment=environment)
