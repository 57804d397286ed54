"""``reprobook retrain``: the labelled production rows join the training data, and the pipeline runs.

Every monitored batch whose labels arrived (``reprobook monitor --labels``)
gives its labelled rows; they are written, in batch order, to
``data/production/labelled.parquet`` and ``dvc add``-ed, so the new training
data is versioned and pushed like the source's. ``data/production`` is a
dependency of the scoping and data stages, so ``reprobook run`` reruns from
there: a new split, a new model, registered as ``challenger`` and made
``champion`` only through the modeling stage's promotion gate (the scoping
threshold, and no worse than the current champion scored on the challenger's
own held-out rows). Every run of the loop is a pipeline run like any other,
reproducible from its run id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reprobook.errors import UsageError
from reprobook.monitoring import capture as cap
from reprobook.project.paths import PRODUCTION_DIR

if TYPE_CHECKING:
    import pandas as pd

    from reprobook.execution.pipeline import PipelineResult

PRODUCTION_FILE = f"{PRODUCTION_DIR}/labelled.parquet"


@dataclass(frozen=True)
class Retrained:
    rows: int
    batches: list[int]
    path: Path
    pipeline: PipelineResult
    champion_before: str | None
    champion_after: str | None
    challenger: str | None


def labelled_rows(root: Path, params, target: str, only: list[int] | None = None) -> tuple[pd.DataFrame, list[int]]:
    """The labelled rows of every monitored batch with labels (or of the batches ``only`` names), in batch order."""
    import pandas as pd

    from reprobook.monitoring.stage import history
    from reprobook.quality.io import read_table

    id_column = params.monitoring.id_column
    entries = history(root)
    unknown = sorted(set(only or []) - {int(e["index"]) for e in entries})
    if unknown:
        raise UsageError(f"--batch: no monitored batch {', '.join(map(str, unknown))}; monitored: "
                         f"{', '.join(str(e['index']) for e in entries) or 'none'}")
    parts, used = [], []
    for entry in entries:
        job = entry.get("job") or {}
        if only and int(entry["index"]) not in only:
            continue
        if not job.get("labels"):
            if only:
                raise UsageError(f"--batch {entry['index']}: monitored without labels; monitor it again with --labels")
            continue
        batch = cap.read_batch(root / job["path"], id_column)
        labels = read_table(root / job["labels"])
        key = id_column or cap.ID
        labels = labels.assign(**{key: labels[key].astype(str)}).drop_duplicates(subset=key, keep="last")
        frame = batch.frame.assign(**{cap.ID: batch.ids.to_numpy()})
        joined = frame.merge(labels[[key, target]].rename(columns={key: cap.ID}), on=cap.ID, how="inner")
        joined = joined[joined[target].notna()]
        drop = [c for c in (cap.ID,) if c in joined.columns]  # the batch's id column stays: role id, kept for joins
        parts.append(joined.drop(columns=drop))
        used.append(int(entry["index"]))
    if not parts:
        raise UsageError("no monitored batch has labels: monitor batches with `reprobook monitor BATCH --labels FILE` "
                         "first; their labelled rows are what retraining adds")
    return pd.concat(parts, ignore_index=True), used


def retrain(root: Path, batches: list[int] | None = None) -> Retrained:
    """Add the labelled production rows to the training data and run the pipeline."""
    import os

    from reprobook.execution import processes
    from reprobook.execution.pipeline import run_pipeline
    from reprobook.ml.scoping import load_targets
    from reprobook.project.params import project_params

    params = project_params(root)
    target = load_targets(root)["target"]
    rows, batches = labelled_rows(root, params, target, batches)
    path = root / PRODUCTION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(path, index=False)
    processes.run_checked(["dvc", "add", "--quiet", PRODUCTION_FILE], root, "dvc add")
    before = _alias_version(root, params.model.registered_name, "champion")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    result = run_pipeline(root)
    name = params.model.registered_name
    return Retrained(len(rows), batches, path, result, before, _alias_version(root, name, "champion"),
                     _alias_version(root, name, "challenger"))


def _alias_version(root: Path, name: str, alias: str) -> str | None:
    from reprobook.tracking import store

    return cap.registered_aliases(store.client(root), name).get(alias)
