"""A saved profile: the summary of every partition of a data set, and their merge, next to the data.

Layout of the folder (default ``<data dir>/.reprobook-profile``)::

    index.json        sketch sizes, columns, and each partition's identity
    merged.npz        the merged summary of all partitions in index.json
    parts/<id>.npz    one partition's summary (id: digest of the identity)

A rerun reuses a partition's summary while its identity (relative path,
size, modification time, row groups) is unchanged, so only new or changed
partitions are read again; when nothing changed, ``merged.npz`` is the
answer and no partition is touched. Files are written only when something
changed, and the same partitions give the same bytes (see
:mod:`reprobook.quality.summary_io`); nothing is pickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reprobook.errors import UsageError
from reprobook.quality.partitions import Partition
from reprobook.quality.summary import SUMMARY_VERSION, DatasetSummary, SketchConfig
from reprobook.quality.summary_io import load_summary, save_summary

PROFILE_FOLDER = ".reprobook-profile"


def default_location(data: str | Path) -> Path | None:
    """``<dir>/.reprobook-profile`` for a directory data set; None for a file or a glob (give --profile)."""
    path = Path(data)
    return path / PROFILE_FOLDER if path.is_dir() else None


class ProfileStore:
    """Reads and writes one profile folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @property
    def index_path(self) -> Path:
        return self.folder / "index.json"

    @property
    def merged_path(self) -> Path:
        return self.folder / "merged.npz"

    def part_path(self, partition: Partition) -> Path:
        return self.folder / "parts" / f"{partition.digest}.npz"

    @staticmethod
    def index_for(partitions: list[Partition], names: list[str], config: SketchConfig) -> dict[str, Any]:
        """The index that describes these partitions (one pure serializer: compared and written alike)."""
        return {
            "version": SUMMARY_VERSION,
            "sketches": {"quantile_capacity": config.quantile_capacity, "distinct_k": config.distinct_k},
            "columns": names,
            "partitions": [
                {"key": p.key, "size": p.size, "mtime_ns": p.mtime_ns, "row_groups": [p.first_group, p.end_group],
                 "rows": p.rows, "summary": f"parts/{p.digest}.npz"}
                for p in partitions
            ],
        }

    def _saved_index(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.index_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def reusable(self, partitions: list[Partition], names: list[str], config: SketchConfig) -> set[str]:
        """Digests of the partitions whose saved summary is still valid (same sketches, columns, identity)."""
        saved = self._saved_index()
        wanted = self.index_for(partitions, names, config)
        if saved is None or {k: saved.get(k) for k in ("version", "sketches", "columns")} != {
                k: wanted[k] for k in ("version", "sketches", "columns")}:
            return set()
        known = {json.dumps(entry, sort_keys=True) for entry in saved.get("partitions", [])}
        return {
            p.digest for p, entry in zip(partitions, wanted["partitions"])
            if json.dumps(entry, sort_keys=True) in known and self.part_path(p).is_file()
        }

    def merged_if_current(self, partitions: list[Partition], names: list[str],
                          config: SketchConfig) -> DatasetSummary | None:
        """The saved merged summary, if it covers exactly these partitions."""
        if self._saved_index() != self.index_for(partitions, names, config) or not self.merged_path.is_file():
            return None
        try:
            return load_summary(self.merged_path)
        except (OSError, ValueError, KeyError):
            return None

    def prepare(self) -> None:
        """Create the folder (a usage error naming it if that is not possible)."""
        try:
            (self.folder / "parts").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{self.folder}: cannot write the profile here ({exc.strerror}); "
                             f"give another folder with --profile") from None

    def write(self, partitions: list[Partition], names: list[str], config: SketchConfig,
              merged: DatasetSummary) -> None:
        """Save the merged summary and the index; drop summaries of partitions that are gone."""
        save_summary(self.merged_path, merged)
        index = self.index_for(partitions, names, config)
        self.index_path.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        current = {self.part_path(p).name for p in partitions}
        for stale in (self.folder / "parts").glob("*.npz"):
            if stale.name not in current:
                stale.unlink()
