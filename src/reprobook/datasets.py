"""Data sources chosen by ``data.source`` and the task they imply.

``builtin:loans`` (generated), ``sklearn:<name>`` (bundled with scikit-learn,
no download), ``csv:<path>`` and ``parquet:<path>`` (the user's file, usually
``dvc add``-ed). Every failure names the source, the file and what was found.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from reprobook.errors import ReprobookError
from reprobook.layout import source_file
from reprobook.params import DataParams

SKLEARN_DATASETS = ("breast_cancer", "diabetes", "digits", "iris", "wine")
MAX_CLASSES = 50


@dataclass(frozen=True)
class Dataset:
    frame: pd.DataFrame
    target: str
    source: str


def load_dataset(params: DataParams, root: Path) -> Dataset:
    """Load ``params.source`` with its target column checked and extra columns dropped."""
    kind, _, name = params.source.partition(":")
    if kind == "builtin":
        from reprobook.loans import TARGET, make_loans

        frame, default_target = make_loans(params.n_rows, params.seed), TARGET
    elif kind == "sklearn":
        frame, default_target = _load_sklearn(name), "target"
    else:
        frame, default_target = _read_file(kind, source_file(params.source, root)), None
    target = params.target or default_target
    if target is None:
        raise ReprobookError(f"data.target: a {kind} source needs a target column; set data.target in params.yaml")
    if target not in frame.columns:
        raise ReprobookError(
            f"data.target: column '{target}' not found in {params.source}; columns are: {', '.join(map(str, frame.columns))}"
        )
    missing = [c for c in params.drop_columns if c not in frame.columns]
    if missing:
        raise ReprobookError(f"data.drop_columns: {', '.join(missing)} not found in {params.source}")
    frame = frame.drop(columns=params.drop_columns)
    if frame[target].isna().any():
        n = int(frame[target].isna().sum())
        raise ReprobookError(f"data.target: column '{target}' has {n} missing values; expected none")
    return Dataset(frame=frame, target=target, source=params.source)


def _load_sklearn(name: str) -> pd.DataFrame:
    if name not in SKLEARN_DATASETS:
        raise ReprobookError(
            f"data.source: unknown scikit-learn data set '{name}'; expected one of: {', '.join(SKLEARN_DATASETS)}"
        )
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.copy()
    frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
    return frame


def _read_file(kind: str, path: Path | None) -> pd.DataFrame:
    assert path is not None
    if not path.is_file():
        raise ReprobookError(f"data.source: file {path} not found (if it is DVC-tracked, run `dvc pull`)")
    try:
        frame = pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise ReprobookError(f"{path}: the file is empty; expected a header row and data") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReprobookError(f"{path}: not a readable {kind.upper()} file ({detail})") from None
    if frame.empty:
        raise ReprobookError(f"{path}: no data rows; expected at least one")
    return frame


def infer_task(target: pd.Series, requested: str) -> tuple[str, str]:
    """Return (task, reason). Classification needs at least two classes."""
    n_unique = target.nunique(dropna=True)
    if requested == "auto":
        numeric_float = pd.api.types.is_float_dtype(target) and not (target.dropna() % 1 == 0).all()
        if numeric_float or (pd.api.types.is_numeric_dtype(target) and n_unique > MAX_CLASSES):
            task, reason = "regression", f"inferred: target '{target.name}' is numeric with {n_unique} distinct values"
        else:
            task, reason = "classification", f"inferred: target '{target.name}' has {n_unique} classes"
    else:
        task, reason = requested, "set by scoping.task"
    if task == "classification":
        if n_unique < 2:
            only = target.dropna().unique()[:1].tolist()
            raise ReprobookError(
                f"data.target: column '{target.name}' has a single class {only}; classification needs at least two"
            )
        if n_unique > MAX_CLASSES:
            raise ReprobookError(
                f"data.target: column '{target.name}' has {n_unique} classes (more than {MAX_CLASSES}); "
                "set scoping.task: regression if it is a quantity"
            )
    return task, reason
