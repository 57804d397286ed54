"""Batch scoring with capture: a registered model scores a batch, and every prediction is kept.

A capture is the batch's predictions with a row id, the model name and version
that made them and the digest of the batch file. Labels that arrive later are
joined on the id (:func:`join_labels`), and every monitoring report can say
exactly which model scored which rows. The model is a registry version reached
through an alias (``NAME@ALIAS``) or a number (``NAME/VERSION``), loaded under
the project's skops trust list, never unpickled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reprobook.errors import ReprobookError, UsageError
from reprobook.project.params import Params
from reprobook.project.paths import CAPTURES_DIR, REFERENCE_DIR, SERVING_CACHE_DIR

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

ID = "id"
PREDICTION = "prediction"
SCORE = "score"
"""Binary classification: the probability of the positive class (the model's second class)."""
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
BATCH_DIGEST = "batch_digest"
LABEL = "label"
"""The label of a row once labels are joined (:func:`join_labels`)."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}" if self.alias else f"{self.name}/{self.version}"


@dataclass(frozen=True)
class ServingModel:
    """A registered model version, local and loaded: what scores a batch."""

    name: str
    version: str
    alias: str | None
    run_id: str
    model: Any
    task: str
    features: tuple[str, ...]
    classes: tuple | None
    directory: Path
    """Local copy of the version's files; its ``reference/`` is the training reference of this version."""

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}" + (f" (@{self.alias})" if self.alias else "")

    @property
    def reference_dir(self) -> Path:
        return self.directory / "reference"


@dataclass(frozen=True)
class Batch:
    path: Path
    frame: pd.DataFrame
    digest: str
    """sha256 of the file's bytes: which batch, exactly."""
    ids: pd.Series


@dataclass(frozen=True)
class Scored:
    predictions: pd.DataFrame
    """The capture: id, prediction, score column(s), model name and version, batch digest."""
    raw_scores: np.ndarray | None
    seconds: float
    failed: int
    """Rows whose prediction is missing or not finite."""


def parse_model_ref(text: str | None, params: Params) -> ModelRef:
    """``NAME@ALIAS``, ``NAME/VERSION``, ``@ALIAS`` or nothing (the project's model at ``monitoring.alias``)."""
    default = params.model.registered_name
    if not text:
        return ModelRef(default, alias=params.monitoring.alias)
    if "@" in text:
        name, alias = text.rsplit("@", 1)
        if alias:
            return ModelRef(name or default, alias=alias)
    elif "/" in text:
        name, version = text.rsplit("/", 1)
        if version.isdigit() and name:
            return ModelRef(name, version=version)
    raise UsageError(f"--model: expected NAME@ALIAS or NAME/VERSION (such as {default}@champion); found {text!r}")


def registered_aliases(client, name: str) -> dict[str, str]:
    """The registered model's aliases (alias -> version); a usage error listing the names when it is not registered."""
    from mlflow.exceptions import MlflowException

    try:
        return {alias: str(version) for alias, version in (client.get_registered_model(name).aliases or {}).items()}
    except MlflowException:
        names = sorted(m.name for m in client.search_registered_models())
        raise UsageError(f"no registered model '{name}' in the tracking store; registered: "
                         f"{', '.join(names) or 'none (run the pipeline first)'}") from None


def alias_listing(aliases: dict[str, str]) -> str:
    return ", ".join(f"@{a} (v{v})" for a, v in sorted(aliases.items())) or "none"


def resolve(client, ref: ModelRef):
    """The registry's model version for ``ref``; a message listing what exists when it names nothing."""
    from mlflow.exceptions import MlflowException

    try:
        aliases = registered_aliases(client, ref.name)
    except UsageError as exc:
        raise UsageError(f"--model: {exc}") from None
    if ref.alias is not None:
        if ref.alias not in aliases:
            raise UsageError(f"--model: '{ref.name}' has no alias '{ref.alias}'; its aliases: {alias_listing(aliases)}")
        return client.get_model_version(ref.name, aliases[ref.alias])
    try:
        return client.get_model_version(ref.name, ref.version)
    except MlflowException:
        raise UsageError(f"--model: '{ref.name}' has no version {ref.version}") from None


@dataclass(frozen=True)
class FetchedVersion:
    """A registered version's files on this machine (model and training reference), not loaded yet."""

    name: str
    version: str
    alias: str | None
    run_id: str
    directory: Path

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}" + (f" (@{self.alias})" if self.alias else "")

    def features(self) -> tuple[str, ...]:
        """The input columns of the model's MLflow signature: known without loading the model."""
        import json

        import yaml

        meta = yaml.safe_load((self.directory / "model" / "MLmodel").read_text()) or {}
        inputs = (meta.get("signature") or {}).get("inputs")
        return tuple(str(spec["name"]) for spec in json.loads(inputs) if "name" in spec) if inputs else ()


def fetch_version(root: Path, ref: ModelRef) -> FetchedVersion:
    """Resolve ``ref`` and bring the version's model and training reference here, once (a cache)."""
    from reprobook.tracking import store

    client = store.client(root)
    version = resolve(client, ref)
    local = root / SERVING_CACHE_DIR / ref.name / f"v{version.version}"
    if not (local / "model" / "MLmodel").is_file():
        _download(client, ref.name, str(version.version), version.run_id, local)
    return FetchedVersion(ref.name, str(version.version), ref.alias, version.run_id, local)


def load_fetched(fetched: FetchedVersion, trusted: tuple[str, ...] | list[str] = ()) -> ServingModel:
    """Load a fetched version's model under the project's skops trust list."""
    from reprobook.tracking import registry

    model = registry.load_model_dir(fetched.directory / "model", fetched.version, trusted)
    task = "classification" if hasattr(model, "classes_") else "regression"
    features = tuple(str(c) for c in getattr(model, "feature_names_in_", ())) or fetched.features()
    if not features:
        raise ReprobookError(f"{fetched.label}: the model records no feature columns (no feature_names_in_, no "
                             "signature); it cannot be monitored column by column")
    classes = tuple(plain(c) for c in model.classes_) if task == "classification" else None
    return ServingModel(fetched.name, fetched.version, fetched.alias, fetched.run_id, model, task, features, classes,
                        fetched.directory)


def load_serving_model(root: Path, ref: ModelRef, params: Params) -> ServingModel:
    """Resolve, fetch and load: the model that scores."""
    return load_fetched(fetch_version(root, ref), params.model.trusted_types)


def _download(client, name: str, version: str, run_id: str, local: Path) -> None:
    """The version's model files and its run's training reference, into ``local`` (complete or not at all)."""
    import shutil
    import tempfile

    import mlflow.artifacts

    local.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=local.parent) as scratch:
        staged = Path(scratch) / "version"
        staged.mkdir()
        model = mlflow.artifacts.download_artifacts(artifact_uri=client.get_model_version_download_uri(name, version),
                                                    dst_path=str(Path(scratch) / "raw"))
        shutil.move(model, staged / "model")  # the folder holding MLmodel, wherever the store nests it
        try:
            reference = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=_reference_artifact(),
                                                            dst_path=str(staged))
            shutil.move(reference, staged / "reference")
        except Exception:  # noqa: BLE001  a version registered before references existed: monitored without one
            pass
        if local.exists():
            shutil.rmtree(local)
        staged.rename(local)


def _reference_artifact() -> str:
    """Where a modeling run's artifacts keep the reference: its outputs folder is logged as ``outputs/``."""
    return "outputs/" + Path(REFERENCE_DIR).relative_to("reports/modeling/outputs").as_posix()


def plain(value: Any) -> Any:
    """A numpy scalar (a model's class label) as the Python value JSON, YAML and MLflow tags can hold."""
    return value.item() if hasattr(value, "item") else value


def file_digest(path: Path) -> str:
    """sha256 of the batch file: which batch, exactly."""
    from reprobook.tracking.store import file_digest as digest_of

    return digest_of(path, "sha256")


def read_batch(path: Path, id_column: str | None) -> Batch:
    """The batch, its digest and its row ids; an empty batch or unusable ids are errors naming the file."""
    import pandas as pd

    from reprobook.quality.io import read_table

    frame = read_table(path)
    if frame.empty:
        raise UsageError(f"{path}: the batch has no rows; expected at least one row to score "
                         f"(found the columns {', '.join(map(str, frame.columns)) or 'none'})")
    digest = file_digest(path)
    if id_column and id_column in frame.columns:
        ids = frame[id_column]
        if ids.isna().any():
            raise UsageError(f"{path}: column '{id_column}' (monitoring.id_column) is missing in "
                             f"{int(ids.isna().sum())} row(s); every row needs an id to join labels on")
        ids = ids.astype(str)
        duplicated = ids[ids.duplicated()]
        if len(duplicated):
            raise UsageError(f"{path}: column '{id_column}' (monitoring.id_column) repeats {len(duplicated)} id(s), "
                             f"such as {duplicated.iloc[0]!r}; expected one id per row")
    else:
        ids = pd.Series([f"{digest[:12]}-{i}" for i in range(len(frame))], dtype=str)
    return Batch(path, frame, digest, ids.reset_index(drop=True).rename(ID))


def check_columns(batch: Batch, serving: ServingModel | FetchedVersion, target: str | None = None) -> list[str]:
    """Refuse a batch without the model's feature columns; return the columns it has beyond them.

    Extra columns are not an error (an id, a timestamp, the label itself): they
    are left out of scoring and named in the report.
    """
    features = serving.features() if isinstance(serving, FetchedVersion) else serving.features
    have = set(map(str, batch.frame.columns))
    missing = [c for c in features if c not in have]
    if missing:
        raise UsageError(
            f"{batch.path}: {len(missing)} column(s) that {serving.label} reads are missing: "
            f"{', '.join(missing[:10])}{' …' if len(missing) > 10 else ''}; found the columns "
            f"{', '.join(map(str, batch.frame.columns[:20]))}{' …' if batch.frame.shape[1] > 20 else ''}"
        )
    return [str(c) for c in batch.frame.columns if str(c) not in features and str(c) != target]


def score(serving: ServingModel, batch: Batch) -> Scored:
    """The model's predictions for every row, timed, as a capture frame."""
    import numpy as np
    import pandas as pd

    from reprobook.ml.modeling import predict

    features = batch.frame[list(serving.features)]
    started = time.perf_counter()
    predicted, scores = predict(serving.model, features, serving.task)
    seconds = time.perf_counter() - started
    frame = prediction_columns(predicted, scores, serving.classes)
    frame.insert(0, ID, batch.ids.to_numpy())
    frame[MODEL_NAME] = serving.name
    frame[MODEL_VERSION] = serving.version
    frame[BATCH_DIGEST] = batch.digest
    failed = pd.isna(frame[PREDICTION])
    if serving.task == "regression":
        failed |= ~np.isfinite(pd.to_numeric(frame[PREDICTION], errors="coerce").to_numpy(dtype=float, na_value=np.nan))
    return Scored(frame, scores, seconds, int(failed.sum()))


def prediction_columns(predicted: Any, scores: np.ndarray | None, classes: tuple | list | None) -> pd.DataFrame:
    """``prediction`` and the score column(s): ``score`` (binary: the second class's probability), or one
    ``score_<class>`` per class (multiclass); none for a regressor or a classifier without probabilities."""
    import pandas as pd

    frame = pd.DataFrame({PREDICTION: predicted})
    if scores is not None and classes is not None:
        if len(classes) == 2:
            frame[SCORE] = scores[:, 1]
        else:
            for position, label in enumerate(classes):
                frame[f"{SCORE}_{label}"] = scores[:, position]
    return frame


def score_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c == SCORE or str(c).startswith(f"{SCORE}_")]


def capture_path(root: Path, batch: Path) -> Path:
    return root / CAPTURES_DIR / f"{batch.name.split('.')[0]}.parquet"


def write_capture(scored: Scored, path: Path) -> Path:
    """The capture as Parquet, same bytes for the same predictions (no index, no timestamps)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    scored.predictions.to_parquet(partial, index=False)
    partial.replace(path)
    return path


def read_capture(path: Path) -> pd.DataFrame:
    from reprobook.quality.io import read_table

    frame = read_table(path)
    missing = [c for c in (ID, PREDICTION, MODEL_VERSION, BATCH_DIGEST) if c not in frame.columns]
    if missing:
        raise UsageError(f"{path}: not a capture written by `reprobook predict` (no column {', '.join(missing)})")
    return frame


def join_labels(capture: pd.DataFrame, labels_path: Path, target: str, id_column: str | None) -> pd.DataFrame:
    """The capture with a ``label`` column from a labels file (``ID,TARGET`` rows), matched by id.

    Rows whose label has not arrived keep a missing label. Labels that match
    no captured row are an error when none match (the wrong file, or ids of
    another batch), and are counted otherwise.
    """
    from reprobook.quality.io import read_table

    labels = read_table(labels_path)
    key = id_column or ID
    missing = [c for c in (key, target) if c not in labels.columns]
    if missing:
        raise UsageError(f"{labels_path}: expected the columns '{key}' (row id) and '{target}' (the label); "
                         f"missing {', '.join(repr(c) for c in missing)}; found {', '.join(map(str, labels.columns))}")
    labels = labels.assign(**{key: labels[key].astype(str)}).drop_duplicates(subset=key, keep="last")
    matched = labels[key].isin(set(capture[ID]))
    if not matched.any():
        raise UsageError(f"{labels_path}: none of its {len(labels)} id(s) match a row of the batch "
                         f"(such as {labels[key].iloc[0]!r}, while the batch's ids look like {capture[ID].iloc[0]!r}); "
                         "expected the labels of this batch")
    joined = capture.merge(labels[[key, target]].rename(columns={key: ID, target: LABEL}), on=ID, how="left")
    joined.attrs["unmatched_labels"] = int((~matched).sum())
    return joined


def predict_batch(root: Path, batch_path: Path, params: Params, model: str | None = None,
                  out: Path | None = None) -> tuple[Path, Scored, ServingModel, Batch]:
    """``reprobook predict``: score a batch with a registered model and write its capture."""
    ref = parse_model_ref(model, params)
    batch = read_batch(batch_path, params.monitoring.id_column)
    serving = load_serving_model(root, ref, params)
    check_columns(batch, serving, params.data.target)
    scored = score(serving, batch)
    return write_capture(scored, out or capture_path(root, batch_path)), scored, serving, batch
