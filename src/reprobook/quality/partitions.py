"""A partitioned Parquet data set: which files, which row groups, and whether they agree.

A data set is a directory of Parquet files (searched recursively; hidden and
``_``-prefixed entries such as ``_SUCCESS`` or a profile folder are skipped),
a single Parquet file, or a glob. It is cut into *partitions*: runs of
consecutive row groups of one file holding at most ``TARGET_ROWS`` rows (at
least one row group), so one big file still spreads over several workers and
a worker never reads more than a partition at a time.

A partition's identity is its file's relative path, size and modification
time plus its row-group range: a saved summary is reused only while that
identity is unchanged. Only the Parquet footers are read here.
"""

from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass
from pathlib import Path

from reprobook.errors import UsageError
from reprobook.quality.io import PARQUET_SUFFIXES

TARGET_ROWS = 2_000_000
"""Rows per partition at most (unless a single row group is larger): bounds a task's memory."""


@dataclass(frozen=True)
class Partition:
    """Consecutive row groups ``[first_group, end_group)`` of one Parquet file."""

    path: str
    key: str
    size: int
    mtime_ns: int
    first_group: int
    end_group: int
    rows: int

    @property
    def identity(self) -> str:
        """What must be unchanged for a saved summary of this partition to stay valid."""
        return f"{self.key}|{self.size}|{self.mtime_ns}|{self.first_group}-{self.end_group}"

    @property
    def digest(self) -> str:
        """A short file-name-safe digest of the identity."""
        return hashlib.sha256(self.identity.encode()).hexdigest()[:24]


def _skipped(relative: Path) -> bool:
    return any(part.startswith((".", "_")) for part in relative.parts)


def parquet_files(location: str | Path) -> tuple[Path, list[Path]]:
    """The root the keys are relative to, and the Parquet files of a directory, file or glob, sorted."""
    text = str(location)
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if p.lower().endswith(PARQUET_SUFFIXES))
        root = Path(glob.escape(text)).parent if not files else Path(_common_parent(files))
        if not files:
            raise UsageError(f"{location}: no Parquet file matches this pattern")
        return root, files
    path = Path(location)
    if not path.exists():
        raise UsageError(f"{path}: file or directory not found")
    if path.is_file():
        if not path.name.lower().endswith(PARQUET_SUFFIXES):
            raise UsageError(f"{path}: expected a Parquet file or a directory of Parquet files")
        return path.parent, [path]
    files = sorted(
        p for p in path.rglob("*")
        if p.is_file() and p.name.lower().endswith(PARQUET_SUFFIXES) and not _skipped(p.relative_to(path))
    )
    if not files:
        raise UsageError(f"{path}: no Parquet files (*.parquet, *.pq) in this directory")
    return path, files


def _common_parent(files: list[Path]) -> str:
    import os

    return os.path.commonpath([str(f.parent) for f in files])


def _arrow_schema(path: Path):  # -> pyarrow.Schema, imported lazily
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a broken file
        raise UsageError(f"{path}: cannot read as Parquet: {str(exc).splitlines()[0]}") from None


def _family(arrow_type) -> str:
    """Type families that may mix across files: numbers, booleans, text (null mixes with all)."""
    import pyarrow.types as pt

    if pt.is_null(arrow_type):
        return "null"
    if pt.is_boolean(arrow_type):
        return "boolean"
    if pt.is_integer(arrow_type) or pt.is_floating(arrow_type) or pt.is_decimal(arrow_type):
        return "numeric"
    if pt.is_dictionary(arrow_type):
        return _family(arrow_type.value_type)
    return "text"


def check_schemas(files: list[Path], schemas: list) -> list[str]:
    """The data set's column names; a UsageError naming the file and column where a file disagrees."""
    first, reference = files[0], schemas[0]
    names = list(reference.names)
    families = {n: _family(reference.field(n).type) for n in names}
    for path, schema in zip(files[1:], schemas[1:]):
        if list(schema.names) != names:
            extra = [n for n in schema.names if n not in names]
            absent = [n for n in names if n not in schema.names]
            detail = (f"column {extra[0]!r} is not in {first.name}" if extra else
                      f"column {absent[0]!r} of {first.name} is missing" if absent else "columns in another order")
            raise UsageError(f"{path}: a different schema from {first}: {detail}")
        for name in names:
            family = _family(schema.field(name).type)
            if "null" in (family, families[name]):
                families[name] = family if families[name] == "null" else families[name]
                continue
            if family != families[name]:
                raise UsageError(f"{path}: column {name!r} is {schema.field(name).type}, "
                                 f"but {families[name]} in {first}; all partitions need the same column types")
    return names


def discover(location: str | Path, target_rows: int = TARGET_ROWS) -> tuple[list[Partition], list[str]]:
    """The partitions of a data set in a fixed order (by file, then row group) and its column names."""
    root, files = parquet_files(location)
    partitions: list[Partition] = []
    schemas = []
    for path in files:
        parquet = _arrow_schema(path)
        schemas.append(parquet.schema_arrow)
        stat = path.stat()
        key = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        metadata = parquet.metadata
        groups = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        start = 0
        while start < len(groups) or (start == 0 and not groups):
            end, rows = start, 0
            while end < len(groups) and (end == start or rows + groups[end] <= target_rows):
                rows += groups[end]
                end += 1
            partitions.append(Partition(str(path), key, stat.st_size, stat.st_mtime_ns, start, end, rows))
            if end == start:
                break
            start = end
    return partitions, check_schemas(files, schemas)


def footer_ranges(partitions: list[Partition], names: list[str]) -> dict[str, tuple[float, float] | None]:
    """Each numeric column's finite [min, max] from the row groups' footer statistics, where all have them.

    Footers leave NaN out but not infinity, and may lack statistics: such a
    column gets None (its range then comes from the data). Reading footers is
    cheap: no column data is decoded.
    """
    import math

    import pyarrow.parquet as pq

    ranges: dict[str, tuple[float, float] | None] = {}
    usable = set(names)
    for path in sorted({p.path for p in partitions}):
        parquet = pq.ParquetFile(path)
        metadata, schema = parquet.metadata, parquet.schema_arrow
        index = {metadata.schema.column(i).path: i for i in range(metadata.num_columns)}
        for name in names:
            if name not in usable:
                continue
            if _family(schema.field(name).type) != "numeric" or name not in index:
                usable.discard(name)
                continue
            for group in range(metadata.num_row_groups):
                column = metadata.row_group(group).column(index[name])
                stats = column.statistics
                if column.num_values == 0 or (stats is not None and stats.null_count == column.num_values):
                    continue  # an all-null row group adds nothing to the range
                if stats is None or not stats.has_min_max:
                    usable.discard(name)
                    break
                try:
                    low, high = float(stats.min), float(stats.max)
                except (TypeError, ValueError):
                    usable.discard(name)
                    break
                if not (math.isfinite(low) and math.isfinite(high)):
                    usable.discard(name)
                    break
                previous = ranges.get(name)
                ranges[name] = (low, high) if previous is None else (min(previous[0], low), max(previous[1], high))
    return {name: ranges.get(name) if name in usable else None for name in names}
