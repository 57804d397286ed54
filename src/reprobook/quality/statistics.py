"""Per-column statistics of an in-memory frame, and the result types shared with streaming.

Every figure of :func:`compute_statistics` is exact: one sort per numeric
column gives min, max, quantiles (linear interpolation, as numpy), distinct
count and histogram at once. Files larger than memory go through
:mod:`reprobook.quality.streaming`, which produces the same types.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from reprobook.quality.jsonsafe import json_safe
from reprobook.quality.kinds import (
    Kind,
    category_values,
    column_kind,
    is_numeric,
    numeric_values,
)
from reprobook.quality.moments import Moments
from reprobook.quality.parallel import parallel_map
from reprobook.quality.sketches import quantiles_of_sorted

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
HISTOGRAM_BINS = 20
TOP_VALUES = 10


@dataclass
class ColumnStatistics:
    """Summary of one column. Numeric fields are None for categorical columns and vice versa."""

    name: str
    kind: Kind
    count: int
    missing: int
    distinct: int
    distinct_exact: bool = True
    n_infinite: int | None = None
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    quantiles: dict[str, float] | None = None
    quantiles_exact: bool | None = None
    histogram: dict[str, list] | None = None
    top_values: list[dict[str, Any]] | None = None
    top_values_exact: bool | None = None

    @property
    def present(self) -> int:
        """Rows where the column has a value."""
        return self.count - self.missing

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN becomes None)."""
        return json_safe(asdict(self))


@dataclass
class DatasetStatistics:
    """Statistics of every column, in the data set's column order."""

    n_rows: int
    columns: list[ColumnStatistics] = field(default_factory=list)

    def __getitem__(self, name: str) -> ColumnStatistics:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, deterministic dict: same data, same output."""
        return {"n_rows": self.n_rows, "n_columns": len(self.columns), "columns": [c.to_dict() for c in self.columns]}


def histogram_edges(low: float | None, high: float | None, bins: int = HISTOGRAM_BINS) -> np.ndarray | None:
    """Equal-width edges over [low, high] (numpy's convention, also for a constant column)."""
    if low is None or high is None:
        return None
    if low == high:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, bins + 1)


def counts_in_bins(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """np.histogram's counts (last bin closed) from a sorted array, by binary search."""
    left = np.searchsorted(sorted_values, edges[:-1], side="left")
    right_end = np.searchsorted(sorted_values, edges[-1], side="right")
    return np.diff(np.append(left, right_end))


def top_values(counts: pd.Series) -> list[dict[str, Any]]:
    """The most frequent values, ties broken by value so the order is deterministic."""
    frame = pd.DataFrame({"value": counts.index.astype(str), "count": counts.to_numpy()})
    frame = frame.sort_values(["count", "value"], ascending=[False, True], kind="stable").head(TOP_VALUES)
    return [{"value": v, "count": int(c)} for v, c in zip(frame["value"], frame["count"])]


def _distinct_sorted(sorted_values: np.ndarray) -> int:
    """Distinct values of a sorted array (-0.0 and 0.0 are one value, as they compare equal)."""
    if sorted_values.size == 0:
        return 0
    return int(np.count_nonzero(sorted_values[1:] != sorted_values[:-1])) + 1


def _numeric_statistics(name: str, kind: Kind, series: pd.Series) -> ColumnStatistics:
    values = numeric_values(series)
    missing = int(np.isnan(values).sum())
    infinite = values[np.isinf(values)]
    finite = values[np.isfinite(values)]
    finite.sort()  # in place: the filtered array is already a copy
    stats = ColumnStatistics(
        name=name,
        kind=kind,
        count=int(values.size),
        missing=missing,
        distinct=_distinct_sorted(finite) + int(np.unique(infinite).size),
        n_infinite=int(infinite.size),
    )
    if finite.size:
        moments = Moments.of(finite)
        edges = histogram_edges(float(finite[0]), float(finite[-1]))
        stats.min, stats.max = float(finite[0]), float(finite[-1])
        stats.mean, stats.std = moments.mean, moments.std
        stats.quantiles = dict(zip(map(str, QUANTILES), map(float, quantiles_of_sorted(finite, np.array(QUANTILES)))))
        stats.quantiles_exact = True
        stats.histogram = {"edges": edges.tolist(), "counts": counts_in_bins(finite, edges).tolist()}
    return stats


def _categorical_statistics(name: str, kind: Kind, series: pd.Series) -> ColumnStatistics:
    counts = category_values(series).value_counts(dropna=True, sort=False)
    missing = int(series.isna().sum())
    return ColumnStatistics(
        name=name,
        kind=kind,
        count=int(series.size),
        missing=missing,
        distinct=int(counts.size),
        top_values=top_values(counts),
        top_values_exact=True,
    )


def column_statistics(series: pd.Series, name: str | None = None) -> ColumnStatistics:
    """Exact statistics of one in-memory column."""
    name = str(series.name if name is None else name)
    kind = column_kind(series)
    if is_numeric(kind):
        return _numeric_statistics(name, kind, series)
    return _categorical_statistics(name, kind, series)


def compute_statistics(df: pd.DataFrame) -> DatasetStatistics:
    """Exact statistics of every column of an in-memory frame (columns in parallel threads)."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"compute_statistics expects a pandas DataFrame, got {type(df).__name__}")
    names = [str(c) for c in df.columns]
    columns = parallel_map(lambda i: column_statistics(df.iloc[:, i], names[i]), range(df.shape[1]))
    return DatasetStatistics(n_rows=int(len(df)), columns=columns)
