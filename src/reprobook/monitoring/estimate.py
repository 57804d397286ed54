"""Performance estimation without labels: what the model's quality on a batch probably is.

After deployment the labels of a batch arrive late, or never. Its *features* are
there at once, and so are the model's scores. If the model's probabilities are
calibrated — a row scored 0.8 is positive 80% of the time — then the metric a
batch *would* get once its labels arrive has a known distribution: draw each
row's label from its calibrated probabilities, independently, and compute the
metric. This is NannyML's CBPE (confidence-based performance estimation), with
two differences: the calibration map is a JSON-serialisable artefact stored
with the reference profile, and the estimate comes with an interval.

Assumption (the same as CBPE's): calibration learned on held-out reference rows
still holds on the batch. That is true under pure covariate shift (the inputs
move, P(y | x) stays the same), where the estimate follows the metric down as
the batch drifts into regions where the model is less sure. It is *not* true
under concept shift (P(y | x) changes): then the estimate keeps reporting
reference-like quality and only labels can reveal the drop.

Workflow::

    scores = model.predict_proba(x_holdout)                   # held-out reference rows, with labels
    calibration = fit_calibration(scores, y_holdout, model.classes_)
    json.dumps(calibration.to_dict())                         # store it next to the model
    raw = model.predict_proba(x_batch)                        # later: a batch without labels
    estimates = estimate_performance(
        calibration.apply(raw), model.classes_, ["accuracy", "roc_auc"],
        predicted=model.predict(x_batch), raw_scores=raw)
    estimates["accuracy"].value, estimates["accuracy"].low, estimates["accuracy"].high

Method. Rows i = 1..n, calibrated probabilities c_i, predicted labels (given:
what the model said) and raw scores (given: what a realized ROC AUC ranks by).
Only the labels are unknown: y_i ~ Categorical(c_i), independently.

* The point estimate is the expectation of the metric under that model: exact
  for accuracy (mean of c_i[predicted_i]) and log loss (mean of
  -sum_k c_ik log raw_ik); for the other metrics (ratios: ROC AUC, average
  precision, balanced accuracy, F1) the mean over the Monte-Carlo draws below.
* The interval is the central (1 - alpha) interval of the metric's
  distribution over ``draws`` label vectors drawn at once (one seeded
  (draws x n) array). It is the spread of the *realized* metric on a batch of
  this size — what a user compares the realized value against when the labels
  arrive. It does not include the uncertainty of the calibration map itself
  (which is fitted once on the reference hold-out); under covariate shift the
  realized value falls inside it about 1 - alpha of the time when calibration
  holds (tests/test_estimate.py measures it).
* ROC AUC per draw is the Mann–Whitney statistic from the ranks of the raw
  scores, computed once (ties get average ranks, as in scikit-learn): the sum
  of the positives' ranks is one matrix-vector product per block of draws.
  Multiclass: one-vs-rest per class, macro mean (scikit-learn's
  ``roc_auc_score(multi_class="ovr")``).
* Cost is O(draws x n x k). Above ``MAX_CELLS`` = 20 million label cells the
  number of draws shrinks to fit (never below 100): 100,000 rows get 200
  draws. The metric's spread shrinks like 1 / sqrt(n), so the Monte-Carlo
  error of the mean stays far below the estimate's own error at such sizes.

Metrics (names as in :data:`reprobook.ml.metrics.METRICS`, classification):
``accuracy``, ``balanced_accuracy``, ``f1_macro`` (need predicted labels, taken
as the argmax of ``raw_scores`` — else of ``calibrated`` — when not given),
``roc_auc``, ``average_precision`` (binary only) and ``log_loss`` (need
``raw_scores``). Any other name — regression metrics, unknown names, a
score metric without ``raw_scores``, ``average_precision`` on a multiclass
target — is left out of the result: the caller sees which metrics were
estimated by the keys it gets back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

LABEL_METRICS = ("accuracy", "balanced_accuracy", "f1_macro")
SCORE_METRICS = ("roc_auc", "average_precision", "log_loss")
SUPPORTED = LABEL_METRICS + SCORE_METRICS

MAX_CELLS = 20_000_000
"""Upper bound on draws x rows simulated per call (see the module docstring)."""
MIN_DRAWS = 100
BLOCK_CELLS = 2_000_000
"""Label cells generated at once: bounds the memory of one block (a few tens of MB)."""


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python scalar JSON can write."""
    return value.item() if isinstance(value, np.generic) else value


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    """Isotonic calibration maps of a classifier's scores, as plain numbers.

    ``knots[j] = (x, y)``: the score ``x`` of class j maps to the probability
    ``np.interp(score, x, y)`` (linear between knots, constant beyond the end
    knots — what scikit-learn's ``IsotonicRegression(out_of_bounds="clip")``
    predicts). Binary targets keep one map, for the positive class
    ``classes[1]``; multiclass targets one map per class (one-vs-rest), whose
    outputs are renormalised to sum to 1 per row.
    """

    classes: list
    knots: list[tuple[list[float], list[float]]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "method": "isotonic",
            "classes": [_plain(c) for c in self.classes],
            "knots": [{"x": [float(v) for v in x], "y": [float(v) for v in y]} for x, y in self.knots],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        method = data.get("method", "isotonic")
        if method != "isotonic":
            raise ValueError(f"calibration: unknown method {method!r}; expected 'isotonic'")
        knots = [(list(map(float, k["x"])), list(map(float, k["y"]))) for k in data["knots"]]
        return cls(classes=list(data["classes"]), knots=knots)

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Raw ``predict_proba`` output (n, k) -> calibrated probabilities (n, k), rows summing to 1."""
        scores = np.asarray(scores, dtype=np.float64)
        k = len(self.classes)
        if scores.ndim != 2 or scores.shape[1] != k:
            raise ValueError(f"calibration: scores of shape {scores.shape}; expected (n, {k}) for classes {self.classes}")
        if k == 2:
            x, y = self.knots[0]
            positive = np.clip(np.interp(scores[:, 1], x, y), 0.0, 1.0)
            return np.column_stack([1.0 - positive, positive])
        out = np.empty_like(scores)
        for j, (x, y) in enumerate(self.knots):
            out[:, j] = np.interp(scores[:, j], x, y)
        np.clip(out, 0.0, None, out=out)
        total = out.sum(axis=1, keepdims=True)
        # A row every map sends to 0 (scores outside everything seen in calibration): keep its raw scores.
        empty = total[:, 0] <= 0
        if empty.any():
            raw = np.clip(scores[empty], 0.0, None)
            out[empty] = raw
            total[empty] = raw.sum(axis=1, keepdims=True)
            still = total[:, 0] <= 0
            out[still], total[still] = 1.0 / k, 1.0
        return out / total


def fit_calibration(scores: np.ndarray, y_true: Iterable, classes: Iterable) -> Calibration:
    """Fit the isotonic maps on held-out rows with labels (rows the model was not trained on).

    ``scores``: (n, k) raw ``predict_proba``; ``classes``: the model's
    ``classes_``, in the order of the score columns.
    """
    from sklearn.isotonic import IsotonicRegression

    scores = np.asarray(scores, dtype=np.float64)
    classes = [_plain(c) for c in classes]
    y = np.asarray(y_true)
    k = len(classes)
    if k < 2:
        raise ValueError("calibration: needs at least two classes")
    if scores.ndim != 2 or scores.shape != (len(y), k):
        raise ValueError(f"calibration: scores of shape {scores.shape}; expected ({len(y)}, {k})")
    columns = [1] if k == 2 else range(k)
    knots = []
    for j in columns:
        target = (y == classes[j]).astype(np.float64)
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores[:, j], target)
        knots.append(([float(v) for v in iso.X_thresholds_], [float(v) for v in iso.y_thresholds_]))
    return Calibration(classes=classes, knots=knots)


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
    names are left out too (see the module docstring).

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

    pred = _predicted_index(predicted, classes, raw if raw is not None else probs, n)
    probs = np.clip(probs, 0.0, None)
    probs = probs / probs.sum(axis=1, keepdims=True)

    draws = int(max(min(draws, MAX_CELLS // n), min(draws, MIN_DRAWS)))
    block = max(1, BLOCK_CELLS // n)
    rng = np.random.default_rng(seed)
    samplers = {name: _SAMPLERS[name](probs, pred, raw, k) for name in wanted}
    values: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
    cumulative = np.cumsum(probs, axis=1)[:, :-1] if k > 2 else None
    done = 0
    while done < draws:
        size = min(block, draws - done)
        labels = _draw_labels(rng, probs, cumulative, size)
        for name in wanted:
            values[name].append(samplers[name].sample(labels))
        done += size

    result = {}
    for name in wanted:
        sample = np.concatenate(values[name])
        sample = sample[np.isfinite(sample)]
        exact = samplers[name].expectation()
        if sample.size == 0:
            continue
        value = float(exact) if exact is not None else float(sample.mean())
        low, high = np.quantile(sample, [alpha / 2, 1 - alpha / 2])
        result[name] = Estimate(name, value, float(min(low, value)), float(max(high, value)))
    return result


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


def _draw_labels(rng: np.random.Generator, probs: np.ndarray, cumulative: np.ndarray | None, size: int) -> np.ndarray:
    """(size, n) class indices, row i drawn from Categorical(probs[i]) independently per draw."""
    u = rng.random((size, probs.shape[0]))
    if cumulative is None:  # binary: class 1 with probability probs[:, 1]
        return (u < probs[:, 1]).astype(np.int8)
    labels = np.zeros(u.shape, dtype=np.int8)
    for j in range(cumulative.shape[1]):
        labels += u >= cumulative[:, j]
    return labels


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
    """Per-class true positives and support of each draw: balanced accuracy and macro F1."""

    def __init__(self, probs, pred, raw, k):
        self.k = k
        self.predicted_as = [pred == j for j in range(k)]
        self.n_pred = np.array([m.sum() for m in self.predicted_as], dtype=np.float64)

    def expectation(self):
        return None

    def counts(self, labels):
        tp = np.empty((labels.shape[0], self.k))
        support = np.empty((labels.shape[0], self.k))
        for j in range(self.k):
            is_j = labels == j
            support[:, j] = is_j.sum(axis=1)
            tp[:, j] = is_j[:, self.predicted_as[j]].sum(axis=1)
        return tp, support


class _BalancedAccuracy(_Confusion):
    def sample(self, labels):
        # scikit-learn: mean recall over the classes present in y_true.
        tp, support = self.counts(labels)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(support > 0, tp / support, np.nan)
        return np.nanmean(recall, axis=1)


class _F1Macro(_Confusion):
    def sample(self, labels):
        # scikit-learn: mean F1 over the labels present in y_true or y_pred; F1 = 2 TP / (support + predicted).
        tp, support = self.counts(labels)
        denominator = support + self.n_pred
        present = denominator > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(present, 2 * tp / denominator, 0.0)
        return f1.sum(axis=1) / present.sum(axis=1)


class _RocAuc:
    """Mann–Whitney: AUC = (rank sum of positives - n1 (n1 + 1) / 2) / (n1 n0), ranks of the raw scores."""

    def __init__(self, probs, pred, raw, k):
        self.n = raw.shape[0]
        self.columns = [1] if k == 2 else list(range(k))
        self.ranks = np.column_stack([_ranks(raw[:, j]) for j in self.columns])

    def expectation(self):
        return None

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


class _AveragePrecision:
    """scikit-learn's AP: sum over distinct score thresholds of (recall step) x precision."""

    def __init__(self, probs, pred, raw, k):
        order = np.argsort(-raw[:, 1], kind="mergesort")
        self.order = order
        ordered = raw[order, 1]
        # last index of each run of equal scores: the thresholds of the precision-recall curve
        self.ends = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True])
        self.seen = (self.ends + 1).astype(np.float64)

    def expectation(self):
        return None

    def sample(self, labels):
        positive = labels[:, self.order] == 1
        tp = np.cumsum(positive, axis=1, dtype=np.int32)[:, self.ends].astype(np.float64)
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
