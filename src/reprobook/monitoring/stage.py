"""``reprobook monitor BATCH``: the monitoring notebook run for one batch, tracked, kept, and summarised.

Monitoring is a stage of its own kind: it runs once per production batch, not
when code, params or data change, so it is not a ``dvc.yaml`` stage (``dvc
repro`` would run it without a batch, or never again). It runs through the
same machinery as the pipeline's stages (papermill, a fresh kernel, the one
MLflow writer, a report that is the same bytes for the same inputs), as a run
outside any pipeline run, tagged with the batch digest and index and the
model version that served; its metrics are logged at the batch index as step,
so MLflow charts them over batches.

Bad input is refused before the kernel starts, with one message and nothing
changed: a batch without the model's columns, an empty batch, labels whose
ids match no row, an alias that does not exist. Earlier batches are never
recomputed: each keeps its entry in ``monitoring/history`` and its report in
``reports/monitoring/batches``, and the summary over batches is rebuilt from
those entries.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reprobook.errors import ReprobookError
from reprobook.monitoring import capture as cap
from reprobook.monitoring.job import REPORT_FILE, job_parameter
from reprobook.project.paths import HISTORY_DIR, MONITORING_DIR, report_files, reports_dir
from reprobook.project.stages import Stage

NAME = "monitoring"
NOTEBOOK = "notebooks/05_monitoring.ipynb"
PARAMS = ("monitoring", "error_analysis", "model.trusted_types")
SUMMARY_FILE = f"{MONITORING_DIR}/summary.html"
HISTORY_TABLE = f"{MONITORING_DIR}/history.csv"

TAG_BATCH_DIGEST = "reprobook.batch_digest"
TAG_BATCH_INDEX = "reprobook.batch_index"
TAG_BATCH_PATH = "reprobook.batch_path"
TAG_MODEL_NAME = "reprobook.model_name"
TAG_MODEL_VERSION = "reprobook.model_version"
TAG_MODEL_ALIAS = "reprobook.model_alias"
TAG_VERDICT = "reprobook.monitoring.verdict"


@dataclass(frozen=True)
class Monitored:
    report: dict[str, Any]
    run_id: str
    html: Path
    summary: Path

    @property
    def verdict(self) -> str:
        return self.report["verdict"]


def monitoring_stage() -> Stage:
    return Stage(NAME, NOTEBOOK, PARAMS, deps=(), outs=(f"reports/{NAME}",))


def earlier_entry(root: Path, digest: str) -> dict[str, Any] | None:
    """The history entry of this very batch (same digest), if it was monitored before."""
    return next((entry for entry in history(root) if entry["batch"]["digest"] == digest), None)


def batch_index(root: Path, digest: str) -> int:
    """The batch's number: its earlier number if this very batch was monitored before, else the next one."""
    earlier = earlier_entry(root, digest)
    if earlier is not None:
        return int(earlier["index"])
    return max((int(e["index"]) for e in history(root)), default=0) + 1


def earlier_labels(root: Path, digest: str) -> Path | None:
    """The labels this batch was monitored with before: monitoring it again without --labels keeps them."""
    earlier = earlier_entry(root, digest)
    found = ((earlier or {}).get("job") or {}).get("labels")
    return root / found if found and (root / found).is_file() else None


def history(root: Path) -> list[dict[str, Any]]:
    """Every monitored batch's report, in batch order."""
    return [json.loads(p.read_text()) for p in sorted((root / HISTORY_DIR).glob("batch-*.json"))]


def preflight(root: Path, batch_path: Path, labels: Path | None, model: str | None, params) -> tuple[cap.Batch, cap.FetchedVersion]:
    """Everything that can be refused before the kernel starts (each a message naming the file, column or alias)."""
    import pandas as pd

    from reprobook.monitoring.reference import load_reference

    if not (root / NOTEBOOK).is_file():
        raise ReprobookError(f"{NOTEBOOK}: not found; the monitoring notebook comes with `reprobook new` "
                             "(copy it from a new project made with the same reprobook)")
    ref = cap.parse_model_ref(model, params)
    batch = cap.read_batch(batch_path, params.monitoring.id_column)
    fetched = cap.fetch_version(root, ref)
    cap.check_columns(batch, fetched)
    reference = load_reference(fetched.directory / "reference")
    if labels is not None:
        cap.join_labels(pd.DataFrame({cap.ID: batch.ids}), labels, reference.profile["target"],
                        params.monitoring.id_column)
    return batch, fetched


def monitor(root: Path, batch_path: Path, labels: Path | None = None, model: str | None = None, *,
            progress: bool = True) -> Monitored:
    """Monitor one batch: the notebook run, its history entry, the summary over batches."""
    from reprobook.execution.runner import execute_stage
    from reprobook.project.params import project_params
    from reprobook.tracking.writer import RunExtras

    params = project_params(root)
    if labels is None:
        from reprobook.monitoring.capture import file_digest

        labels = earlier_labels(root, file_digest(batch_path)) if batch_path.is_file() else None
    batch, fetched = preflight(root, batch_path, labels, model, params)
    index = batch_index(root, batch.digest)
    parameter = job_parameter(index, batch_path, labels, fetched, cap.capture_path(root, batch_path), root)
    for key in ("outputs", "plots"):  # a batch's report holds its own plots only
        shutil.rmtree(report_files(root, NAME)[key], ignore_errors=True)
    tags = {TAG_BATCH_DIGEST: batch.digest, TAG_BATCH_INDEX: str(index), TAG_BATCH_PATH: parameter["path"],
            TAG_MODEL_NAME: fetched.name, TAG_MODEL_VERSION: fetched.version, TAG_MODEL_ALIAS: fetched.alias or ""}
    logged = {"batch.path": parameter["path"], "batch.labels": parameter["labels"] or "none",
              "batch.index": str(index), "batch.model": fetched.label}
    from reprobook.tracking.presentation import batch_name

    reference_dir = fetched.directory / "reference"
    reference = sorted(p for p in reference_dir.rglob("*") if p.is_file()) if reference_dir.is_dir() else []
    datasets = ((batch_path, "batch"), *((p, "reference") for p in reference if p.suffix in (".parquet", ".csv")))
    outcome = execute_stage(monitoring_stage(), root, progress=progress, inject={"batch": parameter},
                            extras=RunExtras(tags=tags, params=logged, step=index, grouped=False,
                                             run_name=batch_name(index, fetched.label), datasets=datasets))
    report = json.loads((report_files(root, NAME)["outputs"] / REPORT_FILE).read_text())
    report["run_id"] = outcome.run_id
    entry = root / HISTORY_DIR / f"batch-{index:04d}.json"
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    kept = reports_dir(root, NAME) / "batches" / f"batch-{index:04d}.html"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(outcome.html, kept)
    summary = rebuild_summary(root)
    _record_verdict(root, outcome.run_id, fetched, report, index, summary)
    return Monitored(report, outcome.run_id, kept, summary)


def _record_verdict(root: Path, run_id: str, fetched: cap.FetchedVersion, report: dict, index: int,
                    summary: Path) -> None:
    """The verdict on the batch's run (a tag, and its description with the findings) and, as the latest
    word on it, on the model version that served."""
    from reprobook.monitoring.monitor import report_text
    from reprobook.tracking import presentation, store

    verdict = report["verdict"]
    client = store.client(root)
    client.set_tag(run_id, TAG_VERDICT, verdict)
    shown = Path(report["batch"]["path"])  # a batch outside the project is named, not located
    noted = {**report, "batch": {**report["batch"], "path": shown.name if shown.is_absolute() else str(shown)}}
    client.set_tag(run_id, presentation.TAG_NOTE, presentation.batch_note(run_id, report_text(noted)))
    client.log_artifact(run_id, str(summary), "summary")
    client.set_model_version_tag(fetched.name, fetched.version, "reprobook.monitoring.last_batch", str(index))
    client.set_model_version_tag(fetched.name, fetched.version, "reprobook.monitoring.last_verdict", verdict)


def rebuild_summary(root: Path) -> Path:
    """``monitoring/summary.html``: every batch's verdict and reasons, and the figures over batches."""
    import base64
    from html import escape

    from reprobook.monitoring.plots import VERDICT_COLOURS, history_frame, over_batches
    from reprobook.quality import html

    entries = history(root)
    frame = history_frame(entries)
    out = root / MONITORING_DIR
    frame.to_csv(root / HISTORY_TABLE, index=False, float_format="%.6g", lineterminator="\n")
    plot = over_batches(frame, out)
    rows = []
    for entry in entries:
        verdict = entry["verdict"]
        reasons = "<br>".join(escape(f"{f['verdict']}: {f['check']}: {f['reason']}") for f in entry["findings"])
        link = f"../reports/{NAME}/batches/batch-{int(entry['index']):04d}.html"
        rows.append([
            f"<td><a href=\"{escape(link)}\">{int(entry['index'])}</a></td>", html.cell(Path(entry["batch"]["path"]).name),
            html.cell(f"v{entry['model']['version']}"), html.cell(entry["batch"]["rows"], "num"),
            html.cell(entry["batch"]["labelled_rows"], "num"),
            f"<td style=\"color:{VERDICT_COLOURS[verdict]};font-weight:600\">{escape(verdict)}</td>",
            f"<td>{reasons or 'no finding'}</td>",
        ])
    image = base64.b64encode(plot.read_bytes()).decode()
    latest = entries[-1]["verdict"] if entries else "none"
    body = (f"<p class=\"verdict\">{len(entries)} batch(es) monitored; latest verdict: <b>{escape(latest)}</b></p>"
            f"<img alt=\"monitoring over batches\" src=\"data:image/png;base64,{image}\" style=\"max-width:100%\">"
            + html.table(["batch", "file", "model", "rows", "labelled", "verdict", "reasons"], rows))
    return html.write(root / SUMMARY_FILE, html.page("Monitoring summary", body))
