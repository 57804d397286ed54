"""Facts about the installed software, computed once per environment instead of once per stage.

Some answers depend only on what is installed: the name and version of every
distribution (0.1 s on a quiet machine, 0.4 s on a busy one, for each run
record), whether an installed estimator accepts its hyperparameters (a second
of importing scikit-learn for each ``reprobook run``). They are kept in the
user's cache (:func:`reprobook.project.paths.cache_dir`) under the
environment's fingerprint, so they are computed again exactly when the
environment changes.

The fingerprint is the interpreter (path and version) and the modification
time of every folder on ``sys.path``. Installing, upgrading or removing a
distribution adds or removes its ``.dist-info`` folder in ``site-packages``,
which changes that folder's modification time; so does ``pip install -e``.
Editing an installed package's files in place does not, and is not seen:
that is not an environment change pip would make either.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from reprobook import __version__

T = TypeVar("T")
FOLDER = "environments"


def environment_key() -> str:
    """A digest that changes whenever a distribution is installed, upgraded or removed."""
    parts = [sys.executable, sys.version, __version__]
    for entry in sys.path:
        try:
            parts.append(f"{entry}\0{os.stat(entry or '.').st_mtime_ns}")
        except OSError:
            parts.append(f"{entry}\0-")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def cache_file(key: str | None = None) -> Path:
    from reprobook.project.paths import cache_dir

    return cache_dir() / FOLDER / f"{key or environment_key()}.json"


def cached(name: str, compute: Callable[[], T]) -> T:
    """``compute()``'s value (JSON-serialisable), computed once per environment and kept under ``name``.

    A cache that cannot be read or written is no error: the value is computed.
    Concurrent writers replace the file whole (a lost entry is computed again).
    """
    path = cache_file()
    try:
        entries = json.loads(path.read_text())
        if name in entries:
            return entries[name]
    except (OSError, ValueError, TypeError):
        entries = {}
    value = compute()
    entries = entries if isinstance(entries, dict) else {}
    entries[name] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".tmp-", suffix=".json", delete=False) as handle:
            json.dump(entries, handle, sort_keys=True)
        os.replace(handle.name, path)
    except OSError:
        pass
    return value


def is_installed_module(module: str, root: Path | None = None) -> bool:
    """``module``'s top-level package is installed (in a site-packages folder), not part of a project.

    Only facts about installed code may be cached under the environment's
    fingerprint; a project's own module changes without the environment.
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec(module.split(".")[0])
    except (ImportError, ValueError):
        return False
    origin = spec.origin if spec else None
    if not origin:
        return False
    path = Path(origin).resolve()
    if root is not None and path.is_relative_to(root.resolve()):
        return False
    return any(part in ("site-packages", "dist-packages") for part in path.parts)
