"""Scoping: what "good enough" means before any model is trained.

Decides the task, the primary metric (checked against the task), its
threshold, the latency and throughput budgets, and the baseline to beat: a
dummy model's cross-validated score and an optional human-level figure.
The current champion is the third baseline; it is read from the registry at
promotion time, so that this stage's outputs depend only on params and data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.model_selection import KFold, StratifiedKFold

from reprobook.ml.datasets import Dataset, infer_task
from reprobook.ml.metrics import default_metric, get_metric
from reprobook.project.params import Params
from reprobook.project.paths import TARGETS_FILE  # noqa: F401  (notebooks use scoping.TARGETS_FILE)


def decide_targets(dataset: Dataset, params: Params) -> dict[str, Any]:
    """The KPI targets every later stage reads."""
    y = dataset.frame[dataset.target]
    task, reason = infer_task(y, params.scoping.task)
    n_classes = int(y.nunique()) if task == "classification" else 0
    metric = get_metric(params.scoping.primary_metric or default_metric(task, n_classes), task)
    baseline = dummy_baseline(dataset, task, metric.name, params.data.seed)
    return {
        "task": task,
        "task_reason": reason,
        "target": dataset.target,
        "n_classes": n_classes,
        "primary_metric": metric.name,
        "higher_is_better": metric.higher_is_better,
        "threshold": params.scoping.threshold,
        "human_level": params.scoping.human_level,
        "baseline": baseline,
        "latency_budget_ms": params.scoping.latency_budget_ms,
        "min_throughput_rows_per_s": params.scoping.min_throughput_rows_per_s,
    }


def dummy_baseline(dataset: Dataset, task: str, metric_name: str, seed: int, folds: int = 5) -> dict[str, Any]:
    """Cross-validated score of the simplest model: any real model must beat it."""
    frame = dataset.frame
    x = np.zeros((len(frame), 1))
    y = frame[dataset.target].to_numpy()
    if task == "classification":
        model, splitter = DummyClassifier(strategy="prior"), StratifiedKFold(folds, shuffle=True, random_state=seed)
    else:
        model, splitter = DummyRegressor(strategy="mean"), KFold(folds, shuffle=True, random_state=seed)
    metric = get_metric(metric_name, task)
    labels = np.unique(y) if task == "classification" else None
    scores = []
    for train_idx, test_idx in splitter.split(x, y):
        model.fit(x[train_idx], y[train_idx])
        if metric.needs_scores:
            scores.append(metric.compute(y[test_idx], model.predict_proba(x[test_idx]), labels))
        else:
            scores.append(metric.compute(y[test_idx], model.predict(x[test_idx])))
    strategy = "prior" if task == "classification" else "mean"
    return {"model": f"dummy ({strategy})", "metric": metric_name, "score": float(np.mean(scores)), "folds": folds}


def summary_lines(targets: dict[str, Any]) -> list[str]:
    """A readable summary for the notebook and the console."""
    lines = [
        f"task: {targets['task']} ({targets['task_reason']})",
        f"primary metric: {targets['primary_metric']} ({'higher' if targets['higher_is_better'] else 'lower'} is better)",
        f"threshold: {targets['threshold'] if targets['threshold'] is not None else 'none set'}",
        f"baseline to beat: {targets['baseline']['model']} scores {targets['baseline']['score']:.4f}",
    ]
    if targets["human_level"] is not None:
        lines.append(f"human-level performance: {targets['human_level']}")
    lines.append(
        f"budgets: p95 latency <= {targets['latency_budget_ms']} ms/row, "
        f"throughput >= {targets['min_throughput_rows_per_s']:.0f} rows/s"
    )
    return lines


def load_targets(root: Path) -> dict[str, Any]:
    from reprobook.project.context import read_json

    return read_json(root / TARGETS_FILE)
