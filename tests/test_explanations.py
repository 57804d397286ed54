"""Explanations and error cohorts on the loan data, whose true drivers are known, with real scikit-learn models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from reprobook.errors import ReprobookError
from reprobook.ml import cohorts, error_analysis, estimators, explanations
from reprobook.ml.loans import TARGET, make_loans
from reprobook.project.params import ModelParams, parse_params, seeds

SEED = 7


@pytest.fixture(scope="module")
def loans():
    """A project-like model (the project's own pipeline, HistGradientBoosting) on loans plus a pure-noise column."""
    frame = make_loans(6000, seed=0)
    frame.insert(0, "noise", np.random.default_rng(1).normal(size=len(frame)))
    train, test = train_test_split(frame, test_size=0.5, random_state=0, stratify=frame[TARGET])
    x_train, y_train = train.drop(columns=TARGET), train[TARGET]
    x_test, y_test = test.drop(columns=TARGET), test[TARGET]
    model = estimators.build_pipeline(x_train, ModelParams(params={"max_iter": 60}), "classification")
    return model.fit(x_train, y_train), x_test, y_test


# ---------------------------------------------------------------- permutation importance


def test_permutation_importance_ranks_the_true_drivers_above_noise(loans):
    model, x_test, y_test = loans
    table = explanations.permutation_importances(model, x_test, y_test, scoring="roc_auc", n_repeats=3, seed=SEED)
    rank = dict(zip(table["feature"], table["rank"]))
    assert rank["credit_score"] < rank["noise"] and rank["debt_to_income"] < rank["noise"], table
    assert table["rank"].tolist() == list(range(1, len(x_test.columns) + 1))
    assert set(table["feature"]) == set(x_test.columns)
    assert (table["importance_std"] >= 0).all() and table["importance_mean"].is_monotonic_decreasing
    top = table.set_index("feature").loc["credit_score"]
    assert top["importance_mean"] > 3 * top["importance_std"]  # well above its spread over repeats
    assert explanations.top_numeric(table, x_test, 2) == [f for f in table["feature"] if f in
                                                          estimators.feature_columns(x_test)[0]][:2]


@pytest.mark.parametrize(("metric", "task", "classes", "scorer"), [
    ("roc_auc", "classification", 2, "roc_auc"),
    ("roc_auc", "classification", 3, "roc_auc_ovr"),
    ("f1_macro", "classification", 3, "f1_macro"),
    ("average_precision", "classification", 4, "f1_macro"),
    ("log_loss", "classification", 2, "neg_log_loss"),
    ("rmse", "regression", 0, "neg_root_mean_squared_error"),
    ("mae", "regression", 0, "neg_mean_absolute_error"),
    ("r2", "regression", 0, "r2"),
])
def test_scorer_follows_the_primary_metric(metric, task, classes, scorer):
    assert explanations.scorer_for(metric, task, classes) == scorer


# ---------------------------------------------------------------- error cohorts


def test_cohort_tree_finds_injected_label_noise(loans):
    model, x_test, y_test = loans
    injected = ((x_test["credit_score"] > 650) & (x_test["region"] == "north")).to_numpy()
    flip = injected & (np.random.default_rng(3).random(len(x_test)) < 0.5)
    noisy = np.where(flip, 1 - y_test.to_numpy(), y_test.to_numpy())
    found = cohorts.error_cohorts(x_test, noisy, model.predict(x_test), task="classification", max_depth=3,
                                  min_samples_leaf=30, seed=SEED)
    top = found.table.iloc[0]
    assert abs(top["size"] - injected.sum()) <= 0.1 * injected.sum(), found.table
    assert "credit_score >" in top["rule"] and "region = north" in top["rule"], top["rule"]
    mask = found.rows(1)
    assert mask.sum() == top["size"] and (mask & injected).sum() >= 0.9 * injected.sum()
    assert top["error"] > 0.4 and top["gap"] > 0 and top["cost"] == pytest.approx(top["gap"] * top["size"])
    assert found.table["share_of_errors"].sum() == pytest.approx(1.0)
    assert found.table["size"].sum() == len(x_test) and found.table["rank"].tolist() == list(range(1, len(found.table) + 1))


def test_rule_text_merges_thresholds_on_one_feature_and_reads_categories():
    n = 1200
    steps = np.arange(n)
    x = pd.DataFrame({"score": (steps % 100) * 10.0, "region": np.where(steps % 3 == 0, "islands", "north")})
    wrong = ((x["score"] > 600) & (x["score"] <= 700) & (x["region"] == "islands")).to_numpy()
    y_true = np.zeros(n, dtype=int)
    found = cohorts.error_cohorts(x, y_true, wrong.astype(int), task="classification", max_depth=3,
                                  min_samples_leaf=5, seed=0)
    rules = dict(zip(found.table["rank"], found.table["rule"]))
    assert rules[1] == "region = islands and 600 < score ≤ 700", found.table  # features in the order the tree split on them
    assert found.table.iloc[0]["size"] == wrong.sum() and found.table.iloc[0]["error"] == 1.0
    assert any("region ≠ islands" in rule for rule in rules.values()), rules


def test_a_column_with_one_value_per_row_does_not_widen_the_cohort_tree():
    n = 10_000
    steps = np.arange(n)
    x = pd.DataFrame({
        "timestamp": pd.Series([f"2024-01-01T00:00:{i:05d}" for i in steps], dtype="string"),  # unique per row
        "dealer": [f"d{(i * 7919) % 8000}" for i in steps],  # 8,000 levels, most of them one or two rows
        "region": np.where(steps % 3 == 0, "islands", "north"),
    })
    matrix, columns = cohorts.encode(x, min_rows=30)
    assert matrix.shape == (n, 2) and {c.feature for c in columns} == {"region"}  # was 18,002 columns: 3.0 GB and 21 s
    wrong = (x["region"] == "islands").to_numpy().astype(int)
    found = cohorts.error_cohorts(x, np.zeros(n, dtype=int), wrong, task="classification", max_depth=2,
                                  min_samples_leaf=30, seed=0)
    assert found.table.iloc[0]["rule"] in ("region = islands", "region ≠ north"), found.table
    assert found.table.iloc[0]["size"] == wrong.sum() and found.table.iloc[0]["error"] == 1.0


def test_readable_cut_splits_the_rows_as_the_tree_does():
    assert cohorts.readable_cut(700, 701) == 700
    assert cohorts.readable_cut(0.312, 0.318) in (0.313, 0.314, 0.315, 0.316, 0.317, 0.312)
    assert cohorts.readable_cut(38694.32, 39136.08) == 39000
    assert cohorts.readable_cut(-12.5, -3.0) == -10
    for low, high in [(1.0, 1.0000001), (123.456, 123.457), (0.0, 5.0)]:
        assert low <= cohorts.readable_cut(low, high) < high


def test_missing_values_are_named_in_the_rule():
    n = 600
    values = np.where(np.arange(n) % 5 == 0, np.nan, np.arange(n, dtype=float))
    wrong = (np.isnan(values) | (values > 400)).astype(int)
    found = cohorts.error_cohorts(pd.DataFrame({"income": values}), np.zeros(n, dtype=int), wrong,
                                  task="classification", max_depth=2, min_samples_leaf=5, seed=0)
    assert found.table.iloc[0]["rule"] == "(income > 400 or income missing)", found.table


def test_regression_cohort_tree_works_on_absolute_error():
    rng = np.random.default_rng(0)
    n = 2000
    x = pd.DataFrame({"x": rng.random(n), "colour": rng.choice(["red", "blue"], n)})
    y_true = rng.normal(size=n)
    bad = (x["x"] > 0.8).to_numpy()
    y_pred = y_true + np.where(bad, 5.0, 0.1) * rng.choice([-1, 1], n)
    found = cohorts.error_cohorts(x, y_true, y_pred, task="regression", max_depth=2, min_samples_leaf=30, seed=0)
    top = found.table.iloc[0]
    assert top["error_name"] == "mae" and top["metric_name"] == "mae"
    assert top["size"] == bad.sum() and top["error"] == pytest.approx(5.0) and top["rule"].startswith("x > 0.8")
    assert top["share_of_errors"] == pytest.approx(5.0 * bad.sum() / np.abs(y_true - y_pred).sum())


def test_cohorts_join_the_worst_slices_with_the_same_columns(loans):
    model, x_test, y_test = loans
    injected = ((x_test["credit_score"] > 650) & (x_test["region"] == "north")).to_numpy()
    noisy = np.where(injected & (np.random.default_rng(3).random(len(x_test)) < 0.5), 1 - y_test, y_test)
    y_pred = model.predict(x_test)
    slices = error_analysis.slice_metrics(x_test, noisy, y_pred, task="classification", min_slice_size=30,
                                          numeric_bins=4)
    found = cohorts.error_cohorts(x_test, noisy, y_pred, task="classification", max_depth=3, min_samples_leaf=30,
                                  seed=SEED)
    worst = error_analysis.worst_slices(cohorts.with_cohorts(slices, found.table, 30), 10)
    assert list(worst.columns) == ["rank", *error_analysis.SLICE_COLUMNS]
    assert worst.attrs["skipped_small_slices"] == slices.attrs["skipped_small_slices"]
    assert worst.iloc[0]["feature"] == error_analysis.COHORT_FEATURE and worst.iloc[0]["slice"] == found.table.iloc[0]["rule"]
    assert worst.iloc[0]["cost"] == pytest.approx(found.table.iloc[0]["cost"])
    single = pd.DataFrame({"rank": [1], "cohort": [3], "rule": ["region = north"], "size": [40], "error_name": ["error_rate"],
                           "error": [0.5], "share_of_errors": [0.1], "metric_name": ["accuracy"], "metric": [0.5],
                           "overall": [0.8], "gap": [0.3], "cost": [12.0], "errors": [20]})
    assert (cohorts.with_cohorts(slices, single, 30)["feature"] != error_analysis.COHORT_FEATURE).all()  # a slice already


# ---------------------------------------------------------------- what-if, partial dependence


def test_what_if_varies_only_the_chosen_feature(loans):
    model, x_test, _ = loans
    rows = x_test.sample(n=2, random_state=SEED)
    values = [500.0, 650.0, 800.0]
    varied = explanations.what_if_rows(rows, "credit_score", values)
    assert len(varied) == 6 and varied["credit_score"].tolist() == values * 2
    pd.testing.assert_frame_equal(varied.drop(columns="credit_score"),
                                  rows.loc[rows.index.repeat(3)].drop(columns="credit_score"))
    frame = explanations.what_if(model, rows, "credit_score", values)
    assert len(frame) == len(rows) * len(values)
    assert frame["row"].tolist() == np.repeat(rows.index, 3).tolist() and frame["value"].tolist() == values * 2
    assert set(frame["feature"]) == {"credit_score"}
    assert frame["prediction"].between(0, 1).all() and set(frame["predicted_label"]) <= {0, 1}
    np.testing.assert_allclose(frame["prediction"], model.predict_proba(varied)[:, 1])
    np.testing.assert_allclose(frame["current_prediction"], np.repeat(model.predict_proba(rows)[:, 1], 3))
    by_row = frame.groupby("row")["prediction"]
    assert (by_row.last() > by_row.first()).all()  # a better credit score raises the approval probability
    categorical = explanations.what_if(model, rows, "region", explanations.feature_grid(x_test["region"]))
    assert categorical["value"].tolist() == sorted(x_test["region"].dropna().unique().tolist()) * 2


def test_what_if_for_regression_and_multiclass():
    frame = make_loans(1500, seed=2)
    x = frame.drop(columns=["income", "employment"])
    regression = estimators.build_pipeline(
        x, ModelParams(estimator="sklearn.ensemble.HistGradientBoostingRegressor", params={"max_iter": 20}), "regression"
    ).fit(x, frame["income"].fillna(0))
    rows = x.iloc[:3]
    result = explanations.what_if(regression, rows, "age", [20, 40, 60])
    assert result["output"].eq("prediction").all() and "predicted_label" not in result
    np.testing.assert_allclose(result["prediction"], regression.predict(explanations.what_if_rows(rows, "age", [20, 40, 60])))
    table = explanations.partial_dependence_table(regression, x, ["age", "credit_score"], ice_rows=6, seed=1, grid_points=5)
    assert table.attrs["output"] == "prediction"
    _assert_as_scikit_learn(regression, x, table)

    multiclass = estimators.build_pipeline(x, ModelParams(params={"max_iter": 20}), "classification").fit(
        x, frame["employment"]
    )
    result = explanations.what_if(multiclass, rows, "age", [20, 40, 60])
    predicted = multiclass.predict(rows)
    assert result["output"].tolist() == [f"probability of class {label}" for label in np.repeat(predicted, 3)]
    columns = [list(multiclass.classes_).index(label) for label in np.repeat(predicted, 3)]
    probabilities = multiclass.predict_proba(explanations.what_if_rows(rows, "age", [20, 40, 60]))
    np.testing.assert_allclose(result["prediction"], probabilities[np.arange(9), columns])
    table = explanations.partial_dependence_table(multiclass, x, ["age"], ice_rows=5, seed=0, grid_points=5)
    assert table.attrs["output"] == f"probability of class {multiclass.classes_[-1]}"
    assert len(table) == 5 + 5 * 5
    _assert_as_scikit_learn(multiclass, x, table)


def test_a_classifier_without_probabilities_still_gets_a_what_if_and_partial_dependence(tmp_path):
    frame = make_loans(800, seed=4)
    x = frame.drop(columns=TARGET)
    model = estimators.build_pipeline(x, ModelParams(estimator="sklearn.svm.LinearSVC"), "classification").fit(
        x, frame[TARGET]
    )
    result = explanations.what_if(model, x.iloc[:2], "credit_score", [500.0, 800.0])
    assert result["output"].eq("predicted class").all() and set(result["prediction"]) <= {0, 1}
    assert explanations.plot_what_if(result, tmp_path / "what_if.png").is_file()
    table = explanations.partial_dependence_table(model, x, ["credit_score"], ice_rows=5, seed=0, grid_points=4)
    assert table.attrs["output"] == "decision function of class 1" and len(table) == 4 + 5 * 4
    _assert_as_scikit_learn(model, x, table)


def _assert_as_scikit_learn(model, x, table):
    """The batched computation gives scikit-learn's partial_dependence(kind="both") numbers, on the same rows and grid."""
    from sklearn.inspection import partial_dependence

    for feature, rows in table.groupby("feature", sort=False):
        ice = rows[rows["curve"] == "ice"]
        labels = list(dict.fromkeys(ice["row"]))
        grid = rows[rows["curve"] == "average"]["value"].to_numpy(float)
        sample = x.loc[labels].astype({feature: float})  # scikit-learn refuses integer columns here
        expected = partial_dependence(model, sample, [feature], kind="both", custom_values={feature: grid})
        classes = len(getattr(model, "classes_", []))
        output = classes - 1 if classes > 2 else 0  # the default target: the last class
        np.testing.assert_allclose(ice["prediction"].to_numpy().reshape(len(labels), -1), expected["individual"][output])
        np.testing.assert_allclose(rows[rows["curve"] == "average"]["prediction"], expected["average"][output])


def test_partial_dependence_table_is_tidy_and_averages_its_ice_curves(loans):
    model, x_test, _ = loans
    table = explanations.partial_dependence_table(model, x_test, ["credit_score", "debt_to_income"], ice_rows=20,
                                                  seed=SEED, grid_points=10)
    assert list(table.columns) == ["feature", "curve", "row", "value", "prediction"]
    assert len(table) == 2 * (10 + 20 * 10) and table.attrs["output"] == "probability of class 1"
    for feature, rows in table.groupby("feature"):
        ice = rows[rows["curve"] == "ice"].pivot(index="row", columns="value", values="prediction")
        average = rows[rows["curve"] == "average"].set_index("value")["prediction"]
        np.testing.assert_allclose(ice.mean().to_numpy(), average.loc[ice.columns].to_numpy())
        assert ice.index.isin(x_test.index).all() and len(ice) == 20
    _assert_as_scikit_learn(model, x_test, table)
    low, high = np.nanpercentile(x_test["credit_score"], [5, 95])
    grid = table[table["feature"] == "credit_score"]["value"].unique()
    assert grid.min() == pytest.approx(low) and grid.max() == pytest.approx(high)


# ---------------------------------------------------------------- determinism


def _write_everything(model, x_test, y_test, folder):
    folder.mkdir()
    csv = {"index": False, "lineterminator": "\n", "float_format": "%.10g"}
    importances = explanations.permutation_importances(model, x_test, y_test, scoring="roc_auc", n_repeats=2, seed=SEED)
    importances.to_csv(folder / "importance.csv", **csv)
    explanations.plot_importances(importances, folder / "importance.png")
    dependence = explanations.partial_dependence_table(model, x_test, explanations.top_numeric(importances, x_test, 2),
                                                       ice_rows=15, seed=SEED, grid_points=8)
    dependence.to_csv(folder / "dependence.csv", **csv)
    explanations.plot_partial_dependence(dependence, folder / "dependence.png")
    rows = x_test.sample(n=2, random_state=SEED)
    scenarios = explanations.what_if(model, rows, "credit_score", explanations.feature_grid(x_test["credit_score"], 8))
    scenarios.to_csv(folder / "what_if.csv", **csv)
    explanations.plot_what_if(scenarios, folder / "what_if.png")
    found = cohorts.error_cohorts(x_test, y_test, model.predict(x_test), task="classification", max_depth=3,
                                  min_samples_leaf=30, seed=SEED)
    found.table.to_csv(folder / "cohorts.csv", **csv)
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_explanations_are_byte_identical_across_runs_with_the_same_seed(loans, tmp_path):
    model, x_test, y_test = loans
    x_small, y_small = x_test.iloc[:600], y_test.iloc[:600]
    first = _write_everything(model, x_small, y_small, tmp_path / "one")
    again = _write_everything(model, x_small, y_small, tmp_path / "two")
    assert len(first) == 7 and first.keys() == again.keys()
    for name in first:
        assert first[name] == again[name], f"{name} differs between two runs with the same seed"
    for name in (n for n in first if n.endswith(".png")):
        assert b"Matplotlib" not in first[name] and len(first[name]) < 150_000, name


# ---------------------------------------------------------------- Shapley values, params


def test_shap_is_optional_and_says_how_to_enable_it(loans, monkeypatch):
    model, _, _ = loans
    monkeypatch.setattr(explanations, "shap_available", lambda: False)
    assert explanations.shap_unavailable(model) == explanations.SHAP_HINT
    assert "pip install 'reprobook[explain]'" in explanations.SHAP_HINT
    assert explanations.is_tree_model(model)
    assert explanations._raw_feature(["numeric__age", "categorical__region_islands", "categorical__employment_self_employed"],
                                     ["age", "region", "employment", "employment_years"]) == ["age", "region", "employment"]


def test_shap_values_of_one_hot_columns_add_up_to_their_feature(loans, monkeypatch, tmp_path):
    """The aggregation, with a stand-in for shap whose 'Shapley values' are the transformed inputs themselves."""
    import sys
    import types

    model, x_test, _ = loans
    fake = types.ModuleType("shap")
    fake.TreeExplainer = lambda estimator: types.SimpleNamespace(shap_values=lambda matrix: np.asarray(matrix) * 1.0)
    monkeypatch.setitem(sys.modules, "shap", fake)
    monkeypatch.setattr(explanations, "shap_available", lambda: True)
    assert explanations.shap_unavailable(model) is None
    x_small = x_test.iloc[:200]
    cohort = (x_small["employment"] == "self_employed").to_numpy()
    table = explanations.shap_importances(model, x_small, cohort=cohort).set_index("feature")
    assert table.loc["region", "mean_abs_shap"] == pytest.approx(1.0)  # one one-hot column is 1 in every row
    scaled = model[:-1].transform(x_small)[:, list(model[:-1].get_feature_names_out()).index("numeric__age")]
    assert table.loc["age", "mean_abs_shap"] == pytest.approx(np.abs(scaled).mean())
    assert table.loc["age", "mean_abs_shap_cohort"] == pytest.approx(np.abs(scaled[cohort]).mean())
    assert explanations.plot_shap(table.reset_index(), tmp_path / "shap.png").stat().st_size > 0

    fake.TreeExplainer = lambda estimator: (_ for _ in ()).throw(ValueError("unsupported"))
    with pytest.warns(UserWarning, match="shap could not explain HistGradientBoostingClassifier: unsupported"):
        assert explanations.shap_importances(model, x_small) is None


def test_shap_importances_overall_and_in_the_worst_cohort(loans):
    pytest.importorskip("shap")
    model, x_test, y_test = loans
    x_small, y_small = x_test.iloc[:400], y_test.iloc[:400]
    found = cohorts.error_cohorts(x_small, y_small, model.predict(x_small), task="classification", max_depth=2,
                                  min_samples_leaf=30, seed=SEED)
    table = explanations.shap_importances(model, x_small, cohort=found.rows(1))
    assert set(table["feature"]) == set(x_small.columns) and table["mean_abs_shap"].is_monotonic_decreasing
    assert table.set_index("feature").loc["noise", "rank"] > table.set_index("feature").loc["credit_score", "rank"]
    assert table["mean_abs_shap_cohort"].notna().all()


def test_error_analysis_params_are_validated_and_the_seed_is_logged():
    params = parse_params({"error_analysis": {"seed": 3, "cohort_depth": 2}})
    assert seeds(params)["error_analysis.seed"] == 3 and params.error_analysis.cohort_min_size is None
    for bad in ({"cohort_depth": 0}, {"permutation_repeats": 0}, {"explain_top_k": -1}, {"seed": -1}, {"ice_rows": 0}):
        with pytest.raises(ReprobookError, match=f"error_analysis.{next(iter(bad))}"):
            parse_params({"error_analysis": bad})


def test_every_metric_names_a_scorer_scikit_learn_has():
    from sklearn.metrics import get_scorer

    from reprobook.ml.metrics import METRICS

    for metric in METRICS.values():
        assert get_scorer(metric.scorer) is not None, metric.name
