"""The training reference: what production batches are compared with, made once at training time.

The modeling stage writes it beside the model (``paths.REFERENCE_DIR``), so
DVC versions it with the model, and the run that registers the model logs it
(its ``outputs/reference`` artifacts). Monitoring fetches the reference of the
version that actually serves (:func:`reprobook.monitoring.capture.load_serving_model`)
and never recomputes it:

- ``features.parquet``: the training rows' features (train and test; a seeded
  sample of ``monitoring.reference_rows`` when larger), the drift reference;
- ``held_out.parquet``: the model's predictions and scores on the held-out test
  rows with their labels: the prediction-drift reference;
- ``schema.yaml``: the constraints a serving batch must meet (label not expected);
- ``statistics.json``: per-column statistics of the reference features;
- ``profile.json``: task, classes, features, the scoping KPIs, the held-out
  performance and the calibration of the scores on held-out rows (what the
  performance estimate without labels rests on).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reprobook.errors import ReprobookError
from reprobook.monitoring.capture import plain

if TYPE_CHECKING:
    import pandas as pd

    from reprobook.monitoring.estimate import Calibration
    from reprobook.quality import Schema

FEATURES = "features.parquet"
HELD_OUT = "held_out.parquet"
SCHEMA = "schema.yaml"
STATISTICS = "statistics.json"
PROFILE = "profile.json"


@dataclass(frozen=True)
class Reference:
    directory: Path
    profile: dict[str, Any]
    features: pd.DataFrame
    held_out: pd.DataFrame
    schema: Schema

    @property
    def task(self) -> str:
        return self.profile["task"]

    @property
    def calibration(self) -> Calibration | None:
        from reprobook.monitoring.estimate import Calibration

        found = self.profile.get("calibration")
        return Calibration.from_dict(found) if found else None


def build_reference(model: Any, train: pd.DataFrame, test: pd.DataFrame, targets: dict[str, Any], *,
                    predicted: Any, scores: Any, rows: int, seed: int, out: Path) -> dict[str, Any]:
    """Write the reference of ``model`` (trained on ``train``, held out ``test``) into ``out``; return its profile.

    ``predicted`` and ``scores`` are the model's outputs on ``test``, which the
    modeling notebook has already computed.
    """
    import numpy as np
    import pandas as pd

    from reprobook.ml.metrics import evaluate
    from reprobook.quality import compute_statistics, infer_schema

    target, task = targets["target"], targets["task"]
    # The model's own inputs: an id or text column the split keeps is neither drift-tested nor validated.
    inputs = [str(c) for c in getattr(model, "feature_names_in_", [c for c in train.columns if c != target])]
    features = pd.concat([train, test], ignore_index=True)[inputs]
    if len(features) > rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(features), rows, replace=False))
        features = features.iloc[keep].reset_index(drop=True)
    y_test = test[target]
    classes = [plain(c) for c in model.classes_] if task == "classification" else None
    held_out = held_out_frame(predicted, scores, classes, y_test)
    calibration = None
    if scores is not None:
        from reprobook.monitoring.estimate import fit_calibration

        calibration = fit_calibration(scores, y_test.to_numpy(), classes).to_dict()
    out.mkdir(parents=True, exist_ok=True)
    features.to_parquet(out / FEATURES, index=False)
    held_out.to_parquet(out / HELD_OUT, index=False)
    infer_schema(features).to_yaml(out / SCHEMA)
    _write_json(out / STATISTICS, compute_statistics(features).to_dict())
    profile = {
        "task": task,
        "target": target,
        "classes": classes,
        "features": [str(c) for c in features.columns],
        "primary_metric": targets["primary_metric"],
        "higher_is_better": targets["higher_is_better"],
        "threshold": targets.get("threshold"),
        "latency_budget_ms": targets.get("latency_budget_ms"),
        "min_throughput_rows_per_s": targets.get("min_throughput_rows_per_s"),
        "performance": evaluate(task, y_test, predicted, scores, classes),
        "calibration": calibration,
        "rows": {"features": len(features), "held_out": len(held_out)},
        "predictions": prediction_summary(held_out, classes),
    }
    _write_json(out / PROFILE, profile)
    return profile


def held_out_frame(predicted: Any, scores: Any, classes: list | None, labels: Any = None) -> pd.DataFrame:
    """Predictions as a capture has them (:func:`.capture.prediction_columns`), with a ``label`` column if given."""
    import pandas as pd

    from reprobook.monitoring.capture import LABEL, prediction_columns

    frame = prediction_columns(predicted, scores, classes)
    if labels is not None:
        frame[LABEL] = pd.Series(labels).to_numpy()
    return frame


def prediction_summary(frame: pd.DataFrame, classes: list | None) -> dict[str, Any]:
    """The prediction distribution in a few numbers (mean score, class shares, or the predicted values' quantiles)."""
    from reprobook.monitoring.capture import PREDICTION, SCORE

    if classes is None:
        values = frame[PREDICTION].astype(float)
        return {"mean": float(values.mean()), "std": float(values.std()),
                "quantiles": {str(q): float(values.quantile(q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)}}
    shares = frame[PREDICTION].value_counts(normalize=True)
    summary = {"class_shares": {str(c): float(shares.get(c, 0.0)) for c in classes}}
    if SCORE in frame:
        summary["mean_score"] = float(frame[SCORE].mean())
    return summary


def load_reference(directory: Path) -> Reference:
    """A reference written by :func:`build_reference`; an error naming what is missing otherwise."""
    import pandas as pd

    from reprobook.quality import Schema

    missing = [name for name in (PROFILE, FEATURES, HELD_OUT, SCHEMA) if not (directory / name).is_file()]
    if missing:
        raise ReprobookError(
            f"{directory}: no training reference ({', '.join(missing)} missing); the model version was registered "
            "before reprobook wrote references: rerun the modeling stage (reprobook run) to register one that has it"
        )
    return Reference(directory, json.loads((directory / PROFILE).read_text()), pd.read_parquet(directory / FEATURES),
                     pd.read_parquet(directory / HELD_OUT), Schema.from_yaml(directory / SCHEMA))



def _write_json(path: Path, payload: Any) -> None:
    from reprobook.project.context import write_json

    write_json(path, payload)
