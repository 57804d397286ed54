"""Where things live in a reprobook project.

A project is the directory holding ``params.yaml`` and ``dvc.yaml``. Stages run
by ``dvc exp run`` execute in copies of the project under ``.dvc/tmp/exps/``;
:func:`home_root` maps such a copy back to the real project so every run logs
to the one MLflow store.
"""

from __future__ import annotations

import os
from pathlib import Path

from reprobook.errors import UsageError

PARAMS_FILE = "params.yaml"
MARKERS = (PARAMS_FILE, "dvc.yaml")


def project_root(start: str | Path | None = None) -> Path:
    """Return the nearest directory at or above ``start`` that holds params.yaml.

    ``REPROBOOK_PROJECT`` overrides the search (used by tests and notebooks run
    from elsewhere).
    """
    env = os.environ.get("REPROBOOK_PROJECT")
    if env:
        return Path(env).resolve()
    here = Path(start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / PARAMS_FILE).is_file():
            return candidate
    raise UsageError(
        f"no {PARAMS_FILE} found in {here} or any parent directory; "
        "run reprobook from inside a reprobook project"
    )


def home_root(root: Path) -> Path:
    """Map a DVC experiment workspace (``<home>/.dvc/tmp/exps/...``) to ``<home>``."""
    parts = root.resolve().parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return root.resolve()


def reports_dir(root: Path, stage: str) -> Path:
    return root / "reports" / stage
