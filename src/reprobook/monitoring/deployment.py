"""Deployment patterns on MLflow registry aliases: shadow, canary, blue-green, rollback.

The registry's aliases are the switch: whatever ``NAME@champion`` points at is
what serves. A challenger earns that alias in three ways, each a decision
recorded twice, as a line of ``monitoring/deployments.jsonl`` and as tags on
the model versions (``reprobook.deployment.<action>`` and ``..._reason``):

- **shadow** (:func:`shadow`): both models score every row of a batch; only
  the champion's predictions are served (its capture is the batch's capture),
  the challenger's are kept beside it. With labels, both are measured on the
  same rows and the promotion gates are run.
- **canary** (:func:`canary`): a growing, seeded share of rows is served by
  the challenger (``deployment.canary_steps``); after each batch a paired
  comparison on the challenger's labelled rows ramps up, holds or rolls back.
- **blue-green** (:func:`promote`, :func:`rollback`): the ``champion`` alias
  moves to the challenger in one registry call once the gates pass; the
  replaced version keeps the alias ``previous``, and a rollback moves
  ``champion`` back to it in one call.

Why paired statistics: both models can score the same rows, so the
row-to-row variation of difficulty (most of the variance of a metric on a few
hundred rows) cancels out of the difference. The difference is always
"challenger better by", in points of the primary metric whichever way the
metric points, and its (1 - ``deployment.alpha``) interval comes from a paired
bootstrap over rows with a fixed seed (:func:`paired_bootstrap`); see
docs/deployment.md for the decision rules.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cached_property
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reprobook.errors import ReprobookError, UsageError
from reprobook.monitoring import capture
from reprobook.ml.resampling import Outputs, bootstrap_weights, plain_labels, score_metric, weighted_metric
from reprobook.monitoring.capture import (ID, LABEL, PREDICTION, Batch, ModelRef, Scored, ServingModel, alias_listing,
                                         registered_aliases)
from reprobook.project.params import DeploymentParams, Params
from reprobook.project.paths import DEPLOYMENT_LOG, TEST_FILE
from reprobook.tracking import contract
from reprobook.tracking.contract import ContractChange

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from reprobook.ml.metrics import Metric

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_PREFIX = "reprobook.deployment"

DRAWS = 2000
"""Bootstrap resamples per comparison: 50 beyond each end of a 95% percentile interval."""
MIN_ROWS = 30
"""Fewer labelled rows than this compare nothing: a bootstrap interval on a handful of rows is not to be trusted."""
LATENCY_ROWS = 100
"""Rows of the batch timed one at a time for the latency gate (a seeded choice)."""
REGRESSION_AGREEMENT = 0.05
"""Two regression predictions agree when they differ by at most this share of the champion's prediction spread."""
VALID_DRAWS = 0.9
"""Below this share of resamples where the metric is defined (one class only, say), the interval is not trusted."""

# Decisions.
RAMP_UP, HOLD, ROLL_BACK, COMPLETE = "ramp up", "hold", "roll back", "complete"
NOT_WORSE, WORSE, INCONCLUSIVE = "not worse", "worse", "inconclusive"


# --- the project and its models ----------------------------------------------


@dataclass(frozen=True)
class Project:
    """What every decision reads: the root, its params and the scoping targets (task, metric, budgets)."""

    root: Path
    params: Params
    targets: dict[str, Any]

    @property
    def settings(self) -> DeploymentParams:
        return self.params.deployment

    @property
    def metric(self) -> Metric:
        from reprobook.ml.metrics import get_metric

        return get_metric(self.targets["primary_metric"], self.targets["task"])

    @property
    def target(self) -> str:
        return str(self.targets["target"])

    @property
    def id_column(self) -> str | None:
        return self.params.monitoring.id_column

    @cached_property
    def client(self):
        """One MlflowClient on the project's store for the whole command (making one costs 0.2 s)."""
        from reprobook.tracking import store

        return store.client(self.root)


def load_project(root: Path) -> Project:
    from reprobook.ml.scoping import load_targets
    from reprobook.project.params import project_params

    return Project(root, project_params(root), load_targets(root))


@dataclass(frozen=True)
class Pair:
    """The champion and the challenger: two versions of one registered model."""

    champion: ServingModel
    challenger: ServingModel

    @property
    def name(self) -> str:
        return self.champion.name

    def versions(self) -> dict[str, str]:
        return {CHAMPION: self.champion.version, CHALLENGER: self.challenger.version}


def model_ref(text: str | None, default_alias: str, option: str, params: Params) -> ModelRef:
    """``NAME@ALIAS``, ``NAME/VERSION``, ``@ALIAS`` or nothing (the project's model at ``default_alias``)."""
    with _as_option(option):
        return capture.parse_model_ref(text or f"@{default_alias}", params)


def load_pair(project: Project, champion: str | None, challenger: str | None) -> Pair:
    """Both models, loaded; refused when they are one version, or versions of different registered models.

    Versions of one registered name are comparable by construction (the
    registry binds a name to one task, target and set of classes, and each
    model reads its own columns of a batch); two names may not be.
    """
    champion_ref = model_ref(champion, CHAMPION, "--champion", project.params)
    challenger_ref = model_ref(challenger, CHALLENGER, "--challenger", project.params)
    if champion_ref.name != challenger_ref.name:
        raise UsageError(f"--champion {champion_ref} and --challenger {challenger_ref} name different registered "
                         "models; expected two versions of one registered model")
    served = _load(project, champion_ref, "--champion")
    candidate = _load(project, challenger_ref, "--challenger")
    if served.version == candidate.version:
        raise UsageError(f"--champion {champion_ref} and --challenger {challenger_ref} are both version "
                         f"{served.version} of '{served.name}'; expected two different versions")
    return Pair(served, candidate)


def _load(project: Project, ref: ModelRef, option: str) -> ServingModel:
    """The model at ``ref``; a model that cannot be loaded (a pickle, an untrusted type) is a one-line error."""
    with _as_option(option):
        try:
            return capture.load_serving_model(project.root, ref, project.params)
        except ValueError as exc:
            raise ReprobookError(f"{option} {ref}: {exc}") from None


@contextmanager
def _as_option(option: str) -> Iterator[None]:
    """Say which option named a model in capture's messages (they say ``--model``)."""
    try:
        yield
    except UsageError as exc:
        if not str(exc).startswith("--model:"):
            raise
        raise UsageError(option + str(exc).removeprefix("--model")) from None


# --- rows, labels, predictions -----------------------------------------------


def outputs_of(scored: Scored) -> Outputs:
    """A scored batch's predictions and class probabilities, in row order."""
    return Outputs(scored.predictions[PREDICTION].to_numpy(), scored.raw_scores)


@dataclass(frozen=True)
class Labelled:
    """The labels of a batch's rows, aligned with them; ``present`` marks the rows whose label arrived."""

    values: np.ndarray
    present: np.ndarray
    source: str

    @property
    def count(self) -> int:
        return int(self.present.sum())


@dataclass(frozen=True)
class Observed:
    """A batch scored by both models, with its labels if any: everything a decision is made on."""

    batch: Batch
    champion: Scored
    challenger: Scored
    labels: Labelled | None


def observe(project: Project, pair: Pair, batch_path: Path, labels_path: Path | None) -> Observed:
    """Read the batch, check it has both models' columns, score it with both, join its labels.

    Nothing is written: every refusal (missing columns, labels of another
    batch) happens before any capture, tag or log line.
    """
    batch = capture.read_batch(batch_path, project.id_column)
    capture.check_columns(batch, pair.champion, project.target)
    capture.check_columns(batch, pair.challenger, project.target)
    labels = read_labels(project, batch, labels_path, pair.champion.classes)
    return Observed(batch, capture.score(pair.champion, batch), capture.score(pair.challenger, batch), labels)


def read_labels(project: Project, batch: Batch, labels_path: Path | None, classes: tuple | None) -> Labelled | None:
    """The batch's labels: from the labels file (matched by id), else from the batch's own target column, else None."""
    import pandas as pd

    if labels_path is not None:
        rows = pd.DataFrame({ID: batch.ids.to_numpy()})
        joined = capture.join_labels(rows, labels_path, project.target, project.id_column)
        raw, source = joined[LABEL], str(labels_path)
    elif project.target in batch.frame.columns:
        raw, source = batch.frame[project.target].reset_index(drop=True), f"{batch.path} (column {project.target!r})"
    else:
        return None
    present = raw.notna().to_numpy()
    values = _as_classes(raw, classes, source) if classes is not None else pd.to_numeric(raw, errors="coerce").to_numpy()
    if classes is None:
        bad = present & ~pd.notna(values)
        if bad.any():
            raise UsageError(f"{source}: {int(bad.sum())} label(s) are not numbers, such as {raw[bad].iloc[0]!r}; "
                             "a regression model's labels must be numbers")
    return Labelled(values, present, source)


def _as_classes(raw: pd.Series, classes: tuple, source: str) -> np.ndarray:
    """Labels as the model's own class values (a CSV gives ``1`` where the model says ``1``, or ``1.0``)."""
    import numpy as np

    lookup = {_class_key(c): c for c in classes}
    values = np.empty(len(raw), dtype=object)
    unknown = []
    for i, value in enumerate(raw.tolist()):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            values[i] = None
        elif _class_key(value) in lookup:
            values[i] = lookup[_class_key(value)]
        else:
            unknown.append(value)
    if unknown:
        raise UsageError(f"{source}: {len(unknown)} label(s) are none of the model's classes "
                         f"({', '.join(map(repr, classes))}), such as {unknown[0]!r}")
    return values


def _class_key(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value.item() if hasattr(value, "item") else value)


# --- the paired comparison ---------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """The challenger against the champion on the same labelled rows.

    ``difference`` is how much better the challenger is, in points of the
    metric (positive: better, whichever way the metric points); ``low`` and
    ``high`` bound it with (1 - alpha) confidence, from a paired bootstrap.
    ``low``/``high`` are None when the resamples could not be trusted.
    """

    metric: str
    rows: int
    champion: float
    challenger: float
    difference: float
    low: float | None
    high: float | None
    alpha: float
    draws: int
    valid_draws: int

    def verdict(self, tolerance: float) -> str:
        """``worse``, ``not worse`` (low >= -tolerance) or ``inconclusive``.

        Worse: the interval lies below -tolerance, or it lies below zero (worse
        at all, with confidence) and the estimate is beyond the tolerance. The
        second case keeps a challenger shown worse from holding for ever only
        because the interval still reaches into the tolerance.
        """
        if self.low is None or self.high is None:
            return INCONCLUSIVE
        if self.high < -tolerance or (self.high < 0 and self.difference < -tolerance):
            return WORSE
        if self.low >= -tolerance:
            return NOT_WORSE
        return INCONCLUSIVE

    def interval(self) -> str:
        if self.low is None or self.high is None:
            return "no interval"
        return f"[{self.low:+.4f}, {self.high:+.4f}]"

    def summary(self) -> str:
        return (f"{self.metric} {self.challenger:.4f} vs {self.champion:.4f} on {self.rows} labelled row(s): "
                f"challenger better by {self.difference:+.4f}, {100 * (1 - self.alpha):g}% interval {self.interval()}")


def compare(project: Project, labels: Labelled, rows: np.ndarray, champion: Outputs, challenger: Outputs,
            classes: tuple | None) -> Comparison | str:
    """The paired comparison on ``rows`` that have labels, or why there can be none (too few rows, one class)."""
    import numpy as np

    chosen = rows & labels.present
    n = int(chosen.sum())
    if n < MIN_ROWS:
        return f"{n} labelled row(s), fewer than the {MIN_ROWS} a comparison needs"
    y = labels.values[chosen]
    if classes is not None and len({_class_key(v) for v in y}) < 2:
        return f"the {n} labelled row(s) all have one class ({y[0]!r}); {project.metric.name} needs both"
    return paired_bootstrap(project.metric, y, champion.take(chosen), challenger.take(chosen), classes,
                            project.settings.alpha, project.settings.seed)


def paired_bootstrap(metric: Metric, y: np.ndarray, champion: Outputs, challenger: Outputs, classes: tuple | None,
                     alpha: float, seed: int, draws: int = DRAWS) -> Comparison:
    """Resample rows with replacement, score both models on each resample, keep the differences.

    The same resample for both models is what makes it paired. A resample is a
    row of weights (how many times each row was drawn), so each metric is a
    weighted sum computed for many resamples at once (:func:`weighted_metric`).
    Point estimates come from the metric table itself, on the rows as they are.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(y)
    champion_value = score_metric(metric, y, champion, classes)
    challenger_value = score_metric(metric, y, challenger, classes)
    differences = []
    for weights in bootstrap_weights(rng, n, draws):
        differences.append(_better_by(metric, weighted_metric(metric, y, challenger, classes, weights),
                                      weighted_metric(metric, y, champion, classes, weights)))
    spread = np.concatenate(differences)
    valid = spread[np.isfinite(spread)]
    low = high = None
    if len(valid) >= VALID_DRAWS * draws:
        low, high = (float(v) for v in np.quantile(valid, [alpha / 2, 1 - alpha / 2]))
    return Comparison(metric.name, n, champion_value, challenger_value,
                      float(_better_by(metric, challenger_value, champion_value)), low, high, alpha, draws, len(valid))


def _better_by(metric: Metric, challenger, champion):
    return challenger - champion if metric.higher_is_better else champion - challenger


# --- latency -----------------------------------------------------------------


def measure_latency(serving: ServingModel, batch: Batch, seed: int) -> dict[str, float]:
    """p50/p95 of one-row predictions on up to :data:`LATENCY_ROWS` rows of the batch, chosen with ``seed``.

    The modeling stage's own timer (:func:`reprobook.ml.modeling.measure_latency`):
    one thread, the slowest tenth timed again, the load average recorded.
    """
    import numpy as np

    from reprobook.ml import modeling

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(batch.frame), size=min(LATENCY_ROWS, len(batch.frame)), replace=False))
    sample = batch.frame.iloc[rows][list(serving.features)]
    return modeling.measure_latency(serving.model, sample, rows=len(sample))


# --- gates -------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """One promotion check: ``passed`` None means not judged (it then does not block)."""

    name: str
    passed: bool | None
    measured: float | None
    threshold: float | None
    reason: str


def gates(project: Project, challenger_score: float, comparison: Comparison | str | None,
          latency: dict[str, float]) -> list[Gate]:
    """The three gates a challenger must pass to become champion, in the spirit of MLflow's ``MetricThreshold``.

    ``comparison`` is None when there is no champion, a string when the rows
    could not be compared (why).
    """
    return [threshold_gate(project, challenger_score), latency_gate(project, latency),
            champion_gate(project, comparison)]


def threshold_gate(project: Project, value: float) -> Gate:
    """The challenger meets the scoping threshold on the primary metric, on these rows."""
    from reprobook.ml.metrics import meets

    metric, threshold = project.metric, project.targets.get("threshold")
    if threshold is None:
        return Gate("threshold", True, value, None, f"{metric.name} {value:.4f}; no scoping threshold is set")
    passed = meets(metric, value, threshold)
    word = "meets" if passed else "misses"
    side = ">=" if metric.higher_is_better else "<="
    return Gate("threshold", passed, value, threshold,
                f"{metric.name} {value:.4f} {word} the scoping threshold ({side} {threshold:g})")


def latency_gate(project: Project, latency: dict[str, float]) -> Gate:
    """p95 one-row latency within ``scoping.latency_budget_ms``; not judged on an overloaded machine."""
    from reprobook.ml.modeling import latency_verdict

    budget = float(project.targets["latency_budget_ms"])
    p95 = latency["latency_p95_ms"]
    verdict = latency_verdict(latency, budget)
    if verdict is None:
        return Gate("latency", None, p95, budget,
                    f"p95 {p95:.2f} ms/row timed while the machine was overloaded (load "
                    f"{latency['load_average_1m']:g}); not judged")
    word = "within" if verdict else "over"
    return Gate("latency", verdict, p95, budget,
                f"p95 {p95:.2f} ms/row over {int(latency['rows_timed'])} rows, {word} the {budget:g} ms budget")


def champion_gate(project: Project, comparison: Comparison | str | None) -> Gate:
    """No worse than the champion beyond ``deployment.tolerance`` on the same rows.

    Fails when the interval shows the challenger worse beyond the tolerance,
    and also, conservatively, when the evidence is inconclusive but the point
    estimate is worse beyond it: a champion is not replaced on the strength of
    "not proven worse" alone when the best estimate says worse. An
    inconclusive comparison whose estimate is within the tolerance passes.
    """
    tolerance = project.settings.tolerance
    if comparison is None:
        return Gate("champion", True, None, -tolerance, "no champion to compare with")
    if isinstance(comparison, str):
        return Gate("champion", False, None, -tolerance, f"cannot compare with the champion: {comparison}")
    tolerance = allowed_worsening(project, comparison)
    verdict = comparison.verdict(tolerance)
    passed = verdict != WORSE and comparison.difference >= -tolerance
    if verdict == WORSE:
        why = worse_why(comparison, tolerance)
    elif not passed:
        why = f"inconclusive, but the estimate is worse than the champion beyond the tolerance {tolerance:g}"
    elif verdict == NOT_WORSE:
        why = f"not worse than the champion beyond the tolerance {tolerance:g}"
    else:
        why = f"inconclusive; the estimate is within the tolerance {tolerance:g}"
    return Gate("champion", passed, comparison.difference, -tolerance, f"{why}: {comparison.summary()}")


def allowed_worsening(project: Project, comparison: Comparison) -> float:
    """``deployment.tolerance`` in points of the metric: as given for a score up to 1 (AUC, accuracy, r2), that
    fraction of the champion's value for an error without upper bound (rmse, mae, log loss), as ``reprobook ci``."""
    return project.metric.allowed_worsening(project.settings.tolerance, comparison.champion)


def worse_why(comparison: Comparison, tolerance: float) -> str:
    """Which of the two ways :meth:`Comparison.verdict` found the challenger worse."""
    if comparison.high is not None and comparison.high < -tolerance:
        return f"worse than the champion beyond the tolerance {tolerance:g}"
    return f"worse than the champion, by an estimate beyond the tolerance {tolerance:g}"


def gates_pass(checked: list[Gate]) -> bool:
    return all(gate.passed is not False for gate in checked)


def gates_summary(checked: list[Gate]) -> str:
    """The failed gates' reasons; when none failed, that they passed and which were not judged."""
    failed = [f"{g.name}: {g.reason}" for g in checked if g.passed is False]
    if failed:
        return "; ".join(failed)
    unjudged = [f"{g.name}: {g.reason}" for g in checked if g.passed is None]
    return "every gate passed" + (f" ({'; '.join(unjudged)})" if unjudged else "")


# --- shadow ------------------------------------------------------------------


@dataclass
class ShadowReport:
    model: str
    champion: str
    challenger: str
    batch: str
    batch_digest: str
    rows: int
    labelled_rows: int
    agreement: float
    score_correlation: float | None
    mean_abs_difference: float | None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    comparison: dict[str, Any] | None = None
    gates: list[Gate] = field(default_factory=list)
    decision: str = ""
    reason: str = ""
    captures: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return gates_pass(self.gates)

    def to_dict(self) -> dict[str, Any]:
        from reprobook.quality.jsonsafe import json_safe

        return json_safe(asdict(self))


def shadow(root: Path, batch_path: Path, labels_path: Path | None = None, champion_ref: str | None = None,
           challenger_ref: str | None = None) -> ShadowReport:
    """Both models score the batch; the champion's predictions are served, the challenger's kept beside them.

    Writes the champion's capture where ``reprobook predict`` writes it and the
    challenger's as ``<batch>.shadow-v<N>.parquet`` beside it. With labels,
    both models' metrics on the same rows and the promotion gates.
    """
    project = load_project(root)
    pair = load_pair(project, champion_ref, challenger_ref)
    seen = observe(project, pair, batch_path, labels_path)
    report = _shadow_report(project, pair, seen)
    served = capture.write_capture(seen.champion, capture.capture_path(root, batch_path))
    kept = capture.write_capture(seen.challenger, shadow_path(served, pair.challenger.version))
    report.captures = {CHAMPION: _relative(served, root), CHALLENGER: _relative(kept, root)}
    figures = {"agreement": report.agreement, "score_correlation": report.score_correlation,
               "labelled_rows": report.labelled_rows, "comparison": report.comparison,
               "gates": [asdict(g) for g in report.gates]}
    record(project, pair.name, "shadow", report.decision, report.reason, pair.versions(),
           {pair.challenger.version: report.decision}, figures, batch=seen.batch)
    return report


def shadow_path(served: Path, version: str) -> Path:
    return served.with_name(f"{served.name.removesuffix('.parquet')}.shadow-v{version}.parquet")


def _shadow_report(project: Project, pair: Pair, seen: Observed) -> ShadowReport:
    champion, challenger = outputs_of(seen.champion), outputs_of(seen.challenger)
    report = ShadowReport(pair.name, pair.champion.version, pair.challenger.version, str(seen.batch.path),
                          seen.batch.digest, len(seen.batch.frame), seen.labels.count if seen.labels else 0,
                          **agreement(champion, challenger, pair.champion.task))
    if seen.labels is None or seen.labels.count == 0:
        report.decision, report.reason = "observed", "no labels: agreement only (agreement is not accuracy)"
        return report
    import numpy as np

    everything = np.ones(len(seen.batch.frame), dtype=bool)
    report.metrics = {role: _all_metrics(project, seen.labels, outputs, pair.champion.classes)
                      for role, outputs in ((CHAMPION, champion), (CHALLENGER, challenger))}
    comparison = compare(project, seen.labels, everything, champion, challenger, pair.champion.classes)
    report.comparison = asdict(comparison) if isinstance(comparison, Comparison) else {"reason": comparison}
    primary = primary_value(project, report.metrics[CHALLENGER])
    report.gates = gates(project, primary, comparison, measure_latency(pair.challenger, seen.batch,
                                                                       project.settings.seed))
    report.decision = "gates passed" if report.passed else "gates failed"
    report.reason = gates_summary(report.gates)
    return report


def agreement(champion: Outputs, challenger: Outputs, task: str) -> dict[str, float | None]:
    """How alike the two models' outputs are: same label (or close values), and correlated scores."""
    import numpy as np

    if task == "classification":
        agree = float(np.mean(champion.predictions == challenger.predictions))
        mean_abs = None
        if champion.scores is not None and challenger.scores is not None:
            a, b = _score_vector(champion.scores), _score_vector(challenger.scores)
        else:
            a = b = None
    else:
        a, b = champion.predictions.astype(float), challenger.predictions.astype(float)
        gap = np.abs(a - b)
        spread = float(np.std(a)) or 1.0
        agree, mean_abs = float(np.mean(gap <= REGRESSION_AGREEMENT * spread)), float(np.mean(gap))
    return {"agreement": agree, "score_correlation": _correlation(a, b), "mean_abs_difference": mean_abs}


def _score_vector(scores: np.ndarray) -> np.ndarray:
    """The positive class's probability for two classes, every probability for more."""
    return scores[:, 1] if scores.shape[1] == 2 else scores.ravel()


def _correlation(a, b) -> float | None:
    import numpy as np

    if a is None or b is None or len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def primary_value(project: Project, metrics: dict[str, float]) -> float:
    """The primary metric among ``metrics``; a model without class probabilities gives no roc_auc, say so."""
    name = project.metric.name
    if name not in metrics:
        raise ReprobookError(f"scoping.primary_metric: {name} needs class probabilities and the model gives none")
    return metrics[name]


def _all_metrics(project: Project, labels: Labelled, outputs: Outputs, classes: tuple | None) -> dict[str, float]:
    from reprobook.ml.metrics import evaluate

    rows = labels.present
    y = plain_labels(labels.values[rows], classes)
    chosen = outputs.take(rows)
    try:
        return evaluate(project.targets["task"], y, chosen.predictions, chosen.scores,
                        list(classes) if classes is not None else None)
    except ValueError as exc:  # one class only among the labelled rows
        raise UsageError(f"{labels.source}: the labelled rows cannot be scored ({exc})") from None


# --- canary ------------------------------------------------------------------


@dataclass
class CanaryStep:
    step: int
    share: float
    batch: str
    rows: int
    challenger_rows: int
    labelled_rows: int
    """Labelled rows the challenger served in this step so far (this batch and the held ones before it)."""
    agreement: float
    comparison: dict[str, Any] | None
    decision: str
    reason: str


@dataclass
class CanaryReport:
    model: str
    champion: str
    challenger: str
    steps: list[CanaryStep] = field(default_factory=list)
    outcome: str = "in progress"
    """``complete`` (the last share passed), ``rolled back``, or ``in progress`` (batches ran out first)."""
    skipped: list[str] = field(default_factory=list)
    """Batches after a rollback: not part of the canary (serve them with ``reprobook predict``)."""

    def to_dict(self) -> dict[str, Any]:
        from reprobook.quality.jsonsafe import json_safe

        return json_safe(asdict(self))


@dataclass
class _Evidence:
    """The challenger's labelled rows gathered since the current step began (held batches add to it)."""

    labels: list[Labelled] = field(default_factory=list)
    champion: list[Outputs] = field(default_factory=list)
    challenger: list[Outputs] = field(default_factory=list)

    def add(self, seen: Observed, routed: np.ndarray) -> None:
        if seen.labels is None:
            return
        rows = routed & seen.labels.present
        self.labels.append(Labelled(seen.labels.values[rows], seen.labels.present[rows], seen.labels.source))
        self.champion.append(outputs_of(seen.champion).take(rows))
        self.challenger.append(outputs_of(seen.challenger).take(rows))

    @property
    def rows(self) -> int:
        return sum(part.count for part in self.labels)

    def pooled(self) -> tuple[Labelled, Outputs, Outputs]:
        import numpy as np

        labels = Labelled(np.concatenate([p.values for p in self.labels]),
                          np.concatenate([p.present for p in self.labels]), "the canary's labels")
        return labels, Outputs.concat(self.champion), Outputs.concat(self.challenger)


def canary(root: Path, batches: list[tuple[Path, Path | None]], champion_ref: str | None = None,
           challenger_ref: str | None = None) -> CanaryReport:
    """Serve a growing share of each batch with the challenger; ramp up, hold or roll back after each batch.

    Batch k is served at the current step's share ``deployment.canary_steps[s]``:
    a row goes to the challenger when a hash of its id and ``deployment.seed``
    falls below the share, so a row's route is stable and a row served by the
    challenger at 5% still is at 25%. The served capture (one model version per
    row) is written where ``reprobook predict`` writes it. Every batch is
    checked before anything is written.
    """
    project = load_project(root)
    pair = load_pair(project, champion_ref, challenger_ref)
    if not batches:
        raise UsageError("canary: expected at least one batch")
    observed = [observe(project, pair, batch, labels) for batch, labels in batches]
    report = CanaryReport(pair.name, pair.champion.version, pair.challenger.version)
    steps = project.settings.canary_steps
    step, evidence = 0, _Evidence()
    for seen in observed:
        if report.outcome != "in progress":
            report.skipped.append(str(seen.batch.path))
            continue
        routed = route(seen.batch.ids, steps[step], project.settings.seed)
        capture.write_capture(served_capture(seen, routed), capture.capture_path(root, seen.batch.path))
        evidence.add(seen, routed)
        result = _canary_step(project, pair, seen, routed, step, evidence)
        report.steps.append(result)
        figures = {k: v for k, v in asdict(result).items() if k not in ("batch", "decision", "reason")}
        record(project, pair.name, "canary", result.decision, result.reason, pair.versions(),
               {pair.challenger.version: result.decision}, figures, batch=seen.batch)
        if result.decision == ROLL_BACK:
            report.outcome = "rolled back"
        elif result.decision == COMPLETE:
            report.outcome = "complete"
        elif result.decision == RAMP_UP:
            step, evidence = step + 1, _Evidence()
    return report


def route(ids: pd.Series, share: float, seed: int) -> np.ndarray:
    """True for the rows the challenger serves: a seeded hash of the row id, uniform in [0, 1), below ``share``."""
    import numpy as np

    def position(row_id: str) -> float:
        digest = hashlib.sha256(f"{seed}:{row_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    return np.fromiter((position(str(i)) < share for i in ids), dtype=bool, count=len(ids))


def served_capture(seen: Observed, routed: np.ndarray) -> Scored:
    """The capture of what was served: the challenger's rows from its predictions, the others from the champion's."""
    import numpy as np

    frame = seen.champion.predictions.copy()
    for column in frame.columns:
        frame[column] = np.where(routed, seen.challenger.predictions[column].to_numpy(), frame[column].to_numpy())
    scores = None
    if seen.champion.raw_scores is not None and seen.challenger.raw_scores is not None:
        scores = np.where(routed[:, None], seen.challenger.raw_scores, seen.champion.raw_scores)
    failed = int((~routed & _failed(seen.champion)).sum() + (routed & _failed(seen.challenger)).sum())
    return Scored(frame, scores, seen.champion.seconds + seen.challenger.seconds, failed)


def _failed(scored: Scored) -> np.ndarray:
    return scored.predictions[PREDICTION].isna().to_numpy()


def _canary_step(project: Project, pair: Pair, seen: Observed, routed: np.ndarray, step: int,
                 evidence: _Evidence) -> CanaryStep:
    """Decide one step from the evidence gathered at its share (see :func:`canary_decision`)."""
    import numpy as np

    steps = project.settings.canary_steps
    share = steps[step]
    champion, challenger = outputs_of(seen.champion), outputs_of(seen.challenger)
    mine = agreement(champion.take(routed), challenger.take(routed), pair.champion.task)["agreement"] \
        if routed.any() else float("nan")
    comparison: Comparison | str
    if evidence.rows == 0:
        comparison = "no labels for the challenger's rows yet" if seen.labels is None or seen.labels.count == 0 \
            else "none of the challenger's rows has a label yet"
    else:
        labels, pooled_champion, pooled_challenger = evidence.pooled()
        comparison = compare(project, labels, np.ones(len(labels.values), dtype=bool), pooled_champion,
                             pooled_challenger, pair.champion.classes)
    tolerance = allowed_worsening(project, comparison) if isinstance(comparison, Comparison) else 0.0
    decision, reason = canary_decision(comparison, tolerance, share, last=step == len(steps) - 1)
    if seen.labels is None and routed.any():
        reason += (f"; the challenger agrees with the champion on {100 * mine:.1f}% of its rows, "
                   "which is not evidence of accuracy (a challenger that disagrees may be the one that is right)")
    return CanaryStep(step + 1, share, str(seen.batch.path), len(routed), int(routed.sum()), evidence.rows, mine,
                      asdict(comparison) if isinstance(comparison, Comparison) else None, decision, reason)


def canary_decision(comparison: Comparison | str, tolerance: float, share: float, last: bool) -> tuple[str, str]:
    """Ramp up on evidence of "not worse", roll back on evidence of "worse", hold otherwise.

    Unlike the promotion gate, a ramp-up needs positive evidence: the whole
    (1 - alpha) interval of the difference at or above ``-tolerance``.
    """
    at = f"at {100 * share:g}% of rows"
    if isinstance(comparison, str):
        return HOLD, f"{at}: hold, {comparison}"
    verdict = comparison.verdict(tolerance)
    if verdict == WORSE:
        return ROLL_BACK, f"{at}: {worse_why(comparison, tolerance)}, roll back: {comparison.summary()}"
    if verdict == NOT_WORSE:
        what = "canary complete, the challenger may be promoted" if last else "ramp up"
        return (COMPLETE if last else RAMP_UP), \
            f"{at}: not worse than the champion beyond the tolerance {tolerance:g}, {what}: {comparison.summary()}"
    return HOLD, f"{at}: inconclusive, hold for another batch: {comparison.summary()}"


# --- blue-green ----------------------------------------------------------------


@dataclass
class PromotionReport:
    model: str
    challenger: str
    champion: str | None
    """The version that was champion before (None: there was none)."""
    gates: list[Gate]
    promoted: bool
    forced: bool
    decision: str
    reason: str
    rows: str
    """Which labelled rows the gates were run on."""
    comparison: dict[str, Any] | None = None
    contract_change: dict[str, Any] | None = None
    """Input columns the challenger reads beyond the champion's (``added``) and fewer (``removed``)."""

    def to_dict(self) -> dict[str, Any]:
        from reprobook.quality.jsonsafe import json_safe

        return json_safe(asdict(self))


class ContractChangeRefused(ReprobookError):
    """The challenger needs an input column the champion does not read, and no consent was given (exit 1:
    a refused promotion, as a failed gate; nothing was written)."""


def promote(root: Path, name: str | None = None, challenger_ref: str | None = None, batch_path: Path | None = None,
            labels_path: Path | None = None, force: bool = False,
            accept_contract_change: bool = False) -> PromotionReport:
    """Blue-green: run the gates, then move ``champion`` to the challenger in one registry call.

    The gates run on the labelled batch given, else on the project's test
    split. The replaced champion keeps the alias ``deployment.previous_alias``
    (set first, so that a rollback is possible the moment ``champion`` moves).
    ``force`` promotes despite failed gates; that, and which gates failed, is recorded.

    A challenger that reads an input column the champion does not changes the
    serving contract: callers sending the champion's columns would be refused
    by it. No gate can measure that, so it needs ``accept_contract_change``
    (``--accept-contract-change``), checked before any gate runs; without it
    :class:`ContractChangeRefused` names the columns and nothing is written.
    ``force`` does not imply it: a failed gate and a broken caller are two
    different risks. The change, accepted or merely informative (inputs the
    challenger no longer reads), is said in the reason and logged.
    """
    project = load_project(root)
    name = name or project.params.model.registered_name
    ref = model_ref(challenger_ref, CHALLENGER, "--challenger", project.params)
    if ref.name != name:
        raise UsageError(f"--challenger {ref}: a version of '{name}' was expected")
    client = project.client
    candidate = _load(project, ref, "--challenger")
    current = alias_version(client, name, CHAMPION)
    if current == candidate.version:
        raise UsageError(f"version {candidate.version} of '{name}' is already @{CHAMPION}; nothing to promote")
    change = serving_contract(project, candidate, current)
    consent_refusal = contract_consent(name, candidate.version, current, change, accept_contract_change)
    if consent_refusal is not None:
        raise ContractChangeRefused(consent_refusal)
    checked, comparison, rows = _promotion_gates(project, candidate, current, batch_path, labels_path, force)
    decision, reason = promotion_decision(checked, force)
    if change is not None and change.changed:
        reason = f"{reason}; {change.describe(accepted=accept_contract_change)}"
    promoted = decision != "refused"
    if promoted:
        switch_champion(client, name, candidate.version, current, project.settings.previous_alias)
    report = PromotionReport(name, candidate.version, current, checked, promoted, decision == "forced", decision,
                             reason, rows, asdict(comparison) if isinstance(comparison, Comparison) else None,
                             _change_dict(change))
    decisions = {candidate.version: decision}
    if promoted and current is not None:
        decisions[current] = f"replaced by version {candidate.version}"
    record(project, name, "promote", decision, reason, {CHAMPION: current, CHALLENGER: candidate.version},
           decisions, {"gates": [asdict(g) for g in checked], "forced": report.forced, "rows": rows,
                       "comparison": report.comparison, "contract_change": report.contract_change})
    return report


def contract_consent(name: str, version: str, current: str | None, change: ContractChange | None,
                     accepted: bool) -> str | None:
    """Why the promotion is refused for want of consent to a serving contract change; None when it may go on.

    Only added inputs need consent (removed ones are sent and ignored); an
    unknown contract (no champion, or one whose columns cannot be read) asks
    nothing here: the champion gate fails on a champion that cannot score.
    """
    if change is None or not change.needs_consent or accepted or current is None:
        return None
    return contract.refusal(name, version, current, change)


def serving_contract(project: Project, candidate: ServingModel, current: str | None) -> ContractChange | None:
    """The challenger's input columns against the champion's; None without a champion or when its are unknown.

    The champion's come from its MLflow signature (known without loading it),
    else from the loaded model; the challenger's from the loaded model, as it scores.
    """
    if current is None:
        return None
    try:
        fetched = capture.fetch_version(project.root, ModelRef(candidate.name, version=current))
        inputs = fetched.features() or capture.load_fetched(fetched, project.params.model.trusted_types).features
    except Exception:  # noqa: BLE001  unknown: the champion gate reports a champion that cannot be used
        return None
    return contract.diff(inputs, candidate.features, current)


def _change_dict(change: ContractChange | None) -> dict[str, Any] | None:
    return None if change is None else {"added": list(change.added), "removed": list(change.removed),
                                        "champion_version": change.champion_version}


def promotion_decision(checked: list[Gate], force: bool) -> tuple[str, str]:
    """``promoted`` when every gate passes, ``forced`` when --force overrides failed (or absent) gates, else ``refused``."""
    if not checked:
        return "forced", "promoted with --force without gates: no labelled rows to run them on"
    if gates_pass(checked):
        return "promoted", gates_summary(checked)
    if force:
        return "forced", f"promoted with --force despite failed gates: {gates_summary(checked)}"
    return "refused", gates_summary(checked)


def _promotion_gates(project: Project, candidate: ServingModel, current: str | None, batch_path: Path | None,
                     labels_path: Path | None, force: bool) -> tuple[list[Gate], Comparison | str | None, str]:
    """The gates on the labelled rows: the batch given, else the test split (its target column labels it)."""
    import numpy as np

    path = batch_path or project.root / TEST_FILE
    if batch_path is None and labels_path is not None:
        raise UsageError("--labels: give the batch they label with --batch")
    if not path.is_file():
        if force:
            return [], None, "none"
        raise UsageError(f"{path}: not found; the gates need labelled rows: give --batch and --labels, "
                         "or run the pipeline's data stage (dvc pull or reprobook run)")
    batch = capture.read_batch(path, project.id_column)
    capture.check_columns(batch, candidate, project.target)
    labels = read_labels(project, batch, labels_path, candidate.classes)
    if labels is None or labels.count == 0:
        raise UsageError(f"{path}: no labels; give --labels FILE (rows '{project.id_column or ID}', "
                         f"'{project.target}') or a batch with a '{project.target}' column")
    outputs = outputs_of(capture.score(candidate, batch))
    comparison: Comparison | str | None = None
    if current is not None:
        comparison = _champion_comparison(project, candidate, current, batch, labels, outputs)
    value = primary_value(project, _all_metrics(project, labels, outputs, candidate.classes))
    latency = measure_latency(candidate, batch, project.settings.seed)
    rows = f"{path.name}: {labels.count} labelled row(s)"
    return gates(project, value, comparison, latency), comparison, rows


def _champion_comparison(project: Project, candidate: ServingModel, current: str, batch: Batch, labels: Labelled,
                         outputs: Outputs) -> Comparison | str:
    """The champion scored on the gate's rows and compared; why not, when it cannot load or score them.

    As in the pipeline's own promotion (:func:`reprobook.tracking.registry.gate`),
    a champion that cannot score is not a reason to replace it without a
    human: the champion gate then fails (``--force`` overrides).
    """
    import numpy as np

    try:
        champion = capture.load_serving_model(project.root, ModelRef(candidate.name, version=current), project.params)
        capture.check_columns(batch, champion, project.target)
        scored = outputs_of(capture.score(champion, batch))
    except Exception as exc:  # noqa: BLE001  any failure means "cannot compare", never "promote"
        return f"the champion (version {current}) could not score these rows ({type(exc).__name__}: {exc})"
    return compare(project, labels, np.ones(len(batch.frame), dtype=bool), scored, outputs, candidate.classes)


def switch_champion(client, name: str, version: str, current: str | None, previous_alias: str) -> None:
    """``previous`` onto the current champion, then ``champion`` onto ``version``: each one registry call."""
    if current is not None:
        client.set_registered_model_alias(name, previous_alias, current)
    client.set_registered_model_alias(name, CHAMPION, version)


@dataclass
class RollbackReport:
    model: str
    rolled_back: str | None
    restored: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rollback(root: Path, name: str | None = None) -> RollbackReport:
    """``champion`` back to the version at ``previous``, in one registry call; ``previous`` is then removed.

    The version rolled back from is tagged so (``reprobook.deployment.rollback``).
    No ``previous`` alias, or one on the champion itself, is an error: nothing to roll back to.
    """
    project = load_project(root)
    name = name or project.params.model.registered_name
    client = project.client
    previous_alias = project.settings.previous_alias
    aliases = registered_aliases(client, name)
    if previous_alias not in aliases:
        raise UsageError(f"rollback: '{name}' has no alias '{previous_alias}' (a promotion sets it), so there is "
                         f"nothing to roll back to; its aliases: {alias_listing(aliases)}")
    restored, current = aliases[previous_alias], aliases.get(CHAMPION)
    if restored == current:
        raise UsageError(f"rollback: @{previous_alias} and @{CHAMPION} are both version {restored} of '{name}'; "
                         "nothing to roll back")
    client.set_registered_model_alias(name, CHAMPION, restored)
    client.delete_registered_model_alias(name, previous_alias)
    left = f"from version {current} " if current is not None else ""
    reason = f"@{CHAMPION} moved back {left}to version {restored} (@{previous_alias})"
    if current is not None and aliases.get(CHALLENGER) == current:
        # A version rolled back from production is no candidate any more: a later promote must not retry it.
        client.delete_registered_model_alias(name, CHALLENGER)
        reason += f"; @{CHALLENGER} removed from version {current}"
    decisions = {restored: "restored"} | ({current: "rolled back"} if current is not None else {})
    record(project, name, "rollback", "rolled back", reason, {"rolled_back": current, "restored": restored},
           decisions, {})
    return RollbackReport(name, current, restored, reason)


def alias_version(client, name: str, alias: str) -> str | None:
    return registered_aliases(client, name).get(alias)


# --- the deployment log ------------------------------------------------------


def record(project: Project, name: str, action: str, decision: str, reason: str, versions: dict[str, str | None],
           decisions: dict[str, str], figures: dict[str, Any], batch: Batch | None = None) -> dict[str, Any]:
    """One decision: a line of the deployment log, and tags on each version it concerns.

    ``decisions`` maps a version to the decision as that version sees it (the
    promoted one says ``promoted``, the one it replaced ``replaced by ...``).
    Only figures are logged, never params or environment.
    """
    from reprobook.quality.jsonsafe import json_safe

    entry = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "action": action, "model": name,
             "versions": versions, "decision": decision, "reason": reason}
    if batch is not None:
        entry |= {"batch": _relative(batch.path, project.root), "batch_digest": batch.digest}
    entry["figures"] = figures
    entry = json_safe(entry)
    append_log(project.root, entry)
    for version, said in decisions.items():
        tag_version(project.client, name, version, action, said, reason)
    return entry


def tag_version(client, name: str, version: str, action: str, decision: str, reason: str) -> None:
    client.set_model_version_tag(name, version, f"{TAG_PREFIX}.{action}", decision)
    client.set_model_version_tag(name, version, f"{TAG_PREFIX}.{action}_reason", reason[:5000])


def append_log(root: Path, entry: dict[str, Any]) -> Path:
    """Append one JSON line in a single write (whole lines even when two commands log at once)."""
    path = root / DEPLOYMENT_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(entry, allow_nan=False) + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)
    return path


def read_log(root: Path) -> list[dict[str, Any]]:
    """Every decision so far, oldest first; a line that is not JSON is an error naming its number."""
    path = root / DEPLOYMENT_LOG
    if not path.is_file():
        return []
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except ValueError:
            raise ReprobookError(f"{path}:{number}: not a JSON line; expected one decision per line") from None
    return entries


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


__all__ = [
    "CHALLENGER", "CHAMPION", "CanaryReport", "CanaryStep", "Comparison", "ContractChangeRefused", "Gate",
    "PromotionReport", "RollbackReport", "ShadowReport", "canary", "canary_decision", "champion_gate",
    "contract_consent", "gates", "gates_pass", "paired_bootstrap", "promote", "read_log", "record", "rollback",
    "route", "serving_contract", "shadow",
]
