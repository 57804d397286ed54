"""The ``.gitignore`` entries DVC writes for the outputs it caches, written before DVC does.

DVC keeps a cached out (an ``outs``, ``metrics`` or ``plots`` path of a stage
in ``dvc.yaml``, unless it says ``cache: false``) out of git with one line in
the ``.gitignore`` of the out's folder: ``/`` and the out's name, gitignore's
special characters escaped, appended when the stage first runs. A ``cache:
false`` out gets none: git tracks it (the committed metrics). A project whose
first commit already has the lines stays clean after its first run: DVC
writes a line only for a path git does not ignore yet, so it finds them and
writes nothing. Kept free of heavy imports (no DVC): ``reprobook new`` and
``add-stage`` call it, and the pipeline's summary reads :func:`declared_outs`.
"""

from __future__ import annotations

import posixpath
import subprocess
from dataclasses import dataclass
from pathlib import Path

from reprobook.project.stages import read_dvc_yaml

GITIGNORE = ".gitignore"
OUT_FIELDS = ("outs", "metrics", "plots")
"""The stage fields whose paths DVC writes (and caches unless told not to)."""
SPECIAL = "\\[]!*#?"
"""What DVC escapes in an entry (scmrepo, through pathspec's ``GitWildMatchPattern.escape``)."""


@dataclass(frozen=True)
class Out:
    path: str
    """Relative to the project root, ``/``-separated, normalised."""
    cached: bool

    @property
    def gitignore(self) -> str:
        """The ``.gitignore`` DVC writes this out's entry into: the one in the out's folder."""
        folder = posixpath.dirname(self.path)
        return f"{folder}/{GITIGNORE}" if folder else GITIGNORE

    @property
    def entry(self) -> str:
        """The line DVC writes: the out's name from its folder, with a leading ``/`` and specials escaped."""
        return "".join(f"\\{c}" if c in SPECIAL else c for c in "/" + posixpath.basename(self.path))


def _normalised(path: str) -> str | None:
    """A path inside the project, or None for what DVC resolves itself (a URL, ``${...}``, outside the root)."""
    if "://" in path or "${" in path or posixpath.isabs(path):
        return None
    normal = posixpath.normpath(path.replace("\\", "/"))
    return None if normal in (".", "") or normal.startswith("../") or normal == ".." else normal


def outs_of(entry: dict) -> list[Out]:
    """The outs of one stage entry of ``dvc.yaml`` (plain paths or one-key mappings with options)."""
    found: list[Out] = []
    for field in OUT_FIELDS:
        for item in entry.get(field) or []:
            if isinstance(item, str):
                path, options = item, {}
            elif isinstance(item, dict) and len(item) == 1:
                path, options = next(iter(item.items()))
                options = options if isinstance(options, dict) else {}
            else:
                continue
            normal = _normalised(str(path))
            if normal is not None:
                found.append(Out(normal, cached=options.get("cache", True) is not False))
    return found


def declared_outs(root: Path) -> list[Out]:
    """Every out the stages of ``dvc.yaml`` declare, in declaration order.

    A ``foreach``/``matrix`` stage is left out: its paths are DVC's to expand
    (DVC still writes their entries when they first run).
    """
    stages = read_dvc_yaml(root).get("stages") or {}
    return [out for entry in stages.values()
            if isinstance(entry, dict) and not ({"foreach", "matrix"} & set(entry)) for out in outs_of(entry)]


def _ignored(root: Path, paths: list[str]) -> set[str] | None:
    """The paths git ignores already (as DVC checks, with ``git check-ignore``); None outside a git repository."""
    if not paths:
        return set()
    checked = subprocess.run(["git", "check-ignore", "--stdin", "-z"], cwd=root, input="\0".join(paths) + "\0",
                             capture_output=True, text=True)
    if checked.returncode not in (0, 1):  # 128: not a git repository, where DVC writes no .gitignore either
        return None
    return {path for path in checked.stdout.split("\0") if path}


def write_ignores(root: Path, outs: list[Out] | None = None) -> list[str]:
    """Append the entry DVC will write for every cached out (default: all of ``dvc.yaml``) that git does not
    ignore yet, as DVC appends it; return the ``.gitignore`` files changed, relative to ``root``."""
    cached = [out for out in (declared_outs(root) if outs is None else outs) if out.cached]
    ignored = _ignored(root, [out.path for out in cached])
    if ignored is None:
        return []
    changed: list[str] = []
    for out in cached:
        if out.path in ignored:
            continue
        file = root / out.gitignore
        file.parent.mkdir(parents=True, exist_ok=True)
        text = file.read_text(encoding="utf-8") if file.is_file() else ""
        if f"{out.entry}\n" in text.splitlines(keepends=True):
            continue
        prefix = "" if not text or text.endswith("\n") else "\n"
        with file.open("a", encoding="utf-8") as handle:
            handle.write(f"{prefix}{out.entry}\n")
        if out.gitignore not in changed:
            changed.append(out.gitignore)
    return changed
