"""Cross-validation and parameter sweeps: the same figures here and on a real two-worker Dask cluster."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.base import clone

from reprobook.errors import ReprobookError
from reprobook.execution.cluster import SCHEDULER_VARIABLE, joblib_on
from reprobook.ml import metrics, search
from reprobook.ml.estimators import build_pipeline
from reprobook.ml.loans import make_loans
from reprobook.ml.modeling import cross_validate, cv_splits, fit, predict
from reprobook.project.params import ModelParams, Params, flatten, parse_params

pytestmark = pytest.mark.timeout(180)

TASK = "classification"
BASE = {"max_iter": 15, "max_depth": 3}
GRID = {"max_iter": [10, 25], "learning_rate": [0.05, 0.3]}


@pytest.fixture(scope="module")
def data():
    frame = make_loans(500, seed=5)
    return frame.drop(columns="approved"), frame["approved"]


@pytest.fixture(scope="module")
def client():
    """A real LocalCluster of two single-threaded worker processes, and a client of the test's own on it."""
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as own:
        yield own


def pipeline_for(x, params: ModelParams):
    return build_pipeline(x, params, TASK)


def on_cluster(client, work):
    """``work()`` under ``joblib_on`` the cluster: its result, and the workers that ran each fold (the
    scheduler's task stream; joblib names a task ``batch_of_fold_metrics_<n>_calls-...``)."""
    from dask.distributed import get_task_stream

    with get_task_stream(client) as stream, joblib_on(client.scheduler.address):
        result = work()
    workers = []
    for task in stream.data:
        found = re.match(r"batch_of_fold_metrics_(\d+)_calls", str(task["key"]))
        if found:
            workers += [task["worker"]] * int(found.group(1))
    return result, workers


def sequential_cv(pipeline, x, y, params: ModelParams) -> dict[str, float]:
    """Cross-validation as the stage did it before joblib: a plain loop over the folds."""
    labels = np.unique(y)
    per_fold = []
    for train_idx, valid_idx in cv_splits(x, y, TASK, params):
        model = fit(clone(pipeline), x.iloc[train_idx], y.iloc[train_idx])
        y_pred, scores = predict(model, x.iloc[valid_idx], TASK)
        per_fold.append(metrics.evaluate(TASK, y.iloc[valid_idx], y_pred, scores, labels))
    return {f"{name}_{stat}": float(getattr(np.array([f[name] for f in per_fold]), stat)())
            for name in per_fold[0] for stat in ("mean", "std")}


def test_cross_validation_is_identical_here_and_on_the_cluster(data, client):
    x, y = data
    params = ModelParams(params=BASE, cv_folds=3)
    pipeline = pipeline_for(x, params)
    local = cross_validate(pipeline, x, y, TASK, params)
    remote, workers = on_cluster(client, lambda: cross_validate(pipeline, x, y, TASK, params))
    assert remote == local  # bit for bit: every float equal
    assert local == sequential_cv(pipeline, x, y, params)  # and what the stage computed before
    assert len(workers) == 3 and set(workers) <= set(client.scheduler_info()["workers"])  # every fold ran there


def test_sweep_is_identical_here_and_on_the_cluster_and_keeps_the_best(data, client):
    x, y = data
    params = ModelParams(params=BASE, cv_folds=3, search=GRID)
    pipeline = pipeline_for(x, params)
    local = search.sweep(pipeline, x, y, TASK, params, "roc_auc")
    remote, workers = on_cluster(client, lambda: search.sweep(pipeline, x, y, TASK, params, "roc_auc"))
    assert remote == local
    assert len(workers) == 4 * 3 and len(set(workers)) == 2  # every (candidate, fold) fit, on both workers

    assert local.candidates == tuple(search.grid(GRID)) and len(local.cv) == 4
    means = [cv["roc_auc_mean"] for cv in local.cv]
    assert local.best == int(np.argmax(means))
    chosen = ModelParams(params={**BASE, **local.best_params}, cv_folds=3)
    assert local.best_cv == cross_validate(pipeline_for(x, chosen), x, y, TASK, chosen)
    assert {"candidates", "chosen_params", "primary_metric"} <= set(local.summary())
    assert local.table()["chosen"].tolist() == [i == local.best for i in range(4)]


def test_tune_refits_the_chosen_candidate_and_leaves_default_params_alone(data):
    x, y = data
    plain = ModelParams(params=BASE, cv_folds=3)
    pipeline = pipeline_for(x, plain)
    untouched = search.tune(pipeline, x, y, TASK, plain, "roc_auc")
    assert untouched.sweep is None and untouched.pipeline is pipeline
    assert untouched.cv == cross_validate(pipeline, x, y, TASK, plain)

    swept = search.tune(pipeline, x, y, TASK, ModelParams(params=BASE, cv_folds=3, search=GRID), "roc_auc")
    model_params = swept.pipeline.named_steps["model"].get_params()
    assert {key: model_params[key] for key in GRID} == swept.sweep.best_params
    assert model_params["max_depth"] == BASE["max_depth"] and swept.cv == swept.sweep.best_cv


def test_ties_go_to_the_first_candidate_in_grid_order(data):
    higher = metrics.get_metric("roc_auc", TASK)
    assert search.best_index([{"roc_auc_mean": v} for v in (0.8, 0.9, 0.9)], higher) == 1
    assert search.best_index([{"roc_auc_mean": v} for v in (float("nan"), 0.7, 0.7)], higher) == 1
    lower = metrics.get_metric("log_loss", TASK)
    assert search.best_index([{"log_loss_mean": v} for v in (0.5, 0.3, 0.3, 0.4)], lower) == 1
    # grid order does not depend on how the mapping was written: names sorted, the last varying fastest
    assert search.grid({"b": [2, 1], "a": [0, 5]}) == [{"a": 0, "b": 2}, {"a": 0, "b": 1}, {"a": 5, "b": 2},
                                                          {"a": 5, "b": 1}]
    # a hyperparameter that changes nothing: every candidate ties, the first is kept
    x, y = data
    params = ModelParams(params=BASE, cv_folds=2, search={"validation_fraction": [0.3, 0.1, 0.2]})
    result = search.sweep(pipeline_for(x, params), x, y, TASK, params, "roc_auc")
    assert len(set(map(str, result.cv))) == 1 and result.best == 0 and result.best_params == {"validation_fraction": 0.3}


@pytest.mark.parametrize("value, message", [
    ({"max_depth": 3}, r"model\.search.*'max_depth' needs a non-empty list"),
    ({"max_depth": []}, r"model\.search.*'max_depth' needs a non-empty list"),
    ("max_depth", r"model\.search"),
    ({"a": list(range(40)), "b": list(range(40))}, r"model\.search.*1600 combinations"),
])
def test_a_bad_search_is_a_params_error_naming_the_key(value, message):
    with pytest.raises(ReprobookError, match=message):
        parse_params({"model": {"search": value}})


def test_an_unknown_hyperparameter_in_the_search_is_named(data):
    x, y = data
    params = ModelParams(params=BASE, search={"max_dept": [2, 3]})
    with pytest.raises(ReprobookError, match=r"model\.search\.max_dept: not a hyperparameter.*did you mean 'max_depth'"):
        search.sweep(pipeline_for(x, params), x, y, TASK, params, "roc_auc")
    params = ModelParams(params=BASE, search={"max_depth": [3, -1]})
    with pytest.raises(ReprobookError, match=r"model\.search: candidate \{'max_depth': -1\}: .*max_depth"):
        search.sweep(pipeline_for(x, params), x, y, TASK, params, "roc_auc")


def test_the_scheduler_is_not_a_param():
    assert not [key for key in flatten(Params().model_dump()) if "scheduler" in key]


class _Stop(Exception):
    """Ends the command where it would start the work."""


@pytest.mark.parametrize("command, target", [(["run"], "reprobook.execution.pipeline.run_pipeline"),
                                             (["stage", "modeling"], "reprobook.execution.runner.run_stage")])
def test_the_scheduler_option_only_sets_the_variable_the_stages_inherit(command, target, monkeypatch):
    import os

    from typer.testing import CliRunner

    from reprobook.cli import app

    seen = []

    def start(*args, **kwargs):
        seen.append(os.environ[SCHEDULER_VARIABLE])
        raise _Stop

    monkeypatch.setenv(SCHEDULER_VARIABLE, "")  # restored after the test
    monkeypatch.setattr("reprobook.project.paths.project_root", lambda: None)
    monkeypatch.setattr(target, start)
    result = CliRunner().invoke(app, [*command, "--scheduler", "tcp://127.0.0.1:8786"])
    assert isinstance(result.exception, _Stop) and seen == ["tcp://127.0.0.1:8786"]


def test_preflight_refuses_a_bad_sweep_before_anything_runs():
    """`reprobook run` checks model.search (names and every candidate's values) before DVC deletes outputs."""
    from reprobook.project import preflight

    def problems(search: dict) -> list[str]:
        params = Params.model_validate({"model": {"estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
                                                  "params": {"max_depth": 4}, "search": search}})
        return preflight._estimator_problems(params, "classification")

    assert problems({"max_depth": [2, 3]}) == []
    (misspelled,) = problems({"max_dept": [2, 3]})
    assert misspelled.startswith("model.search.max_dept:") and "did you mean 'max_depth'" in misspelled
    (refused,) = problems({"max_depth": [2, -1]})
    assert refused.startswith("model.search: candidate {'max_depth': -1}")
