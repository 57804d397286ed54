"""Error analysis on crafted data whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from reprobook.errors import ReprobookError
from reprobook.ml.error_analysis import (
    bin_numeric,
    confusion_table,
    fairness_gaps,
    per_class_report,
    plot_slices,
    slice_metrics,
    worst_slices,
)


def _crafted_classification():
    """region a: 40 rows always wrong; b: 60 rows always right; c: 5 rows, right (too small)."""
    rng = np.random.default_rng(0)
    region = ["a"] * 40 + ["b"] * 60 + ["c"] * 5
    y_true = rng.integers(0, 2, len(region))
    y_pred = np.where(np.array(region) == "a", 1 - y_true, y_true)
    features = pd.DataFrame({"region": region, "noise": rng.normal(size=len(region))})
    return features, y_true, y_pred


# ---------------------------------------------------------------- per class, confusion


@pytest.mark.parametrize("y_true, y_pred", [
    ([0, 1, 1, 0, 1, 1, 0], [0, 1, 0, 0, 1, 1, 1]),
    (["cat", "dog", "eel", "dog", "cat", "eel"], ["cat", "cat", "eel", "dog", "dog", "dog"]),
])
def test_per_class_report_equals_sklearn(y_true, y_pred):
    report = per_class_report(y_true, y_pred)
    classes = sorted(set(y_true) | set(y_pred))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    assert report["class"].tolist() == classes
    np.testing.assert_allclose(report["precision"], precision)
    np.testing.assert_allclose(report["recall"], recall)
    np.testing.assert_allclose(report["f1"], f1)
    assert report["support"].tolist() == support.tolist()


def test_per_class_report_lists_a_class_only_predicted_with_zero_support():
    report = per_class_report(["a", "a", "b"], ["a", "c", "b"])
    row = report.set_index("class").loc["c"]
    assert (row["precision"], row["recall"], row["support"]) == (0.0, 0.0, 0)


def test_confusion_table_has_every_pair_including_zeros():
    y_true, y_pred = ["x", "x", "y", "z"], ["x", "y", "y", "y"]
    table = confusion_table(y_true, y_pred)
    assert list(table.columns) == ["actual", "predicted", "count"]
    assert len(table) == 9 and table["count"].sum() == 4
    assert list(zip(table["actual"], table["predicted"]))[:3] == [("x", "x"), ("x", "y"), ("x", "z")]
    expected = confusion_matrix(y_true, y_pred, labels=["x", "y", "z"]).ravel()
    assert table["count"].tolist() == expected.tolist()


def test_mixed_label_kinds_and_length_mismatch_are_clear_errors():
    with pytest.raises(ReprobookError, match="mixture of strings and numbers"):
        per_class_report(["a", "b"], [1, 0])
    with pytest.raises(ReprobookError, match="same length, found 3 and 2"):
        confusion_table([0, 1, 1], [0, 1])
    with pytest.raises(ReprobookError, match="missing values"):
        per_class_report([0, None, 1], [0, 1, 1])


# ---------------------------------------------------------------- binning


def test_bin_numeric_quantile_bins_with_readable_labels_and_missing():
    series = pd.Series(list(range(100)) + [None], dtype="float64", name="age")
    bins = bin_numeric(series, 4)
    assert list(bins.cat.categories) == ["[0, 24.8)", "[24.8, 49.5)", "[49.5, 74.2)", "[74.2, 99]", "missing"]
    assert bins.value_counts(sort=False).tolist() == [25, 25, 25, 25, 1]
    assert bins.iloc[24] == "[0, 24.8)" and bins.iloc[25] == "[24.8, 49.5)" and bins.iloc[100] == "missing"
    assert bins.index.equals(series.index)


def test_bin_numeric_falls_back_to_values_and_point_masses():
    flags = bin_numeric(pd.Series([0, 1, 1, 0, 2]), 4)
    assert flags.tolist() == ["0", "1", "1", "0", "2"]
    zero_inflated = bin_numeric(pd.Series([0.0] * 50 + [1, 2, 3, 4, 5, 6]), 4)
    assert zero_inflated.value_counts(sort=False).to_dict() == {"0": 50, "[1, 6]": 6}
    assert bin_numeric(pd.Series([np.nan, np.nan]), 3).tolist() == ["missing", "missing"]


def test_bin_numeric_refuses_non_numeric():
    with pytest.raises(ReprobookError, match="'name'.*numeric"):
        bin_numeric(pd.Series(["a", "b"], name="name"), 3)


# ---------------------------------------------------------------- slices


def test_always_wrong_slice_ranks_first_with_its_cost():
    features, y_true, y_pred = _crafted_classification()
    slices = slice_metrics(features, y_true, y_pred, task="classification", min_slice_size=10, numeric_bins=4)
    overall = 65 / 105
    a = slices[(slices["feature"] == "region") & (slices["slice"] == "a")].iloc[0]
    assert a["size"] == 40 and a["errors"] == 40 and a["metric"] == 0.0
    assert a["overall"] == pytest.approx(overall)
    assert a["gap"] == pytest.approx(overall)
    assert a["cost"] == pytest.approx(40 * overall)
    b = slices[(slices["feature"] == "region") & (slices["slice"] == "b")].iloc[0]
    assert b["gap"] == pytest.approx(-(1 - overall)) and b["cost"] < 0

    worst = worst_slices(slices, top_k=3)
    assert (worst.loc[0, "feature"], worst.loc[0, "slice"], worst.loc[0, "rank"]) == ("region", "a", 1)
    assert worst.loc[0, "cost"] == pytest.approx(40 * overall)
    assert (worst["cost"] > 0).all() and worst["cost"].is_monotonic_decreasing
    assert "b" not in worst.loc[worst["feature"] == "region", "slice"].tolist()


def test_small_slices_are_excluded_and_counted():
    features, y_true, y_pred = _crafted_classification()
    slices = slice_metrics(features[["region"]], y_true, y_pred, task="classification",
                           min_slice_size=10, numeric_bins=4)
    assert slices["slice"].tolist() == ["a", "b"]
    assert slices.attrs["skipped_small_slices"] == 1
    everything = slice_metrics(features[["region"]], y_true, y_pred, task="classification",
                               min_slice_size=1, numeric_bins=4)
    assert everything["slice"].tolist() == ["a", "b", "c"]
    assert everything.attrs["skipped_small_slices"] == 0


def test_missing_values_are_their_own_slice_and_bool_columns_are_sliced():
    features = pd.DataFrame({"kind": ["x", None, "x", None], "flag": [True, False, True, False]})
    slices = slice_metrics(features, [1, 1, 0, 0], [1, 0, 0, 1], task="classification",
                           min_slice_size=1, numeric_bins=2)
    assert list(zip(slices["feature"], slices["slice"], slices["size"])) == [
        ("kind", "x", 2), ("kind", "missing", 2), ("flag", "False", 2), ("flag", "True", 2)
    ]
    assert slices.set_index("slice").loc["missing", "metric"] == 0.0


def test_rows_align_by_position_not_index():
    features = pd.DataFrame({"g": ["p", "p", "q", "q"]}, index=[10, 11, 12, 13])
    y_true = pd.Series([1, 1, 0, 0], index=[3, 2, 1, 0])
    slices = slice_metrics(features, y_true, [1, 1, 1, 1], task="classification", min_slice_size=1, numeric_bins=2)
    assert slices.set_index("slice")["metric"].to_dict() == {"p": 1.0, "q": 0.0}


def test_regression_slices_use_mae_and_lower_is_better():
    features = pd.DataFrame({"site": ["good"] * 30 + ["bad"] * 10})
    y_true = np.zeros(40)
    y_pred = np.array([1.0] * 30 + [5.0] * 10)  # MAE: good 1, bad 5, overall 80/40 = 2
    slices = slice_metrics(features, y_true, y_pred, task="regression", min_slice_size=5, numeric_bins=4)
    by_slice = slices.set_index("slice")
    assert by_slice.loc["bad", "metric_name"] == "mae"
    assert by_slice.loc["bad", "overall"] == pytest.approx(2.0)
    assert by_slice.loc["bad", "gap"] == pytest.approx(3.0) and by_slice.loc["bad", "cost"] == pytest.approx(30.0)
    assert by_slice.loc["bad", "errors"] == pytest.approx(50.0)
    assert by_slice.loc["good", "gap"] == pytest.approx(-1.0)
    worst = worst_slices(slices, top_k=5)
    assert worst["slice"].tolist() == ["bad"]


def test_slice_equal_to_overall_has_zero_cost_and_is_not_ranked():
    rng = np.random.default_rng(3)
    y_true = rng.normal(size=101)
    y_pred = y_true + rng.normal(size=101)
    slices = slice_metrics(pd.DataFrame({"one": ["all"] * 101}), y_true, y_pred, task="regression",
                           min_slice_size=1, numeric_bins=4)
    assert slices["gap"].tolist() == [0.0]
    assert worst_slices(slices, top_k=5).empty


def test_worst_slices_breaks_ties_deterministically():
    slices = pd.DataFrame({
        "feature": ["f", "e", "f", "e"], "slice": ["b", "z", "a", "y"], "size": [10, 10, 10, 20],
        "metric_name": "accuracy", "metric": [0.5, 0.5, 0.5, 0.75], "overall": 1.0,
        "gap": [0.5, 0.5, 0.5, 0.25], "cost": [5.0, 5.0, 5.0, 5.0], "errors": [5, 5, 5, 5],
    })
    ranked = worst_slices(slices, top_k=10)
    assert list(zip(ranked["feature"], ranked["slice"])) == [("e", "z"), ("f", "a"), ("f", "b"), ("e", "y")]
    shuffled = worst_slices(slices.sample(frac=1, random_state=1), top_k=10)
    pd.testing.assert_frame_equal(ranked, shuffled)
    assert worst_slices(slices, top_k=2)["rank"].tolist() == [1, 2]


def test_outputs_are_deterministic(tmp_path):
    features, y_true, y_pred = _crafted_classification()
    features["score"] = np.linspace(0, 1, len(features))

    def run(out):
        slices = slice_metrics(features, y_true, y_pred, task="classification", min_slice_size=5, numeric_bins=3)
        worst = worst_slices(slices, top_k=5)
        fair = fairness_gaps(features, y_true, y_pred, sensitive=["region"], task="classification",
                             min_group_size=5, numeric_bins=3)
        png = plot_slices(slices, out / "worst.png")
        return slices, worst, fair, png.read_bytes()

    first, second = run(tmp_path / "one"), run(tmp_path / "two")
    for a, b in zip(first[:3], second[:3]):
        pd.testing.assert_frame_equal(a, b)
        assert a.to_csv(index=False) == b.to_csv(index=False)
    assert first[3] == second[3] and first[3].startswith(b"\x89PNG")


def test_plot_slices_handles_no_bad_slice(tmp_path):
    slices = slice_metrics(pd.DataFrame({"g": ["a", "b"]}), [1, 0], [1, 0], task="classification",
                           min_slice_size=1, numeric_bins=2)
    path = plot_slices(slices, tmp_path / "nested" / "empty.png")
    assert path.exists() and path.read_bytes().startswith(b"\x89PNG")


def test_unknown_task_is_a_clear_error():
    with pytest.raises(ReprobookError, match="task: expected one of classification, regression, found 'ranking'"):
        slice_metrics(pd.DataFrame({"g": ["a"]}), [1], [1], task="ranking", min_slice_size=1, numeric_bins=2)


# ---------------------------------------------------------------- fairness


def _fairness_data(labels=(0, 1)):
    """g1: acc 3/4, selection 1/4, TPR 1/2; g2: acc 2/4, selection 4/4, TPR 1; g3 too small."""
    no, yes = labels
    block_true = {"g1": [yes, yes, no, no], "g2": [yes, yes, no, no], "g3": [yes, no]}
    block_pred = {"g1": [yes, no, no, no], "g2": [yes, yes, yes, yes], "g3": [no, no]}
    repeats = {"g1": 10, "g2": 10, "g3": 2}
    group, y_true, y_pred = [], [], []
    for g in ("g1", "g2", "g3"):
        group += [g] * 4 * repeats[g] if g != "g3" else [g] * 2 * repeats[g]
        y_true += block_true[g] * repeats[g]
        y_pred += block_pred[g] * repeats[g]
    return pd.DataFrame({"group": group, "other": 1.0}), y_true, y_pred


@pytest.mark.parametrize("labels", [(0, 1), ("no", "yes")])
def test_fairness_gaps_match_hand_computed_values(labels):
    features, y_true, y_pred = _fairness_data(labels)
    fair = fairness_gaps(features, y_true, y_pred, sensitive=["group"], task="classification",
                         min_group_size=10, numeric_bins=4)
    row = fair.iloc[0]
    assert (row["attribute"], row["best_group"], row["worst_group"]) == ("group", "g1", "g2")
    assert (row["groups"], row["skipped_groups"], row["positive_class"]) == (2, 1, str(labels[1]))
    assert row["best_metric"] == pytest.approx(0.75) and row["worst_metric"] == pytest.approx(0.5)
    assert row["gap"] == pytest.approx(0.25)
    assert row["selection_rate_gap"] == pytest.approx(0.75)
    assert row["tpr_gap"] == pytest.approx(0.5)


def test_fairness_regression_and_multiclass():
    features = pd.DataFrame({"sex": ["f"] * 20 + ["m"] * 20})
    y_true = np.zeros(40)
    y_pred = np.array([0.5] * 20 + [2.0] * 20)
    fair = fairness_gaps(features, y_true, y_pred, sensitive=["sex"], task="regression",
                         min_group_size=5, numeric_bins=4)
    row = fair.iloc[0]
    assert (row["metric_name"], row["best_group"], row["worst_group"]) == ("mae", "f", "m")
    assert row["gap"] == pytest.approx(1.5)
    assert np.isnan(row["selection_rate_gap"]) and row["positive_class"] is None

    multi = fairness_gaps(features, ["a", "b", "c", "a"] * 10, ["a", "b", "b", "a"] * 10, sensitive=["sex"],
                          task="classification", min_group_size=5, numeric_bins=4)
    assert multi.iloc[0]["gap"] == pytest.approx(0.0) and np.isnan(multi.iloc[0]["tpr_gap"])


def test_fairness_bins_numeric_sensitive_attributes():
    features = pd.DataFrame({"age": np.arange(40, dtype=float)})
    y_true = np.ones(40, dtype=int)
    y_pred = np.array([1] * 20 + [0] * 20)
    fair = fairness_gaps(features, y_true, y_pred, sensitive=["age"], task="classification",
                         min_group_size=5, numeric_bins=2)
    row = fair.iloc[0]
    assert (row["best_group"], row["worst_group"], row["gap"]) == ("[0, 19.5)", "[19.5, 39]", 1.0)


def test_missing_sensitive_column_names_it_and_lists_available_columns():
    features, y_true, y_pred = _fairness_data()
    with pytest.raises(ReprobookError) as caught:
        fairness_gaps(features, y_true, y_pred, sensitive=["gender"], task="classification",
                      min_group_size=1, numeric_bins=4)
    message = str(caught.value)
    assert "'gender'" in message and "available columns: group, other" in message
    assert caught.value.exit_code == 1
