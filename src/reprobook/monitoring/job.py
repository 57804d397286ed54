"""What the monitoring notebook calls: the batch's job, scoring with capture, the checks, the saved report.

The outer command (:mod:`reprobook.monitoring.stage`) resolves the model alias
and fetches the version before the kernel starts, and injects the result as
the notebook's ``batch`` parameter; here the kernel loads that version's model
and reference from disk, so the notebook never needs the tracking store. In
Jupyter (``batch`` left as None) the job is the last monitored batch's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reprobook.errors import ReprobookError
from reprobook.monitoring import capture as cap
from reprobook.monitoring.monitor import BatchReport, monitor_batch
from reprobook.monitoring.reference import Reference, load_reference
from reprobook.project.paths import CAPTURES_DIR, HISTORY_DIR, TEST_FILE

REPORT_FILE = "report.json"


@dataclass(frozen=True)
class BatchJob:
    index: int
    batch: cap.Batch
    serving: cap.ServingModel
    reference: Reference
    labels: Path | None
    capture: Path
    extra_columns: list[str]


def job_parameter(index: int, batch: Path, labels: Path | None, fetched: cap.FetchedVersion, capture: Path,
                  root: Path) -> dict[str, Any]:
    """The notebook's ``batch`` parameter: plain values, paths relative to the project where they can be."""
    return {
        "index": index,
        "path": _relative(batch, root),
        "labels": None if labels is None else _relative(labels, root),
        "capture": _relative(capture, root),
        "model": {"name": fetched.name, "version": fetched.version, "alias": fetched.alias,
                  "run_id": fetched.run_id, "directory": _relative(fetched.directory, root)},
    }


def _relative(path: Path, root: Path) -> str:
    path = path.resolve()
    return path.relative_to(root.resolve()).as_posix() if path.is_relative_to(root.resolve()) else str(path)


def interactive_job_parameter(root: Path, params) -> dict[str, Any]:
    """The ``batch`` parameter of a run in Jupyter: the newest monitored batch again, or, before any, the
    held-out test split as a stand-in batch scored by the serving model (said so)."""
    entries = sorted((root / HISTORY_DIR).glob("batch-*.json"))
    if entries:
        return json.loads(entries[-1].read_text())["job"]
    test = root / TEST_FILE
    if not test.is_file():
        raise ReprobookError("no batch monitored yet and no test split: run the pipeline, then "
                             "`reprobook monitor BATCH`, or set the notebook's `batch` parameter")
    print(f"no batch monitored yet: monitoring the held-out test split {TEST_FILE} as a stand-in batch "
          "(`reprobook monitor BATCH` monitors a production batch)")
    fetched = cap.fetch_version(root, cap.parse_model_ref(None, params))
    return job_parameter(0, test, None, fetched, root / CAPTURES_DIR / "test-split.parquet", root)


def load_job(root: Path, parameter: dict[str, Any] | None, params) -> BatchJob:
    """The batch, the serving version's model and its training reference, from the ``batch`` parameter."""
    parameter = parameter or interactive_job_parameter(root, params)
    model = parameter["model"]
    fetched = cap.FetchedVersion(model["name"], str(model["version"]), model.get("alias"), model["run_id"],
                                 root / model["directory"])
    serving = cap.load_fetched(fetched, params.model.trusted_types)
    batch = cap.read_batch(root / parameter["path"], params.monitoring.id_column)
    extra = cap.check_columns(batch, serving)
    labels = root / parameter["labels"] if parameter.get("labels") else None
    return BatchJob(int(parameter["index"]), batch, serving, load_reference(serving.reference_dir), labels,
                    root / parameter["capture"], [c for c in extra if c != params.monitoring.id_column])


def score_and_capture(job: BatchJob) -> cap.Scored:
    """Score the batch with the serving model and keep the capture."""
    scored = cap.score(job.serving, job.batch)
    cap.write_capture(scored, job.capture)
    return scored


def check(job: BatchJob, scored: cap.Scored, params) -> BatchReport:
    """Every monitoring check of the batch (labels joined by id when the job has them)."""
    labelled = None
    if job.labels is not None:
        labelled = cap.join_labels(scored.predictions, job.labels, job.reference.profile["target"],
                                   params.monitoring.id_column)
    return monitor_batch(job.index, job.batch, scored, job.serving, job.reference, params.monitoring,
                         params.error_analysis, labelled=labelled, extra_columns=job.extra_columns)


def save(report: BatchReport, out: Path, job_parameter_: dict[str, Any] | None) -> Path:
    """``metrics.json`` (what MLflow charts by batch) and ``outputs/report.json`` (the whole report and its job)."""
    from reprobook.project.context import write_json

    write_json(out / "metrics.json", report.metrics())
    return write_json(out / "outputs" / REPORT_FILE, {**report.to_dict(), "job": job_parameter_})
