"""Statistics and drift of partitioned Parquet data, partition by partition, here or on a Dask cluster.

The chain for one data set (:func:`profile_dataset`):

1. list the partitions and check that their schemas agree (footers only);
2. take each numeric column's range from the footers, which fixes the
   histogram edges before any data is read (a column without usable footer
   statistics is recounted in step 5);
3. summarise every new or changed partition on a worker, reuse the saved
   summary of every other one (:mod:`reprobook.quality.profile_store`);
4. merge the summaries in a fixed binary tree, on the workers;
5. recount the histograms of columns whose final range differs from the
   edges used (rare: infinite values, no footer statistics, or a new
   partition that widened the range);
6. save the profile (when it has a folder) and return the merged summary.

Only the merged summary (a few MB per column at most) reaches the client.
Drift (:func:`drift`) compares two merged summaries
(:mod:`reprobook.quality.summary_drift`); the reference is profiled and saved
once, and reused while its partitions are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reprobook.quality import partition_tasks as tasks
from reprobook.quality.drift_config import DriftConfig
from reprobook.quality.drift_report import DriftReport
from reprobook.quality.partitions import Partition, discover, footer_ranges
from reprobook.quality.profile_store import ProfileStore
from reprobook.quality.runner import InProcess, progress, tree_reduce
from reprobook.quality.statistics import DatasetStatistics, histogram_edges
from reprobook.quality.summary import DatasetSummary, SketchConfig
from reprobook.quality.summary_drift import drift_from_summaries


@dataclass
class Profile:
    """A data set's merged summary and what this run did to get it."""

    summary: DatasetSummary
    partitions: list[Partition]
    computed: list[str] = field(default_factory=list)
    """Keys of the partitions read and summarised in this run."""
    reused: list[str] = field(default_factory=list)
    """Keys of the partitions whose saved summary was reused."""
    recounted: list[str] = field(default_factory=list)
    """Columns whose histograms were recounted on their final edges."""
    folder: Path | None = None

    @property
    def statistics(self) -> DatasetStatistics:
        return self.summary.statistics()

    def describe(self) -> str:
        """One line on the work done, for stderr."""
        where = f"; profile {self.folder}" if self.folder else ""
        saved = "from the saved profile" if not self.computed and self.reused else (
            f"{len(self.computed)} computed, {len(self.reused)} reused")
        return f"{len(self.partitions)} partition(s), {self.summary.n_rows} rows: {saved}{where}"


def _guessed_edges(partitions: list[Partition], names: list[str]) -> dict[str, list[float] | None]:
    ranges = footer_ranges(partitions, names)
    edges = {}
    for name in names:
        found = ranges.get(name)
        edges[name] = None if found is None else histogram_edges(*found).tolist()
    return edges


def profile_dataset(data: str | Path, *, runner: Any | None = None, folder: str | Path | None = None,
                    config: SketchConfig | None = None, label: str = "profile") -> Profile:
    """The merged summary of the data set at ``data`` (directory, Parquet file or glob).

    ``folder``: where the profile is saved and reused (None: computed, not saved).
    """
    runner = runner or InProcess()
    config = config or SketchConfig()
    partitions, names = discover(data)
    store = ProfileStore(folder) if folder is not None else None
    if store is not None:
        merged = store.merged_if_current(partitions, names, config)
        if merged is not None:
            return Profile(merged, partitions, reused=[p.key for p in partitions], folder=store.folder)
        store.prepare()
    reusable = store.reusable(partitions, names, config) if store is not None else set()
    edges = _guessed_edges(partitions, names)
    caches = [str(store.part_path(p)) if store is not None else None for p in partitions]

    with progress(len(partitions), f"{label}: {Path(str(data)).name}") as advance:
        def handles():
            for partition, cache in zip(partitions, caches):
                handle = runner.submit(tasks.summary_of, partition, names, edges, config, cache,
                                       partition.digest in reusable)
                runner.on_done(handle, advance)
                yield handle

        merged = runner.result(tree_reduce(runner, handles(), tasks.merge))
    recounted = _recount_stale(runner, merged, partitions, caches)
    if store is not None:
        store.write(partitions, names, config, merged)
    return Profile(
        merged, partitions, computed=[p.key for p in partitions if p.digest not in reusable],
        reused=[p.key for p in partitions if p.digest in reusable], recounted=recounted,
        folder=store.folder if store is not None else None,
    )


def _recount_stale(runner: Any, merged: DatasetSummary, partitions: list[Partition],
                   caches: list[str | None]) -> list[str]:
    """Recount histograms counted on other edges than the final ones (every partition, those columns only)."""
    import numpy as np

    stale = merged.stale_histograms()
    if not stale:
        return []
    edges = {name: merged.column(name).true_edges().tolist() for name in stale}
    handles = [runner.submit(tasks.recount, p, edges, cache) for p, cache in zip(partitions, caches)]
    totals = {name: np.zeros(len(e) - 1, dtype=np.int64) for name, e in edges.items()}
    for counts in runner.results(handles):
        for name, values in counts.items():
            totals[name] += np.asarray(values, dtype=np.int64)
    for name in stale:
        merged.column(name).set_histogram(np.asarray(edges[name]), totals[name])
    return stale


def drift(reference: str | Path, current: str | Path, *, runner: Any | None = None,
          reference_profile: str | Path | None = None, config: DriftConfig | None = None,
          columns: list[str] | None = None,
          sketches: SketchConfig | None = None) -> tuple[DriftReport, Profile, Profile]:
    """Drift of ``current`` against ``reference``, both summarised partition by partition.

    The reference profile is saved in ``reference_profile`` and reused while
    the reference's partitions are unchanged; the current data is summarised
    each time (not saved).
    """
    runner = runner or InProcess()
    ref = profile_dataset(reference, runner=runner, folder=reference_profile, config=sketches, label="reference")
    cur = profile_dataset(current, runner=runner, folder=None, config=sketches, label="current")
    report = drift_from_summaries(ref.summary, cur.summary, config=config, columns=columns)
    return report, ref, cur
