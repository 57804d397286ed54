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
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

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


def build_pipeline(features: pd.DataFrame, params: ModelParams, task: str) -> Pipeline:
    """Imputation and scaling/one-hot encoding in front of the configured estimator."""
    numeric, categorical = feature_columns(features)
    transformers = []
    if numeric:
        transformers.append(
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric)
        )
    if categorical:
        categorical_steps = Pipeline(
            [
                ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        transformers.append(("categorical", categorical_steps, categorical))
    preprocess = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("preprocess", preprocess), ("model", make_estimator(params, task))])
