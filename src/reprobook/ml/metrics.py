"""Quality metrics by name, with their direction and the task they fit.

One table answers what scoping, modeling and reproduction all need to know
about a metric: how to compute it, whether higher is better, which task it is
for, and whether it needs scores instead of labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from reprobook.errors import ReprobookError


@dataclass(frozen=True)
class Metric:
    name: str
    task: str
    higher_is_better: bool
    needs_scores: bool
    compute: Callable[..., float]
    bounds: tuple[float, float] = (0.0, 1.0)
    """The values the metric can take: a threshold outside them can never be met."""
    scorer: str = ""
    """scikit-learn's scorer of the same metric (errors negated: higher is better), for permutation importance."""

    def allowed_worsening(self, tolerance: float, reference: float) -> float:
        """How much worse than ``reference`` a value may be within ``tolerance``: points for a score up to 1
        (accuracy, AUC, r2), a fraction of the reference for an error without upper bound (rmse, mae, log loss)."""
        return tolerance if math.isfinite(self.bounds[1]) else tolerance * abs(reference)

    def worse_by(self, value: float, reference: float) -> float:
        """How much worse ``value`` is than ``reference`` (negative when better), whatever the direction."""
        return reference - value if self.higher_is_better else value - reference


def _skm():
    """scikit-learn's metrics, imported when a metric is computed: the table itself is read by
    ``reprobook run``'s checks, which should not wait a second for scikit-learn."""
    from sklearn import metrics

    return metrics


def _roc_auc(y_true, scores, labels) -> float:
    if scores.ndim == 2 and scores.shape[1] == 2:
        return float(_skm().roc_auc_score(y_true, scores[:, 1]))
    return float(_skm().roc_auc_score(y_true, scores, multi_class="ovr", labels=labels))


def _log_loss(y_true, scores, labels) -> float:
    return float(_skm().log_loss(y_true, scores, labels=labels))


def _average_precision(y_true, scores, labels) -> float:
    if scores.shape[1] != 2:
        raise ReprobookError("scoping.primary_metric: average_precision needs a binary target")
    return float(_skm().average_precision_score(y_true == labels[1], scores[:, 1]))


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("accuracy", "classification", True, False, lambda y, p: float(_skm().accuracy_score(y, p)),
               scorer="accuracy"),
        Metric("balanced_accuracy", "classification", True, False,
               lambda y, p: float(_skm().balanced_accuracy_score(y, p)), scorer="balanced_accuracy"),
        Metric("f1_macro", "classification", True, False, lambda y, p: float(_skm().f1_score(y, p, average="macro")),
               scorer="f1_macro"),
        Metric("roc_auc", "classification", True, True, _roc_auc, scorer="roc_auc"),
        Metric("average_precision", "classification", True, True, _average_precision, scorer="average_precision"),
        Metric("log_loss", "classification", False, True, _log_loss, (0.0, float("inf")), scorer="neg_log_loss"),
        Metric("r2", "regression", True, False, lambda y, p: float(_skm().r2_score(y, p)), (float("-inf"), 1.0),
               scorer="r2"),
        Metric("rmse", "regression", False, False, lambda y, p: float(np.sqrt(_skm().mean_squared_error(y, p))),
               (0.0, float("inf")), scorer="neg_root_mean_squared_error"),
        Metric("mae", "regression", False, False, lambda y, p: float(_skm().mean_absolute_error(y, p)),
               (0.0, float("inf")), scorer="neg_mean_absolute_error"),
    ]
}


def default_metric(task: str, n_classes: int) -> str:
    if task == "regression":
        return "r2"
    return "roc_auc" if n_classes == 2 else "f1_macro"


def get_metric(name: str, task: str) -> Metric:
    """Look up a metric and check it fits the task."""
    if name not in METRICS:
        raise ReprobookError(
            f"scoping.primary_metric: unknown metric '{name}'; expected one of: {', '.join(METRICS)}"
        )
    metric = METRICS[name]
    if metric.task != task:
        fitting = [m for m, spec in METRICS.items() if spec.task == task]
        raise ReprobookError(
            f"scoping.primary_metric: '{name}' is a {metric.task} metric but the task is {task}; "
            f"expected one of: {', '.join(fitting)}"
        )
    return metric


def task_metrics(task: str) -> list[Metric]:
    return [m for m in METRICS.values() if m.task == task]


def evaluate(task: str, y_true, y_pred, scores=None, labels=None) -> dict[str, float]:
    """Every metric of the task, on one prediction set."""
    results: dict[str, float] = {}
    for metric in task_metrics(task):
        if metric.needs_scores:
            if scores is None or (metric.name == "average_precision" and scores.shape[1] != 2):
                continue
            results[metric.name] = metric.compute(y_true, scores, labels)
        else:
            results[metric.name] = metric.compute(y_true, y_pred)
    return results


def is_better(metric: Metric, candidate: float, reference: float) -> bool:
    return candidate > reference if metric.higher_is_better else candidate < reference


def meets(metric: Metric, value: float, threshold: float | None) -> bool:
    if threshold is None:
        return True
    return value >= threshold if metric.higher_is_better else value <= threshold
