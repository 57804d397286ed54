"""Model registry: log the trained model, register it, decide its alias.

A registered model name stands for one problem: its task, its target and,
for classification, the target's classes (the sorted distinct labels of the
train and test splits) are tags on the registered model, set by the first
registration (or by the first one after an older reprobook registered it
without them). A run that solves another problem is refused before anything
is logged, because its versions could not be compared with the champion's.

The feature columns are not part of the binding: dropping a leaking column or
adding a feature is daily work on the same problem. The champion is scored on
the test split by its own columns, whichever the challenger reads, so the
two compete on the same rows. What a new input changes is the serving
contract (:mod:`reprobook.tracking.contract`): it is recorded on the version and
the run (``reprobook.contract_change``) and said in the decision. Registered
models that an older reprobook bound to a feature list (``reprobook.features``)
are read as before, and that tag is ignored.

Every new model version gets the alias ``challenger``. It becomes ``champion``
only when it meets the scoping threshold and beats the current champion on
the primary metric, the champion being scored on the challenger's own test
rows: two scores from different splits say more about the splits than about
the models. A champion that cannot score those rows stays champion, and so
does one that reads a column the test split no longer has: the two cannot be
compared on the same rows, and a human decides. A version that needs an input
column the champion did not read is not promoted automatically either, even
when it wins: callers of ``@champion`` send the champion's columns, and
only a human can say they send the new one (``reprobook deploy promote
--accept-contract-change``). The decision, its reason and both scores are
tags on the version and on the run. Aliases replace MLflow's deprecated stages.

MLflow, pandas and scikit-learn are imported inside functions: the outer
stage process imports this module (for :func:`check_binding`) and must start
light; the classes are read with pyarrow.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reprobook.errors import ReprobookError
from reprobook.project.params import Params
from reprobook.project.paths import LEAKAGE_FILE, MODEL_FILE, TARGETS_FILE, TEST_FILE, TRAIN_FILE
from reprobook.tracking import contract, store
from reprobook.tracking.contract import ContractChange

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.models import ModelSignature

CHAMPION = "champion"
CHALLENGER = "challenger"

# Registered-model tags: what problem a model name stands for.
TAG_TASK = "reprobook.task"
TAG_TARGET = "reprobook.target"
TAG_CLASSES = "reprobook.classes"
TAG_FEATURES = "reprobook.features"
"""Written by reprobook versions that bound a name to its feature list; still read, never compared or written."""
# Model-version and run tags: the promotion decision and the scores it compared.
TAG_REASON = f"{store.TAG_PROMOTION}_reason"
TAG_CHALLENGER_SCORE = "reprobook.challenger_score"
TAG_CHAMPION_SCORE = "reprobook.champion_score_on_challenger_rows"
TAG_CHAMPION_VERSION = "reprobook.champion_version"
TAG_CONTRACT = contract.TAG_CONTRACT
METRIC_CHALLENGER_SCORE = "promotion.challenger_score"
METRIC_CHAMPION_SCORE = "promotion.champion_score_on_challenger_rows"

_BINDING_TAGS = (TAG_TASK, TAG_TARGET, TAG_CLASSES)
# MLflow's limit on a registered-model tag value; a longer class list is kept as its digest.
_MAX_REGISTRY_TAG = 100_000
_DIGEST_PREFIX = "sha256:"
_LISTED = 10  # class labels shown per kind of mismatch


class RegistryMismatch(ReprobookError):
    """The run's task, target or classes differ from those the registered model name is bound to."""


@dataclass(frozen=True)
class Binding:
    """The problem a registered model solves: versions are comparable only within one binding.

    ``classes`` is None for regression (and when the splits are not there to read).
    """

    task: str
    target: str
    classes: tuple | None = None

    def tags(self) -> dict[str, str]:
        tags = {TAG_TASK: self.task, TAG_TARGET: self.target}
        if self.classes is not None:
            tags[TAG_CLASSES] = _classes_tag(self.classes)
        return tags


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    reason: str
    challenger_score: float | None = None
    champion_score: float | None = None
    contract: ContractChange | None = None
    """The new version's inputs against the champion's (None: no champion, or its inputs are unknown)."""


@dataclass(frozen=True)
class ChampionScore:
    """The current champion scored on the challenger's test rows.

    ``version`` is None when there is no champion; ``error`` says why a
    champion could not score (then ``value`` is None). ``inputs`` are the
    columns the champion reads (None when it could not be loaded), ``missing``
    those of them the test split no longer has.
    """

    version: str | None = None
    value: float | None = None
    error: str | None = None
    inputs: tuple[str, ...] | None = None
    missing: tuple[str, ...] = ()


# --- binding -----------------------------------------------------------------


def check_binding(client, name: str, task: str, target: str, classes: Sequence | None = None) -> None:
    """Refuse a run whose task, target or classes differ from the registered model's.

    Cheap (one registry read, no model needed), so the runner can call it
    before the modeling notebook runs. A name not registered yet, or
    registered without binding tags, accepts anything: the next registration
    binds it. Feature columns are not compared (see the module's docstring).
    """
    bound = _bound_tags(client, name)
    found = Binding(task, target, None if classes is None else _sorted_labels({_label(c) for c in classes}))
    problems = _mismatches(bound, found)
    if problems:
        raise RegistryMismatch(
            f"model.registered_name: the registered model '{name}' is bound to another problem, so this "
            f"run's model would not be comparable with its versions and is not registered: {'; '.join(problems)}. "
            "To register this model, set model.registered_name in params.yaml to a new name "
            "(a new name starts its own line of champions)."
        )


def check_project_binding(client, root: Path, name: str) -> None:
    """:func:`check_binding` from the project's files, before the modeling notebook runs.

    Reads targets.json and the target column of the splits only (pyarrow; no
    pandas, no scikit-learn). Does nothing when the scoping stage has not
    written its output yet, and compares no classes before the data stage has
    written the splits: the notebook will say so.
    """
    path = root / TARGETS_FILE
    if not path.is_file():
        return
    targets = json.loads(path.read_text())
    task, target = targets["task"], targets["target"]
    check_binding(client, name, task, target, split_classes(root, target) if task == "classification" else None)


def split_classes(root: Path, target: str) -> tuple | None:
    """The sorted distinct labels of ``target`` in the train and test splits (None: no split has the column).

    Both splits, because the model's classes come from the training split and
    its scores from the test split. Whole-number floats count as integers, so
    a label column read back as float (1.0) binds as the integers it holds.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    labels: set = set()
    found = False
    for relative in (TRAIN_FILE, TEST_FILE):
        path = root / relative
        if not path.is_file() or target not in pq.read_schema(path).names:
            continue
        column = pq.read_table(path, columns=[target]).column(target)
        labels.update(_label(value) for value in pc.unique(pc.drop_null(column)).to_pylist())
        found = True
    return _sorted_labels(labels) if found else None


def _label(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _sorted_labels(labels: set) -> tuple:
    try:
        return tuple(sorted(labels))
    except TypeError:  # labels of several types (an object column): a stable order all the same
        return tuple(sorted(labels, key=lambda value: (type(value).__name__, str(value))))


def bind(client, name: str, binding: Binding) -> None:
    """Set the binding tags the registered model lacks (first registration, or one made by an older reprobook)."""
    bound = _bound_tags(client, name) or {}
    for key, value in binding.tags().items():
        if key not in bound:
            client.set_registered_model_tag(name, key, value)


def _bound_tags(client, name: str) -> dict[str, str] | None:
    """The registered model's binding tags, or None when the name is not registered.

    An older feature-list tag (:data:`TAG_FEATURES`) is not a binding tag and is left out.
    """
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return {k: v for k, v in model.tags.items() if k in _BINDING_TAGS}


def _mismatches(bound: dict[str, str] | None, found: Binding) -> list[str]:
    """Each difference, expected vs found; a tag that is absent (or classes not known yet) binds nothing."""
    if not bound:
        return []
    problems = [
        f"{what}: expected '{bound[tag]}', found '{value}'"
        for what, tag, value in (("task", TAG_TASK, found.task), ("target", TAG_TARGET, found.target))
        if tag in bound and bound[tag] != value
    ]
    if TAG_CLASSES in bound and found.classes is not None and not problems:
        problems += _classes_mismatch(bound[TAG_CLASSES], found.classes)
    return problems


def _classes_mismatch(tag: str, found: tuple) -> list[str]:
    """The labels expected and found, and which are new or gone (compared as JSON: 1 and '1' differ)."""
    if tag == _classes_tag(found):
        return []
    if tag.startswith(_DIGEST_PREFIX):
        return [f"classes: the labels differ ({len(found)} found; too many to list, compare with the champion's run)"]
    expected = [_label(value) for value in json.loads(tag)]
    as_json = {json.dumps(value, default=str) for value in found}
    before = {json.dumps(value, default=str) for value in expected}
    new = [v for v in found if json.dumps(v, default=str) not in before]
    gone = [v for v in expected if json.dumps(v, default=str) not in as_json]
    parts = [f"{kind} {_labels(values)}" for kind, values in (("new", new), ("gone", gone)) if values]
    detail = f" ({', '.join(parts)})" if parts else ""
    return [f"classes: expected {_labels(expected)}, found {_labels(list(found))}{detail}"]


def _labels(values: list) -> str:
    shown = ", ".join(json.dumps(v, default=str) for v in values[:_LISTED])
    return f"[{shown}]" if len(values) <= _LISTED else f"[{shown}, ... {len(values) - _LISTED} more]"


def _classes_tag(classes: tuple) -> str:
    """The labels as a sorted JSON list; past MLflow's tag limit, a digest of that list."""
    text = json.dumps(list(classes), default=str)
    if len(text) <= _MAX_REGISTRY_TAG:
        return text
    return _DIGEST_PREFIX + hashlib.sha256(text.encode()).hexdigest()


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
    artifact), not a reason to promote whatever comes next. So is a champion
    that reads a column the test split no longer has (dropped from the data):
    the challenger may well be better, but nothing here shows it on the same
    rows, and the champion still serves callers who send that column. The
    reason says how to compare the two on rows that have every column.
    """
    if meets_threshold and champion.missing:
        return Promotion(
            False,
            f"the champion (version {champion.version} of '{name}') is unavailable: it reads column(s) "
            f"{contract.listing(champion.missing)} that this run's test split no longer has, so the two models cannot "
            "be scored on the same rows and it stays champion; compare them on labelled rows that have both models' "
            f"columns (reprobook deploy promote --challenger {name}/{version} --batch FILE --labels FILE), or set the "
            f"alias champion on version {version} by hand if it should win: "
            f"MlflowClient().set_registered_model_alias('{name}', '{CHAMPION}', '{version}')",
            candidate,
            None,
        )
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


def contract_against(champion: ChampionScore, inputs: Sequence[str]) -> ContractChange | None:
    """The new version's input columns against the champion's; None without a champion whose inputs are known."""
    if champion.version is None or not champion.inputs:
        return None
    return contract.diff(champion.inputs, [str(c) for c in inputs], champion.version)


def with_contract(promotion: Promotion, change: ContractChange | None, name: str, version: str) -> Promotion:
    """The decision, saying how the serving contract changes; a winner that needs a new input is held back.

    Held back, not refused: it is registered and stays ``challenger``, because
    callers of ``@champion`` send the champion's columns and would be refused
    by a model that needs one more; only a human can say they send it, which
    ``reprobook deploy promote --accept-contract-change`` records. Removed
    inputs change nothing for callers and are only said.
    """
    if change is None:
        return promotion
    if change.needs_consent and promotion.promoted:
        reason = (f"not promoted automatically: {promotion.reason}, but {change.describe()}; once they do: "
                  f"reprobook deploy promote --challenger {name}/{version} {contract.ACCEPT_FLAG}")
        return replace(promotion, promoted=False, reason=reason, contract=change)
    reason = f"{promotion.reason}; {change.describe()}" if change.changed else promotion.reason
    return replace(promotion, reason=reason, contract=change)


class _Unloadable(Exception):
    """A version whose files were fetched but whose model would not load; ``inputs`` from its signature."""

    def __init__(self, cause: BaseException, inputs: tuple[str, ...] | None) -> None:
        super().__init__(_short(cause))
        self.inputs = inputs


def score_champion(client, name: str, rows, y, metric_name: str, task: str,
                   trusted: Sequence[str] = ()) -> ChampionScore:
    """Load the current champion and score it on these rows, as the modeling notebook scores a model.

    ``rows`` is the test split without its target, every column of it: the
    champion reads the columns it was trained on (``feature_names_in_``, else
    its signature), whether the challenger reads more or fewer. A column it
    reads that ``rows`` lacks means it cannot score them (``missing``), which
    :func:`gate` reports rather than promoting past it.
    """
    from mlflow.exceptions import MlflowException

    try:
        version = str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return ChampionScore()
    try:
        model, inputs = load_registered_version(client, name, version, trusted)
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot compare", never "promote"
        return ChampionScore(version, None, str(exc) if isinstance(exc, _Unloadable) else _short(exc),
                             getattr(exc, "inputs", None))
    have = {str(c) for c in rows.columns}
    missing = tuple(c for c in inputs if c not in have)
    if missing:
        return ChampionScore(version, None, f"it reads column(s) {contract.listing(missing)} that the test split "
                             "no longer has", inputs, missing)
    try:
        value = primary_score(model, rows[list(inputs)] if inputs else rows, y, metric_name, task)
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot compare", never "promote"
        return ChampionScore(version, None, _short(exc), inputs or None)
    return ChampionScore(version, value, inputs=inputs or None)


def load_registered_model(client, name: str, version: str, trusted: Sequence[str] = ()) -> Any:
    """A registered version's sklearn model, loaded under reprobook's trust policy (see :func:`load_model_dir`)."""
    return load_registered_version(client, name, version, trusted)[0]


def load_registered_version(client, name: str, version: str,
                            trusted: Sequence[str] = ()) -> tuple[Any, tuple[str, ...]]:
    """A registered version's sklearn model and the input columns it reads (``feature_names_in_``, else its
    signature; empty when it records neither). A model that does not load raises :class:`_Unloadable`, which
    still carries the signature's columns: the contract is known even when the model cannot be used."""
    import tempfile

    import mlflow.artifacts

    source = client.get_model_version_download_uri(name, version)
    with tempfile.TemporaryDirectory(prefix="reprobook-champion-") as scratch:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=scratch))
        signed = contract.signature_inputs(local / "MLmodel")
        try:
            model = load_model_dir(local, version, trusted)
        except Exception as exc:
            raise _Unloadable(exc, signed or None) from exc
    names = getattr(model, "feature_names_in_", None)
    return model, (tuple(str(c) for c in names) if names is not None else signed)


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
        x = x[list(model.feature_names_in_)]  # its own columns, in its order (a frame may hold more)
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
    rows, y = test_rows(read_split(root).test, targets["target"])
    name = params.model.registered_name
    score = score_champion(client, name, rows, y, targets["primary_metric"], targets["task"],
                           params.model.trusted_types)
    if score.version is not None:
        _champion_scores[_champion_key(root, name, score.version, targets["primary_metric"])] = score


_champion_scores: dict[tuple, ChampionScore] = {}


def test_rows(test: pd.DataFrame, target: str) -> tuple[pd.DataFrame, pd.Series]:
    """Every column of the test split but the target, and the target: what the champion picks its own columns from."""
    return test.drop(columns=[target]), test[target]


def _champion_key(root: Path, name: str, version: str, metric_name: str) -> tuple:
    test = (root / TEST_FILE).stat()
    return name, version, metric_name, test.st_size, test.st_mtime_ns


def _current_champion_score(client, root: Path, name: str, rows, y, metric_name: str, task: str,
                            trusted: Sequence[str]) -> ChampionScore:
    """The champion's score: the one :func:`prepare` computed, if the champion and the test split are the same."""
    from mlflow.exceptions import MlflowException

    try:
        version = str(client.get_model_version_by_alias(name, CHAMPION).version)
        prepared = _champion_scores.get(_champion_key(root, name, version, metric_name))
    except (MlflowException, OSError):
        prepared = None
    return prepared or score_champion(client, name, rows, y, metric_name, task, trusted)


def log_model(client, run_id: str, root: Path, params: Params) -> str:
    """Log the saved model to the run without registering it; return its LoggedModel id.

    The stage's process calls this as soon as the notebook has saved the
    model, while the kernel still evaluates and times it (about 0.8 s of
    serialising, signature and input-example checks off the stage's critical
    path); :func:`log_and_register` registers the logged model once the stage
    has succeeded. A run that fails afterwards keeps the logged model, as its
    record of what was trained, and registers nothing. Its input columns are
    also a run tag (``reprobook.inputs``): what ``reprobook compare`` shows as the
    serving contract of the run without downloading the model.
    """
    from reprobook.ml.modeling import load_model, xy
    from reprobook.ml.prep import read_split
    from reprobook.ml.scoping import load_targets

    trusted = params.model.trusted_types
    features, _ = xy(read_split(root).test, load_targets(root)["target"])
    logged = _log_model(client, run_id, load_model(root / MODEL_FILE, trusted), features, root / MODEL_FILE, trusted)
    inputs = contract.inputs_tag([str(c) for c in features.columns])
    if inputs is not None:
        client.set_tag(run_id, contract.TAG_INPUTS, inputs)
    return str(logged.model_id)


def log_and_register(client, run_id: str, root: Path, params: Params, logged: str | None = None) -> Promotion:
    """Log the model to the run (unless it was ``logged`` already: its LoggedModel id), register it under
    its bound name, and decide its alias. Logging and registering are the same two steps either way
    (:func:`log_model`, :func:`_register`), only earlier or later.

    Raises :class:`RegistryMismatch` before anything is registered when the run
    solves another problem than the registered name stands for. Other input
    columns than the champion's are no mismatch: the version competes, and the
    change of serving contract is recorded (:func:`with_contract`).
    """
    from reprobook.ml.modeling import xy
    from reprobook.ml.prep import read_split
    from reprobook.ml.scoping import load_targets

    trusted = params.model.trusted_types
    targets = load_targets(root)
    task, metric_name, target = targets["task"], targets["primary_metric"], targets["target"]
    test = read_split(root).test
    features, _ = xy(test, target)
    rows, y = test_rows(test, target)
    name = params.model.registered_name
    binding = Binding(task, target, split_classes(root, target) if task == "classification" else None)
    check_binding(client, name, binding.task, binding.target, binding.classes)
    champion = _current_champion_score(client, root, name, rows, y, metric_name, task, trusted)
    version = _register(logged or log_model(client, run_id, root, params), name)
    bind(client, name, binding)
    comparison = json.loads((root / "reports/modeling/metrics.json").read_text())["comparison"]
    promotion = gate(comparison["value"], comparison["meets_threshold"], champion, metric_name, task, name, version)
    leaks = target_leaks(root)
    if leaks and promotion.promoted:
        named = "; ".join(f"'{leak['column']}' {leak['why']}" for leak in leaks)
        promotion = Promotion(False, f"not promoted: the data gives the target away ({named}); a model that reads "
                              "it scores by looking at the answer. Drop the column (its role ignored in data.columns, or "
                              "data.drop_columns) and rerun, or acknowledge it in data.acknowledged_leaks",
                              promotion.challenger_score, promotion.champion_score)
    promotion = with_contract(promotion, contract_against(champion, [str(c) for c in features.columns]), name, version)
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
    elif champion.missing:
        champion_tag = f"unavailable (needs column(s) {contract.listing(champion.missing)} the data no longer has)"
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
    if promotion.contract is not None:
        tags[TAG_CONTRACT] = promotion.contract.tag()
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
