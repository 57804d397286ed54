"""Build the scikit-learn pipeline named in ``model`` params, with input checks.

Any estimator importable by dotted path works; hyperparameters are checked
against the estimator's own ``get_params`` so a typo is caught before training,
and ``random_state`` is set from ``model.seed`` when the estimator has one.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

import pandas as pd
from sklearn.base import BaseEstimator, is_classifier, is_regressor
from sklearn.pipeline import Pipeline

from reprobook.errors import ReprobookError
from reprobook.project.params import ModelParams


def resolve_estimator(path: str) -> type:
    """Import ``package.module.Class`` or explain exactly what is wrong with it."""
    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        raise ReprobookError(
            f"model.estimator: expected an import path like sklearn.ensemble.RandomForestClassifier, found '{path}'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ReprobookError(f"model.estimator: module '{module_name}' not found (from '{path}')") from None
    estimator = getattr(module, class_name, None)
    if estimator is None:
        hint = difflib.get_close_matches(class_name, [n for n in dir(module) if not n.startswith("_")], n=1)
        suggestion = f" (did you mean {hint[0]}?)" if hint else ""
        raise ReprobookError(f"model.estimator: '{module_name}' has no '{class_name}'{suggestion}")
    if not (isinstance(estimator, type) and issubclass(estimator, BaseEstimator)):
        raise ReprobookError(f"model.estimator: '{path}' is not a scikit-learn estimator class")
    return estimator


def make_estimator(params: ModelParams, task: str) -> BaseEstimator:
    cls = resolve_estimator(params.estimator)
    estimator = cls()
    if task == "classification" and not is_classifier(estimator):
        raise ReprobookError(f"model.estimator: '{params.estimator}' is not a classifier but the task is classification")
    if task == "regression" and not is_regressor(estimator):
        raise ReprobookError(f"model.estimator: '{params.estimator}' is not a regressor but the task is regression")
    known = estimator.get_params(deep=False)
    unknown = [key for key in params.params if key not in known]
    if unknown:
        hint = difflib.get_close_matches(unknown[0], list(known), n=1)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise ReprobookError(
            f"model.params.{unknown[0]}: not a hyperparameter of {cls.__name__}{suggestion}; "
            f"expected one of: {', '.join(sorted(known))}"
        )
    settings: dict[str, Any] = dict(params.params)
    if "random_state" in known and "random_state" not in settings:
        settings["random_state"] = params.seed
    if "n_jobs" in known and "n_jobs" not in settings:
        settings["n_jobs"] = 1  # one thread: identical results everywhere
    return estimator.set_params(**settings)


def feature_columns(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(numeric, categorical) feature columns by dtype."""
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
    categorical = [c for c in frame.columns if c not in numeric]
    return numeric, categorical


def build_pipeline(features: pd.DataFrame, params: ModelParams, task: str, roles: dict[str, str] | None = None,
                   *, n_classes: int = 2) -> Pipeline:
    """The encoders of each column's role (:mod:`reprobook.ml.encoders`) in front of the configured estimator.

    ``roles``: the split's (``split.roles``); without them they are inferred
    from ``features``. The design matrix's size is estimated first and a
    configuration over ``model.max_memory_mb`` is refused before any fit.
    """
    from reprobook.ml import design, encoders
    from reprobook.ml.roles import infer_roles

    if not roles:
        roles = {name: found.role for name, found in infer_roles(features, None).items()}
    text = params.text_encoder != "none"
    groups = encoders.plan(features, roles, onehot_max_levels=params.onehot_max_levels, text=text)
    widths = encoders.column_widths(features, groups, onehot_max_levels=params.onehot_max_levels, n_classes=n_classes)
    design.check_memory(len(features), widths, design.memory_limit_mb(params.max_memory_mb))
    preprocess = encoders.preprocessor(features, roles, onehot_max_levels=params.onehot_max_levels, text=text,
                                       seed=params.seed, task=task)
    return Pipeline([("preprocess", preprocess), ("model", make_estimator(params, task))])


def describe(pipeline: Pipeline, features: pd.DataFrame) -> str:
    """Which encoder each feature column gets, one line per encoder, for the report."""
    preprocess = pipeline.named_steps["preprocess"]
    lines = [f"{len(features.columns)} feature columns:"]
    for name, _, columns in preprocess.transformers:
        shown = ", ".join(map(str, columns[:8])) + (f" and {len(columns) - 8} more" if len(columns) > 8 else "")
        lines.append(f"  {name}: {shown}")
    return "\n".join(lines)
