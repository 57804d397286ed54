"""Summaries on disk without pickle: a zip of ``.npy`` arrays, byte for byte reproducible.

``numpy.savez`` stamps each member with the current time, so the same
summary would give different bytes on every save; here every member gets a
fixed timestamp and the members are written in sorted order. ``numpy.load``
reads the file with ``allow_pickle=False``: a profile is safe to share.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

from reprobook.quality.summary import DatasetSummary

EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip member can carry


def write_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` as an ``.npz`` whose bytes depend only on the arrays (atomically: temp file, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=EPOCH)
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())
    os.replace(temporary, path)
    return path


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a file :func:`write_arrays` wrote (no pickled objects are ever loaded)."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def save_summary(path: str | Path, summary: DatasetSummary) -> Path:
    return write_arrays(path, summary.state())


def load_summary(path: str | Path) -> DatasetSummary:
    return DatasetSummary.from_state(read_arrays(path))
