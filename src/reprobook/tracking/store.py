"""MLflow tracking for stage runs: one run per stage execution, one store per project.

The store is the project's ``mlflow.db`` unless ``MLFLOW_TRACKING_URI`` says
otherwise. Paths are made absolute against the *home* project, so stages run
by ``dvc exp run`` in copies under ``.dvc/tmp/exps`` log to the same store.
Stage runs of one pipeline execution are children of one pipeline run.

The run record (tags, params, ``record/`` artifacts) is the contract that
``reprobook reproduce`` and ``reprobook compare`` read; see docs/run-record.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from reprobook.project.paths import home_root

PARENT_ENV = "REPROBOOK_PARENT_RUN_ID"
EXTRA_TAGS_ENV = "REPROBOOK_EXTRA_TAGS"

TAG_STAGE = "reprobook.stage"
TAG_PIPELINE = "reprobook.pipeline_run_id"
TAG_COMMIT = "reprobook.git_commit"
TAG_DIRTY = "reprobook.git_dirty"
TAG_PREDICTION_DIGEST = "reprobook.prediction_digest"
TAG_ERROR = "reprobook.error"
TAG_PROMOTION = "reprobook.promotion"
TAG_DVC_EXP = "reprobook.dvc_exp_name"
TAG_DVC_BASELINE = "reprobook.dvc_exp_baseline"
TAG_PARENT = "mlflow.parentRunId"
TAG_INTERACTIVE = "reprobook.interactive"

RECORD_DIR = "record"


def tracking_uri(root: Path) -> str:
    """Absolute tracking URI: ``MLFLOW_TRACKING_URI`` if set, else the project's mlflow.db."""
    home = home_root(root)
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{home / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        relative = uri.removeprefix("sqlite:///")
        return f"sqlite:///{(home / relative).resolve()}"
    return uri


def artifact_root(root: Path) -> str:
    return (home_root(root) / "mlartifacts").as_uri()


def client(root: Path):
    """An MlflowClient on the project's store (also sets the fluent API's URIs).

    Models are registered in the tracking store itself, named explicitly: MLflow
    otherwise falls back to a process-wide registry URI (which ``mlflow.set_registry_uri``
    also writes to the environment) that earlier code in the same process, a notebook
    cell or a library, may have pointed at somebody else's store.
    """
    import mlflow
    from mlflow import MlflowClient

    # MLflow's INFO chatter (database migrations, "registered model") is not news to a user.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # Nor is a progress bar for copying a model of a few kilobytes, printed into every log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking_uri(root)
    exported = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # MLflow also exports the URI to the environment, for child processes; that would make this
    # project's store the one every later project in the process, and every child it starts, resolves
    # (tracking_uri reads the variable first): put the environment back as the user had it.
    for name, value in exported.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(mlflow_client, name: str, root: Path) -> str:
    """Get or create the experiment, with artifacts under the home project."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return mlflow_client.create_experiment(name, artifact_location=artifact_root(root))
    except Exception:  # created concurrently by a parallel queued experiment
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """A file's digest, read in blocks; md5 by default: the hash DVC 3 records for a file in dvc.lock."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_digests(root: Path, paths: list[Path]) -> dict[str, dict[str, Any]]:
    return {
        str(path.relative_to(root) if path.is_relative_to(root) else path): {
            "md5": file_digest(path),
            "size": path.stat().st_size,
        }
        for path in paths
        if path.is_file()
    }


def metrics_for_mlflow(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested metrics dict, dotted keys; booleans as 0/1."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(metrics_for_mlflow(value, f"{name}."))
        elif isinstance(value, bool):
            flat[name] = float(value)
        elif isinstance(value, (int, float)) and value == value:  # skip NaN
            flat[name] = float(value)
    return flat


def context_tags(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Tags from the calling context: the pipeline run and DVC experiment, extra tags."""
    environ = dict(os.environ if environ is None else environ)
    tags: dict[str, str] = {}
    # `mlflow run` (MLproject) exports MLFLOW_RUN_ID: its run is then the parent.
    parent = environ.get(PARENT_ENV) or environ.get("MLFLOW_RUN_ID")
    if parent:
        tags[TAG_PARENT] = tags[TAG_PIPELINE] = parent
    if environ.get("DVC_EXP_NAME"):
        tags[TAG_DVC_EXP] = environ["DVC_EXP_NAME"]
    if environ.get("DVC_EXP_BASELINE_REV"):
        tags[TAG_DVC_BASELINE] = environ["DVC_EXP_BASELINE_REV"]
    if environ.get(EXTRA_TAGS_ENV):
        tags.update({str(k): str(v) for k, v in json.loads(environ[EXTRA_TAGS_ENV]).items()})
    return tags
