"""Validation of a data set against a schema: every anomaly, not just the first.

Each check is a small function returning anomalies for one column (or the data
set); :func:`validate` runs them all and applies the severity policy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reprobook.errors import ReprobookError
from reprobook.quality import html
from reprobook.quality.kinds import category_values, is_numeric, numeric_values
from reprobook.quality.policy import ValidationPolicy
from reprobook.quality.schema import ColumnSchema, Schema


@dataclass
class Anomaly:
    """One problem found in the data; ``column`` is None for data-set-level anomalies."""

    kind: str
    column: str | None
    severity: str
    count: int
    share: float
    examples: list = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: non-finite example numbers become the strings 'inf', '-inf', 'nan'."""
        data = asdict(self)
        data["examples"] = [str(v) if isinstance(v, float) and not math.isfinite(v) else v for v in self.examples]
        return data


@dataclass
class ValidationReport:
    """All anomalies of one data set against one schema in one environment."""

    anomalies: list[Anomaly]
    n_rows: int
    n_columns: int
    environment: str

    @property
    def has_errors(self) -> bool:
        """True when any anomaly has error severity (validation fails)."""
        return any(a.severity == "error" for a in self.anomalies)

    @property
    def errors(self) -> list[Anomaly]:
        return [a for a in self.anomalies if a.severity == "error"]

    @property
    def warnings(self) -> list[Anomaly]:
        return [a for a in self.anomalies if a.severity == "warning"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe and deterministic."""
        return {
            "environment": self.environment,
            "n_rows": self.n_rows,
            "n_columns": self.n_columns,
            "valid": not self.has_errors,
            "n_errors": len(self.errors),
            "n_warnings": len(self.warnings),
            "anomalies": [a.to_dict() for a in self.anomalies],
        }

    def summary(self) -> str:
        """One line: the verdict and counts."""
        verdict = "FAILED" if self.has_errors else "passed"
        return (
            f"validation {verdict}: {self.n_rows} rows, {self.n_columns} columns, environment {self.environment}: "
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        )

    def to_text(self) -> str:
        """The summary and one line per anomaly."""
        lines = [self.summary()]
        lines += [f"  {a.severity.upper():7} {a.kind:22} {a.message}" for a in self.anomalies]
        return "\n".join(lines)

    def to_html(self, path: str | Path) -> Path:
        """A self-contained HTML report listing every anomaly."""
        css = "bad" if self.has_errors else "ok"
        rows = [
            [
                html.cell(a.severity, "bad" if a.severity == "error" else "warn"),
                html.cell(a.kind),
                html.cell(a.column if a.column is not None else "(data set)"),
                f'<td class="num">{a.count}</td>',
                f'<td class="num">{a.share:.2%}</td>',
                html.cell(", ".join(map(str, a.examples))),
                html.cell(a.message),
            ]
            for a in self.anomalies
        ]
        body = f'<p class="verdict {css}">{escape(self.summary())}</p>\n'
        body += html.table(["severity", "kind", "column", "count", "share", "examples", "message"], rows) if rows else (
            "<p>No anomalies.</p>"
        )
        return html.write(path, html.page("Data validation", body))


def _share(count: int, n: int) -> float:
    return count / n if n else 0.0


def _examples(values: pd.Series | np.ndarray, limit: int) -> list:
    """Distinct examples in order of first appearance, as plain Python values.

    Only the first 10,000 offending values are looked at: enough for examples, cheap for millions.
    """
    out: list = []
    for value in pd.unique(np.asarray(values[:10_000], dtype=object))[:limit]:
        out.append(value.item() if isinstance(value, np.generic) else value)
    return out


def _frequent_examples(values: pd.Series, limit: int) -> list:
    """The most frequent offending values first (ties by value), so examples are the ones that matter."""
    counts = values.value_counts()
    frame = pd.DataFrame({"v": counts.index.astype(str), "c": counts.to_numpy()})
    return frame.sort_values(["c", "v"], ascending=[False, True], kind="stable")["v"].head(limit).tolist()


def _fmt(value: float) -> str:
    return f"{int(value)}" if float(value).is_integer() else f"{value:g}"


def _numeric_checks(name: str, series: pd.Series, spec: ColumnSchema, limit: int) -> Iterator[Anomaly]:
    n = len(series)
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        values = numeric_values(series)
    else:
        coerced = pd.to_numeric(series.astype(object).where(series.notna(), None), errors="coerce")
        bad = series.notna().to_numpy() & coerced.isna().to_numpy()
        if bad.any():
            count = int(bad.sum())
            examples = _examples(series[bad].astype(str), limit)
            yield Anomaly("type_mismatch", name, "", count, _share(count, n), examples,
                          f"column {name!r}: expected {spec.type} values, found {count} non-numeric value(s) such as "
                          f"{examples[0]!r}")
        values = coerced.to_numpy(dtype="float64", na_value=np.nan)
    infinite = np.isinf(values)
    if infinite.any():
        count = int(infinite.sum())
        yield Anomaly("non_finite", name, "", count, _share(count, n), _examples(values[infinite], limit),
                      f"column {name!r}: expected finite numbers, found {count} infinite value(s)")
    finite_mask = np.isfinite(values)
    if spec.type == "integer":
        fractional = (np.floor(values) != values) & finite_mask
        if fractional.any():
            count = int(fractional.sum())
            examples = _examples(values[fractional], limit)
            yield Anomaly("type_mismatch", name, "", count, _share(count, n), examples,
                          f"column {name!r}: expected whole numbers (integer), found {count} fractional value(s) "
                          f"such as {examples[0]}")
    if spec.range is not None:
        low = -np.inf if spec.range.min is None else spec.range.min
        high = np.inf if spec.range.max is None else spec.range.max
        outside = ((values < low) | (values > high)) & finite_mask
        if outside.any():
            count = int(outside.sum())
            found = values[outside]
            bounds = f"[{'' if spec.range.min is None else _fmt(low)}, {'' if spec.range.max is None else _fmt(high)}]"
            yield Anomaly("out_of_range", name, "", count, _share(count, n), _examples(found, limit),
                          f"column {name!r}: expected values in {bounds}, found {count} outside "
                          f"(from {_fmt(np.min(found))} to {_fmt(np.max(found))})")


def _categorical_checks(name: str, series: pd.Series, spec: ColumnSchema, limit: int) -> Iterator[Anomaly]:
    n = len(series)
    text = category_values(series).dropna()
    if spec.type == "boolean":
        if pd.api.types.is_bool_dtype(series.dtype):
            return
        bad = text[~text.isin(["True", "False", "true", "false"])]
        if len(bad):
            examples = _frequent_examples(bad, limit)
            yield Anomaly("type_mismatch", name, "", len(bad), _share(len(bad), n), examples,
                          f"column {name!r}: expected boolean values, found {len(bad)} other value(s) "
                          f"such as {examples[0]!r}")
        return
    if spec.domain is None:
        return
    unexpected = text[~text.isin(spec.domain)]
    if len(unexpected):
        examples = _frequent_examples(unexpected, limit)
        yield Anomaly("unexpected_category", name, "", len(unexpected), _share(len(unexpected), n), examples,
                      f"column {name!r}: expected one of {len(spec.domain)} known categories, found "
                      f"{unexpected.nunique()} new one(s) in {len(unexpected)} row(s), e.g. {examples[0]!r}")


def _presence_check(name: str, series: pd.Series, spec: ColumnSchema) -> Iterator[Anomaly]:
    n = len(series)
    missing = int(series.isna().sum())
    present = 1 - _share(missing, n)
    if n and present < spec.min_presence:
        yield Anomaly("presence_below_minimum", name, "", missing, _share(missing, n), [],
                      f"column {name!r}: expected at least {spec.min_presence:.0%} of rows with a value, "
                      f"found {math.floor(present * 1000) / 10:g}% ({missing} of {n} missing)")


def _column_checks(name: str, series: pd.Series, spec: ColumnSchema, limit: int) -> Iterator[Anomaly]:
    yield from _presence_check(name, series, spec)
    if is_numeric(spec.type):
        yield from _numeric_checks(name, series, spec, limit)
    else:
        yield from _categorical_checks(name, series, spec, limit)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(hashes: np.ndarray, bits: np.ndarray, scratch: np.ndarray) -> None:
    """Fold one column's 64-bit words into the running row hashes, in place (multiply-xorshift)."""
    hashes ^= bits
    with np.errstate(over="ignore"):
        hashes *= _GOLDEN
    np.right_shift(hashes, np.uint64(31), out=scratch)
    hashes ^= scratch


def _column_bits(column: pd.Series) -> np.ndarray:
    """64-bit words equal exactly when values are equal (NaNs canonical, -0.0 as 0.0, text via codes)."""
    if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
        values = numeric_values(column) + 0.0  # one copy; also folds -0.0 into 0.0
        values[np.isnan(values)] = np.nan
        return values.view(np.uint64)
    return pd.factorize(column, use_na_sentinel=True)[0].astype(np.uint64)


def _colliding(hashes: np.ndarray) -> np.ndarray:
    """Rows whose hash occurs more than once (a sort, not a hash table: several times faster)."""
    ordered = np.sort(hashes)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    return np.isin(hashes, repeated) if repeated.size else np.zeros(hashes.size, dtype=bool)


def _duplicate_candidates(df: pd.DataFrame) -> np.ndarray:
    """Rows that may repeat an earlier row: numeric columns first, text columns only if needed."""
    numeric = [i for i in range(df.shape[1]) if pd.api.types.is_numeric_dtype(df.iloc[:, i].dtype)]
    text = [i for i in range(df.shape[1]) if i not in numeric]
    hashes, scratch = np.zeros(len(df), dtype=np.uint64), np.empty(len(df), dtype=np.uint64)
    for i in numeric:
        _mix(hashes, _column_bits(df.iloc[:, i]), scratch)
    candidates = _colliding(hashes) if numeric else np.ones(len(df), dtype=bool)
    if text and candidates.mean() > 0.01:
        for i in text:
            _mix(hashes, _column_bits(df.iloc[:, i]), scratch)
        candidates = _colliding(hashes)
    return candidates


def _duplicate_rows(df: pd.DataFrame, limit: int) -> Iterator[Anomaly]:
    """Rows equal to an earlier row: 64-bit row hashes find candidates, an exact comparison confirms them."""
    if df.shape[1] == 0 or len(df) < 2:
        return
    candidates = _duplicate_candidates(df)
    if not candidates.any():
        return
    duplicated = df[candidates].duplicated(keep="first")
    count = int(duplicated.sum())
    if count:
        rows = [idx.item() if isinstance(idx, np.generic) else idx for idx in duplicated[duplicated].index[:limit]]
        yield Anomaly("duplicate_rows", None, "", count, _share(count, len(df)), rows,
                      f"data set: expected unique rows, found {count} row(s) identical to an earlier row "
                      f"(row labels {rows})")


def _structure_checks(df: pd.DataFrame, schema: Schema, environment: str) -> Iterator[Anomaly]:
    present = [str(c) for c in df.columns]
    n = len(df)
    if n == 0:
        yield Anomaly("empty_dataset", None, "", 0, 0.0, [], "data set: expected at least one row, found none")
    for name, spec in schema.columns.items():
        if name not in present and spec.expected_in(environment):
            yield Anomaly("missing_column", name, "", n, 1.0 if n else 0.0, [],
                          f"column {name!r}: expected in {environment} data ({spec.type}), not found")
        elif name in present and not spec.expected_in(environment):
            yield Anomaly("unexpected_column", name, "", n, 1.0 if n else 0.0, [],
                          f"column {name!r}: the schema expects it only in {spec.environments}, "
                          f"found it in {environment} data")
    for name in present:
        if name not in schema.columns:
            yield Anomaly("unexpected_column", name, "", n, 1.0 if n else 0.0, [],
                          f"column {name!r}: not in the schema, found in the data")


def validate(
    df: pd.DataFrame,
    schema: Schema,
    *,
    environment: str = "TRAINING",
    policy: ValidationPolicy | None = None,
) -> ValidationReport:
    """Check ``df`` against ``schema`` in ``environment`` and report every anomaly.

    Anomalies whose kind the policy sets to "ignore" are left out.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"validate expects a pandas DataFrame, got {type(df).__name__}")
    if environment not in schema.environments:
        raise ReprobookError(f"environment {environment!r} is not in the schema; known: {schema.environments}")
    policy = policy or ValidationPolicy()
    limit = policy.max_examples
    if df.columns.duplicated().any():
        dupes = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
        raise ReprobookError(f"data has duplicate column name(s) {dupes}; column names must be unique")
    found: list[Anomaly] = list(_structure_checks(df, schema, environment))
    if len(df):
        for name, spec in schema.columns.items():
            if name in df.columns and spec.expected_in(environment):
                found.extend(_column_checks(name, df[name], spec, limit))
        found.extend(_duplicate_rows(df, limit))
    anomalies = []
    for anomaly in found:
        anomaly.severity = policy.severity(anomaly.kind)
        if anomaly.severity != "ignore":
            anomaly.examples = anomaly.examples[:limit]
            anomalies.append(anomaly)
    return ValidationReport(anomalies=anomalies, n_rows=int(len(df)), n_columns=int(df.shape[1]), environment=environment)
