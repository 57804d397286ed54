"""``reprobook runs``: recent runs of the project's experiment, as a table or as JSON.

The table is for a terminal of any width: one line per run, short ids (any
unique prefix is accepted wherever a run id is, see :mod:`.runids`), and
columns condensed or dropped when the terminal is narrow. The JSON is for
scripts: full ids and the same keys for every run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from reprobook.tracking import runids, store
from reprobook.tracking.record import TAG_REPRODUCTION_OF
from reprobook.tracking.store import TAG_INTERACTIVE

KEY_METRICS = (
    "test.roc_auc", "test.f1_macro", "test.accuracy", "test.r2", "test.rmse",
    "baseline_score", "skewed_columns", "schema_anomalies", "worst_slice_gap",
)
WIDE = 120
"""From this width on the table shows full start times and each run's pipeline run."""
MIN_METRICS_WIDTH = 20
GAP = 2
"""Spaces between two columns: one of padding, one of the (blank) box line."""
DROP_ORDER = ("pipeline", "commit", "started", "status")
"""Columns given up, in this order, when the terminal is too narrow for them and some metrics."""
STATUS_STYLE = {"FINISHED": "green", "FAILED": "red", "KILLED": "red", "RUNNING": "yellow", "SCHEDULED": "yellow"}


@dataclass(frozen=True)
class RunSummary:
    """What ``reprobook runs`` shows of one run."""

    run_id: str
    stage: str
    status: str
    start_time: int | None
    end_time: int | None
    commit: str | None
    dirty: bool | None
    pipeline_run_id: str | None
    dvc_experiment: str | None
    metrics: dict[str, float]
    reproduction_of: str | None = None
    """Set on the runs ``reprobook reproduce`` makes (their tree is the record's, not the user's)."""
    interactive: bool = False
    """Recorded from Jupyter with ``ctx.record()``."""

    @property
    def label(self) -> str:
        """The stage as the table shows it: reproductions and interactive runs are marked."""
        if self.reproduction_of:
            return f"{self.stage} (repro)"
        return f"{self.stage} (interactive)" if self.interactive else self.stage

    @property
    def user_dirty(self) -> bool:
        """A dirty tree the user made: a reproduction's tree is dirty by design (the recorded diff applied)."""
        return bool(self.dirty) and not self.reproduction_of

    @classmethod
    def from_run(cls, run) -> RunSummary:
        tags = run.data.tags
        dirty = tags.get(store.TAG_DIRTY)
        return cls(
            run_id=run.info.run_id,
            stage=tags.get(store.TAG_STAGE, ""),
            status=run.info.status,
            start_time=run.info.start_time,
            end_time=run.info.end_time,
            commit=tags.get(store.TAG_COMMIT) if tags.get(store.TAG_COMMIT) not in (None, "", "none") else None,
            dirty=None if dirty is None else dirty == "true",
            pipeline_run_id=tags.get(store.TAG_PIPELINE) or None,
            dvc_experiment=tags.get(store.TAG_DVC_EXP) or None,
            metrics=dict(sorted(run.data.metrics.items())),
            reproduction_of=tags.get(TAG_REPRODUCTION_OF) or None,
            interactive=tags.get(TAG_INTERACTIVE) == "true",
        )

    def as_json(self) -> dict[str, Any]:
        """Stable keys; times as ISO 8601 with the local UTC offset; absent values as null."""
        return {
            "run_id": self.run_id,
            "stage": self.stage or None,
            "status": self.status,
            "start_time": _iso(self.start_time),
            "end_time": _iso(self.end_time),
            "commit": self.commit,
            "dirty": self.dirty,
            "pipeline_run_id": self.pipeline_run_id,
            "dvc_experiment": self.dvc_experiment,
            "metrics": self.metrics,
            "reproduction_of": self.reproduction_of,
            "interactive": self.interactive,
        }


def _iso(millis: int | None) -> str | None:
    return None if millis is None else datetime.fromtimestamp(millis / 1000).astimezone().isoformat(timespec="seconds")


def recent_runs(root: Path, *, limit: int, stage: str | None = None) -> list[RunSummary]:
    """The project experiment's latest runs (of one stage, if given), newest first."""
    client = store.client(root)
    experiment_ids, _ = runids.project_experiment(root, client)
    if not experiment_ids:
        return []
    filter_string = f"tags.`{store.TAG_STAGE}` = '{stage}'" if stage else ""
    found = client.search_runs(experiment_ids, filter_string=filter_string, max_results=limit,
                               order_by=["attributes.start_time DESC"])
    return [RunSummary.from_run(run) for run in found]


def runs_json(runs: list[RunSummary]) -> str:
    return json.dumps([run.as_json() for run in runs], indent=2)


def key_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k}={metrics[k]:.4g}" for k in KEY_METRICS if k in metrics)


def _columns(runs: list[RunSummary], short: dict[str, str], width: int) -> list[tuple[str, int]]:
    """(column, width) pairs that leave room for the metrics, dropping columns in DROP_ORDER."""
    wide = width >= WIDE
    sizes = {
        "run": max(len(s) for s in short.values()),
        "stage": min(max(len(r.label) for r in runs), 16) if any(r.stage for r in runs) else 5,
        "status": max(len(r.status) for r in runs),
        "started": 19 if wide else 11,
        "commit": 9,
        "pipeline": max((len(short[r.pipeline_run_id]) for r in runs if r.pipeline_run_id), default=0),
    }
    columns = ["run", "stage", "status", "started", "commit"] + (["pipeline"] if wide and sizes["pipeline"] else [])

    def total(names: list[str]) -> int:
        return sum(max(sizes[n], len(n)) + GAP for n in names) + MIN_METRICS_WIDTH

    for name in DROP_ORDER:
        if total(columns) <= width:
            break
        if name in columns:
            columns.remove(name)
    return [(name, max(sizes[name], len(name))) for name in columns]


def runs_table(root: Path, runs: list[RunSummary], *, width: int, stage: str | None = None) -> Table | Text:
    """One line per run, fitting ``width`` columns; a sentence when there is no run."""
    experiment = runids.project_experiment(root, store.client(root))[1]
    if not runs:
        what = f"no '{stage}' runs" if stage else "no runs"
        return Text(f"{what} yet in {experiment}")
    short = runids.short_ids([r.run_id for r in runs] + [r.pipeline_run_id for r in runs if r.pipeline_run_id])
    columns = _columns(runs, short, width)
    dirty_shown = any(r.user_dirty for r in runs) and any(name == "commit" for name, _ in columns)
    caption = ("* dirty tree; " if dirty_shown else "") + "ids: any unique prefix works; full ids: --format json"
    table = Table(title=f"latest runs in {experiment}", title_justify="left", caption=caption, caption_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for name, size in columns:
        table.add_column(name, no_wrap=True, overflow="ellipsis", width=size)
    rest = width - sum(size + GAP for _, size in columns)
    table.add_column("key metrics", no_wrap=True, overflow="ellipsis", max_width=max(rest, len("key metrics")))
    started_format = "%Y-%m-%d %H:%M:%S" if width >= WIDE else "%m-%d %H:%M"
    for run in runs:
        cells = {
            "run": short[run.run_id],
            "stage": run.label,
            "status": Text(run.status, style=STATUS_STYLE.get(run.status, "")),
            "started": runids.started(run.start_time, started_format),
            "commit": (run.commit or "")[:8] + ("*" if run.user_dirty else ""),
            "pipeline": short.get(run.pipeline_run_id or "", ""),
        }
        table.add_row(*(cells[name] for name, _ in columns), key_metrics(run.metrics))
    return table
