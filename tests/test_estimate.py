"""Performance estimation without labels: calibration maps, estimates, intervals, the loan model."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from sklearn import metrics as skm

from reprobook.monitoring import estimate as est
from reprobook.monitoring.estimate import (
    Calibration,
    Estimate,
    estimable,
    estimate_from_scores,
    estimate_performance,
    fit_calibration,
)


def binary_batch(n: int, seed: int):
    """True probabilities p, labels drawn from them: calibration holds by construction."""
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 2, n)
    y = (rng.random(n) < p).astype(int)
    return np.column_stack([1 - p, p]), y


def multiclass_batch(n: int, seed: int, k: int = 3):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(k, 0.7), n)
    u = rng.random(n)[:, None]
    y = (u >= np.cumsum(p, axis=1)[:, :-1]).sum(axis=1)
    return p, y


def realized(name: str, y, predicted, scores, classes) -> float:
    if name == "accuracy":
        return skm.accuracy_score(y, predicted)
    if name == "balanced_accuracy":
        return skm.balanced_accuracy_score(y, predicted)
    if name == "f1_macro":
        return skm.f1_score(y, predicted, average="macro")
    if name == "roc_auc":
        if scores.shape[1] == 2:
            return skm.roc_auc_score(y, scores[:, 1])
        return skm.roc_auc_score(y, scores, multi_class="ovr", labels=classes)
    if name == "average_precision":
        return skm.average_precision_score(y == classes[1], scores[:, 1])
    if name == "log_loss":
        return skm.log_loss(y, scores, labels=classes)
    raise AssertionError(name)


# ------------------------------------------------------------------ calibration


@pytest.mark.parametrize("method", ["spline", "isotonic"])
def test_calibration_round_trips_through_json(method):
    scores, y = binary_batch(2000, 1)
    labels = np.array(["no", "yes"])[y]
    bent = scores**2 / (scores**2).sum(axis=1, keepdims=True)
    calibration = fit_calibration(bent, labels, np.array(["no", "yes"]), method=method, replicates=5)
    text = json.dumps(calibration.to_dict())
    back = Calibration.from_dict(json.loads(text))
    assert back == calibration
    assert back.method == method and len(back.replicates) == 5 and back.classes == ["no", "yes"]
    fresh, _ = binary_batch(500, 2)
    np.testing.assert_array_equal(back.apply(fresh), calibration.apply(fresh))
    np.testing.assert_array_equal(back.apply_replicates(fresh), calibration.apply_replicates(fresh))
    assert fit_calibration(bent, labels, ["no", "yes"], method=method, replicates=5) == calibration  # seeded
    with pytest.raises(ValueError, match="unknown method"):
        Calibration.from_dict({**calibration.to_dict(), "method": "platt"})

    mc_scores, mc_y = multiclass_batch(2000, 3)
    classes = np.array([10, 20, 30])  # numpy integers: written as plain ints
    multi = fit_calibration(mc_scores, classes[mc_y], classes)
    data = json.loads(json.dumps(multi.to_dict()))
    assert data["classes"] == [10, 20, 30] and len(data["knots"]) == 3
    assert Calibration.from_dict(data) == multi


@pytest.mark.parametrize("method", ["spline", "isotonic"])
@pytest.mark.parametrize("k", [2, 3])
def test_calibrated_rows_sum_to_one(k, method):
    scores, y = binary_batch(1000, 4) if k == 2 else multiclass_batch(1000, 4, k)
    calibration = fit_calibration(scores, y, list(range(k)), method=method, replicates=3)
    rng = np.random.default_rng(5)
    fresh = rng.dirichlet(np.ones(k), 700)
    fresh[:5] = np.eye(k)[np.arange(5) % k]  # extreme scores, beyond the calibration range
    for out in (calibration.apply(fresh), *calibration.apply_replicates(fresh)):
        assert out.shape == fresh.shape
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-6)
        assert (out >= 0).all() and (out <= 1).all()
    if k == 2:  # a binary map keeps the model's ranking
        order = np.argsort(fresh[:, 1])
        assert np.all(np.diff(calibration.apply(fresh)[order, 1]) >= 0)


def test_spline_keeps_scores_that_are_already_calibrated():
    scores, y = binary_batch(3000, 21)
    calibration = fit_calibration(scores, y, [0, 1])
    fresh, _ = binary_batch(5000, 22)
    assert np.abs(calibration.apply(fresh) - fresh).max() < 0.05


def test_a_class_too_rare_to_calibrate_keeps_its_scores():
    scores, _ = binary_batch(300, 23)
    y = np.zeros(300, dtype=int)
    y[0] = 1
    calibration = fit_calibration(scores, y, [0, 1], replicates=2)
    np.testing.assert_allclose(calibration.apply(scores), scores)


def test_calibration_repairs_miscalibrated_scores():
    true, y = binary_batch(3000, 6)
    bent = true[:, 1] ** 3  # same ranking, badly calibrated
    raw = np.column_stack([1 - bent, bent])
    calibration = fit_calibration(raw, y, [0, 1], replicates=0)
    isotonic = fit_calibration(raw, y, [0, 1], method="isotonic", replicates=0)
    fresh_true, fresh_y = binary_batch(20_000, 7)
    fresh_raw = np.column_stack([1 - fresh_true[:, 1] ** 3, fresh_true[:, 1] ** 3])
    calibrated = calibration.apply(fresh_raw)
    brier_raw = skm.brier_score_loss(fresh_y, fresh_raw[:, 1])
    brier_cal = skm.brier_score_loss(fresh_y, calibrated[:, 1])
    brier_best = skm.brier_score_loss(fresh_y, fresh_true[:, 1])
    assert brier_cal < brier_raw - 0.03
    assert brier_cal < brier_best + 0.002
    assert skm.brier_score_loss(fresh_y, isotonic.apply(fresh_raw)[:, 1]) < brier_best + 0.003
    assert skm.log_loss(fresh_y, calibrated) < skm.log_loss(fresh_y, fresh_raw) - 0.1

    # multiclass: powered and renormalised scores
    p, y = multiclass_batch(5000, 8)
    bend = lambda q: q**3 / (q**3).sum(axis=1, keepdims=True)  # noqa: E731
    multi = fit_calibration(bend(p), y, [0, 1, 2], replicates=0)
    fresh_p, fresh_y = multiclass_batch(20_000, 9)
    assert skm.log_loss(fresh_y, multi.apply(bend(fresh_p))) < skm.log_loss(fresh_y, bend(fresh_p)) - 0.1


# ------------------------------------------------------------------ estimates


@pytest.mark.parametrize("k", [2, 3, 4])
def test_each_draw_scores_like_scikit_learn(k):
    """The vectorised per-draw metrics equal scikit-learn's on the same labels (ties included)."""
    rng = np.random.default_rng(k)
    raw = rng.dirichlet(np.ones(k), 300)
    raw[:60] = np.round(raw[:60], 1)
    raw /= raw.sum(axis=1, keepdims=True)
    pred = raw.argmax(axis=1)
    probs = rng.dirichlet(np.ones(k), 300)
    labels = est._draw_labels(rng, np.cumsum(probs, axis=1)[None, :, :-1], np.zeros(6, dtype=int))
    classes = list(range(k))
    for name, sampler in est._SAMPLERS.items():
        if name == "average_precision" and k != 2:
            continue
        got = sampler(probs, pred, raw, k).sample(labels)
        want = [realized(name, y, pred, raw, classes) for y in labels]
        np.testing.assert_allclose(got, want, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("k", [2, 3])
def test_estimates_match_realized_on_a_large_calibrated_batch(k):
    probs, y = binary_batch(20_000, 11) if k == 2 else multiclass_batch(20_000, 11, k)
    classes = list(range(k))
    pred = probs.argmax(axis=1)
    names = ["accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "log_loss"]
    names += ["average_precision"] if k == 2 else []
    estimates = estimate_performance(probs, classes, names, predicted=pred, raw_scores=probs)
    assert list(estimates) == names
    for name, e in estimates.items():
        actual = realized(name, y, pred, probs, classes)
        assert abs(e.value - actual) < 0.01, (name, e, actual)
        assert e.low <= e.value <= e.high


@pytest.mark.parametrize("k", [2, 3])
def test_interval_covers_the_realized_metric(k):
    """Where calibration holds, the realized metric falls inside the 95% interval ~95% of the time."""
    names = ["accuracy", "roc_auc", "f1_macro"]
    inside = {name: 0 for name in names}
    reps = 150
    for rep in range(reps):
        probs, y = binary_batch(1000, 100 + rep) if k == 2 else multiclass_batch(1000, 100 + rep, k)
        pred = probs.argmax(axis=1)
        estimates = estimate_performance(probs, list(range(k)), names, predicted=pred, raw_scores=probs, seed=rep)
        for name in names:
            actual = realized(name, y, pred, probs, list(range(k)))
            inside[name] += estimates[name].low <= actual <= estimates[name].high
    for name in names:
        assert 0.90 * reps <= inside[name] <= 0.99 * reps, (name, inside[name], reps)


def test_replicates_carry_the_calibration_uncertainty_into_the_interval():
    """Calibrated on 1,000 rows, estimated on 5,000: the label-only interval is too narrow, the replicates' is not."""
    reps, inside, inside_labels_only = 20, {"accuracy": 0, "roc_auc": 0}, {"accuracy": 0, "roc_auc": 0}
    for rep in range(reps):
        true, y = binary_batch(1000, 300 + rep)
        bend = lambda p: np.column_stack([1 - p[:, 1] ** 2, p[:, 1] ** 2])  # noqa: E731
        calibration = fit_calibration(bend(true), y, [0, 1], replicates=20, seed=rep)
        batch, batch_y = binary_batch(5000, 600 + rep)
        raw = bend(batch)
        predicted = raw.argmax(axis=1)
        with_replicates = estimate_from_scores(calibration, raw, ["accuracy", "roc_auc"], predicted=predicted, seed=rep)
        labels_only = estimate_performance(calibration.apply(raw), [0, 1], ["accuracy", "roc_auc"],
                                           predicted=predicted, raw_scores=raw, seed=rep)
        for name in inside:
            actual = realized(name, batch_y, predicted, raw, [0, 1])
            inside[name] += with_replicates[name].low <= actual <= with_replicates[name].high
            inside_labels_only[name] += labels_only[name].low <= actual <= labels_only[name].high
            width = with_replicates[name].high - with_replicates[name].low
            assert width > labels_only[name].high - labels_only[name].low
    # measured over 100 repetitions: 85-92% with replicates, 53% without
    for name in inside:
        assert inside[name] >= 0.75 * reps, (name, inside, inside_labels_only)
        assert inside[name] > inside_labels_only[name]


def test_predicted_labels_are_taken_as_given():
    """The estimate scores the model's own predictions, not the argmax of the calibrated probabilities."""
    probs, y = binary_batch(5000, 12)
    raw = probs.copy()
    calibrated = np.column_stack([1 - probs[:, 1] ** 0.5, probs[:, 1] ** 0.5])  # argmax differs from raw's
    predicted = np.array(["neg", "pos"])[raw.argmax(axis=1)]
    estimates = estimate_performance(calibrated, ["neg", "pos"], ["accuracy"], predicted=predicted, raw_scores=raw)
    default = estimate_performance(calibrated, ["neg", "pos"], ["accuracy"], raw_scores=raw)
    expected = np.where(predicted == "pos", calibrated[:, 1], calibrated[:, 0]).mean()
    assert estimates["accuracy"].value == pytest.approx(expected)
    assert default["accuracy"].value == pytest.approx(expected)  # argmax of the raw scores
    from_calibrated = estimate_performance(calibrated, ["neg", "pos"], ["accuracy"])
    assert from_calibrated["accuracy"].value > expected + 0.01
    with pytest.raises(ValueError, match="not one of the classes"):
        estimate_performance(calibrated, ["neg", "pos"], ["accuracy"], predicted=np.array(["maybe"] * 5000))


def test_deterministic_for_a_seed_and_unsupported_metrics_left_out():
    probs, _ = multiclass_batch(3000, 13)
    names = ["roc_auc", "r2", "nonsense", "average_precision", "f1_macro", "accuracy"]
    first = estimate_performance(probs, [0, 1, 2], names, raw_scores=probs, seed=3)
    again = estimate_performance(probs, [0, 1, 2], names, raw_scores=probs, seed=3)
    other = estimate_performance(probs, [0, 1, 2], names, raw_scores=probs, seed=4)
    assert first == again
    assert list(first) == ["roc_auc", "f1_macro", "accuracy"]  # r2, unknown, AP on 3 classes: left out
    assert first["roc_auc"] != other["roc_auc"]
    assert first["accuracy"].value == other["accuracy"].value  # closed form
    # score metrics need the raw scores
    assert list(estimate_performance(probs, [0, 1, 2], ["roc_auc", "log_loss", "accuracy"])) == ["accuracy"]
    assert estimate_performance(probs[:0], [0, 1, 2], ["accuracy"]) == {}
    assert json.loads(json.dumps(first["roc_auc"].to_dict()))["metric"] == "roc_auc"
    assert isinstance(first["accuracy"], Estimate)


def test_estimable_tasks():
    assert estimable("classification")
    assert not estimable("regression")


def test_fast_enough():
    probs, _ = binary_batch(5000, 14)
    estimate_performance(probs, [0, 1], ["accuracy"], raw_scores=probs)  # imports out of the timing
    start = time.perf_counter()
    estimate_performance(probs, [0, 1], ["accuracy", "roc_auc", "f1_macro"], raw_scores=probs, draws=400)
    assert time.perf_counter() - start < 0.5
    big, _ = binary_batch(100_000, 15)
    start = time.perf_counter()
    result = estimate_performance(big, [0, 1], ["accuracy", "roc_auc", "f1_macro"], raw_scores=big, draws=400)
    assert time.perf_counter() - start < 3.0
    assert result["roc_auc"].high - result["roc_auc"].low < 0.02


# ------------------------------------------------------------------ the loan model


def loan_model(frame):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    categorical = [c for c in frame.columns if frame[c].dtype == object or str(frame[c].dtype) in ("str", "string")]
    encode = ColumnTransformer(
        [("categories", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                       encoded_missing_value=-1), categorical)],
        remainder="passthrough",
    )
    return make_pipeline(encode, HistGradientBoostingClassifier(max_depth=4, max_iter=150, random_state=42))


def test_loan_model_estimate_matches_realized():
    from sklearn.model_selection import train_test_split

    from reprobook.ml.loans import TARGET, make_loans

    frame = make_loans(5000, 42)
    train, holdout = train_test_split(frame, test_size=0.2, random_state=42, stratify=frame[TARGET])
    features = [c for c in frame.columns if c != TARGET]
    model = loan_model(train[features]).fit(train[features], train[TARGET])
    calibration = fit_calibration(model.predict_proba(holdout[features]), holdout[TARGET], model.classes_)

    batch = make_loans(5000, seed=7)
    raw = model.predict_proba(batch[features])
    predicted = model.predict(batch[features])
    estimates = estimate_from_scores(calibration, raw, ["accuracy", "roc_auc"], predicted=predicted)
    actual = {"accuracy": skm.accuracy_score(batch[TARGET], predicted),
              "roc_auc": skm.roc_auc_score(batch[TARGET], raw[:, 1])}
    for name in actual:  # measured: accuracy 0.823 vs 0.811, AUC 0.890 vs 0.876
        assert abs(estimates[name].value - actual[name]) <= 0.03, (name, estimates[name], actual[name])
        assert estimates[name].low <= actual[name] <= estimates[name].high
