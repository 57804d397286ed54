"""Performance estimation without labels: what the model's quality on a batch probably is.

After deployment the labels of a batch arrive late, or never. Its *features* are
there at once, and so are the model's scores. If the model's probabilities are
calibrated — a row scored 0.8 is positive 80% of the time — then the metric a
batch *would* get once its labels arrive has a known distribution: draw each
row's label from its calibrated probabilities, independently, and compute the
metric. This is NannyML's CBPE (confidence-based performance estimation), with
three differences: the calibration map is a JSON artefact stored with the
reference profile, it is a smooth map shrunk towards the model's own scores
(CBPE: isotonic regression, or none), and the estimate comes with an interval
that includes the uncertainty of the calibration.

Assumption (the same as CBPE's): P(y | score), learned on held-out reference
rows, still holds on the batch. Under covariate shift P(y | x) stays the same,
but P(y | score) only approximately so — a model is not exactly right
everywhere, and a shifted batch weights the regions where it is wrong
differently (benchmarks/results/monitoring_estimation.md measures how much).
Under concept shift (P(y | x) changes) the assumption fails outright: the
estimate keeps reporting reference-like quality, and only labels can reveal
the drop.

Workflow::

    scores = model.predict_proba(x_holdout)                   # held-out reference rows, with labels
    calibration = fit_calibration(scores, y_holdout, model.classes_)
    json.dumps(calibration.to_dict())                         # store it next to the model
    raw = model.predict_proba(x_batch)                        # later: a batch without labels
    estimates = estimate_from_scores(calibration, raw, ["accuracy", "roc_auc"],
                                     predicted=model.predict(x_batch))
    estimates["accuracy"].value, estimates["accuracy"].low, estimates["accuracy"].high

``estimate_from_scores`` is ``estimate_performance(calibration.apply(raw),
calibration.classes, metrics, predicted=..., raw_scores=raw,
replicates=calibration.apply_replicates(raw))``.

Method. Rows i = 1..n, calibrated probabilities c_i, predicted labels (given:
what the model said) and raw scores (given: what a realized ROC AUC ranks by).
Only the labels are unknown: y_i ~ Categorical(c_i), independently.

* The point estimate is the metric's expectation under that model: exact for
  accuracy (mean of c_i[predicted_i]) and log loss (mean of
  -sum_k c_ik log raw_ik); for the ratios (ROC AUC, average precision,
  balanced accuracy, F1) the metric of the expected confusion matrix or
  curve, as CBPE computes it — it differs from the expectation of the ratio
  by O(1/n) (below 0.002 at 1,000 rows; 0.01 for average precision at 100).
* The interval is the central (1 - alpha) interval of the metric's
  distribution over ``draws`` Monte-Carlo label vectors (seeded, generated in
  blocks of a (draws x n) array): the spread of the *realized* metric on a
  batch of this size, which is what a user compares the realized value
  against when the labels arrive. Given bootstrap replicates of the
  calibration, each draw takes its labels from one replicate, so the
  interval also covers the calibration's own uncertainty (which at 1,000
  calibration rows is larger than the labels' randomness at 5,000 rows).
* ROC AUC per draw is the Mann–Whitney statistic from the ranks of the raw
  scores, computed once (ties get average ranks, as in scikit-learn): the sum
  of the positives' ranks is one matrix-vector product per block of draws.
  Multiclass: one-vs-rest per class, macro mean (scikit-learn's
  ``roc_auc_score(multi_class="ovr")``).
* Cost is O(draws x n x k). Above ``MAX_CELLS`` = 20 million label cells the
  number of draws shrinks to fit (never below 100): 100,000 rows get 200
  draws, about a second. The metric's spread shrinks like 1 / sqrt(n), so a
  quantile from 200 draws is still fine at such sizes.

Metrics (names as in :data:`reprobook.ml.metrics.METRICS`, classification):
``accuracy``, ``balanced_accuracy``, ``f1_macro`` (need predicted labels, taken
as the argmax of ``raw_scores`` — else of ``calibrated`` — when not given),
``roc_auc``, ``average_precision`` (binary only) and ``log_loss`` (need
``raw_scores``). Any other name — regression metrics, unknown names, a
score metric without ``raw_scores``, ``average_precision`` on a multiclass
target — is left out of the result: the caller sees which metrics were
estimated by the keys it gets back. Regression is not estimable at all
(:func:`estimable`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from reprobook.monitoring.capture import plain

LABEL_METRICS = ("accuracy", "balanced_accuracy", "f1_macro")
SCORE_METRICS = ("roc_auc", "average_precision", "log_loss")
SUPPORTED = LABEL_METRICS + SCORE_METRICS

MAX_CELLS = 20_000_000
"""Upper bound on draws x rows simulated per call (see the module docstring)."""
MIN_DRAWS = 100
BLOCK_CELLS = 2_000_000
"""Label cells generated at once: bounds the memory of one block (a few tens of MB)."""



# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    """Calibration maps of a classifier's scores, as plain numbers (JSON, no pickle).

    ``knots[j] = (x, y)``: the raw score ``x`` of map j becomes the probability
    ``np.interp(score, x, y)`` — linear between knots, constant beyond the end
    knots (as scikit-learn's ``IsotonicRegression(out_of_bounds="clip")``).
    Binary targets keep one map, for the positive class ``classes[1]``;
    multiclass targets one map per class (one-vs-rest), whose outputs are
    renormalised to sum to 1 per row. ``method`` records how the maps were fitted
    (``"spline"`` or ``"isotonic"``, see :func:`fit_calibration`).

    ``replicates[r][j]``: map j refitted on bootstrap resample r of the
    calibration rows, as y values at the same ``x`` knots. They carry the
    uncertainty of the maps into the interval of :func:`estimate_performance`
    (see :meth:`apply_replicates`); empty when fitted with ``replicates=0``.
    """

    classes: list
    knots: list[tuple[list[float], list[float]]] = field(default_factory=list)
    method: str = "spline"
    replicates: list[list[list[float]]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "classes": [plain(c) for c in self.classes],
            "knots": [{"x": [float(v) for v in x], "y": [float(v) for v in y]} for x, y in self.knots],
            "replicates": [[[float(v) for v in y] for y in maps] for maps in self.replicates],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        method = data.get("method", "spline")
        if method not in METHODS:
            raise ValueError(f"calibration: unknown method {method!r}; expected one of {', '.join(METHODS)}")
        knots = [(list(map(float, k["x"])), list(map(float, k["y"]))) for k in data["knots"]]
        replicates = [[list(map(float, y)) for y in maps] for maps in data.get("replicates", [])]
        return cls(classes=list(data["classes"]), knots=knots, method=method, replicates=replicates)

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Raw ``predict_proba`` output (n, k) -> calibrated probabilities (n, k), rows summing to 1."""
        scores = self._check(scores)
        return _combine(scores, [np.interp(scores[:, j], x, y) for j, (x, y) in zip(self._columns(), self.knots)])

    def apply_replicates(self, scores: np.ndarray) -> np.ndarray | None:
        """(R, n, k) float32: the scores calibrated by each bootstrap replicate of the maps; None without any."""
        if not self.replicates:
            return None
        scores = self._check(scores)
        mapped = [
            _interp_many(scores[:, j], x, np.array([maps[m] for maps in self.replicates]))
            for m, (j, (x, _)) in enumerate(zip(self._columns(), self.knots))
        ]
        return np.stack([_combine(scores, [column[r] for column in mapped]) for r in range(len(self.replicates))])

    def _columns(self) -> list[int]:
        return [1] if len(self.classes) == 2 else list(range(len(self.classes)))

    def _check(self, scores) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        k = len(self.classes)
        if scores.ndim != 2 or scores.shape[1] != k:
            raise ValueError(
                f"calibration: scores of shape {scores.shape}; expected (n, {k}) for classes {self.classes}")
        return scores


def _interp_many(values: np.ndarray, x: list[float], ys: np.ndarray) -> np.ndarray:
    """``np.interp(values, x, y)`` for every row y of ``ys`` (R, len(x)) -> (R, n) float32, locating values once."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 1:
        return np.repeat(ys[:, :1], len(values), axis=1).astype(np.float32)
    clipped = np.clip(values, x[0], x[-1])
    right = np.clip(np.searchsorted(x, clipped, side="right"), 1, len(x) - 1)
    left = right - 1
    width = x[right] - x[left]
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(width > 0, (clipped - x[left]) / width, 1.0)
    out = ys[:, left] * (1 - weight) + ys[:, right] * weight
    return out.astype(np.float32)


def _combine(scores: np.ndarray, mapped: list[np.ndarray]) -> np.ndarray:
    """Calibrated (n, k) from the mapped columns: 1 - p beside p (binary), or renormalised one-vs-rest maps."""
    if len(mapped) == 1:
        positive = np.clip(mapped[0], 0.0, 1.0)
        return np.column_stack([1 - positive, positive])
    out = np.clip(np.column_stack(mapped), 0.0, None)
    total = out.sum(axis=1, keepdims=True)
    # A row every map sends to 0 (scores outside everything seen in calibration): keep its raw scores.
    empty = total[:, 0] <= 0
    if empty.any():
        raw = np.clip(scores[empty], 0.0, None)
        out[empty] = raw
        total[empty] = raw.sum(axis=1, keepdims=True)
        still = total[:, 0] <= 0
        out[still], total[still] = 1.0 / out.shape[1], 1.0
    return out / total


METHODS = ("spline", "isotonic")
PENALTIES = (0.01, 0.1, 1.0, 10.0, 100.0)
"""Ridge penalties tried for the spline correction; the identity (no correction) is tried beside them."""
Z_LIMIT = 10.0
"""Scores are mapped on the logit scale, clipped to +-10 (probabilities 4.5e-5 .. 1 - 4.5e-5)."""
GRID = 80
"""Knots of a spline map: evenly spaced in logit between the smallest and largest calibration score."""
DECIMALS = 8


def fit_calibration(
    scores: np.ndarray,
    y_true: Iterable,
    classes: Iterable,
    *,
    method: str = "spline",
    replicates: int = 40,
    seed: int = 0,
) -> Calibration:
    """Fit calibration maps on rows with labels the model was not trained on.

    ``scores``: (n, k) raw ``predict_proba``; ``classes``: the model's
    ``classes_``, in the order of the score columns. The rows must be held
    out from training: a held-out split, or better out-of-fold scores of the
    whole reference (``cross_val_predict(clone(model), x, y, method="predict_proba")``),
    which gives a calibration set as large as the reference — the error of
    the estimates is dominated by the size of this set (benchmarks/results/monitoring_estimation.md).

    ``method="spline"`` (default): per map, a logistic regression on the
    logit of the score with the logit itself as offset, plus a ridge-penalised
    restricted cubic spline correction (5 knots at quantiles). The penalty —
    or no correction at all, keeping the raw scores — is chosen by 5-fold
    cross-validated log loss. It is shrunk towards the model's own scores, so
    a well-calibrated model keeps them, and it extrapolates smoothly to the
    tails where a shifted batch concentrates. ``method="isotonic"``:
    scikit-learn's ``IsotonicRegression(out_of_bounds="clip")``, the
    classic choice (and CBPE's): calibrated on 1,000 held-out loan rows, its
    ROC AUC estimates were 1.5 to 2.4 times as far off as the spline's, worst
    under shift, where its end blocks — a few dozen rows each — decide the
    tails a shifted batch concentrates in. Both are stored as knots.

    ``replicates``: bootstrap refits of the maps (at the chosen penalty),
    whose spread widens the estimates' intervals by the uncertainty of the
    calibration itself; 0 for none. ``seed`` fixes folds and resamples.
    """
    if method not in METHODS:
        raise ValueError(f"calibration: unknown method {method!r}; expected one of {', '.join(METHODS)}")
    scores = np.asarray(scores, dtype=np.float64)
    classes = [plain(c) for c in classes]
    y = np.asarray(y_true)
    k = len(classes)
    if k < 2:
        raise ValueError("calibration: needs at least two classes")
    if scores.ndim != 2 or scores.shape != (len(y), k):
        raise ValueError(f"calibration: scores of shape {scores.shape}; expected ({len(y)}, {k})")
    rng = np.random.default_rng(seed)
    samples = [rng.integers(0, len(y), len(y)) for _ in range(replicates)]
    knots, per_map = [], []
    for j in ([1] if k == 2 else range(k)):
        target = (y == classes[j]).astype(np.float64)
        fit = _fit_spline if method == "spline" else _fit_isotonic
        x, mapped, refit = fit(scores[:, j], target, seed)
        knots.append((x, mapped))
        per_map.append([refit(sample) for sample in samples])
    return Calibration(
        classes=classes, knots=knots, method=method,
        replicates=[[maps[r] for maps in per_map] for r in range(replicates)],
    )


def _rounded(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.round(values, DECIMALS)]


def _fit_isotonic(score: np.ndarray, target: np.ndarray, seed: int):
    from sklearn.isotonic import IsotonicRegression

    def fit(rows) -> "IsotonicRegression":
        return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(score[rows], target[rows])

    main = fit(slice(None))
    x = np.asarray(main.X_thresholds_)
    return _rounded(x), _rounded(main.y_thresholds_), lambda rows: _rounded(fit(rows).predict(x))


def _logit(p: np.ndarray) -> np.ndarray:
    limit = 1.0 / (1.0 + np.exp(Z_LIMIT))
    p = np.clip(p, limit, 1 - limit)
    return np.log(p) - np.log1p(-p)


def _expit(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _spline_basis(z: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Intercept, z, and the restricted (natural) cubic spline terms of Harrell's parametrisation."""
    columns = [np.ones_like(z), z]
    if len(knots) >= 3:
        last, before = knots[-1], knots[-2]
        scale = (last - knots[0]) ** 2
        cube = lambda t: np.maximum(z - t, 0.0) ** 3  # noqa: E731
        for t in knots[:-2]:
            columns.append((cube(t) - cube(before) * (last - t) / (last - before)
                            + cube(last) * (before - t) / (last - before)) / scale)
    return np.column_stack(columns)


def _penalised_logistic(basis: np.ndarray, offset: np.ndarray, target: np.ndarray, penalty: float) -> np.ndarray:
    """Coefficients of logit P(y) = offset + basis @ beta with a ridge penalty, by damped Newton steps."""
    beta = np.zeros(basis.shape[1])

    def objective(b):
        eta = offset + basis @ b
        return np.sum(np.logaddexp(0.0, eta) - target * eta) + 0.5 * penalty * b @ b

    current = objective(beta)
    for _ in range(100):
        p = _expit(offset + basis @ beta)
        gradient = basis.T @ (target - p) - penalty * beta
        hessian = basis.T @ (basis * (p * (1 - p))[:, None]) + penalty * np.eye(len(beta))
        step = np.linalg.solve(hessian, gradient)
        size = 1.0
        while size > 1e-4:
            candidate = objective(beta + size * step)
            if candidate <= current + 1e-12:
                break
            size /= 2
        beta, current = beta + size * step, candidate
        if np.max(np.abs(size * step)) < 1e-8:
            break
    return beta


def _log_loss(target: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(target * np.log(p) + (1 - target) * np.log1p(-p)))


def _fit_spline(score: np.ndarray, target: np.ndarray, seed: int):
    from sklearn.model_selection import StratifiedKFold

    z = _logit(score)
    positives = int(target.sum())
    folds = min(5, positives, len(target) - positives)
    if folds < 2:  # (almost) one class only: nothing to calibrate against, keep the raw scores
        return [0.0, 1.0], [0.0, 1.0], lambda rows: [0.0, 1.0]
    knots = np.unique(np.quantile(z, [0.05, 0.275, 0.5, 0.725, 0.95]))
    basis = _spline_basis(z, knots)
    losses = {None: _log_loss(target, _expit(z))}  # None: no correction, the raw scores
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(z, target))
    for penalty in PENALTIES:
        loss = 0.0
        for train, test in splits:
            beta = _penalised_logistic(basis[train], z[train], target[train], penalty)
            loss += _log_loss(target[test], _expit(z[test] + basis[test] @ beta)) * len(test)
        losses[penalty] = loss / len(target)
    chosen = min(losses, key=lambda p: (losses[p], p is not None))
    # Replicates refit at the chosen penalty; when the raw scores won, at the best finite one, so that
    # "the raw scores are calibrated" carries the uncertainty of the data that says so.
    replicate_penalty = chosen if chosen is not None else min(PENALTIES, key=losses.get)
    grid = np.linspace(z.min(), z.max(), GRID) if z.max() > z.min() else np.array([z.min()])
    grid_basis = _spline_basis(grid, knots)
    x = _rounded(_expit(grid))

    def curve(rows, penalty) -> list[float]:
        beta = _penalised_logistic(basis[rows], z[rows], target[rows], penalty)
        return _rounded(_monotone(_expit(grid + grid_basis @ beta)))

    mapped = curve(slice(None), chosen) if chosen is not None else x
    return x, mapped, lambda rows: curve(rows, replicate_penalty)


def _monotone(values: np.ndarray) -> np.ndarray:
    """The closest non-decreasing sequence (pool adjacent violators): a calibration map keeps the ranking."""
    if np.all(np.diff(values) >= 0):
        return values
    from sklearn.isotonic import IsotonicRegression

    return IsotonicRegression().fit_transform(np.arange(len(values)), values)


# --------------------------------------------------------------------------- estimates


@dataclass(frozen=True)
class Estimate:
    """An estimated metric and the central (1 - alpha) interval of its realized value on the batch."""

    metric: str
    value: float
    low: float
    high: float

    def to_dict(self) -> dict:
        return {"metric": self.metric, "value": self.value, "low": self.low, "high": self.high}


def estimable(task: str) -> bool:
    """Can a metric of this task be estimated without labels?

    Classification: yes — a calibrated model states the distribution of each
    row's label, and with it the distribution of any metric. Regression: no —
    a point prediction says nothing about the size of its error, so without
    labels there is no distribution of the error to take an expectation over;
    the honest answer is "not estimable" (watch the input and prediction
    drift instead, and wait for the labels).
    """
    return task == "classification"


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (as in scipy.stats.rankdata)."""
    from scipy.stats import rankdata

    return rankdata(values, method="average")


def estimate_performance(
    calibrated: np.ndarray,
    classes: Iterable,
    metrics: Iterable[str],
    *,
    predicted: Iterable | None = None,
    raw_scores: np.ndarray | None = None,
    replicates: np.ndarray | None = None,
    alpha: float = 0.05,
    draws: int = 400,
    seed: int = 0,
) -> dict[str, Estimate]:
    """Estimate classification metrics of a batch whose labels are unknown.

    ``calibrated``: (n, k) calibrated probabilities (``Calibration.apply`` of
    the raw scores), columns in the order of ``classes`` (the model's
    ``classes_``; binary: ``classes[1]`` is the positive class, as in
    scikit-learn). ``predicted``: the labels the model predicted for the batch
    (``model.predict(x)``), values from ``classes``; when absent, the argmax
    of ``raw_scores`` (what scikit-learn classifiers predict), else of
    ``calibrated``. ``raw_scores``: (n, k) raw ``predict_proba``, which
    ``roc_auc`` and ``average_precision`` rank by and ``log_loss`` scores;
    without it those metrics are left out. Unsupported or unknown metric
    names are left out too (see the module docstring). ``replicates``:
    (R, n, k) calibrated probabilities under R bootstrap refits of the
    calibration (``Calibration.apply_replicates``); draw d then takes its
    labels from replicate d mod R, so the interval also covers the
    uncertainty of the calibration map, not only the labels' own randomness.

    Returns {metric: Estimate} for the estimable metrics among ``metrics``, in
    their order. The point estimate is the metric's expectation with each
    label drawn from its calibrated probabilities; ``low``/``high`` bound the
    central (1 - ``alpha``) interval over ``draws`` seeded Monte-Carlo draws
    (fewer above ``MAX_CELLS`` label cells). Deterministic for a seed.
    """
    probs = np.asarray(calibrated, dtype=np.float64)
    classes = list(classes)
    k = len(classes)
    if probs.ndim != 2 or probs.shape[1] != k or k < 2:
        raise ValueError(f"estimate: calibrated of shape {probs.shape}; expected (n, {k}) for classes {classes}")
    n = probs.shape[0]
    raw = None if raw_scores is None else np.asarray(raw_scores, dtype=np.float64)
    if raw is not None and raw.shape != probs.shape:
        raise ValueError(f"estimate: raw_scores of shape {raw.shape}; expected {probs.shape}")
    if not 0 < alpha < 1:
        raise ValueError(f"estimate: alpha={alpha}; expected 0 < alpha < 1")

    wanted = []
    for name in metrics:
        if name in wanted or name not in SUPPORTED:
            continue
        if name in SCORE_METRICS and raw is None:
            continue
        if name == "average_precision" and k != 2:
            continue
        wanted.append(name)
    if not wanted or n == 0:
        return {}

    draws = int(max(min(draws, MAX_CELLS // n), min(draws, MIN_DRAWS)))
    pred = _predicted_index(predicted, classes, raw if raw is not None else probs, n)
    probs = _normalised(probs)
    if replicates is None:
        sources = probs[None]
    else:
        sources = np.asarray(replicates)
        if sources.ndim != 3 or sources.shape[1:] != probs.shape or len(sources) == 0:
            raise ValueError(f"estimate: replicates of shape {sources.shape}; expected (R, {n}, {k})")
        sources = sources[: min(len(sources), draws)]
        if sources.dtype != np.float32:
            sources = sources.astype(np.float64)
        total = sources.sum(axis=2, keepdims=True)
        if np.any(np.abs(total - 1) > 1e-5) or np.any(sources < 0):
            sources = _normalised(sources)

    block = max(1, BLOCK_CELLS // n)
    rng = np.random.default_rng(seed)
    samplers = {name: _SAMPLERS[name](probs, pred, raw, k) for name in wanted}
    values: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
    cumulative = np.cumsum(sources, axis=2)[:, :, :-1].astype(np.float32)
    done = 0
    while done < draws:
        size = min(block, draws - done)
        labels = _draw_labels(rng, cumulative, np.arange(done, done + size) % len(sources))
        for name in wanted:
            values[name].append(samplers[name].sample(labels))
        done += size

    result = {}
    for name in wanted:
        sample = np.concatenate(values[name])
        sample = sample[np.isfinite(sample)]
        value = samplers[name].expectation()
        if sample.size == 0 or not np.isfinite(value):
            continue
        low, high = np.quantile(sample, [alpha / 2, 1 - alpha / 2])
        result[name] = Estimate(name, value, float(min(low, value)), float(max(high, value)))
    return result


def estimate_from_scores(
    calibration: Calibration,
    raw_scores: np.ndarray,
    metrics: Iterable[str],
    *,
    predicted: Iterable | None = None,
    alpha: float = 0.05,
    draws: int = 400,
    seed: int = 0,
) -> dict[str, Estimate]:
    """:func:`estimate_performance` of a batch's raw ``predict_proba`` through a stored calibration
    (its replicates, if any, widen the interval by the calibration's uncertainty)."""
    raw = np.asarray(raw_scores, dtype=np.float64)
    return estimate_performance(
        calibration.apply(raw), calibration.classes, metrics, predicted=predicted, raw_scores=raw,
        replicates=calibration.apply_replicates(raw), alpha=alpha, draws=draws, seed=seed,
    )


def _predicted_index(predicted, classes: list, scores: np.ndarray, n: int) -> np.ndarray:
    """Column index of each row's predicted class."""
    if predicted is None:
        return np.argmax(scores, axis=1)
    predicted = np.asarray(predicted)
    if predicted.shape != (n,):
        raise ValueError(f"estimate: predicted of shape {predicted.shape}; expected ({n},)")
    index = np.full(n, -1, dtype=np.int64)
    for j, label in enumerate(classes):
        index[predicted == label] = j
    if (index < 0).any():
        unknown = predicted[index < 0][0]
        raise ValueError(f"estimate: predicted label {unknown!r} is not one of the classes {classes}")
    return index


def _draw_labels(rng: np.random.Generator, cumulative: np.ndarray, source: np.ndarray) -> np.ndarray:
    """(draws, n) class indices: row i of draw d from Categorical(probabilities of source[d], row i).

    ``cumulative``: (R, n, k - 1) float32 cumulative probabilities of classes 0 .. k-2 per source; the
    class is the number of them a uniform draw reaches (float32 uniforms: 2^-24 resolution is plenty).
    """
    u = rng.random((len(source), cumulative.shape[1]), dtype=np.float32)
    single = cumulative.shape[0] == 1
    if cumulative.shape[2] == 1:
        return (u >= (cumulative[0, :, 0] if single else cumulative[source, :, 0])).view(np.int8)
    labels = np.zeros(u.shape, dtype=np.int8)
    for j in range(cumulative.shape[2]):
        labels += u >= (cumulative[0, :, j] if single else cumulative[source, :, j])
    return labels


def _normalised(probs: np.ndarray) -> np.ndarray:
    probs = np.clip(probs, 0.0, None)
    return probs / probs.sum(axis=-1, keepdims=True)


# One sampler per metric: built once per call (ranks, masks), then fed blocks of drawn labels.


class _Accuracy:
    def __init__(self, probs, pred, raw, k):
        self.pred = pred
        self.expected = float(probs[np.arange(len(pred)), pred].mean())

    def expectation(self):
        return self.expected

    def sample(self, labels):
        return (labels == self.pred).mean(axis=1)


class _Confusion:
    """Per-class true positives and support of each draw: balanced accuracy and macro F1.

    Point estimate: the metric of the expected confusion matrix (CBPE's estimate), a ratio of
    expectations, which differs from the expectation of the ratio by O(1/n).
    """

    def __init__(self, probs, pred, raw, k):
        self.k = k
        self.predicted_as = [pred == j for j in range(k)]
        self.n_pred = np.array([m.sum() for m in self.predicted_as], dtype=np.float64)
        self.expected_tp = np.array([probs[m, j].sum() for j, m in enumerate(self.predicted_as)])
        self.expected_support = probs.sum(axis=0)

    def counts(self, labels):
        tp = np.empty((labels.shape[0], self.k))
        support = np.empty((labels.shape[0], self.k))
        for j in range(self.k):
            is_j = labels == j
            support[:, j] = is_j.sum(axis=1)
            tp[:, j] = is_j[:, self.predicted_as[j]].sum(axis=1)
        return tp, support


class _BalancedAccuracy(_Confusion):
    def expectation(self):
        return float(self.score(self.expected_tp[None], self.expected_support[None])[0])

    def sample(self, labels):
        return self.score(*self.counts(labels))

    @staticmethod
    def score(tp, support):
        # scikit-learn: mean recall over the classes present in y_true.
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(support > 0, tp / support, np.nan)
        return np.nanmean(recall, axis=1)


class _F1Macro(_Confusion):
    def expectation(self):
        return float(self.score(self.expected_tp[None], self.expected_support[None])[0])

    def sample(self, labels):
        return self.score(*self.counts(labels))

    def score(self, tp, support):
        # scikit-learn: mean F1 over the labels present in y_true or y_pred; F1 = 2 TP / (support + predicted).
        denominator = support + self.n_pred
        present = denominator > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(present, 2 * tp / denominator, 0.0)
        return f1.sum(axis=1) / present.sum(axis=1)


class _RocAuc:
    """Mann–Whitney: AUC = (rank sum of positives - n1 (n1 + 1) / 2) / (n1 n0), ranks of the raw scores.

    Point estimate: expected concordant pairs over expected positive-negative pairs (the area under the
    expected ROC curve, as CBPE computes it), one-vs-rest macro mean for multiclass.
    """

    def __init__(self, probs, pred, raw, k):
        self.n = raw.shape[0]
        self.columns = [1] if k == 2 else list(range(k))
        self.ranks = np.column_stack([_ranks(raw[:, j]) for j in self.columns])
        self.expected = float(np.mean([_expected_auc(raw[:, j], probs[:, j]) for j in self.columns]))

    def expectation(self):
        return self.expected

    def sample(self, labels):
        aucs = np.empty((labels.shape[0], len(self.columns)))
        for c, j in enumerate(self.columns):
            positive = labels == j
            n1 = positive.sum(axis=1).astype(np.float64)
            n0 = self.n - n1
            rank_sum = positive.astype(np.float64) @ self.ranks[:, c]
            with np.errstate(invalid="ignore", divide="ignore"):
                aucs[:, c] = (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n0)
        # A draw in which some class has no positive (or no negative) row has no AUC: dropped.
        return aucs.mean(axis=1)


def _expected_auc(score: np.ndarray, p: np.ndarray) -> float:
    """sum over pairs i != j of p_i (1 - p_j) [s_i > s_j] (ties: 1/2), over sum over pairs i != j of p_i (1 - p_j)."""
    order = np.argsort(score, kind="mergesort")
    s, p = score[order], p[order]
    q = 1.0 - p
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    group = np.cumsum(np.r_[True, s[1:] != s[:-1]]) - 1
    below = np.r_[0.0, np.cumsum(q)][starts][group]  # negatives' weight strictly below each row's score
    tied = np.add.reduceat(q, starts)[group] - q  # the rest of its tie group
    concordant = float(np.sum(p * (below + 0.5 * tied)))
    pairs = float(p.sum() * q.sum() - np.sum(p * q))
    return concordant / pairs if pairs > 0 else float("nan")


class _AveragePrecision:
    """scikit-learn's AP: sum over distinct score thresholds of (recall step) x precision.

    Point estimate: the same sum over the expected precision-recall curve.
    """

    def __init__(self, probs, pred, raw, k):
        order = np.argsort(-raw[:, 1], kind="mergesort")
        self.order = order
        ordered = raw[order, 1]
        # last index of each run of equal scores: the thresholds of the precision-recall curve
        self.ends = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True])
        self.seen = (self.ends + 1).astype(np.float64)
        self.expected = float(self.score(np.cumsum(probs[order, 1])[self.ends][None])[0])

    def expectation(self):
        return self.expected

    def sample(self, labels):
        positive = labels[:, self.order] == 1
        return self.score(np.cumsum(positive, axis=1, dtype=np.int32)[:, self.ends].astype(np.float64))

    def score(self, tp):
        n1 = tp[:, -1:]
        precision = tp / self.seen
        with np.errstate(invalid="ignore", divide="ignore"):
            recall_step = np.diff(tp, axis=1, prepend=0.0) / n1
        return (recall_step * precision).sum(axis=1)


class _LogLoss:
    """Mean of -log raw score of the drawn label (scores clipped as scikit-learn does)."""

    def __init__(self, probs, pred, raw, k):
        eps = np.finfo(raw.dtype).eps
        scores = np.clip(raw, eps, 1 - eps)
        scores = scores / scores.sum(axis=1, keepdims=True)
        self.loss = -np.log(scores)
        self.expected = float((probs * self.loss).sum(axis=1).mean())

    def expectation(self):
        return self.expected

    def sample(self, labels):
        return np.take_along_axis(self.loss, labels.T.astype(np.intp), axis=1).mean(axis=0)


_SAMPLERS = {
    "accuracy": _Accuracy,
    "balanced_accuracy": _BalancedAccuracy,
    "f1_macro": _F1Macro,
    "roc_auc": _RocAuc,
    "average_precision": _AveragePrecision,
    "log_loss": _LogLoss,
}
