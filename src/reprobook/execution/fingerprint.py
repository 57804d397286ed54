"""Code fingerprints: what a stage executes, digested, so DVC reruns it when (and only when) that changes.

A stage executes the code cells of its notebook and the project's own modules
those cells import, directly or through other project modules. Markdown,
outputs, execution counts, cell ids and metadata are not code. The digest of
all of it, with the installed reprobook version, is written to
``.reprobook/code/<stage>.json`` by the ``code_fingerprints`` stage
(``always_changed`` in ``dvc.yaml``); each stage depends on its own file, so
plain ``dvc repro`` reruns exactly the stages whose code changed. Nobody
lists code dependencies by hand.

Imports are found statically (``ast``), inside functions and ``if
TYPE_CHECKING:`` blocks too, so nothing runs (a lazily imported module is
found when a ``TYPE_CHECKING`` import names it, as type checkers need anyway):
a module counts as the project's when it resolves to a file under the
notebook's folder, the project root or ``src/``. Installed packages are
represented by reprobook's version only (pin the rest in the environment).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from reprobook import __version__
from reprobook.errors import ReprobookError
from reprobook.project.stages import FINGERPRINT_DIR, Stage, load_stages

IGNORED_PARTS = {".venv", "venv", ".git", ".dvc", "site-packages", "__pycache__", ".ipynb_checkpoints"}


def _sha256(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def code_cells(notebook: Path) -> list[str]:
    """The source of every code cell, in order (what the kernel executes)."""
    try:
        document = json.loads(notebook.read_text())
    except FileNotFoundError:
        raise ReprobookError(f"{notebook}: stage notebook not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReprobookError(f"{notebook}: not a readable notebook ({exc})") from None
    cells = document.get("cells") if isinstance(document, dict) else None
    if not isinstance(cells, list):
        raise ReprobookError(f"{notebook}: not a notebook (no 'cells' list)")
    sources = []
    for cell in cells:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            source = cell.get("source", "")
            sources.append("".join(source) if isinstance(source, list) else str(source))
    return sources


def _python(source: str) -> str:
    """IPython source as Python: magics and shell escapes become blank lines."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


STATEMENT_BLOCKS = ("body", "orelse", "finalbody", "handlers", "cases")
"""The fields of a statement that hold statements: an import is a statement, so no expression is visited."""


def _statements(tree: ast.AST, type_checking: bool):
    """Every statement of ``tree`` at any depth (function and class bodies, branches, handlers),
    optionally without the bodies of ``if TYPE_CHECKING:`` blocks."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if not type_checking and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        for field in STATEMENT_BLOCKS:
            todo.extend(getattr(node, field, ()))


@functools.lru_cache(maxsize=4096)
def imported_names(source: str, package: str = "", *, type_checking: bool = True) -> frozenset[str]:
    """Absolute module names imported by ``source``; ``package`` resolves relative imports.

    ``from a import b`` yields both ``a`` and ``a.b`` (``b`` may be a submodule).
    ``type_checking``: include the imports of ``if TYPE_CHECKING:`` blocks,
    which name what a package exports lazily. Cached: the stages of a project
    import the same modules.
    """
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return frozenset()
    names: set[str] = set()
    for node in _statements(tree, type_checking):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join([*parts, *([node.module] if node.module else [])])
            if base:
                names.add(base)
            names.update(f"{base}.{alias.name}" if base else alias.name for alias in node.names if alias.name != "*")
    return frozenset(names)


@functools.lru_cache(maxsize=8192)
def _resolve(name: str, search: tuple[Path, ...]) -> list[tuple[str, Path]]:
    """The project files importing ``name`` executes: each package's ``__init__.py``, then the module.

    Cached for one ``write_fingerprints`` (every stage imports much the same): the caller clears it.
    """
    parts = name.split(".")
    for folder in search:
        found: list[tuple[str, Path]] = []
        for depth in range(1, len(parts) + 1):
            base, module = folder.joinpath(*parts[:depth]), ".".join(parts[:depth])
            if (base / "__init__.py").is_file():
                found.append((module, base / "__init__.py"))
            elif base.with_suffix(".py").is_file():
                found.append((module, base.with_suffix(".py")))
                break
            else:
                break
        if found and not IGNORED_PARTS & set(found[-1][1].relative_to(folder).parts):
            return found
    return []


def project_modules(root: Path, notebook: Path, sources: list[str]) -> dict[str, str]:
    """Project files the notebook's code imports, transitively: relative path -> sha256.

    A package's ``__init__`` imported only on the way to one of its modules
    runs without its ``TYPE_CHECKING`` block; imported itself, its lazy
    exports (named in that block) count as imported too.
    """
    search = (notebook.parent, root, root / "src")
    todo = [name for source in sources for name in imported_names(source)]
    digests: dict[Path, str] = {}
    followed: dict[Path, bool] = {}
    while todo:
        name = todo.pop()
        found = _resolve(name, search)
        for index, (module, path) in enumerate(found):
            target = index == len(found) - 1
            if followed.get(path) is True or (path in followed and not target):
                continue
            text = path.read_bytes()
            digests[path] = _sha256(text)
            followed[path] = target
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            todo.extend(imported_names(text.decode(errors="replace"), package, type_checking=target))
    return {
        str(path.relative_to(root)) if path.is_relative_to(root) else str(path): digest
        for path, digest in sorted(digests.items())
    }


def fingerprint(root: Path, stage: Stage) -> dict[str, Any]:
    """Everything a stage executes, as digests (a pure function of the files)."""
    notebook = root / stage.notebook
    sources = [source.rstrip() for source in code_cells(notebook)]
    modules = project_modules(root, notebook, sources)
    return {
        "stage": stage.name,
        "notebook": stage.notebook,
        "code_cells": len(sources),
        "code_cells_sha256": _sha256("\n\0\n".join(sources)),
        "modules": modules,
        "reprobook": __version__,
    }


def write_fingerprints(root: Path) -> list[Path]:
    """Write every stage's fingerprint; a file is rewritten only when its content changed."""
    folder = root / FINGERPRINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    _resolve.cache_clear()  # files may have come or gone since an earlier call in this process
    written = []
    stages = load_stages(root)
    for stage in stages.values():
        path = root / stage.fingerprint
        text = json.dumps(fingerprint(root, stage), indent=2, sort_keys=True) + "\n"
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    for stale in folder.glob("*.json"):
        if stale.stem not in stages:
            stale.unlink()
    return written
