"""Model registry: log the trained model, register it, decide its alias.

Every new model version gets the alias ``challenger``. It becomes ``champion``
only when it meets the scoping threshold and beats the current champion on
the primary metric; the decision and its reason are tags on the version and
on the run. Aliases replace MLflow's deprecated stages.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from reprobook import tracking
from reprobook.metrics import get_metric, is_better
from reprobook.modeling import MODEL_FILE, load_model, xy
from reprobook.params import Params
from reprobook.prep import read_split
from reprobook.scoping import load_targets

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    reason: str


def decide(candidate: float, meets_threshold: bool, champion: float | None, metric_name: str, task: str) -> Promotion:
    """Champion only if the scoping targets are met and the current champion is beaten."""
    metric = get_metric(metric_name, task)
    if not meets_threshold:
        return Promotion(False, f"{metric_name} {candidate:.4f} does not meet the scoping threshold")
    if champion is None:
        return Promotion(True, f"{metric_name} {candidate:.4f} meets the threshold and there is no champion yet")
    if is_better(metric, candidate, champion):
        return Promotion(True, f"{metric_name} {candidate:.4f} beats the champion's {champion:.4f}")
    return Promotion(False, f"{metric_name} {candidate:.4f} does not beat the champion's {champion:.4f}")


def champion_score(client, name: str, metric_name: str) -> float | None:
    """The current champion's test score on ``metric_name``, if there is a champion."""
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    run = client.get_run(version.run_id) if version.run_id else None
    return None if run is None else run.data.metrics.get(f"test.{metric_name}")


def log_and_register(client, run_id: str, root: Path, params: Params) -> Promotion:
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    model = load_model(root / MODEL_FILE)
    targets = load_targets(root)
    features, _ = xy(read_split(root).test, targets["target"])
    # Integer columns are declared as doubles: a missing value at serving time
    # turns an int column into floats, which an int64 signature would reject.
    example = features.head(5).astype({c: "float64" for c in features.select_dtypes("integer").columns})
    signature = infer_signature(example, model.predict(example))
    name = params.model.registered_name
    # cloudpickle is chosen knowingly (models load without a skops trust list): mute the warning.
    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            registered_model_name=name,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            pip_requirements=_requirements(),
        )
    version = str(info.registered_model_version)
    comparison = json.loads((root / "reports/modeling/metrics.json").read_text())["comparison"]
    metric_name = targets["primary_metric"]
    promotion = decide(
        comparison["value"],
        comparison["meets_threshold"],
        champion_score(client, name, metric_name),
        metric_name,
        targets["task"],
    )
    client.set_registered_model_alias(name, CHALLENGER, version)
    if promotion.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    alias = CHAMPION if promotion.promoted else CHALLENGER
    for key, value in {tracking.TAG_PROMOTION: alias, f"{tracking.TAG_PROMOTION}_reason": promotion.reason}.items():
        client.set_model_version_tag(name, version, key, value)
        client.set_tag(run_id, key, value)
    digest = client.get_run(run_id).data.tags.get(tracking.TAG_PREDICTION_DIGEST)
    if digest:
        client.set_model_version_tag(name, version, tracking.TAG_PREDICTION_DIGEST, digest)
    return promotion


def _requirements() -> list[str]:
    """Pin what the model needs to load, from this environment (skips MLflow's slow inference)."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("scikit-learn", "numpy", "pandas", "scipy", "cloudpickle")]
