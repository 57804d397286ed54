"""Parameter sweeps: a grid of hyperparameters (``model.search``), each candidate cross-validated, the best kept.

Why a grid of our own rather than scikit-learn's ``GridSearchCV``: every
candidate must be judged by the very cross-validation the stage reports
(:func:`reprobook.ml.modeling.cross_validate_many`: the same seeded folds, the
same metrics table, the scoping's primary metric), so that the chosen
candidate's CV figures are exactly what a run with those values in
``model.params`` would report. Every (candidate, fold) pair is one joblib
task: they run here one after the other, or on a Dask cluster under
:func:`reprobook.execution.cluster.joblib_on`, with the same results.

Grid order, which decides ties, does not depend on how the mapping was
written or serialized: hyperparameters sorted by name (as scikit-learn's
``ParameterGrid``), the last varying fastest, each one's values in the order
listed. The best candidate is the first one no later candidate strictly
beats on the primary metric's CV mean.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from reprobook.errors import ReprobookError
from reprobook.ml.metrics import Metric, get_metric, is_better
from reprobook.ml.modeling import Folds, cross_validate, cross_validate_many
from reprobook.project.params import ModelParams

MODEL_STEP = "model"
"""The estimator's step in the pipeline :func:`reprobook.ml.estimators.build_pipeline` builds."""
SEARCH_FILE = "search.json"
"""Every candidate's hyperparameters and CV figures, and the choice, in the stage's ``outputs/``."""
PLOT_FILE = "search.png"


@dataclass(frozen=True)
class Sweep:
    """The candidates of a sweep, in grid order, with their CV summaries and the index of the best."""

    metric: str
    higher_is_better: bool
    candidates: tuple[dict[str, Any], ...]
    cv: tuple[dict[str, float], ...]
    best: int

    @property
    def best_params(self) -> dict[str, Any]:
        return self.candidates[self.best]

    @property
    def best_cv(self) -> dict[str, float]:
        return self.cv[self.best]

    def table(self) -> pd.DataFrame:
        """One row per candidate: its hyperparameters, the primary metric's CV mean and spread, the choice."""
        rows = [{**candidate, f"{self.metric}_mean": cv[f"{self.metric}_mean"],
                 f"{self.metric}_std": cv[f"{self.metric}_std"], "chosen": i == self.best}
                for i, (candidate, cv) in enumerate(zip(self.candidates, self.cv))]
        return pd.DataFrame(rows).rename_axis("candidate")

    def summary(self) -> dict[str, Any]:
        """What ``outputs/search.json`` keeps: the metric, the chosen candidate, and every candidate's CV."""
        return {
            "primary_metric": self.metric,
            "chosen": self.best,
            "chosen_params": self.best_params,
            "candidates": [{"params": candidate, "cv": cv} for candidate, cv in zip(self.candidates, self.cv)],
        }


@dataclass(frozen=True)
class Tuning:
    """What the modeling stage fits: the pipeline (unfitted), its CV summary, and the sweep if one ran."""

    pipeline: Pipeline
    cv: dict[str, float]
    sweep: Sweep | None = None


def grid(search: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of ``search``'s values, in grid order (names sorted, the last varying fastest)."""
    names = sorted(search)
    return [dict(zip(names, values)) for values in itertools.product(*(search[name] for name in names))]


def check_names(pipeline: Pipeline, search: Mapping[str, Any]) -> None:
    """Refuse a name the estimator does not have, before any fit, naming the ``model.search`` key."""
    estimator = pipeline.named_steps[MODEL_STEP]
    known = estimator.get_params(deep=False)
    for name in search:
        if name not in known:
            hint = difflib.get_close_matches(name, list(known), n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ReprobookError(
                f"model.search.{name}: not a hyperparameter of {type(estimator).__name__}{suggestion}; "
                f"expected one of: {', '.join(sorted(known))}"
            )


def check_values(pipeline: Pipeline, candidates: list[dict[str, Any]]) -> None:
    """Refuse a value the estimator does not accept (scikit-learn's own check) before any fit, naming
    ``model.search`` rather than the ``model.params`` a failed fit would blame."""
    for candidate in candidates:
        estimator = with_hyperparameters(pipeline, candidate).named_steps[MODEL_STEP]
        try:
            estimator._validate_params()
        except AttributeError:  # an estimator without scikit-learn's parameter constraints: its fit will tell
            return
        except (ValueError, TypeError) as exc:
            raise ReprobookError(f"model.search: candidate {candidate}: {str(exc).splitlines()[0]}") from None


def with_hyperparameters(pipeline: Pipeline, hyperparameters: Mapping[str, Any]) -> Pipeline:
    """An unfitted copy of ``pipeline`` whose estimator has ``hyperparameters`` set (over ``model.params``)."""
    return clone(pipeline).set_params(**{f"{MODEL_STEP}__{name}": value for name, value in hyperparameters.items()})


def best_index(cv: list[dict[str, float]], metric: Metric) -> int:
    """The first candidate no other strictly beats on ``metric``'s CV mean (NaN never wins): a tie is no change."""
    key = f"{metric.name}_mean"
    missing = [i for i, summary in enumerate(cv) if key not in summary]
    if missing:
        raise ReprobookError(
            f"model.search: cross-validation gave no {metric.name} (scoping.primary_metric) for candidate "
            f"{missing[0]}: the estimator gives no class scores; choose a metric on labels, such as f1_macro"
        )
    best = 0
    for i, summary in enumerate(cv):
        value = summary[key]
        if (np.isnan(cv[best][key]) and not np.isnan(value)) or is_better(metric, value, cv[best][key]):
            best = i
    return best


def sweep(pipeline: Pipeline, x: pd.DataFrame, y: pd.Series, task: str, params: ModelParams,
          primary_metric: str, folds: Folds | None = None) -> Sweep:
    """Cross-validate every candidate of ``params.search`` on the same folds; choose by ``primary_metric``."""
    check_names(pipeline, params.search)
    metric = get_metric(primary_metric, task)
    candidates = grid(params.search)
    check_values(pipeline, candidates)
    cv = cross_validate_many([with_hyperparameters(pipeline, c) for c in candidates], x, y, task, params, folds)
    return Sweep(metric.name, metric.higher_is_better, tuple(candidates), tuple(cv), best_index(cv, metric))


def tune(pipeline: Pipeline, x: pd.DataFrame, y: pd.Series, task: str, params: ModelParams,
         primary_metric: str, folds: Folds | None = None) -> Tuning:
    """The pipeline to fit and its CV: the best of a sweep when ``model.search`` asks for one, else ``pipeline``.

    Without a search this is :func:`~reprobook.ml.modeling.cross_validate` of
    ``pipeline`` itself, so the default params give the same model as before.
    """
    if not params.search:
        return Tuning(pipeline, cross_validate(pipeline, x, y, task, params, folds))
    result = sweep(pipeline, x, y, task, params, primary_metric, folds)
    return Tuning(with_hyperparameters(pipeline, result.best_params), result.best_cv, result)


def plot(result: Sweep, out: Path) -> list[Path]:
    """The primary metric's CV mean (and spread) per candidate, the chosen one marked: ``search.png``."""
    from matplotlib.figure import Figure

    from reprobook.ml.plots import DPI, FIGSIZE, save_figure

    table = result.table()
    means, spreads = table[f"{result.metric}_mean"], table[f"{result.metric}_std"]
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    ax = fig.subplots()
    ax.errorbar(table.index, means, yerr=spreads, fmt="o", color="grey", capsize=3, label="candidate (mean ± std)")
    ax.plot([result.best], [means.iloc[result.best]], "o", color="tab:red", markersize=9, label="chosen")
    ax.set(xlabel="candidate (grid order)", ylabel=f"CV {result.metric}", title="Parameter sweep")
    ax.legend(loc="best")
    return [save_figure(fig, out / PLOT_FILE)]
