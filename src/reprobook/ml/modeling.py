"""Modeling stage logic: train with a fixed seed, evaluate, time, save.

Quality metrics (deterministic: they must reproduce exactly) are kept apart
from timings (latency and throughput vary from run to run), so that a
reproduction can demand equality of the first and tolerate the second.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline

from reprobook.errors import ReprobookError
from reprobook.execution.threads import available_cores, load_average
from reprobook.ml import persistence
from reprobook.ml.features import model_inputs, xy  # noqa: F401  (notebooks call modeling.xy, model_inputs)
from reprobook.ml.metrics import evaluate, get_metric, is_better, meets
from reprobook.project.params import ModelParams
from reprobook.project.paths import MODEL_FILE, PREDICTIONS_FILE, REFERENCE_DIR  # noqa: F401  (notebooks use modeling.*)


def fit(pipeline: Pipeline, x: pd.DataFrame, y: pd.Series) -> Pipeline:
    """Fit, turning scikit-learn's parameter errors into a message about params.yaml."""
    try:
        return pipeline.fit(x, y)
    except (ValueError, TypeError) as exc:
        if "parameter" in str(exc):
            raise ReprobookError(f"model.params: {str(exc).splitlines()[0]}") from None
        raise


def predict(pipeline: Pipeline, x: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels (or values) and, for classifiers that have them, class probabilities."""
    y_pred = pipeline.predict(x)
    scores = pipeline.predict_proba(x) if task == "classification" and hasattr(pipeline, "predict_proba") else None
    return y_pred, scores


Folds = list[tuple[np.ndarray, np.ndarray]]


def cv_splits(x: pd.DataFrame, y: pd.Series, task: str, params: ModelParams, design: dict[str, Any] | None = None,
              frame: pd.DataFrame | None = None) -> Folds:
    """The seeded folds (train and held-out row positions): the same for every pipeline cross-validated.

    They follow the train/test split (``design``, recorded in the split files):
    a time split is cross-validated forward in time (``TimeSeriesSplit``), a
    group split with every group in one fold (``StratifiedGroupKFold`` /
    ``GroupKFold``), reading the split's column from ``frame`` (the training
    split, where an id column that is not a feature still is). Otherwise
    seeded (stratified) k-fold.
    """
    kind, column = (design or {}).get("kind"), (design or {}).get("column")
    if kind in ("time", "group") and frame is not None and column in frame.columns:
        from reprobook.ml.splits import cv_folds

        return cv_folds(x, y, task=task, kind=kind, groups_or_times=frame[column], n_folds=params.cv_folds,
                        seed=params.seed)
    splitter = (StratifiedKFold if task == "classification" else KFold)(params.cv_folds, shuffle=True, random_state=params.seed)
    return list(splitter.split(x, y))


def fold_metrics(pipeline: Pipeline, x: pd.DataFrame, y: pd.Series, train_idx: np.ndarray, valid_idx: np.ndarray,
                 task: str, labels: np.ndarray | None) -> dict[str, float]:
    """One fold: a clone fitted on the fold's training rows, evaluated on its held-out rows.

    A task on its own (it needs nothing but its arguments), so joblib can run
    it in this process or on a Dask worker and get the same figures.
    """
    model = fit(clone(pipeline), x.iloc[train_idx], y.iloc[train_idx])
    y_pred, scores = predict(model, x.iloc[valid_idx], task)
    return evaluate(task, y.iloc[valid_idx], y_pred, scores, labels)


def summarise_folds(per_fold: list[dict[str, float]]) -> dict[str, float]:
    """Mean and standard deviation of every metric over the folds."""
    summary: dict[str, float] = {}
    for name in per_fold[0]:
        values = np.array([fold[name] for fold in per_fold])
        summary[f"{name}_mean"] = float(values.mean())
        summary[f"{name}_std"] = float(values.std())
    return summary


def cross_validate_many(pipelines: Sequence[Pipeline], x: pd.DataFrame, y: pd.Series, task: str,
                        params: ModelParams, folds: Folds | None = None) -> list[dict[str, float]]:
    """Seeded k-fold CV of each pipeline on the same folds: every (pipeline, fold) pair is one joblib task.

    ``n_jobs=None`` is joblib's configured default. Outside any
    ``parallel_config`` that is one job: the tasks run here, one after the
    other, on the stage's thread budget (worker processes beside the kernel's
    threads would oversubscribe the cores). Under
    :func:`reprobook.execution.cluster.joblib_on` the Dask backend spreads
    them over the cluster's workers whatever ``n_jobs`` says. Either way
    joblib returns results in submission order and each task is seeded by
    its params, so the figures are the same bit for bit.
    """
    splits = folds if folds is not None else cv_splits(x, y, task, params)
    labels = np.unique(y) if task == "classification" else None
    tasks = (delayed(fold_metrics)(pipeline, x, y, train_idx, valid_idx, task, labels)
             for pipeline in pipelines for train_idx, valid_idx in splits)
    per_fold = Parallel(n_jobs=None)(tasks)
    k = len(splits)
    return [summarise_folds(per_fold[i * k : (i + 1) * k]) for i in range(len(pipelines))]


def cross_validate(pipeline: Pipeline, x: pd.DataFrame, y: pd.Series, task: str, params: ModelParams,
                   folds: Folds | None = None) -> dict[str, float]:
    """Seeded k-fold CV on train (``folds``: :func:`cv_splits`'s): mean and spread of every task metric."""
    return cross_validate_many([pipeline], x, y, task, params, folds)[0]


def compare_with_targets(test_metrics: dict[str, float], targets: dict[str, Any]) -> dict[str, Any]:
    """Does the model meet the scoping threshold and beat the dummy and human baselines?"""
    metric = get_metric(targets["primary_metric"], targets["task"])
    value = test_metrics[metric.name]
    baseline = targets["baseline"]["score"]
    human = targets.get("human_level")
    return {
        "primary_metric": metric.name,
        "value": value,
        "meets_threshold": meets(metric, value, targets.get("threshold")),
        "beats_baseline": is_better(metric, value, baseline),
        "baseline_score": baseline,
        "lift_over_baseline": value - baseline,
        "beats_human_level": None if human is None else is_better(metric, value, human),
        "suspicious": suspicious_score(metric, value, human) is not None,
    }


def suspicious_score(metric, value: float, human: float | None) -> str | None:
    """Why a score is too good to trust (a perfect score, or better than people do), or None.

    Such scores usually mean a leak (a copy of the target among the features,
    test rows seen in training) rather than a great model: say so in the report.
    """
    best = metric.bounds[1] if metric.higher_is_better else metric.bounds[0]
    if abs(value - best) < 1e-12:
        return f"{metric.name} = {value:g} is a perfect score: look for a leak before trusting it"
    if human is not None and is_better(metric, value, human):
        return (f"{metric.name} = {value:.4g} beats human-level performance ({human:g}, scoping.human_level): "
                "possible, but check for a leak")
    return None


NEAR_PERFECT = 0.99
"""A score this close to the best (scores bounded by 1) is worth asking where it comes from."""
IMPORTANCE_ROWS = 2000


def dominant_feature(model: Pipeline, x: pd.DataFrame, y: pd.Series, metric, value: float, *, seed: int) -> str | None:
    """Why a near-perfect score looks read off one column, or None: one feature carries nearly all the
    permutation importance (:func:`reprobook.ml.leaks.dominant_feature`).

    Computed only when the score is near-perfect (else it says nothing), on
    at most :data:`IMPORTANCE_ROWS` seeded test rows, two shuffles each: about
    a second, paid only by runs that need the question asked.
    """
    if not (metric.higher_is_better and metric.bounds[1] == 1 and value >= NEAR_PERFECT) or x.shape[1] < 2:
        return None
    from sklearn.inspection import permutation_importance

    from reprobook.ml.leaks import dominant_feature as dominant

    rows = x.sample(min(len(x), IMPORTANCE_ROWS), random_state=seed)
    found = permutation_importance(model, rows, y.loc[rows.index], n_repeats=2, random_state=seed, n_jobs=1)
    importances = {str(c): float(v) for c, v in zip(x.columns, found.importances_mean)}
    return dominant(importances, value, metric.name, metric.higher_is_better)


def describe_folds(design: dict[str, Any] | None, params: ModelParams) -> str:
    """The cross-validation scheme in words, as the run records it (it follows the split)."""
    kind, column = (design or {}).get("kind"), (design or {}).get("column")
    if kind == "time":
        return f"cross-validation: {params.cv_folds} folds forward in time on '{column}' (TimeSeriesSplit)"
    if kind == "group":
        return f"cross-validation: {params.cv_folds} folds, each value of '{column}' in one fold, seed {params.seed}"
    return f"cross-validation: {params.cv_folds} shuffled folds, seed {params.seed}"


def measure_latency(pipeline: Pipeline, x: pd.DataFrame, rows: int, repeats: int = 3) -> dict[str, float]:
    """Per-row p50/p95 latency (one row at a time, one thread) and batch throughput (the stage's threads).

    Why it does not flip with load: a single-row prediction is timed on one
    thread (a served request's case; more threads only add their start-up),
    and the rows that came out slowest (the tenth at or above the 90th
    percentile: the only ones the p95 can come from) are timed again, up to
    ``repeats`` tries in all, keeping each row's fastest; a moment of
    contention from another process inflates one try, not the percentile.
    Retrying only the slow tenth costs a stage about 1 s, against 3 s for
    every row three times. The 1-minute load average is recorded beside the
    figures, to judge them.
    """
    from threadpoolctl import threadpool_limits

    from reprobook.execution.threads import stage_threads

    sample = x.iloc[: min(rows, len(x))]
    load_before = load_average()

    def timed(i: int) -> float:
        row = sample.iloc[i : i + 1]
        start = time.perf_counter()
        pipeline.predict(row)
        return time.perf_counter() - start

    with threadpool_limits(1):
        pipeline.predict(sample.iloc[:1])  # warm-up
        timings = [timed(i) for i in range(len(sample))]
        slowest = np.flatnonzero(np.array(timings) >= np.percentile(timings, 90))
        for i in slowest:
            for _ in range(repeats - 1):
                timings[i] = min(timings[i], timed(int(i)))
    threads = stage_threads()
    batch = []
    with threadpool_limits(threads):
        for _ in range(repeats):
            start = time.perf_counter()
            pipeline.predict(x)
            batch.append(time.perf_counter() - start)
    ms = np.array(timings) * 1000
    return {
        "latency_p50_ms": float(np.percentile(ms, 50)),
        "latency_p95_ms": float(np.percentile(ms, 95)),
        "throughput_rows_per_s": float(len(x) / min(batch)),
        "rows_timed": len(sample),
        "repeats": repeats,
        "latency_threads": 1,
        "throughput_threads": threads,
        "load_average_1m": max(load_before, load_average()),
    }


def latency_verdict(timings: dict[str, float], budget_ms: float) -> bool | None:
    """Whether p95 latency is within budget; None (not judged) if it was timed on an overloaded machine.

    Measured (benchmarks/results/latency_under_load.md): with every core kept
    busy by other processes, p95 rose 3.5-fold and the verdict flipped. A
    1-minute load average above the core count means the figure describes the
    machine's load, not the model, so no verdict is given rather than a wrong one.
    """
    load = timings.get("load_average_1m", float("nan"))
    if math.isfinite(load) and load > available_cores():
        return None
    return timings["latency_p95_ms"] <= budget_ms




def prediction_frame(y_true: pd.Series, y_pred: np.ndarray, scores: np.ndarray | None, classes: Any = None) -> pd.DataFrame:
    frame = pd.DataFrame({"y_true": y_true.to_numpy(), "y_pred": y_pred})
    if scores is not None:
        for i, label in enumerate(classes):
            frame[f"score_{label}"] = scores[:, i]
    return frame


def write_predictions(frame: pd.DataFrame, path: Path) -> str:
    """Write predictions with a fixed float format; return their sha256 digest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = frame.to_csv(index=False, float_format="%.12g", lineterminator="\n")
    path.write_text(text)
    return hashlib.sha256(text.encode()).hexdigest()


def save_model(pipeline: Pipeline, path: Path, settings: ModelParams | None = None) -> Path:
    """Save as a byte-stable skops file (and a joblib copy if ``model.joblib_copy`` asks for one)."""
    return persistence.save_model(pipeline, path, trusted=settings.trusted_types if settings else (),
                                  joblib_copy=bool(settings and settings.joblib_copy))


def load_model(path: Path, trusted: Iterable[str] = ()) -> Pipeline:
    """Load the model, instantiating only scikit-learn/NumPy/SciPy types and those in ``trusted``."""
    return persistence.load_model(path, trusted)
