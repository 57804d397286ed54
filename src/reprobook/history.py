"""``reprobook runs``: recent runs and their key metrics, as a table."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from rich.table import Table

from reprobook import tracking
from reprobook.params import load_params
from reprobook.paths import PARAMS_FILE

KEY_METRICS = (
    "test.roc_auc", "test.f1_macro", "test.accuracy", "test.r2", "test.rmse",
    "baseline_score", "skewed_columns", "schema_anomalies", "worst_slice_gap",
)


def runs_table(root: Path, *, limit: int, stage: str | None) -> Table:
    params = load_params(root / PARAMS_FILE)
    client = tracking.client(root)
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    table = Table(title=f"runs in {tracking.tracking_uri(root)}")
    for column in ("run id", "stage", "status", "started", "commit", "key metrics"):
        table.add_column(column)
    if experiment is None:
        return table
    filter_string = f"tags.`{tracking.TAG_STAGE}` = '{stage}'" if stage else ""
    for run in client.search_runs(
        [experiment.experiment_id], filter_string=filter_string, max_results=limit, order_by=["attributes.start_time DESC"]
    ):
        tags, metrics = run.data.tags, run.data.metrics
        shown = ", ".join(f"{k}={metrics[k]:.4g}" for k in KEY_METRICS if k in metrics)
        commit = tags.get(tracking.TAG_COMMIT, "")[:8] + (" (dirty)" if tags.get(tracking.TAG_DIRTY) == "true" else "")
        table.add_row(
            run.info.run_id,
            tags.get(tracking.TAG_STAGE, ""),
            run.info.status,
            datetime.fromtimestamp(run.info.start_time / 1000).strftime("%Y-%m-%d %H:%M:%S"),
            commit,
            shown,
        )
    return table
