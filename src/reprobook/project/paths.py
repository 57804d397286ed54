"""Where things live in a reprobook project: the one module of paths.

Kept free of heavy imports: the outer `reprobook stage` process needs these
paths without loading pandas or scikit-learn.

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
DVC_FILE = "dvc.yaml"
DEFAULT_REMOTE_URL = "~/.cache/reprobook/dvc-storage"
"""The default DVC remote: one folder every clone on this machine reaches (DVC expands ``~``)."""

# Files the built-in stages read and write, relative to the project root.
TARGETS_FILE = "reports/scoping/outputs/targets.json"
TRAIN_FILE = "data/processed/train.parquet"
TEST_FILE = "data/processed/test.parquet"
MODEL_FILE = "models/model.skops"
"""The model, as a skops file (never a pickle: see :mod:`reprobook.ml.persistence`)."""
LEAKAGE_FILE = "reports/data/outputs/leakage.json"
PREDICTIONS_FILE = "reports/modeling/outputs/predictions.csv"
PRODUCTION_DIR = "data/production"
"""Labelled production rows added to the training data (``reprobook retrain``), one DVC-tracked file per retraining."""
REFERENCE_DIR = "reports/modeling/outputs/reference"
"""The training reference the modeling stage writes (and logs with the model): see monitoring.reference."""
MONITORING_DIR = "monitoring"
"""Life after deployment: captures of scored batches, each batch's monitoring summary, the deployment log."""
CAPTURES_DIR = f"{MONITORING_DIR}/captures"
HISTORY_DIR = f"{MONITORING_DIR}/history"
DEPLOYMENT_LOG = f"{MONITORING_DIR}/deployments.jsonl"
SERVING_CACHE_DIR = f"{MONITORING_DIR}/.models"
"""Registered model versions downloaded for scoring (a cache: safe to delete, not versioned)."""


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


def cache_dir() -> Path:
    """The user's reprobook cache (``$XDG_CACHE_HOME/reprobook``, else ``~/.cache/reprobook``): machine-local,
    never part of a project, safe to delete."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "reprobook"


def running_stages_dir() -> Path:
    """Where running stages register (one per pid), machine-wide: stages of any project share the cores."""
    import tempfile

    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"reprobook-{uid}" / "running-stages"


def reports_dir(root: Path, stage: str) -> Path:
    return root / "reports" / stage


def source_file(source: str, root: Path) -> Path | None:
    """The file a csv:/parquet: source reads (a DVC dependency), else None."""
    kind, _, location = source.partition(":")
    if kind in ("csv", "parquet"):
        path = Path(location)
        return path if path.is_absolute() else root / path
    return None


def report_files(root: Path, stage: str) -> dict[str, Path]:
    """Where a stage's executed notebook, HTML, metrics and timings are written."""
    folder = reports_dir(root, stage)
    return {
        "notebook": folder / "notebook.ipynb",
        "html": folder / "notebook.html",
        "metrics": folder / "metrics.json",
        "timings": folder / "timings.json",
        "digest": folder / "digest.json",
        "outputs": folder / "outputs",
        "plots": folder / "plots",
    }
