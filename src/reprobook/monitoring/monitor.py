"""One production batch against the training reference: quality, drift, performance, and a verdict.

Each check gives findings, and the verdict is the most serious of them:

- **healthy**: nothing found;
- **watch**: something changed and a person should look: a data-quality error,
  or a warning touching at least ``monitoring.anomaly_share`` of the rows
  (fix upstream: retraining on broken data would learn the break); feature or
  prediction drift (the drift engine's batch false-alarm rate,
  ``monitoring.drift.alpha``); failed predictions; a throughput below the
  scoping budget; an estimated or realized primary metric below the
  reference's by more than ``monitoring.performance_tolerance`` (point value);
- **retrain**: the model is failing its KPIs, with confidence: the estimated or
  realized primary metric is below the scoping threshold or below the
  reference's by more than the tolerance even at the optimistic end of its
  interval, or the realized metric departs from the estimate (concept drift:
  the model's calibrated confidence no longer describes its errors).

Retrain evidence is judged at ``monitoring.retrain_alpha`` (one-sided, per
batch), far stricter than a watch: a sequence of 30 batches without change
should almost never see a false retrain (0.001 per batch: 3% of sequences at
most, by the union bound), while a real failure is usually far beyond it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from reprobook.monitoring import capture as cap
from reprobook.monitoring.reference import Reference

if TYPE_CHECKING:
    from reprobook.monitoring.estimate import Estimate
    from reprobook.project.params import ErrorAnalysisParams, MonitoringParams
    from reprobook.quality import DriftReport, ValidationReport

HEALTHY, WATCH, RETRAIN = "healthy", "watch", "retrain"
VERDICTS = (HEALTHY, WATCH, RETRAIN)
"""In increasing order of seriousness; the verdict's position is its MLflow metric ``verdict``."""


@dataclass(frozen=True)
class Finding:
    check: str
    verdict: str
    reason: str
    columns: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "verdict": self.verdict, "reason": self.reason, "columns": list(self.columns)}


@dataclass(frozen=True)
class Interval:
    """A metric's value with the standard deviation behind its interval (normal approximation)."""

    metric: str
    value: float
    sd: float

    def bounds(self, alpha: float) -> tuple[float, float]:
        z = _z(1 - alpha / 2)
        return self.value - z * self.sd, self.value + z * self.sd

    @classmethod
    def from_estimate(cls, estimate: Estimate, alpha: float) -> Interval:
        return cls(estimate.metric, estimate.value, max(estimate.high - estimate.low, 0.0) / (2 * _z(1 - alpha / 2)))

    def to_dict(self, alpha: float) -> dict[str, float]:
        low, high = self.bounds(alpha)
        return {"value": self.value, "low": low, "high": high}


@dataclass
class BatchReport:
    index: int
    batch: dict[str, Any]
    model: dict[str, Any]
    reference: dict[str, Any]
    quality: ValidationReport
    drift: DriftReport
    prediction_drift: DriftReport | None
    estimated: dict[str, Interval]
    realized: dict[str, Interval]
    operations: dict[str, Any]
    findings: list[Finding]
    alpha: float
    slices: pd.DataFrame | None = None
    fairness: pd.DataFrame | None = None
    extra_columns: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return max((f.verdict for f in self.findings), key=VERDICTS.index, default=HEALTHY)

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict == HEALTHY else 1

    def metrics(self) -> dict[str, Any]:
        """The batch's figures as nested numbers: ``metrics.json``, MLflow metrics with the batch index as step."""
        figures: dict[str, Any] = {
            "verdict": VERDICTS.index(self.verdict),
            "rows": self.batch["rows"],
            "labelled_rows": self.batch["labelled_rows"],
            "quality": {"errors": len(self.quality.errors), "warnings": len(self.quality.warnings)},
            "drift": {"drifted_features": len(self.drift.drifted_columns), "features": len(self.drift.columns),
                      "min_p_value_adjusted": _min_p(self.drift)},
            "operations": {k: v for k, v in self.operations.items() if isinstance(v, (int, float))},
        }
        if self.prediction_drift is not None:
            figures["prediction_drift"] = {"drifted": int(self.prediction_drift.drifted),
                                           "p_value": _min_p(self.prediction_drift)}
        for kind, intervals in (("estimated", self.estimated), ("realized", self.realized)):
            if intervals:
                figures[kind] = {name: i.to_dict(self.alpha) for name, i in intervals.items()}
        missing = {c.column: c.missing_current for c in self.drift.columns}
        figures["missing_share"] = {"max": max(missing.values(), default=0.0)}
        return figures

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "verdict": self.verdict,
            "findings": [f.to_dict() for f in self.findings],
            "batch": self.batch,
            "model": self.model,
            "reference": self.reference,
            "metrics": self.metrics(),
            "quality": self.quality.to_dict(),
            "drift": _drift_summary(self.drift),
            "prediction_drift": _drift_summary(self.prediction_drift) if self.prediction_drift else None,
            "operations": self.operations,
            "extra_columns": self.extra_columns,
            "slices": None if self.slices is None else _records(self.slices),
            "fairness": None if self.fairness is None else _records(self.fairness),
        }

    def to_text(self) -> str:
        return report_text(self.to_dict())


def report_text(report: dict[str, Any]) -> str:
    """A batch report (:meth:`BatchReport.to_dict`, or a history entry) in a few lines: verdict, findings, performance."""
    batch, model = report["batch"], report["model"]
    lines = [f"batch {report['index']}: {report['verdict'].upper()} ({batch['path']}, {batch['rows']} rows, "
             f"{batch['labelled_rows']} labelled; model {model['name']} v{model['version']})"]
    lines += [f"  {f['verdict']:<7} {f['check']}: {f['reason']}" for f in report["findings"]] or ["  no finding"]
    primary = report["reference"]["primary_metric"]
    for kind in ("estimated", "realized"):
        found = (report["metrics"].get(kind) or {}).get(primary)
        if found:
            lines.append(f"  {kind} {primary}: {found['value']:.4f} [{found['low']:.4f}, {found['high']:.4f}] "
                         f"(held-out reference {report['reference']['performance'].get(primary, float('nan')):.4f})")
    return "\n".join(lines)


def _z(quantile: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(quantile))


def _min_p(report: DriftReport) -> float | None:
    values = [c.p_value_adjusted for c in report.columns if c.p_value_adjusted is not None]
    return min(values) if values else None


def _drift_summary(report: DriftReport) -> dict[str, Any]:
    return {
        "drifted": report.drifted,
        "drifted_columns": report.drifted_columns,
        "columns": {c.column: {"test": c.test, "p_value": c.p_value, "p_value_adjusted": c.p_value_adjusted,
                               "drifted": c.drifted, "reason": c.reason(), "missing_current": c.missing_current,
                               "new_categories": c.new_categories} for c in report.columns},
    }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    import json

    return json.loads(frame.to_json(orient="records"))


# --- the checks ----------------------------------------------------------------


def check_quality(features: pd.DataFrame, reference: Reference, params: MonitoringParams) -> tuple[ValidationReport, list[Finding]]:
    """The batch against the reference's schema, as served (the label not expected)."""
    from reprobook.quality import validate

    report = validate(features, reference.schema, environment="SERVING", policy=params.validation)
    findings = []
    for anomaly in report.anomalies:
        if anomaly.severity == "error" or anomaly.share >= params.anomaly_share:
            kind = "error" if anomaly.severity == "error" else f"{anomaly.share:.1%} of rows"
            findings.append(Finding("data quality", WATCH, f"{anomaly.kind} ({kind}): {anomaly.message}",
                                    (anomaly.column,) if anomaly.column else ()))
    return report, findings


def check_feature_drift(features: pd.DataFrame, reference: Reference, params: MonitoringParams) -> tuple[DriftReport, list[Finding]]:
    from reprobook.quality import detect_drift

    columns = [c for c in reference.features.columns if c in features.columns]
    report = detect_drift(reference.features[columns], features[columns], config=params.drift)
    findings = []
    if report.drifted:
        drifted = report.drifted_columns
        findings.append(Finding("feature drift", WATCH, f"{len(drifted)} of {len(report.columns)} feature(s) drifted "
                                f"from the training reference: {', '.join(drifted)}", tuple(drifted)))
    return report, findings


def prediction_view(frame: pd.DataFrame, task: str) -> pd.DataFrame:
    """What prediction drift compares: the binary score, the predicted class (multiclass), or the predicted value."""
    if cap.SCORE in frame.columns:
        return frame[[cap.SCORE]]
    if task == "classification":
        return frame[[cap.PREDICTION]].astype(str)
    return frame[[cap.PREDICTION]].astype(float)


def check_prediction_drift(captured: pd.DataFrame, reference: Reference, params: MonitoringParams) -> tuple[DriftReport, list[Finding]]:
    from reprobook.quality import detect_drift

    report = detect_drift(prediction_view(reference.held_out, reference.task),
                          prediction_view(captured, reference.task), config=params.drift)
    findings = []
    if report.drifted:
        findings.append(Finding("prediction drift", WATCH, "the model's outputs moved from their held-out "
                                f"distribution: {report.columns[0].reason()}", tuple(report.drifted_columns)))
    return report, findings


def estimate(reference: Reference, captured: pd.DataFrame, raw_scores: np.ndarray | None,
             params: MonitoringParams) -> dict[str, Interval]:
    """The metrics expected on these rows from the calibrated scores (classification only; see estimate.py)."""
    from reprobook.monitoring.estimate import estimable, estimate_from_scores

    calibration = reference.calibration
    if not estimable(reference.task) or calibration is None or raw_scores is None or not len(captured):
        return {}
    from reprobook.ml.metrics import task_metrics

    names = [m.name for m in task_metrics("classification")]
    found = estimate_from_scores(calibration, raw_scores, names, predicted=captured[cap.PREDICTION].to_numpy(),
                                 alpha=params.interval_alpha, draws=params.draws, seed=params.seed)
    return {name: Interval.from_estimate(e, params.interval_alpha) for name, e in found.items()}


def realized(labelled: pd.DataFrame, raw_scores: np.ndarray | None, task: str, classes: list | None,
             seed: int, primary: str) -> dict[str, Interval]:
    """Every metric of the task on the labelled rows; the primary metric and accuracy with the sampling
    error of a batch this size (a bootstrap: resampling every metric would cost seconds per batch)."""
    from reprobook.ml.metrics import evaluate
    from reprobook.ml.resampling import bootstrap_sd

    y_true, y_pred = labelled[cap.LABEL].to_numpy(), labelled[cap.PREDICTION].to_numpy()
    if task == "classification":
        y_true = _as_class_type(y_true, classes)
    values = evaluate(task, y_true, y_pred, raw_scores, classes)
    spread = bootstrap_sd(task, y_true, y_pred, raw_scores, classes, metrics=[primary, "accuracy"], seed=seed)
    return {name: Interval(name, float(v), spread.get(name, 0.0)) for name, v in values.items() if math.isfinite(v)}


def _as_class_type(y_true: np.ndarray, classes: list | None) -> np.ndarray:
    """Labels read from a CSV may be ints where the model's classes are strings (or the reverse)."""
    if not classes:
        return y_true
    known = set(classes)
    if all(v in known for v in y_true[:100]):
        return y_true
    by_text = {str(c): c for c in classes}
    return np.array([by_text.get(str(v), v) for v in y_true], dtype=object)


def reference_sd(reference: Reference, metric: str, seed: int) -> float:
    """The sampling error of the held-out value of ``metric``: the reference is a sample too."""
    from reprobook.ml.resampling import bootstrap_sd

    held_out = reference.held_out
    if cap.LABEL not in held_out:
        return 0.0
    classes = reference.profile.get("classes")
    columns = cap.score_columns(held_out)
    scores = None
    if columns and classes is not None:
        scores = held_out[columns].to_numpy()
        if len(columns) == 1:  # binary: the second class's probability
            scores = np.column_stack([1 - scores[:, 0], scores[:, 0]])
    y_true = held_out[cap.LABEL].to_numpy()
    return bootstrap_sd(reference.task, y_true, held_out[cap.PREDICTION].to_numpy(), scores, classes,
                        metrics=[metric], seed=seed).get(metric, 0.0)


def judge_performance(reference: Reference, estimated: dict[str, Interval], realized_: dict[str, Interval],
                      estimated_labelled: dict[str, Interval], params: MonitoringParams) -> list[Finding]:
    """Retrain on confident failure (threshold, reference − tolerance, concept drift); watch on a point drop."""
    from reprobook.ml.metrics import METRICS

    primary = reference.profile["primary_metric"]
    metric = METRICS[primary]
    base = reference.profile["performance"].get(primary)
    base_sd = reference_sd(reference, primary, params.seed)
    threshold = reference.profile.get("threshold")
    findings: list[Finding] = []
    for kind, intervals in (("estimated", estimated), ("realized", realized_)):
        found = intervals.get(primary)
        if found is None:
            continue
        # The held-out rows are a sample too: the reference value, and the calibration an estimate rests on,
        # carry its sampling error, which no batch size removes.
        sd = math.hypot(found.sd, base_sd)
        optimistic = found.value + (1 if metric.higher_is_better else -1) * _z(1 - params.retrain_alpha) * sd
        failures = []
        if threshold is not None and metric.worse_by(optimistic, threshold) > 0:
            failures.append(f"below the scoping threshold {threshold:g}")
        if base is not None and metric.worse_by(optimistic, base) > metric.allowed_worsening(params.performance_tolerance, base):
            failures.append(f"more than {params.performance_tolerance:g} below the reference's {base:.4f}")
        if failures:
            findings.append(Finding(f"{kind} performance", RETRAIN, f"{kind} {primary} {found.value:.4f} is "
                                    f"{' and '.join(failures)} (with confidence, alpha {params.retrain_alpha:g})"))
        elif base is not None and metric.worse_by(found.value, base) > metric.allowed_worsening(params.performance_tolerance, base):
            findings.append(Finding(f"{kind} performance", WATCH, f"{kind} {primary} {found.value:.4f} is more than "
                                    f"{params.performance_tolerance:g} below the reference's {base:.4f} "
                                    "(not yet with confidence)"))
    findings.extend(_concept_drift(primary, metric, realized_.get(primary), estimated_labelled.get(primary), params))
    return findings


def _concept_drift(primary: str, metric, real: Interval | None, expected: Interval | None,
                   params: MonitoringParams) -> list[Finding]:
    """Realized performance departing from what the calibrated scores predict for the same rows.

    The expectation's interval already holds the calibration's own error (its
    bootstrap refits on the held-out rows, see estimate.py) besides the labels'
    randomness; the realized value adds its bootstrap error.
    """
    if real is None or expected is None:
        return []
    spread = math.hypot(real.sd, expected.sd) or 1e-12
    z = metric.worse_by(real.value, expected.value) / spread  # > 0: worse than expected
    from scipy.stats import norm

    p_worse = float(norm.sf(z))
    text = (f"realized {primary} {real.value:.4f} against {expected.value:.4f} expected from the model's "
            f"calibrated confidence on the same rows (one-sided p = {p_worse:.2g})")
    if p_worse < params.retrain_alpha:
        return [Finding("concept drift", RETRAIN, f"{text}: the relation between the features and the label changed")]
    if p_worse < params.interval_alpha / 2:
        return [Finding("concept drift", WATCH, f"{text}: possibly a change in the relation to the label")]
    return []


def operations(scored: cap.Scored, rows: int, reference: Reference) -> tuple[dict[str, Any], list[Finding]]:
    """Rows, failed predictions and scoring speed, against the scoping budgets."""
    seconds = max(scored.seconds, 1e-9)
    figures = {"rows": rows, "failed_predictions": scored.failed, "scoring_seconds": scored.seconds,
               "latency_ms_per_row": 1000 * seconds / max(rows, 1), "throughput_rows_per_s": rows / seconds}
    findings = []
    if scored.failed:
        findings.append(Finding("operations", WATCH, f"{scored.failed} of {rows} prediction(s) missing or not finite"))
    budget = reference.profile.get("min_throughput_rows_per_s")
    from reprobook.execution.threads import available_cores, load_average

    figures["load_average_1m"] = load_average()
    # A machine loaded beyond its cores times its load, not the model (as the modeling stage's latency verdict):
    # measured, 20 of 48 unchanged batches "below budget" at load 6.5 on 2 cores, none when quiet.
    busy = math.isfinite(figures["load_average_1m"]) and figures["load_average_1m"] > available_cores()
    if budget and rows >= 1000 and not busy and figures["throughput_rows_per_s"] < budget:
        findings.append(Finding("operations", WATCH, f"scored {figures['throughput_rows_per_s']:.0f} rows/s, "
                                f"below the scoping budget of {budget:g}"))
    return figures, findings


def slices_and_fairness(labelled: pd.DataFrame, features: pd.DataFrame, task: str, classes: list | None,
                        analysis: ErrorAnalysisParams) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Realized performance per slice (worst first) and per sensitive group, on the labelled rows."""
    from reprobook.ml import error_analysis as ea

    if len(labelled) < analysis.min_slice_size:
        return None, None
    rows = features.loc[labelled.index]
    y_true = _as_class_type(labelled[cap.LABEL].to_numpy(), classes)
    slices = ea.worst_slices(ea.slice_metrics(rows, y_true, labelled[cap.PREDICTION].to_numpy(), task=task,
                                              min_slice_size=analysis.min_slice_size,
                                              numeric_bins=analysis.numeric_bins), analysis.top_k)
    sensitive = [c for c in analysis.sensitive_features if c in rows.columns]
    fairness = ea.fairness_gaps(rows, y_true, labelled[cap.PREDICTION].to_numpy(), sensitive=sensitive, task=task,
                                min_group_size=analysis.min_slice_size, numeric_bins=analysis.numeric_bins) if sensitive else None
    return slices, fairness


def monitor_batch(index: int, batch: cap.Batch, scored: cap.Scored, serving: cap.ServingModel, reference: Reference,
                  params: MonitoringParams, analysis: ErrorAnalysisParams, *,
                  labelled: pd.DataFrame | None = None, extra_columns: list[str] | None = None) -> BatchReport:
    """Every check of one batch; ``labelled`` is the capture joined with its labels (:func:`capture.join_labels`)."""
    features = batch.frame[list(serving.features)]
    captured = scored.predictions
    quality, findings = check_quality(features, reference, params)
    drift, found = check_feature_drift(features, reference, params)
    findings += found
    prediction_drift, found = check_prediction_drift(captured, reference, params)
    findings += found
    estimated = estimate(reference, captured, scored.raw_scores, params)
    realized_: dict[str, Interval] = {}
    estimated_labelled: dict[str, Interval] = {}
    slices = fairness = None
    labelled_rows = 0
    if labelled is not None:
        known = labelled[cap.LABEL].notna().to_numpy()
        labelled_rows = int(known.sum())
        if labelled_rows:
            subset = labelled[known]
            scores = None if scored.raw_scores is None else scored.raw_scores[known]
            realized_ = realized(subset, scores, reference.task, reference.profile.get("classes"), params.seed,
                                 reference.profile["primary_metric"])
            # All rows labelled: the estimate on them is the one already made.
            estimated_labelled = estimated if labelled_rows == len(labelled) else estimate(reference, subset, scores, params)
            slices, fairness = slices_and_fairness(subset, features, reference.task, reference.profile.get("classes"),
                                                   analysis)
    findings += judge_performance(reference, estimated, realized_, estimated_labelled, params)
    figures, found = operations(scored, len(batch.frame), reference)
    findings += found
    profile = reference.profile
    return BatchReport(
        index=index,
        batch={"path": str(batch.path), "digest": batch.digest, "rows": len(batch.frame), "labelled_rows": labelled_rows},
        model={"name": serving.name, "version": serving.version, "alias": serving.alias, "run_id": serving.run_id},
        reference={k: profile.get(k) for k in ("primary_metric", "threshold", "performance", "rows")},
        quality=quality, drift=drift, prediction_drift=prediction_drift, estimated=estimated, realized=realized_,
        operations=figures, findings=findings, alpha=params.interval_alpha, slices=slices, fairness=fairness,
        extra_columns=extra_columns or [],
    )
