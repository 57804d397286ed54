"""The work a Dask worker (or this process) does on one partition: plain functions, importable anywhere.

Each function reads one partition with pyarrow, one row group and one column
at a time (a task's memory is a column chunk plus the summaries), and returns
something small and mergeable. Functions sent to workers must live in the
package, not in a script's ``__main__``, so workers can import them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from reprobook.errors import UsageError
from reprobook.quality.kinds import is_numeric, numeric_values
from reprobook.quality.partitions import Partition
from reprobook.quality.statistics import counts_in_bins
from reprobook.quality.summary import DatasetSummary, SketchConfig
from reprobook.quality.summary_io import load_summary, save_summary


def row_group_columns(partition: Partition, names: list[str]) -> Iterator[tuple[str, pd.Series]]:
    """``(name, column)`` for each row group of the partition and each of ``names``, in that order."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(partition.path)
        for group in range(partition.first_group, partition.end_group):
            for name in names:
                table = parquet.read_row_group(group, columns=[name])
                yield name, table.column(0).to_pandas()
                del table
    except (OSError, ValueError) as exc:
        raise UsageError(f"{partition.path}: cannot read as Parquet: {str(exc).splitlines()[0]}") from None


def summarise(partition: Partition, names: list[str], edges: dict[str, list[float] | None],
              config: SketchConfig) -> DatasetSummary:
    """The summary of one partition; numeric histograms are counted on ``edges`` where given."""
    summary = DatasetSummary.empty(names, config)
    columns = {c.name: c for c in summary.columns}
    arrays = {name: None if e is None else np.asarray(e, dtype=np.float64) for name, e in edges.items()}
    for name, series in row_group_columns(partition, names):
        try:
            columns[name].add(series, arrays.get(name))
        except ValueError as exc:
            raise UsageError(f"{partition.path}: {exc}") from None
    summary.n_rows = partition.rows
    summary.n_partitions = 1
    return summary


def summary_of(partition: Partition, names: list[str], edges: dict[str, list[float] | None],
               config: SketchConfig, cache: str | None, reuse: bool) -> DatasetSummary:
    """The partition's saved summary when ``reuse``, else a new one (saved to ``cache`` if given)."""
    if reuse and cache is not None:
        return load_summary(cache)
    summary = summarise(partition, names, edges, config)
    if cache is not None:
        save_summary(cache, summary)
    return summary


def merge(first: DatasetSummary, second: DatasetSummary) -> DatasetSummary:
    """The summary of both (a tree node)."""
    return first.merged(second)


def recount(partition: Partition, edges: dict[str, list[float]], cache: str | None) -> dict[str, list[int]]:
    """Histogram counts of the partition's numeric columns on new ``edges``; the saved summary is updated too.

    Needed only when a column's final range was not known when the partition
    was summarised (footers without usable statistics, or a new partition
    that widened the range).
    """
    arrays = {name: np.asarray(e, dtype=np.float64) for name, e in edges.items()}
    totals = {name: np.zeros(a.size - 1, dtype=np.int64) for name, a in arrays.items()}
    for name, series in row_group_columns(partition, list(arrays)):
        values = numeric_values(series) if pd.api.types.is_numeric_dtype(series.dtype) else None
        if values is None:
            continue
        finite = np.sort(values[np.isfinite(values)])
        totals[name] += counts_in_bins(finite, arrays[name])
    if cache is not None and Path(cache).exists():
        summary = load_summary(cache)
        for name, counts in totals.items():
            column = summary.column(name)
            if is_numeric(column.final_kind):
                column.set_histogram(arrays[name], counts)
        save_summary(cache, summary)
    return {name: counts.tolist() for name, counts in totals.items()}
