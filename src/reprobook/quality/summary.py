"""Mergeable summaries of a partitioned data set: what a worker computes from one partition.

A :class:`ColumnSummary` holds, for one column, exact counts (rows, missing,
infinite), the finite min and max, Chan moments, a :class:`QuantileSketch`,
a :class:`DistinctSketch`, histogram counts on fixed edges (numeric columns)
or the exact table of category frequencies (other columns). Two summaries
merge into the summary of the union, so a data set is summarised partition by
partition on any number of machines and merged in a tree; no machine holds
more than one partition's data. :meth:`DatasetSummary.statistics` turns the
merged summary into the same :class:`DatasetStatistics` the single-process
engine produces, with the same exact figures.

The column kind follows :mod:`reprobook.quality.streaming`: each row group
(a chunk) gets :func:`column_kind`, chunks are merged with :func:`merge_kinds`,
and all-missing chunks do not vote.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from reprobook.quality.kinds import Kind, category_values, column_kind, is_numeric, merge_kinds, numeric_values
from reprobook.quality.moments import Moments
from reprobook.quality.sketches import DISTINCT_K, QUANTILE_CAPACITY, DistinctSketch, QuantileSketch
from reprobook.quality.statistics import (
    QUANTILES,
    ColumnStatistics,
    DatasetStatistics,
    counts_in_bins,
    histogram_edges,
    top_values,
)
from reprobook.quality.streaming import MAX_TRACKED_CATEGORIES, add_numbers

SUMMARY_VERSION = 1


@dataclass(frozen=True)
class SketchConfig:
    """Sketch sizes; summaries merge only with summaries of the same sizes."""

    quantile_capacity: int = QUANTILE_CAPACITY
    distinct_k: int = DISTINCT_K


@dataclass
class ColumnSummary:
    """The mergeable state of one column (see the module docstring)."""

    name: str
    config: SketchConfig
    mode: str | None = None  # "numeric" | "categorical" | None while no chunk had a value
    kind: Kind | None = None
    fallback: Kind | None = None
    count: int = 0
    missing: int = 0
    n_infinite: int = 0
    low: float | None = None
    high: float | None = None
    moments: Moments = field(default_factory=Moments)
    quantiles: QuantileSketch | None = None
    distinct: DistinctSketch | None = None
    edges: np.ndarray | None = None
    histogram: np.ndarray | None = None
    histogram_valid: bool = True
    categories: dict[str, int] = field(default_factory=dict)
    categories_exact: bool = True

    def _numeric_state(self) -> None:
        if self.quantiles is None:
            self.quantiles = QuantileSketch(self.config.quantile_capacity)
            self.distinct = DistinctSketch(self.config.distinct_k)

    def add(self, series: pd.Series, edges: np.ndarray | None) -> None:
        """Add one chunk (a row group's column); ``edges`` are the histogram edges, if known."""
        self.count += int(series.size)
        kind = column_kind(series)
        if series.isna().all():
            self.missing += int(series.size)
            if self.kind is None and self.fallback is None:
                self.fallback = kind
            if is_numeric(kind) and self.mode != "categorical":
                self.count_histogram(np.empty(0), edges)  # zero counts: the same state as after a recount
            return
        self.kind = kind if self.kind is None else merge_kinds(self.kind, kind)
        mode = "numeric" if is_numeric(kind) else "categorical"
        if self.mode not in (None, mode):
            raise ValueError(f"column {self.name!r} has numbers in one chunk and text in another")
        self.mode = mode
        if mode == "numeric":
            self._add_numbers(numeric_values(series), edges)
        else:
            self.missing += int(series.isna().sum())
            counts = category_values(series).value_counts(dropna=True, sort=False)
            self._add_categories(dict(zip(map(str, counts.index), map(int, counts.to_numpy()))), True)

    def _add_numbers(self, values: np.ndarray, edges: np.ndarray | None) -> None:
        self._numeric_state()
        finite = add_numbers(self, values)
        if finite.size:
            low, high = float(finite[0]), float(finite[-1])
            self.low = low if self.low is None else min(self.low, low)
            self.high = high if self.high is None else max(self.high, high)
        self.count_histogram(finite, edges)

    def count_histogram(self, sorted_finite: np.ndarray, edges: np.ndarray | None) -> None:
        """Add a chunk's counts on ``edges``; values without edges, or other edges, make the histogram stale."""
        if not self.histogram_valid:
            return
        if edges is None:
            if sorted_finite.size:
                self.histogram_valid = False
                self.edges = self.histogram = None
            return
        counts = counts_in_bins(sorted_finite, edges)
        if self.edges is None:
            self.edges, self.histogram = edges, counts
        elif np.array_equal(self.edges, edges):
            self.histogram = self.histogram + counts
        else:
            self.histogram_valid = False
            self.edges = self.histogram = None

    def _add_categories(self, counts: dict[str, int], exact: bool) -> None:
        merged = dict(self.categories)
        for value, n in counts.items():
            merged[value] = merged.get(value, 0) + n
        self.categories_exact = self.categories_exact and exact
        if len(merged) > MAX_TRACKED_CATEGORIES:
            kept = sorted(merged.items(), key=lambda item: (-item[1], item[0]))[:MAX_TRACKED_CATEGORIES]
            merged = dict(kept)
            self.categories_exact = False
        self.categories = merged

    def merge(self, other: "ColumnSummary") -> None:
        """Add another partition's summary of the same column (in place)."""
        if self.mode is not None and other.mode is not None and self.mode != other.mode:
            raise ValueError(f"column {self.name!r} is numeric in one partition and text in another")
        self.count += other.count
        self.missing += other.missing
        self.n_infinite += other.n_infinite
        if other.kind is not None:
            self.kind = other.kind if self.kind is None else merge_kinds(self.kind, other.kind)
        if self.fallback is None:
            self.fallback = other.fallback
        self.mode = self.mode or other.mode
        self._merge_histogram(other)
        if other.low is not None:
            self.low = other.low if self.low is None else min(self.low, other.low)
            self.high = other.high if self.high is None else max(self.high, other.high)
        self.moments = self.moments.merge(other.moments)
        if other.quantiles is not None:
            self._numeric_state()
            self.quantiles.merge(other.quantiles)
            self.distinct.merge(other.distinct)
        if other.categories or not other.categories_exact:
            self._add_categories(other.categories, other.categories_exact)

    def _merge_histogram(self, other: "ColumnSummary") -> None:
        if not other.histogram_valid:
            self.histogram_valid = False
        elif other.edges is None:
            return  # nothing counted there
        elif self.edges is None:
            self.edges, self.histogram = other.edges, other.histogram
        elif np.array_equal(self.edges, other.edges):
            self.histogram = self.histogram + other.histogram
        else:
            self.histogram_valid = False
        if not self.histogram_valid:
            self.edges = self.histogram = None

    def set_histogram(self, edges: np.ndarray, counts: np.ndarray) -> None:
        """Replace the histogram by counts recounted on ``edges``."""
        self.edges, self.histogram, self.histogram_valid = edges, counts.astype(np.int64), True

    @property
    def final_kind(self) -> Kind:
        """The column's kind, as streaming decides it (all-missing columns: the first chunk's kind)."""
        return self.kind if self.kind is not None else (self.fallback or "float")

    def true_edges(self) -> np.ndarray | None:
        """The histogram edges the single-process engine uses: over the finite min and max."""
        return histogram_edges(self.low, self.high)

    def histogram_current(self) -> bool:
        """Whether the histogram was counted on :meth:`true_edges` (else it must be recounted)."""
        edges = self.true_edges()
        if edges is None:
            return True
        return self.histogram_valid and self.edges is not None and np.array_equal(self.edges, edges)

    def statistics(self) -> ColumnStatistics:
        """The column's statistics; exact flags say which figures come from sketches."""
        kind = self.final_kind
        if not is_numeric(kind):
            counts = pd.Series(self.categories, dtype="int64")
            return ColumnStatistics(
                name=self.name, kind=kind, count=self.count, missing=self.missing,
                distinct=len(self.categories), distinct_exact=self.categories_exact,
                top_values=top_values(counts), top_values_exact=self.categories_exact,
            )
        distinct = self.distinct
        stats = ColumnStatistics(
            name=self.name, kind=kind, count=self.count, missing=self.missing,
            distinct=distinct.estimate() if distinct is not None else 0,
            distinct_exact=distinct.exact if distinct is not None else True, n_infinite=self.n_infinite,
        )
        if self.moments.n:
            stats.min, stats.max = self.low, self.high
            stats.mean, stats.std = self.moments.mean, self.moments.std
            values = self.quantiles.quantiles(np.array(QUANTILES))
            stats.quantiles = dict(zip(map(str, QUANTILES), map(float, values)))
            stats.quantiles_exact = self.quantiles.exact
            if self.histogram_current():
                stats.histogram = {"edges": self.edges.tolist(), "counts": self.histogram.tolist()}
        return stats

    def error_bounds(self) -> dict[str, float]:
        """The stated error of the approximate figures (empty when every figure is exact)."""
        bounds: dict[str, float] = {}
        if self.quantiles is not None and not self.quantiles.exact:
            bounds["quantiles_rank_error"] = self.quantiles.rank_error
        if self.distinct is not None and not self.distinct.exact:
            bounds["distinct_relative_std_error"] = self.distinct.relative_error
        if self.mode == "categorical" and not self.categories_exact:
            bounds["categories_truncated_to"] = float(MAX_TRACKED_CATEGORIES)
        return bounds

    # --- plain-array state, for saving without pickle ---------------------------------------

    def state(self, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-ready scalars and named arrays that :meth:`from_state` rebuilds the summary from."""
        meta = {
            "name": self.name, "mode": self.mode, "kind": self.kind, "fallback": self.fallback,
            "count": self.count, "missing": self.missing, "n_infinite": self.n_infinite,
            "low": self.low, "high": self.high, "moments": [self.moments.n, self.moments.mean, self.moments.m2],
            "categories": sorted(self.categories.items()), "categories_exact": self.categories_exact,
            "histogram_valid": self.histogram_valid,
        }
        arrays: dict[str, np.ndarray] = {}
        if self.quantiles is not None:
            arrays.update({f"{prefix}.q.{k}": v for k, v in self.quantiles.state().items()})
            arrays[f"{prefix}.d.hashes"] = self.distinct.hashes
        if self.edges is not None:
            arrays[f"{prefix}.h.edges"] = self.edges
            arrays[f"{prefix}.h.counts"] = self.histogram.astype(np.int64)
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str,
                   config: SketchConfig) -> "ColumnSummary":
        n, mean, m2 = meta["moments"]
        column = cls(
            name=meta["name"], config=config, mode=meta["mode"], kind=meta["kind"], fallback=meta["fallback"],
            count=meta["count"], missing=meta["missing"], n_infinite=meta["n_infinite"], low=meta["low"],
            high=meta["high"], moments=Moments(int(n), float(mean), float(m2)),
            categories={str(k): int(v) for k, v in meta["categories"]}, categories_exact=meta["categories_exact"],
            histogram_valid=meta["histogram_valid"],
        )
        if f"{prefix}.q.header" in arrays:
            column.quantiles = QuantileSketch.from_state(
                {k: arrays[f"{prefix}.q.{k}"] for k in ("header", "sizes", "offsets", "values")})
            column.distinct = DistinctSketch(config.distinct_k)
            column.distinct.hashes = arrays[f"{prefix}.d.hashes"].astype(np.uint64)
        if f"{prefix}.h.edges" in arrays:
            column.edges = arrays[f"{prefix}.h.edges"].astype(np.float64)
            column.histogram = arrays[f"{prefix}.h.counts"].astype(np.int64)
        return column


@dataclass
class DatasetSummary:
    """The summaries of every column of some partitions, and how many partitions and rows they cover."""

    config: SketchConfig
    columns: list[ColumnSummary]
    n_rows: int = 0
    n_partitions: int = 0

    @classmethod
    def empty(cls, names: list[str], config: SketchConfig) -> "DatasetSummary":
        return cls(config=config, columns=[ColumnSummary(name, config) for name in names])

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSummary:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def merged(self, other: "DatasetSummary") -> "DatasetSummary":
        """A new summary of both (inputs unchanged: a worker may hold them for another merge)."""
        if other.config != self.config:
            raise ValueError("cannot merge summaries made with different sketch sizes")
        if other.names != self.names:
            raise ValueError(f"cannot merge summaries of different columns: {self.names} and {other.names}")
        result = copy.deepcopy(self)
        for mine, theirs in zip(result.columns, other.columns):
            mine.merge(theirs)
        result.n_rows += other.n_rows
        result.n_partitions += other.n_partitions
        return result

    def statistics(self) -> DatasetStatistics:
        """The data set's statistics, in the single-process engine's types."""
        return DatasetStatistics(n_rows=self.n_rows, columns=[c.statistics() for c in self.columns])

    def stale_histograms(self) -> list[str]:
        """Numeric columns whose histogram was counted on other edges than the final ones."""
        return [c.name for c in self.columns if is_numeric(c.final_kind) and not c.histogram_current()]

    def state(self) -> dict[str, np.ndarray]:
        """Named plain arrays (the scalars as UTF-8 JSON in ``meta``): what the profile files hold."""
        arrays: dict[str, np.ndarray] = {}
        metas = []
        for i, column in enumerate(self.columns):
            meta, column_arrays = column.state(f"c{i}")
            metas.append(meta)
            arrays.update(column_arrays)
        meta = {
            "version": SUMMARY_VERSION, "n_rows": self.n_rows, "n_partitions": self.n_partitions,
            "config": [self.config.quantile_capacity, self.config.distinct_k], "columns": metas,
        }
        arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
        return arrays

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray]) -> "DatasetSummary":
        meta = json.loads(bytes(arrays["meta"]).decode())
        if meta.get("version") != SUMMARY_VERSION:
            raise ValueError(f"summary version {meta.get('version')}, expected {SUMMARY_VERSION}")
        config = SketchConfig(*meta["config"])
        columns = [ColumnSummary.from_state(m, arrays, f"c{i}", config) for i, m in enumerate(meta["columns"])]
        return cls(config=config, columns=columns, n_rows=meta["n_rows"], n_partitions=meta["n_partitions"])
