"""Where an environment's warm process listens, and the key that names it (standard library only: the
client imports this on every ``reprobook`` call)."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from pathlib import Path

ENABLE_VARIABLE = "REPROBOOK_WARM"
"""``0`` (or ``false``, ``no``, ``off``): never use or start a warm process."""
IDLE_VARIABLE = "REPROBOOK_WARM_IDLE"
"""Seconds a warm process waits for its next stage before it exits."""
DIR_VARIABLE = "REPROBOOK_WARM_DIR"
"""The folder of the sockets (default: ``$XDG_RUNTIME_DIR/reprobook-warm``, else in the temporary folder)."""
DEFAULT_IDLE_SECONDS = 1800.0


def enabled() -> bool:
    """Whether warm processes may be used here: asked for (the default), and a platform where forking a
    process that has loaded these libraries is safe (Linux)."""
    chosen = os.environ.get(ENABLE_VARIABLE, "1").strip().lower()
    return chosen not in {"0", "false", "no", "off"} and sys.platform.startswith("linux") and hasattr(os, "fork")


def idle_seconds() -> float:
    try:
        return max(1.0, float(os.environ.get(IDLE_VARIABLE, DEFAULT_IDLE_SECONDS)))
    except ValueError:
        return DEFAULT_IDLE_SECONDS


def folder() -> Path | None:
    """The user's private folder of warm sockets, created 0700; None if it exists but is not private
    (another user could have put a socket there)."""
    chosen = os.environ.get(DIR_VARIABLE)
    if chosen:
        path = Path(chosen)
    else:
        import tempfile

        base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
        path = Path(base) / f"reprobook-warm-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError:
        return None
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        return None
    return path


def _source_stamp() -> list[str]:
    """Size and modification time of every module of reprobook itself: an editable install edited in
    place must not be served by a process that imported the old code."""
    package = Path(__file__).resolve().parents[1]
    stamps = []
    for directory, _subdirs, files in os.walk(package):
        for name in files:
            if name.endswith(".py"):
                info = os.stat(os.path.join(directory, name))
                stamps.append(f"{directory}/{name}\0{info.st_size}\0{info.st_mtime_ns}")
    return sorted(stamps)


def environment_key(path: list[str] | None = None) -> str:
    """A digest of what the warm process imported: the interpreter, the import path (the first entry is
    the running script's folder, which differs between the client and the warm process) with its
    folders' modification times (``pip install`` changes them), and reprobook's source files."""
    parts = [sys.executable, sys.version]
    for entry in (sys.path if path is None else path)[1:]:
        try:
            parts.append(f"{entry}\0{os.stat(entry or '.').st_mtime_ns}")
        except OSError:
            parts.append(f"{entry}\0-")
    parts.extend(_source_stamp())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def socket_path(where: Path, key: str) -> Path:
    return where / f"{key}.sock"


def lock_path(where: Path, key: str) -> Path:
    """Held by the warm process for its whole life: one per key, and its pid inside."""
    return where / f"{key}.lock"


def log_path(where: Path, key: str) -> Path:
    """The warm process's own output (preloading errors): it has no terminal."""
    return where / f"{key}.log"


def failed_path(where: Path, key: str) -> Path:
    """Written when a warm process could not load: no client starts another for this key."""
    return where / f"{key}.failed"
