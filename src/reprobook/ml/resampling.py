"""Metrics on bootstrap resamples, many at once: a resample is a row of weights (how often each row was drawn).

Each metric reprobook knows is a weighted sum over rows (or, for ROC AUC, over
ranked rows), so hundreds of resamples are one matrix product instead of
hundreds of scikit-learn calls: the paired comparison of two models
(deployment gates, canary) and the sampling error of a monitored metric both
rest on it. With weights of ones each function gives the metric itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reprobook.errors import ReprobookError
from reprobook.ml.metrics import METRICS, Metric

CELLS_PER_CHUNK = 2_000_000
"""Resample weights held at once (rows x resamples): 16 MB."""
BOOTSTRAP_ROWS = 20_000
"""Rows :func:`bootstrap_sd` resamples at most; beyond, its spread is scaled by sqrt(rows / all rows)."""


@dataclass(frozen=True)
class Outputs:
    """One model's predictions (and class probabilities) on some rows, in row order."""

    predictions: np.ndarray
    scores: np.ndarray | None

    def take(self, rows: np.ndarray) -> Outputs:
        return Outputs(self.predictions[rows], None if self.scores is None else self.scores[rows])

    @staticmethod
    def concat(parts: list[Outputs]) -> Outputs:
        import numpy as np

        scores = None if any(p.scores is None for p in parts) else np.concatenate([p.scores for p in parts])
        return Outputs(np.concatenate([p.predictions for p in parts]), scores)


def score_metric(metric: Metric, y: np.ndarray, outputs: Outputs, classes: tuple | None) -> float:
    """The metric as the rest of reprobook computes it (the METRICS table)."""
    y = plain_labels(y, classes)
    if metric.needs_scores:
        if outputs.scores is None:
            raise ReprobookError(f"scoping.primary_metric: {metric.name} needs class probabilities and the model "
                                 "gives none")
        return float(metric.compute(y, outputs.scores, list(classes)))
    return float(metric.compute(y, outputs.predictions))


def plain_labels(y: np.ndarray, classes: tuple | None) -> np.ndarray:
    """Object arrays of class values as the classes' own dtype (scikit-learn refuses mixed objects)."""
    import numpy as np

    if classes is None:
        return y.astype(float)
    return np.asarray(list(y), dtype=np.asarray(classes).dtype)


def weighted_metric(metric: Metric, y: np.ndarray, outputs: Outputs, classes: tuple | None,
                    weights: np.ndarray) -> np.ndarray:
    """The metric on each resample (a row of ``weights``): with weights of ones it is the metric itself.

    Vectorised for every metric reprobook knows except multiclass roc_auc and
    average_precision, which are computed resample by resample (slower, same result).
    """
    import numpy as np

    y = plain_labels(y, classes)
    p = outputs.predictions
    total = weights.sum(axis=1)
    name = metric.name
    with np.errstate(divide="ignore", invalid="ignore"):
        if name == "accuracy":
            return weights @ (p == y).astype(float) / total
        if name in ("balanced_accuracy", "f1_macro"):
            return _weighted_per_class(name, y, p, classes, weights)
        if name == "roc_auc" and len(classes) == 2:
            return _weighted_auc(y == classes[1], outputs.scores[:, 1], weights)
        if name == "log_loss":
            return weights @ _row_log_loss(y, outputs.scores, classes) / total
        if name in ("mae", "rmse", "r2"):
            return _weighted_regression(name, y, p.astype(float), weights)
    return _resample_by_resample(metric, y, outputs, classes, weights)


def _weighted_per_class(name: str, y, p, classes: tuple, weights: np.ndarray) -> np.ndarray:
    """Balanced accuracy (mean recall over the classes present) or macro F1 (over the classes in y or in p)."""
    import numpy as np

    parts, present = [], []
    for label in classes:
        true, predicted = (y == label).astype(float), (p == label).astype(float)
        hits, actual, claimed = weights @ (true * predicted), weights @ true, weights @ predicted
        if name == "balanced_accuracy":
            parts.append(hits / actual)
            present.append(actual > 0)
        else:
            parts.append(2 * hits / (actual + claimed))
            present.append(actual + claimed > 0)
    values, present = np.vstack(parts), np.vstack(present)
    return np.where(present, values, 0).sum(axis=0) / present.sum(axis=0)


def _weighted_auc(positive: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC as the Mann-Whitney statistic with row weights: ties count one half, as scikit-learn's."""
    import numpy as np

    order = np.argsort(score, kind="mergesort")
    ranked, positive = score[order], positive[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    ordered = weights[:, order].astype(float)
    pos = np.add.reduceat(ordered * positive, starts, axis=1)
    neg = np.add.reduceat(ordered * ~positive, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    return np.where(pairs > 0, (pos * (below + 0.5 * neg)).sum(axis=1) / np.where(pairs > 0, pairs, 1), np.nan)


def _row_log_loss(y, scores: np.ndarray, classes: tuple) -> np.ndarray:
    """Each row's log loss, probabilities clipped as scikit-learn clips them."""
    import numpy as np

    eps = np.finfo(scores.dtype).eps
    probabilities = scores / scores.sum(axis=1, keepdims=True)
    column = np.searchsorted(np.asarray(classes), y) if _sorted(classes) else [classes.index(v) for v in y]
    return -np.log(np.clip(probabilities[np.arange(len(y)), column], eps, 1 - eps))


def _sorted(classes: tuple) -> bool:
    return list(classes) == sorted(classes)


def _weighted_regression(name: str, y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    import numpy as np

    total = weights.sum(axis=1)
    if name == "mae":
        return weights @ np.abs(y - p) / total
    squared = weights @ (y - p) ** 2
    if name == "rmse":
        return np.sqrt(squared / total)
    mean = weights @ y / total
    spread = (weights * (y[None, :] - mean[:, None]) ** 2).sum(axis=1)
    return 1 - squared / spread


def _resample_by_resample(metric: Metric, y, outputs: Outputs, classes: tuple | None, weights: np.ndarray) -> np.ndarray:
    import numpy as np

    values = np.full(len(weights), np.nan)
    rows = np.arange(weights.shape[1])
    for i, counts in enumerate(weights):
        drawn = np.repeat(rows, counts.astype(int))
        try:
            values[i] = score_metric(metric, y[drawn], outputs.take(drawn), classes)
        except ValueError:  # one class only in this resample: the metric is undefined there
            continue
    return values


def bootstrap_weights(rng: np.random.Generator, n: int, draws: int):
    """Resample weights in chunks of at most ``CELLS_PER_CHUNK`` cells: each row of a chunk is one resample."""
    chunk = max(1, min(draws, CELLS_PER_CHUNK // max(n, 1)))
    for start in range(0, draws, chunk):
        size = min(chunk, draws - start)
        drawn = rng.integers(0, n, size=(size, n))
        yield np.bincount((drawn + n * np.arange(size)[:, None]).ravel(), minlength=size * n).reshape(size, n)


def bootstrap_sd(task: str, y_true, y_pred, scores=None, classes=None, *, metrics: list[str], seed: int,
                 draws: int = 200) -> dict[str, float]:
    """Standard deviation of each named metric over seeded bootstrap resamples of the rows.

    The sampling error of a metric measured on these many rows: what a value
    measured on another sample of the same size may differ by. Beyond
    ``BOOTSTRAP_ROWS`` rows, a seeded subsample of that size is resampled and
    the spread scaled to the full size (these metrics are averages over rows or
    pairs of rows, whose spread falls as 1/sqrt(rows)).
    """
    rng = np.random.default_rng(seed)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    n = len(y_true)
    if n > BOOTSTRAP_ROWS:
        keep = np.sort(rng.choice(n, BOOTSTRAP_ROWS, replace=False))
        y_true, y_pred, scores = y_true[keep], y_pred[keep], None if scores is None else scores[keep]
    scale = math.sqrt(len(y_true) / n) if n else 1.0
    outputs = Outputs(y_pred, None if scores is None else np.asarray(scores))
    labels = tuple(classes) if classes is not None else None
    found: dict[str, float] = {}
    for name in metrics:
        metric = METRICS.get(name)
        if metric is None or metric.task != task or (metric.needs_scores and scores is None):
            continue
        values = np.concatenate([weighted_metric(metric, y_true, outputs, labels, weights)
                                 for weights in bootstrap_weights(rng, len(y_true), draws)])
        values = values[np.isfinite(values)]
        if len(values) > 1:
            found[name] = float(np.std(values, ddof=1)) * scale
    return found
