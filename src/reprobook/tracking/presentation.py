"""What the MLflow UI shows of reprobook's runs: experiment kind, run names, descriptions, dataset inputs.

The MLflow UI is where experiments are compared, so the record uses MLflow's
own features rather than anything in front of it:

- the experiment carries ``mlflow.experimentKind`` (MLflow 3's UI opens a
  model-training experiment on its runs table, not on the GenAI overview)
  and a description (``mlflow.note.content``) saying what the project is;
- runs are named after what differs: a pipeline run after its overrides
  (``max_depth=6``), its DVC experiment, or its commit; a stage run after its
  pipeline (``modeling · max_depth=6``); a reproduction after what it
  reproduces; a monitored batch after its index and model version;
- each run's description is a short markdown note: the verdict, the
  artifacts to open, the command that reproduces it;
- the data a stage read and wrote is logged as MLflow dataset inputs whose
  digest is the DVC md5 the run record keeps, so two runs on the same data
  show the same digest in the Dataset column and the compare view.

Pure functions, except :func:`dataset_inputs` which reads file headers;
:mod:`reprobook.tracking.writer` and :mod:`reprobook.tracking.store` write.
Every text passes :func:`reprobook.tracking.secrets.redact_text`, and none
holds a machine path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
"""MLflow 3's experiment kind tag (``mlflow/server/js``: ``ExperimentKind``)."""
TRAINING_KIND = "custom_model_development"
TAG_NOTE = "mlflow.note.content"
"""The description MLflow shows for an experiment or a run."""
NOTE_MARK = "<!-- reprobook -->"
"""Marks a description reprobook wrote, so one a user wrote is never overwritten."""
SEPARATOR = " · "
PRIMARY_PREFIX = "_primary."
"""Sorts before every other metric name in the MLflow compare view (``_`` precedes letters)."""
DATA_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".feather", ".arrow")


def experiment_tags(name: str, task: str | None, target: str | None, model: str) -> dict[str, str]:
    """The tags of a reprobook experiment: its kind, and a description a newcomer can act on."""
    problem = f"{task} of `{target}`" if task and target else f"predicting `{target}`" if target else "a model"
    note = (
        f"{NOTE_MARK}\n**{name}**: a reprobook project, {problem}; registered model `{model}`.\n\n"
        "Each pipeline run groups its stage runs (scoping, data, modeling, ...), named after what differs: "
        "its overrides, its DVC experiment or its commit. Monitoring runs name their batch and model version.\n\n"
        "Reproduce any run from a clone of the project's repository: `reprobook reproduce <run id>`."
    )
    return {TAG_EXPERIMENT_KIND: TRAINING_KIND, TAG_NOTE: _redacted(note)}


def ui_path(experiment_id: str) -> str:
    """The MLflow UI's address of an experiment's training runs.

    MLflow 3.17's UI keeps a GenAI / Model training switch per browser, GenAI
    on a first visit, and in GenAI mode opens every experiment on its GenAI
    overview; ``workflowType=machine_learning`` opens the runs table whatever
    the switch holds (``make check-ui`` checks it in Chromium).
    """
    return f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def missing_experiment_tags(current: Mapping[str, str], wanted: Mapping[str, str]) -> dict[str, str]:
    """The tags to set on an existing experiment: ours where absent or written by us, never a user's note."""
    changed = {}
    for key, value in wanted.items():
        have = current.get(key)
        if have == value:
            continue
        if key == TAG_NOTE and have is not None and not have.startswith(NOTE_MARK):
            continue  # a description the user wrote
        if key == TAG_EXPERIMENT_KIND and have is not None:
            continue  # a kind the user chose
        changed[key] = value
    return changed


def short_overrides(overrides: Iterable[str]) -> str:
    """``-S model.hyperparameters.max_depth=6`` as ``max_depth=6``; the full key where the last part is ambiguous."""
    pairs = [override.partition("=") for override in overrides]
    lasts = [key.rsplit(".", 1)[-1] for key, _, _ in pairs]
    names = [last if lasts.count(last) == 1 else key for (key, _, _), last in zip(pairs, lasts)]
    return ", ".join(f"{name}={value}" for name, (_, _, value) in zip(names, pairs))


def pipeline_name(*, overrides: str = "", experiment: str = "", reproduction_of: str = "", commit: str | None = None,
                  dirty: bool = False) -> str:
    """A pipeline run's name: what makes it differ from its neighbours in the runs table."""
    if reproduction_of:
        return f"reproduction of {reproduction_of[:8]}"
    if overrides:
        return _redacted(overrides)[:250]  # an override's value may be a secret; MLflow caps run names
    if experiment:
        return experiment
    if commit:
        return f"commit {commit[:7]}" + (" + uncommitted changes" if dirty else "")
    return "pipeline (no commit)"


def stage_name(stage: str, parent_name: str | None, reproduction_of: str = "") -> str:
    if parent_name:
        return f"{stage}{SEPARATOR}{parent_name}"
    if reproduction_of:
        return f"{stage}{SEPARATOR}reproduction of {reproduction_of[:8]}"
    return stage


def batch_name(index: int, model_label: str) -> str:
    return f"monitoring{SEPARATOR}batch {index}{SEPARATOR}{model_label}"


def primary_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The primary metric on the test rows and its cross-validation mean, under names that sort first."""
    comparison = metrics.get("comparison") or {}
    name, value = comparison.get("primary_metric"), comparison.get("value")
    if not isinstance(name, str) or not isinstance(value, (int, float)):
        return {}
    found = {f"{PRIMARY_PREFIX}test_{name}": float(value)}
    cv_mean = (metrics.get("cv") or {}).get(f"{name}_mean")
    if isinstance(cv_mean, (int, float)):
        found[f"{PRIMARY_PREFIX}cv_{name}_mean"] = float(cv_mean)
    return found


def stage_note(stage: str, run_id: str, metrics: Mapping[str, Any], *, error: str | None = None,
               promotion: Mapping[str, str] | None = None, has_report: bool = True) -> str:
    """A stage run's description: its verdict, what it registered, where to look, how to reproduce it."""
    lines = [NOTE_MARK]
    if error:
        lines.append(f"**{stage} FAILED**: {error.splitlines()[0][:300] if error else ''}")
    else:
        lines.append(f"**{stage}**: " + _verdict(metrics))
    if promotion:
        lines.append(f"\nRegistered as `{promotion['model']}` version {promotion['version']}: "
                     f"**{promotion['decision']}**; {promotion['reason']}")
    if has_report:
        lines.append("\nOpen the executed notebook: artifact `notebook/notebook.html` (outputs under `outputs/`, "
                     "plots under `plots/`).")
    lines.append(f"\nReproduce: `reprobook reproduce {run_id}`")
    return _redacted("\n".join(lines))


def batch_note(run_id: str, text: str) -> str:
    """A monitored batch's description: the verdict and its findings (``monitor.report_text``)."""
    head, *rest = text.splitlines() or [""]
    body = "\n".join(f"- {line.strip()}" for line in rest if line.strip())
    return _redacted(f"{NOTE_MARK}\n**{head}**\n\n{body}\n\nOpen the batch's report: artifact `notebook/notebook.html`; "
                     f"every batch so far: artifact `summary/summary.html`.\n\nReproduce: `reprobook reproduce {run_id}`")


def _verdict(metrics: Mapping[str, Any]) -> str:
    comparison = metrics.get("comparison") or {}
    name, value = comparison.get("primary_metric"), comparison.get("value")
    if isinstance(name, str) and isinstance(value, (int, float)):
        parts = [f"{name} {value:.4f} on the test rows"]
        baseline = comparison.get("baseline_score")
        if isinstance(baseline, (int, float)):
            beats = comparison.get("beats_baseline")
            parts.append(f"{'beats' if beats else 'does not beat'} the baseline ({baseline:.4f}) "
                         f"by {value - baseline:+.4f}")
        if comparison.get("meets_threshold") is not None:
            parts.append("meets the threshold" if comparison["meets_threshold"] else "misses the threshold")
        if comparison.get("suspicious"):
            parts.append("**suspicious** (too good: see the data report's leak checks)")
        return "; ".join(parts) + "."
    flat = [(key, value) for key, value in _flat(metrics) if isinstance(value, (int, float))][:6]
    return ("finished; " + ", ".join(f"{key} {value:g}" for key, value in flat) + ".") if flat else "finished."


def _flat(metrics: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            found += _flat(value, f"{prefix}{key}.")
        elif not isinstance(value, bool):
            found.append((f"{prefix}{key}", value))
    return found


def _redacted(text: str) -> str:
    from reprobook.tracking import secrets

    return secrets.redact_text(text)[:20000]


def data_context(relative: str) -> str:
    """The context MLflow shows beside a dataset: what the stage used it as."""
    from reprobook.project.paths import PRODUCTION_DIR, REFERENCE_DIR

    name = Path(relative).name.lower()
    if relative.startswith(REFERENCE_DIR):
        return "reference"
    if relative.startswith(PRODUCTION_DIR):
        return "production"
    if "train" in name:
        return "training"
    if "test" in name:
        return "test"
    return "source"


def is_data_file(path: Path) -> bool:
    return path.suffix.lower() in DATA_SUFFIXES


def dataset_inputs(root: Path, files: Iterable[tuple[Path, str]], digests: Mapping[str, Mapping[str, Any]]) -> list:
    """MLflow dataset inputs of ``files`` (path, context): name, DVC md5 digest, source, schema, row count."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    from reprobook.tracking import store

    inputs = []
    seen: set[tuple[str, str]] = set()
    for path, context in files:
        if not path.is_file():
            continue
        shown = str(path.relative_to(root)) if path.resolve().is_relative_to(root.resolve()) else str(path)
        md5 = (digests.get(shown) or {}).get("md5") or store.file_digest(path)
        if (md5, context) in seen:
            continue
        seen.add((md5, context))
        schema, rows = _schema_and_rows(path)
        dataset = Dataset(
            name=path.stem, digest=md5, source_type="local",
            source=json.dumps({"uri": shown, "dvc_md5": md5}),
            schema=json.dumps({"mlflow_colspec": schema}) if schema is not None else None,
            profile=json.dumps({"num_rows": rows, "num_elements": rows * len(schema)})
            if schema is not None and rows is not None else None,
        )
        inputs.append(DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)]))
    return inputs


_KINDS = {"i": "long", "u": "long", "f": "double", "b": "boolean", "M": "datetime"}


def _schema_and_rows(path: Path) -> tuple[list[dict[str, str]] | None, int | None]:
    """Columns (MLflow colspec) and the row count, from the parquet footer or the CSV's first rows and lines."""
    import pandas as pd

    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            meta = pq.read_metadata(path)
            sample = pq.read_schema(path).empty_table().to_pandas()
            rows = meta.num_rows
        elif path.suffix.lower() in (".csv", ".tsv"):
            sample = pd.read_csv(path, nrows=1000, sep="\t" if path.suffix.lower() == ".tsv" else ",")
            rows = _lines(path) - 1
        else:
            return None, None
    except Exception:  # an unreadable file still gets its digest and source
        return None, None
    return [{"type": _KINDS.get(dtype.kind, "string"), "name": str(name), "required": True}
            for name, dtype in sample.dtypes.items()], max(rows, 0)


def _lines(path: Path) -> int:
    count, last = 0, b"\n"
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")
