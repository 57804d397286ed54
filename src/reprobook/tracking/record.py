"""A stage run's record, read back from MLflow: what reproduce and compare work from.

``runner.record_run`` writes the record (tags, params, metrics and the
``record/`` artifacts); this module is its reader. Everything a reproduction
needs is here, so a run id and access to the store are enough: no file of the
original working tree is consulted. See docs/run-record.md.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reprobook.errors import ReprobookError
from reprobook.tracking import store

TIMING_PREFIX = "timing."
DECISION_PREFIX = "promotion."
"""Scores of the promotion gate depend on the registry at that moment, not on the run: not quality metrics."""
TAG_REPRODUCTION_OF = "reprobook.reproduction_of"
TAG_VERDICT = "reprobook.verdict"
TAG_DATA_PUSHED = "reprobook.data_pushed"
TAG_DATA_REMOTE = "reprobook.data_remote"
TAG_DATA_PUSH_ERROR = "reprobook.data_push_error"
TAG_STAGES_RUN = "reprobook.stages_run"

OUTPUT_PATHS = ("params.yaml", "dvc.lock", "reports/", ".gitignore")
"""Paths a pipeline run rewrites or that the record restores: changes to them are not code changes.

``params.yaml`` is restored from ``record/params.yaml``; ``dvc.lock``,
``reports/`` and DVC's ``.gitignore`` entries are outputs (``gitinfo`` leaves
them out of the dirty flag too; older records may still list them).
"""

NOT_STAGE_RUNS = ("pipeline", "reproduction")


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    experiment_id: str
    status: str
    start_time: int
    end_time: int | None
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    """Quality metrics only: timings vary from run to run and are kept apart."""
    timings: dict[str, float]
    files: dict[str, str] = field(default_factory=dict)
    """The ``record/`` artifacts by file name (params.yaml, environment.json, ...)."""

    @property
    def stage(self) -> str:
        return self.tags.get(store.TAG_STAGE, "")

    @property
    def recorded_commit(self) -> str | None:
        commit = self.tags.get(store.TAG_COMMIT) or self.json("code.json").get("commit")
        return None if commit in (None, "", "none") else commit

    @property
    def commit(self) -> str | None:
        """The commit to reproduce from: a DVC experiment's baseline, else the recorded HEAD.

        A queued or temporary experiment runs on its baseline commit with the
        experiment's params applied; the params come back from the record.
        """
        return self.tags.get(store.TAG_DVC_BASELINE) or self.recorded_commit

    @property
    def dirty(self) -> bool:
        return self.tags.get(store.TAG_DIRTY) == "true"

    @property
    def prediction_digest(self) -> str | None:
        return self.tags.get(store.TAG_PREDICTION_DIGEST)

    @property
    def error(self) -> str | None:
        return self.tags.get(store.TAG_ERROR)

    @property
    def seconds(self) -> float | None:
        return None if self.end_time is None else (self.end_time - self.start_time) / 1000

    @property
    def environment(self) -> dict[str, Any]:
        return self.json("environment.json")

    @property
    def inputs(self) -> dict[str, dict[str, Any]]:
        return self.json("inputs.json")

    @property
    def git_diff(self) -> str:
        return self.files.get("git.diff", "")

    def json(self, name: str) -> dict[str, Any]:
        text = self.files.get(name)
        return json.loads(text) if text else {}

    def label(self) -> str:
        return f"{self.run_id[:8]} ({self.stage or '?'})"


def status_paths(status: str) -> list[str]:
    """Paths named by ``git status --porcelain`` output (the new name of a rename)."""
    return [line[3:].split(" -> ")[-1].strip('"') for line in status.splitlines() if len(line) > 3]


def is_output_path(path: str) -> bool:
    return path.endswith("/.gitignore") or any(
        path == prefix or (prefix.endswith("/") and path.startswith(prefix)) for prefix in OUTPUT_PATHS
    )


def code_changes(record: RunRecord) -> list[str]:
    """Uncommitted changes at run time that were code (not params, lock or reports)."""
    return [path for path in status_paths(record.json("code.json").get("status", "")) if not is_output_path(path)]


def untracked_files(record: RunRecord) -> list[str]:
    """Files git did not track at run time: not in the diff, so not restorable."""
    status = record.json("code.json").get("status", "")
    return [line[3:].strip('"') for line in status.splitlines() if line.startswith("??") and not is_output_path(line[3:])]


def load_record(client, run_id: str) -> RunRecord:
    """Read a run's record; a missing run is a :class:`ReprobookError` naming the store."""
    from mlflow.exceptions import MlflowException

    from reprobook.tracking.presentation import PRIMARY_PREFIX

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ReprobookError(
            f"run {run_id} not found in the MLflow store {client.tracking_uri} "
            "(set MLFLOW_TRACKING_URI to the store that holds it)"
        ) from None
    metrics = dict(run.data.metrics)
    return RunRecord(
        run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
        status=run.info.status,
        start_time=run.info.start_time,
        end_time=run.info.end_time,
        tags=dict(run.data.tags),
        params=dict(run.data.params),
        # The `_primary.` copies sort first in the MLflow UI; the record keeps each metric once.
        metrics={k: v for k, v in metrics.items() if not k.startswith((TIMING_PREFIX, DECISION_PREFIX, PRIMARY_PREFIX))},
        timings={k: v for k, v in metrics.items() if k.startswith(TIMING_PREFIX)},
        files=_record_files(client, run.info.run_id),
    )


def _record_files(client, run_id: str) -> dict[str, str]:
    if not client.list_artifacts(run_id, store.RECORD_DIR):
        return {}
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a few small files: no bars
    with tempfile.TemporaryDirectory(prefix="reprobook-record-") as folder:
        local = Path(client.download_artifacts(run_id, store.RECORD_DIR, folder))
        return {path.name: path.read_text() for path in sorted(local.iterdir()) if path.is_file()}


def stage_children(client, run_id: str) -> list[RunRecord]:
    """Stage runs grouped under a pipeline (or reproduction) run, in execution order."""
    run = client.get_run(run_id)
    children = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.`{store.TAG_PIPELINE}` = '{run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    return [load_record(client, child.info.run_id) for child in children
            if child.data.tags.get(store.TAG_STAGE) not in NOT_STAGE_RUNS]


def resolve_stage_run(client, run_id: str) -> RunRecord:
    """The stage run to work on: the run itself, or a pipeline run's last stage run."""
    record = load_record(client, run_id)
    if record.stage != "pipeline":
        return record
    children = stage_children(client, run_id)
    if not children:
        raise ReprobookError(f"pipeline run {run_id} ran no stage (everything was up to date); nothing to reproduce")
    return children[-1]
