"""Estimator construction, metrics and promotion rules."""

import numpy as np
import pandas as pd
import pytest

from reprobook.errors import ReprobookError
from reprobook.ml import metrics
from reprobook.ml.estimators import build_pipeline, make_estimator
from reprobook.ml.loans import make_loans
from reprobook.ml.modeling import (
    cross_validate,
    fit,
    predict,
    prediction_frame,
    write_predictions,
)
from reprobook.project.params import ModelParams
from reprobook.tracking.registry import decide


def test_unknown_estimator_module():
    with pytest.raises(ReprobookError, match="module 'sklearn.ensembl' not found"):
        make_estimator(ModelParams(estimator="sklearn.ensembl.RandomForestClassifier"), "classification")


def test_misspelt_estimator_class_gets_suggestion():
    with pytest.raises(ReprobookError, match="did you mean RandomForestClassifier"):
        make_estimator(ModelParams(estimator="sklearn.ensemble.RandomForestClasifier"), "classification")


def test_regressor_for_classification_task_is_refused():
    with pytest.raises(ReprobookError, match="not a classifier"):
        make_estimator(ModelParams(estimator="sklearn.linear_model.Ridge"), "classification")


def test_unknown_hyperparameter_named_with_suggestion():
    with pytest.raises(ReprobookError, match=r"model.params.max_dept.*did you mean 'max_depth'"):
        make_estimator(ModelParams(params={"max_dept": 3}), "classification")


def test_seed_sets_random_state():
    estimator = make_estimator(ModelParams(seed=123), "classification")
    assert estimator.get_params()["random_state"] == 123


def test_pipeline_handles_missing_and_categoricals_deterministically(tmp_path):
    frame = make_loans(600, seed=3)
    x, y = frame.drop(columns="approved"), frame["approved"]
    params = ModelParams(params={"max_iter": 30})
    digests = []
    for _ in range(2):
        model = fit(build_pipeline(x, params, "classification"), x, y)
        y_pred, scores = predict(model, x, "classification")
        digests.append(write_predictions(prediction_frame(y, y_pred, scores, model.classes_), tmp_path / "p.csv"))
    assert digests[0] == digests[1]
    cv = cross_validate(build_pipeline(x, params, "classification"), x, y, "classification", params)
    assert 0.6 < cv["roc_auc_mean"] < 1.0


def test_metric_must_fit_task():
    with pytest.raises(ReprobookError, match="'r2' is a regression metric but the task is classification"):
        metrics.get_metric("r2", "classification")


def test_promotion_rules():
    assert decide(0.9, True, None, "roc_auc", "classification").promoted
    assert not decide(0.9, False, None, "roc_auc", "classification").promoted
    assert decide(0.9, True, 0.85, "roc_auc", "classification").promoted
    worse = decide(0.8, True, 0.85, "roc_auc", "classification")
    assert not worse.promoted and "does not beat the champion's 0.8500" in worse.reason
    assert decide(10.0, True, 12.0, "rmse", "regression").promoted  # lower is better


def test_latency_is_not_judged_on_an_overloaded_machine():
    from reprobook.execution.threads import available_cores
    from reprobook.ml.modeling import latency_verdict

    quiet = {"latency_p95_ms": 30.0, "load_average_1m": 0.5}
    assert latency_verdict(quiet, 25.0) is False and latency_verdict({**quiet, "latency_p95_ms": 20.0}, 25.0) is True
    assert latency_verdict({**quiet, "load_average_1m": available_cores() + 1.5}, 25.0) is None
