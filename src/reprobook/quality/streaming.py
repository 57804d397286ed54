"""Statistics of a CSV or Parquet file streamed in chunks, in bounded memory.

The file is read twice. Pass 1 finds each column's kind and numeric range,
which fixes the histogram edges; pass 2 accumulates mergeable summaries, one
chunk at a time (columns in parallel threads). Counts, missing, min, max,
histograms and top values are exact; mean and std are exact up to rounding
(Chan's merge); distinct counts are exact up to 65,536 distinct values and
then a KMV estimate (~0.4% error); quantiles are exact up to 16,384 values and
then come from a compactor sketch with a rank error below 0.2% of the count.
Flags on each column say which figures are exact. Memory is bounded by the
chunk (CSV) or the Parquet row group, plus about 2 MB of sketches per column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from reprobook.quality.io import iter_chunks, table_format
from reprobook.quality.kinds import (
    Kind,
    category_values,
    column_kind,
    is_numeric,
    merge_kinds,
    numeric_values,
)
from reprobook.quality.moments import Moments
from reprobook.quality.parallel import parallel_map
from reprobook.quality.sketches import DistinctSketch, QuantileSketch
from reprobook.quality.statistics import (
    QUANTILES,
    ColumnStatistics,
    DatasetStatistics,
    counts_in_bins,
    histogram_edges,
    top_values,
)

MAX_TRACKED_CATEGORIES = 100_000
DEFAULT_CHUNKSIZE = 200_000


def add_numbers(state, values: np.ndarray) -> np.ndarray:
    """Add a chunk of numbers to a column's mergeable summaries; its finite values, sorted.

    ``state`` is any column summary with ``missing``, ``n_infinite``,
    ``moments``, ``quantiles`` and ``distinct`` (this module's accumulator, and
    :class:`reprobook.quality.summary.ColumnSummary` of the partitioned engine):
    one rule for what counts as missing, infinite and present.
    """
    present = values[~np.isnan(values)]
    state.missing += int(values.size - present.size)
    finite = np.sort(present[np.isfinite(present)])
    state.n_infinite += int(present.size - finite.size)
    state.moments = state.moments.merge(Moments.of(finite))
    state.quantiles.add(finite)
    state.distinct.add(present)
    return finite


@dataclass
class _Accumulator:
    """Streaming state of one column in pass 2."""

    kind: Kind
    low: float | None
    high: float | None
    count: int = 0
    missing: int = 0
    n_infinite: int = 0
    moments: Moments = field(default_factory=Moments)
    quantiles: QuantileSketch = field(default_factory=QuantileSketch)
    distinct: DistinctSketch = field(default_factory=DistinctSketch)
    histogram: np.ndarray | None = None
    categories: pd.Series | None = None
    categories_exact: bool = True

    def __post_init__(self) -> None:
        self._edges = histogram_edges(self.low, self.high)

    def add(self, series: pd.Series) -> None:
        self.count += int(series.size)
        if is_numeric(self.kind):
            values = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            finite = add_numbers(self, values)
            if self._edges is not None:
                counts = counts_in_bins(finite, self._edges)
                self.histogram = counts if self.histogram is None else self.histogram + counts
            return
        self.missing += int(series.isna().sum())
        counts = category_values(series).value_counts(dropna=True, sort=False)
        merged = counts if self.categories is None else self.categories.add(counts, fill_value=0)
        if merged.size > MAX_TRACKED_CATEGORIES:
            merged = merged.sort_values(ascending=False, kind="stable").head(MAX_TRACKED_CATEGORIES)
            self.categories_exact = False
        self.categories = merged

    def result(self, name: str) -> ColumnStatistics:
        if not is_numeric(self.kind):
            counts = self.categories if self.categories is not None else pd.Series(dtype="int64")
            return ColumnStatistics(
                name=name, kind=self.kind, count=self.count, missing=self.missing,
                distinct=int(counts.size), distinct_exact=self.categories_exact,
                top_values=top_values(counts.astype("int64")), top_values_exact=self.categories_exact,
            )
        stats = ColumnStatistics(
            name=name, kind=self.kind, count=self.count, missing=self.missing,
            distinct=self.distinct.estimate(), distinct_exact=self.distinct.exact, n_infinite=self.n_infinite,
        )
        if self.moments.n:
            sketch = self.quantiles
            stats.min, stats.max = self.low, self.high
            stats.mean, stats.std = self.moments.mean, self.moments.std
            stats.quantiles = dict(zip(map(str, QUANTILES), map(float, sketch.quantiles(np.array(QUANTILES)))))
            stats.quantiles_exact = sketch.exact
            stats.histogram = {"edges": self._edges.tolist(), "counts": self.histogram.tolist()}
        return stats


@dataclass
class _Scan:
    """Pass-1 findings for one column: its kind and the range of its finite numbers."""

    kind: Kind | None = None
    fallback: Kind = "float"
    low: float | None = None
    high: float | None = None

    def add(self, series: pd.Series) -> None:
        kind = column_kind(series)
        if series.isna().all():
            self.fallback = kind if self.kind is None else self.fallback
            return
        self.kind = kind if self.kind is None else merge_kinds(self.kind, kind)
        if is_numeric(kind):
            values = numeric_values(series)
            finite = values[np.isfinite(values)]
            if finite.size:
                low, high = float(finite.min()), float(finite.max())
                self.low = low if self.low is None else min(self.low, low)
                self.high = high if self.high is None else max(self.high, high)

    @property
    def final_kind(self) -> Kind:
        return self.kind if self.kind is not None else self.fallback


def statistics_from_file(path: str | Path, chunksize: int = DEFAULT_CHUNKSIZE) -> DatasetStatistics:
    """Statistics of a CSV or Parquet file streamed in chunks of ``chunksize`` rows (two passes)."""
    path = Path(path)
    if chunksize < 1:
        raise ValueError("chunksize must be at least 1")
    scans: dict[str, _Scan] = {}
    names: list[str] = []
    for chunk in iter_chunks(path, chunksize):
        if not names:
            names = [str(c) for c in chunk.columns]
            scans = {n: _Scan() for n in names}
        for i, name in enumerate(names):
            scans[name].add(chunk.iloc[:, i])
    kinds = {n: scans[n].final_kind for n in names}
    dtype = {n: "str" for n in names if not is_numeric(kinds[n])} if table_format(path) == "csv" else None
    accumulators = {n: _Accumulator(kind=kinds[n], low=scans[n].low, high=scans[n].high) for n in names}
    n_rows = 0
    for chunk in iter_chunks(path, chunksize, dtype=dtype):
        n_rows += len(chunk)
        parallel_map(lambda i: accumulators[names[i]].add(chunk.iloc[:, i]), range(len(names)))
    return DatasetStatistics(n_rows=n_rows, columns=[accumulators[n].result(n) for n in names])
