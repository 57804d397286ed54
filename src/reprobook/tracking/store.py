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


def is_local(uri: str) -> bool:
    """A store in a file on this machine (SQLite, or MLflow's file store), not a server."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def artifact_root(root: Path) -> str | None:
    """Where a new experiment's artifacts go: the home project's ``mlartifacts`` for a local store.

    A tracking server decides for itself (None): with ``--serve-artifacts`` it
    proxies uploads to its own destination, so clients need no access to it.
    """
    if not is_local(tracking_uri(root)):
        return None
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
    # Against a server MLflow prints "View run ... at: URL" to stdout at the end of every run, where it
    # corrupts a command's JSON output (and costs a request per run): `reprobook runs` lists them.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
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
    if uri.startswith("sqlite:"):
        return guarded_sqlite_client(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


SQLITE_LOCK_WAIT_S = 120
"""How long a call waits out a SQLite store locked by other writers before giving up (:func:`locked_message`)."""
_OPENED: set[str] = set()


def guarded_sqlite_client(uri: str):
    """A client on a SQLite store made safe for several processes writing at once (queued experiments, CI jobs).

    Two failures MLflow's users report, both turned here into waits:

    - *Schema creation.* MLflow creates the tables of a new file when a client
      opens the store, after checking that they are missing: two processes
      opening a new store together both create them, and all but one fail
      halfway through the migrations (measured: 5 of 6 processes started
      together). The first client of a process is made under a file lock
      (:func:`opening_lock`).
    - *A locked database.* SQLite takes one writer at a time; MLflow waits up
      to 20 s for the lock, but a transaction that began by reading and then
      writes is refused at once while another connection holds the write
      lock (waiting could deadlock). Every call of the returned client is
      retried with back-off on "database is locked": the refused transaction
      was rolled back, so a retry writes once. (``BEGIN IMMEDIATE``, which
      would make SQLite itself wait, deadlocks MLflow: its store opens a
      second session inside a first.)

    A wait longer than :data:`SQLITE_LOCK_WAIT_S` is an error that names the
    store and suggests a server (:func:`locked_message`, printed by the
    command line), never a silent gap in the record.
    """
    from filelock import FileLock
    from mlflow import MlflowClient

    if uri in _OPENED:
        return RetryingClient(MlflowClient(tracking_uri=uri, registry_uri=uri), uri)
    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(opening_lock(database), timeout=SQLITE_LOCK_WAIT_S):
        mlflow_client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # opens (and creates) the tracking store
        mlflow_client._get_registry_client().store  # noqa: B018 - and the registry's
    _OPENED.add(uri)
    return RetryingClient(mlflow_client, uri)


def opening_lock(database: Path) -> str:
    """The file lock for opening ``database``: in the temporary folder, not beside it in the work tree,
    where an untracked file would mark every run of a project without a matching .gitignore entry dirty.
    (A SQLite store is only safe on one machine's disk, so a machine-wide folder serves every writer.)"""
    import tempfile

    key = hashlib.sha256(str(database.resolve()).encode()).hexdigest()[:16]
    return str(Path(tempfile.gettempdir()) / f"reprobook-mlflow-{key}.lock")


class RetryingClient:
    """An ``MlflowClient`` whose calls wait out a SQLite store another process is writing to."""

    def __init__(self, inner, uri: str) -> None:
        self._inner = inner
        self._uri = uri

    def __getattr__(self, name: str):
        attribute = getattr(self._inner, name)
        if name.startswith("_") or not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            return retry_while_locked(lambda: attribute(*args, **kwargs), self._uri)

        call.__name__ = name
        call.__doc__ = attribute.__doc__
        return call


def retry_while_locked(work, uri: str, wait_s: float = SQLITE_LOCK_WAIT_S):
    """``work()``, retried with exponential back-off (0.05 s to 2 s, jittered) while SQLite reports a lock."""
    import random
    import time

    deadline = time.monotonic() + wait_s
    delay = 0.05
    while True:
        try:
            return work()
        except Exception as error:
            if not is_locked(error) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, 2.0)


def is_locked(error: BaseException) -> bool:
    text = f"{error} {error.__cause__ or ''}"
    return "database is locked" in text or "database table is locked" in text


def locked_message(error: BaseException, uri: str) -> str | None:
    """One line for a SQLite store that stayed locked, or None when ``error`` is something else."""
    if not uri.startswith("sqlite:") or not is_locked(error):
        return None
    return (f"the MLflow store {uri} stayed locked by other writers for over {SQLITE_LOCK_WAIT_S} s: SQLite takes "
            "one writer at a time; for many concurrent runs use a tracking server (reprobook server; docs/team.md)")


def experiment_id(mlflow_client, name: str, root: Path, tags: dict[str, str] | None = None) -> str:
    """Get or create the experiment, with artifacts under the home project.

    ``tags`` (:func:`reprobook.tracking.presentation.experiment_tags`) are set
    on a new experiment, and on an existing one where they are missing or
    were written by reprobook: a description a user wrote stays.
    """
    from reprobook.tracking.presentation import missing_experiment_tags

    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        for key, value in missing_experiment_tags(found.tags or {}, tags or {}).items():
            mlflow_client.set_experiment_tag(found.experiment_id, key, value)
        return found.experiment_id
    try:
        return mlflow_client.create_experiment(name, artifact_location=artifact_root(root), tags=tags or None)
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
