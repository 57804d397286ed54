"""Model registry: log the trained model, register it, decide its alias.

A registered model name stands for one problem: its task, target and feature
columns are tags on the registered model (set by the first registration, or
by the first one after an older reprobook registered it without them). A run
that solves another problem is refused before anything is logged, because
its versions could not be compared with the champion's.

Every new model version gets the alias ``challenger``. It becomes ``champion``
only when it meets the scoping threshold and beats the current champion on
the primary metric, the champion being scored on the challenger's own test
rows: two scores from different splits say more about the splits than about
the models. A champion that cannot score those rows stays champion. The
decision, its reason and both scores are tags on the version and on the run.
Aliases replace MLflow's deprecated stages.

MLflow, pandas and scikit-learn are imported inside functions: the outer
stage process imports this module (for :func:`check_binding`) and must start
light.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reprobook.errors import ReprobookError
from reprobook.project.params import Params
from reprobook.project.paths import LEAKAGE_FILE, MODEL_FILE, TARGETS_FILE, TEST_FILE
from reprobook.tracking import store

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.models import ModelSignature

CHAMPION = "champion"
CHALLENGER = "challenger"

# Registered-model tags: what problem a model name stands for.
TAG_TASK = "reprobook.task"
TAG_TARGET = "reprobook.target"
TAG_FEATURES = "reprobook.features"
# Model-version and run tags: the promotion decision and the scores it compared.
TAG_REASON = f"{store.TAG_PROMOTION}_reason"
TAG_CHALLENGER_SCORE = "reprobook.challenger_score"
TAG_CHAMPION_SCORE = "reprobook.champion_score_on_challenger_rows"
TAG_CHAMPION_VERSION = "reprobook.champion_version"
METRIC_CHALLENGER_SCORE = "promotion.challenger_score"
METRIC_CHAMPION_SCORE = "promotion.champion_score_on_challenger_rows"

# MLflow's limit on a registered-model tag value; a longer feature list is kept as its digest.
_MAX_REGISTRY_TAG = 100_000
_DIGEST_PREFIX = "sha256:"
_LISTED = 10  # feature names shown per kind of mismatch


class RegistryMismatch(ReprobookError):
    """The run's task, target or features differ from those the registered model name is bound to."""


@dataclass(frozen=True)
class Binding:
    """The problem a registered model solves: versions are comparable only within one binding."""

    task: str
    target: str
    features: tuple[str, ...]

    def tags(self) -> dict[str, str]:
        return {TAG_TASK: self.task, TAG_TARGET: self.target, TAG_FEATURES: _features_tag(self.features)}


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    reason: str
    challenger_score: float | None = None
    champion_score: float | None = None


@dataclass(frozen=True)
class ChampionScore:
    """The current champion scored on the challenger's test rows.

    ``version`` is None when there is no champion; ``error`` says why a
    champion could not score (then ``value`` is None).
    """

    version: str | None = None
    value: float | None = None
    error: str | None = None


# --- binding -----------------------------------------------------------------


def check_binding(client, name: str, task: str, target: str, features: list[str] | tuple[str, ...]) -> None:
    """Refuse a run whose task, target or feature columns differ from the registered model's.

    Cheap (one registry read, no model needed), so the runner can call it
    before the modeling notebook runs. A name not registered yet, or
    registered without binding tags, accepts anything: the next registration
    binds it.
    """
    bound = _bound_tags(client, name)
    problems = _mismatches(bound, Binding(task, target, tuple(features)))
    if problems:
        raise RegistryMismatch(
            f"model.registered_name: the registered model '{name}' is bound to another problem, so this "
            f"run's model would not be comparable with its versions and is not registered: {'; '.join(problems)}. "
            "To register this model, set model.registered_name in params.yaml to a new name "
            "(a new name starts its own line of champions)."
        )


def check_project_binding(client, root: Path, name: str) -> None:
    """:func:`check_binding` from the project's files, before the modeling notebook runs.

    Reads targets.json and the test split's parquet schema only (no pandas,
    no scikit-learn). Does nothing when the scoping or data stage has not
    written its output yet: the notebook will say so.
    """
    from reprobook.ml.features import feature_columns

    path = root / TARGETS_FILE
    if not path.is_file():
        return
    targets = json.loads(path.read_text())
    features = feature_columns(root, targets["target"])
    if features is not None:
        check_binding(client, name, targets["task"], targets["target"], features)


def bind(client, name: str, binding: Binding) -> None:
    """Set the binding tags the registered model lacks (first registration, or one made by an older reprobook)."""
    bound = _bound_tags(client, name) or {}
    for key, value in binding.tags().items():
        if key not in bound:
            client.set_registered_model_tag(name, key, value)


def _bound_tags(client, name: str) -> dict[str, str] | None:
    """The registered model's binding tags, or None when the name is not registered."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return {k: v for k, v in model.tags.items() if k in (TAG_TASK, TAG_TARGET, TAG_FEATURES)}


def _mismatches(bound: dict[str, str] | None, found: Binding) -> list[str]:
    """Each difference, expected vs found; a tag that is absent binds nothing (yet)."""
    if not bound:
        return []
    problems = [
        f"{what}: expected '{bound[tag]}', found '{value}'"
        for what, tag, value in (("task", TAG_TASK, found.task), ("target", TAG_TARGET, found.target))
        if tag in bound and bound[tag] != value
    ]
    if TAG_FEATURES in bound:
        problems += _feature_mismatch(bound[TAG_FEATURES], found.features)
    return problems


def _feature_mismatch(tag: str, found: tuple[str, ...]) -> list[str]:
    """Missing and extra columns. Order is not compared: the champion is scored by column name."""
    if tag.startswith(_DIGEST_PREFIX):
        same = tag == _features_tag(tuple(sorted(found)))
        return [] if same else ["features: the columns differ (too many to list; compare with the champion's run)"]
    expected: list[str] = json.loads(tag)
    found_set, expected_set = set(found), set(expected)
    missing = [c for c in expected if c not in found_set]
    extra = [c for c in found if c not in expected_set]
    parts = [f"{kind} {_listing(columns)}" for kind, columns in (("missing", missing), ("extra", extra)) if columns]
    return [f"features: {len(expected)} columns expected, {len(found)} found; {', '.join(parts)}"] if parts else []


def _listing(columns: list[str]) -> str:
    shown = ", ".join(f"'{c}'" for c in columns[:_LISTED])
    return shown if len(columns) <= _LISTED else f"{shown} and {len(columns) - _LISTED} more"


def _features_tag(features: tuple[str, ...]) -> str:
    """The feature names as a JSON list in order; past MLflow's tag limit, a digest of the sorted names."""
    text = json.dumps(list(features))
    if len(text) <= _MAX_REGISTRY_TAG:
        return text
    return _DIGEST_PREFIX + hashlib.sha256(json.dumps(sorted(features)).encode()).hexdigest()


# --- promotion ---------------------------------------------------------------


def decide(candidate: float, meets_threshold: bool, champion: float | None, metric_name: str, task: str) -> Promotion:
    """Champion only if the scoping targets are met and the current champion is beaten.

    ``champion`` must be the champion's score on the candidate's test rows.
    """
    from reprobook.ml.metrics import get_metric, is_better

    metric = get_metric(metric_name, task)

    def result(promoted: bool, reason: str) -> Promotion:
        return Promotion(promoted, reason, candidate, champion)

    if not meets_threshold:
        return result(False, f"{metric_name} {candidate:.4f} does not meet the scoping threshold")
    if champion is None:
        return result(True, f"{metric_name} {candidate:.4f} meets the threshold and there is no champion yet")
    if is_better(metric, candidate, champion):
        return result(True, f"{metric_name} {candidate:.4f} beats the champion's {champion:.4f} on the same test rows")
    return result(False, f"{metric_name} {candidate:.4f} does not beat the champion's {champion:.4f} on the same test rows")


def gate(
    candidate: float, meets_threshold: bool, champion: ChampionScore, metric_name: str, task: str, name: str, version: str
) -> Promotion:
    """:func:`decide`, except that a champion that could not score the rows is never replaced automatically.

    A broken champion is news for a human (a changed dependency, a missing
    artifact), not a reason to promote whatever comes next.
    """
    if meets_threshold and champion.error is not None:
        return Promotion(
            False,
            f"the champion (version {champion.version} of '{name}') could not score this run's test rows "
            f"({champion.error}), so it stays champion; set the alias champion on version {version} by hand "
            f"if it should win: MlflowClient().set_registered_model_alias('{name}', '{CHAMPION}', '{version}')",
            candidate,
            None,
        )
    return decide(candidate, meets_threshold, champion.value, metric_name, task)


def score_champion(client, name: str, x, y, metric_name: str, task: str, trusted: Sequence[str] = ()) -> ChampionScore:
    """Load the current champion and score it on these rows, as the modeling notebook scores a model."""
    from mlflow.exceptions import MlflowException

    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return ChampionScore()
    try:
        model = load_registered_model(client, name, str(current.version), trusted)
        value = primary_score(model, x, y, metric_name, task)
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot compare", never "promote"
        return ChampionScore(str(current.version), None, _short(exc))
    return ChampionScore(str(current.version), value)


def load_registered_model(client, name: str, version: str, trusted: Sequence[str] = ()) -> Any:
    """A registered version's sklearn model, loaded under reprobook's trust policy (see :func:`load_model_dir`)."""
    import tempfile

    import mlflow.artifacts

    source = client.get_model_version_download_uri(name, version)
    with tempfile.TemporaryDirectory(prefix="reprobook-champion-") as scratch:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=scratch))
        return load_model_dir(local, version, trusted)


def load_model_dir(local: Path, version: str, trusted: Sequence[str] = ()) -> Any:
    """The sklearn model of a downloaded model version (the folder holding ``MLmodel``).

    Not ``mlflow.sklearn.load_model``: that unpickles a cloudpickle model and
    trusts the skops types its own ``MLmodel`` file lists, so whoever can write
    to the tracking store decides what code runs here. The trust list comes from
    this project's params instead, and a pickled model is refused.
    """
    import yaml

    from reprobook.ml.persistence import load_model

    flavor = yaml.safe_load((local / "MLmodel").read_text()).get("flavors", {}).get("sklearn", {})
    if flavor.get("serialization_format") != "skops":
        raise ValueError(f"version {version} is stored as a {flavor.get('serialization_format', 'non-sklearn')} "
                         "pickle, which reprobook never loads (unpickling runs code); rerun modeling to replace it")
    return load_model(local / flavor.get("pickled_model", "model.skops"), trusted)


def primary_score(model: Any, x, y, metric_name: str, task: str) -> float:
    """The primary metric of ``model`` on (x, y), computed by the code the modeling notebook uses."""
    from reprobook.ml.metrics import evaluate
    from reprobook.ml.modeling import predict

    if hasattr(model, "feature_names_in_"):
        x = x[list(model.feature_names_in_)]  # same columns (the binding says so), maybe in another order
    y_pred, scores = predict(model, x, task)
    classes = list(model.classes_) if task == "classification" else None
    results = evaluate(task, y, y_pred, scores, classes)
    if metric_name not in results:
        raise ValueError(f"it gives no {metric_name} (no class probabilities)")
    if not math.isfinite(results[metric_name]):
        raise ValueError(f"its {metric_name} is {results[metric_name]}")
    return results[metric_name]


def _short(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# --- log and register --------------------------------------------------------


def prepare(client, root: Path, params: Params) -> None:
    """Do what :func:`log_and_register` can do before the model exists, while the kernel trains.

    About two seconds of imports (scikit-learn, skops, MLflow's sklearn flavor),
    0.7 s in which MLflow maps every installed distribution's files to modules
    (to check the model's pinned requirements when it validates the input
    example), and scoring the current champion on the test split (0.3 s),
    which the promotion gate compares the new model with. The champion's score
    is kept for its version, metric and test split: registration uses it only
    if all three are still the same.
    """
    import mlflow.sklearn  # noqa: F401
    import skops.io  # noqa: F401  (0.9 s: skops lists every scikit-learn type it trusts when imported)

    from reprobook.ml import modeling, persistence  # noqa: F401

    try:  # MLflow's own cache, filled once per process; a private helper, so only if it is still there
        from mlflow.utils.requirements_utils import _init_modules_to_packages_map

        _init_modules_to_packages_map()
    except ImportError:
        pass
    from reprobook.ml.features import xy
    from reprobook.ml.prep import read_split
    from reprobook.ml.scoping import load_targets

    targets = load_targets(root)
    features, y = xy(read_split(root).test, targets["target"])
    name = params.model.registered_name
    score = score_champion(client, name, features, y, targets["primary_metric"], targets["task"],
                           params.model.trusted_types)
    if score.version is not None:
        _champion_scores[_champion_key(root, name, score.version, targets["primary_metric"])] = score


_champion_scores: dict[tuple, ChampionScore] = {}


def _champion_key(root: Path, name: str, version: str, metric_name: str) -> tuple:
    test = (root / TEST_FILE).stat()
    return name, version, metric_name, test.st_size, test.st_mtime_ns


def _current_champion_score(client, root: Path, name: str, x, y, metric_name: str, task: str,
                            trusted: Sequence[str]) -> ChampionScore:
    """The champion's score: the one :func:`prepare` computed, if the champion and the test split are the same."""
    from mlflow.exceptions import MlflowException

    try:
        version = str(client.get_model_version_by_alias(name, CHAMPION).version)
        prepared = _champion_scores.get(_champion_key(root, name, version, metric_name))
    except (MlflowException, OSError):
        prepared = None
    return prepared or score_champion(client, name, x, y, metric_name, task, trusted)


def log_model(client, run_id: str, root: Path, params: Params) -> str:
    """Log the saved model to the run without registering it; return its LoggedModel id.

    The stage's process calls this as soon as the notebook has saved the
    model, while the kernel still evaluates and times it (about 0.8 s of
    serialising, signature and input-example checks off the stage's critical
    path); :func:`log_and_register` registers the logged model once the stage
    has succeeded. A run that fails afterwards keeps the logged model, as its
    record of what was trained, and registers nothing.
    """
    from reprobook.ml.modeling import load_model, xy
    from reprobook.ml.prep import read_split
    from reprobook.ml.scoping import load_targets

    trusted = params.model.trusted_types
    features, _ = xy(read_split(root).test, load_targets(root)["target"])
    return str(_log_model(client, run_id, load_model(root / MODEL_FILE, trusted), features, root / MODEL_FILE,
                          trusted).model_id)


def log_and_register(client, run_id: str, root: Path, params: Params, logged: str | None = None) -> Promotion:
    """Log the model to the run (unless it was ``logged`` already: its LoggedModel id), register it under
    its bound name, and decide its alias. Logging and registering are the same two steps either way
    (:func:`log_model`, :func:`_register`), only earlier or later.

    Raises :class:`RegistryMismatch` before anything is registered when the run
    solves another problem than the registered name stands for.
    """
    from reprobook.ml.modeling import xy
    from reprobook.ml.prep import read_split
    from reprobook.ml.scoping import load_targets

    trusted = params.model.trusted_types
    targets = load_targets(root)
    task, metric_name = targets["task"], targets["primary_metric"]
    features, y = xy(read_split(root).test, targets["target"])
    name = params.model.registered_name
    binding = Binding(task, targets["target"], tuple(str(c) for c in features.columns))
    check_binding(client, name, binding.task, binding.target, binding.features)
    champion = _current_champion_score(client, root, name, features, y, metric_name, task, trusted)
    version = _register(logged or log_model(client, run_id, root, params), name)
    bind(client, name, binding)
    comparison = json.loads((root / "reports/modeling/metrics.json").read_text())["comparison"]
    promotion = gate(comparison["value"], comparison["meets_threshold"], champion, metric_name, task, name, version)
    leaks = target_leaks(root)
    if leaks and promotion.promoted:
        named = "; ".join(f"'{leak['column']}' {leak['why']}" for leak in leaks)
        promotion = Promotion(False, f"not promoted: the data gives the target away ({named}); a model that reads "
                              "it scores by looking at the answer. Drop the column (data.drop_columns) and rerun",
                              promotion.challenger_score, promotion.champion_score)
    client.set_registered_model_alias(name, CHALLENGER, version)
    if promotion.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    _record(client, run_id, name, version, promotion, champion)
    return promotion


def target_leaks(root: Path) -> list[dict[str, str]]:
    """The target leaks the data stage found (``paths.LEAKAGE_FILE``), if any."""
    path = root / LEAKAGE_FILE
    try:
        return list(json.loads(path.read_text()).get("target_leaks", []))
    except (OSError, ValueError):
        return []


def _log_model(client, run_id: str, model: Any, features: pd.DataFrame, path: Path, trusted: Sequence[str]) -> Any:
    """Log the model (skops, with its trust list) with a signature and an input example; return MLflow's
    model info.

    The skops types MLflow records are the ones this
    project's policy accepted (:func:`reprobook.ml.persistence.trusted_types`),
    so ``mlflow models serve`` and ``mlflow.pyfunc.load_model`` load it without
    unpickling.
    """
    import mlflow
    import mlflow.sklearn

    from reprobook.ml.persistence import trusted_types

    example = features.head(5)
    signature = _signature(model, features, example)
    # The run is named, not resumed as the active run: ending an active run would mark it FINISHED
    # while the stage still runs (the model is logged before the last cells: log_model above). So the
    # LoggedModel is created here, in the run's experiment with the run's params, as MLflow does for
    # an active run; without one it would go to the default experiment.
    run = client.get_run(run_id)
    created = mlflow.initialize_logged_model(name="model", source_run_id=run_id, params=dict(run.data.params),
                                             experiment_id=run.info.experiment_id)
    return mlflow.sklearn.log_model(
        model,
        name="model",
        signature=signature,
        input_example=example,
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
        skops_trusted_types=trusted_types(path.read_bytes(), trusted),
        pip_requirements=_requirements(),
        run_id=run_id,
        model_id=created.model_id,
    )


def _register(model_id: str, name: str) -> str:
    """Register a model logged earlier (:func:`log_model`) as a new version of ``name``; return the version."""
    import mlflow

    return str(mlflow.register_model(f"models:/{model_id}", name).version)


def _signature(model: Any, features: pd.DataFrame, example: pd.DataFrame) -> ModelSignature:
    """MLflow's inferred signature, except that integer-valued columns are declared ``any``.

    Why: MLflow 3.17's schema enforcement (``mlflow.models.utils._enforce_mlflow_datatype``)
    accepts an int64 column only where the signature says ``long`` and a float64
    column only where it says ``double`` (int64 to double is refused as unsafe
    past 2**53, unless every value is 0 or 1). pandas stores one integer column
    as int64 when no value is missing and as float64 (NaN) as soon as one is,
    which is what CSV, parquet and JSON readers give. So each numeric declaration
    rejects one of the two forms of the same column: ``double`` rejected the
    project's own splits (``age`` is int64) when the champion was loaded through
    ``mlflow.pyfunc``, ``long`` rejects the first batch with a missing age, both
    in process and in ``mlflow models serve`` (which casts JSON to the declared
    type). ``any`` hands the values to the model unchanged, and the model's own
    pipeline converts numeric columns to float and imputes missing values, so
    pyfunc predictions equal ``model.predict`` on the same rows.

    Integer-valued means an integer dtype, or a float column whose present values
    are all whole numbers (an integer column that had missing values, or one like
    ``credit_score`` that a user's data may well hold as int64). Column names and
    presence stay enforced; every other column keeps its strict inferred type.
    A pyfunc wrapper that casts would not help: MLflow enforces the signature
    before any model code runs, and the model would lose the scikit-learn flavor
    the promotion gate loads the champion with (:func:`score_champion`).

    Costs, knowingly paid: MLflow checks an ``any`` column value by value (about
    1.5 s per million values), and a pandas nullable ``Int64`` column holding
    ``pd.NA`` reaches the model as objects, which scikit-learn refuses: send
    missing integers as NaN (``.astype("float64")``), as pandas' readers do.
    """
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    with warnings.catch_warnings():
        # MLflow's hint that integer columns cannot hold missing values: handled here.
        warnings.filterwarnings("ignore", message=".*[Ii]nteger column", category=UserWarning)
        inferred = infer_signature(example, model.predict(example))
    loose = {str(c) for c in features.columns if _integer_valued(features[c])}
    inputs = [
        ColSpec(AnyType(), spec.name, required=spec.required) if spec.name in loose else spec
        for spec in inferred.inputs.inputs
    ]
    return ModelSignature(Schema(inputs), inferred.outputs, inferred.params)


def _integer_valued(column: pd.Series) -> bool:
    """An integer dtype, or floats that are all whole numbers where present (see :func:`_signature`)."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_bool_dtype(column):
        return False
    if pd.api.types.is_integer_dtype(column):
        return True
    if not pd.api.types.is_float_dtype(column):
        return False
    present = column.dropna().to_numpy(dtype="float64")
    return present.size > 0 and bool(np.all(np.isfinite(present) & (present == np.round(present))))


def _record(client, run_id: str, name: str, version: str, promotion: Promotion, champion: ChampionScore) -> None:
    """The decision and both scores, as tags on the version and the run, and as run metrics."""
    from mlflow.entities import Metric

    if champion.version is None:
        champion_tag = "none (no champion)"
    elif champion.value is None:
        champion_tag = "unavailable (the champion could not score)"
    else:
        champion_tag = repr(champion.value)
    tags = {
        store.TAG_PROMOTION: CHAMPION if promotion.promoted else CHALLENGER,
        TAG_REASON: promotion.reason[:5000],
        TAG_CHALLENGER_SCORE: repr(promotion.challenger_score),
        TAG_CHAMPION_SCORE: champion_tag,
        TAG_CHAMPION_VERSION: champion.version or "none",
    }
    digest = client.get_run(run_id).data.tags.get(store.TAG_PREDICTION_DIGEST)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
        client.set_tag(run_id, key, value)
    if digest:
        client.set_model_version_tag(name, version, store.TAG_PREDICTION_DIGEST, digest)
    scores = {METRIC_CHALLENGER_SCORE: promotion.challenger_score, METRIC_CHAMPION_SCORE: champion.value}
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in scores.items() if isinstance(v, (int, float)) and math.isfinite(v)]
    if metrics:
        client.log_batch(run_id, metrics=metrics)


def _requirements() -> list[str]:
    """Pin what the model needs to load (skops reads the file), from this environment (skips MLflow's slow inference)."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("scikit-learn", "skops", "numpy", "pandas", "scipy", "cloudpickle")]
