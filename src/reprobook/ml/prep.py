"""Data stage logic: is the data fit to train on?

Missing values and duplicates, a seeded (stratified) train/test split, and a
leakage check (identical feature rows on both sides of the split). Schema,
statistics, validation and skew come from :mod:`reprobook.quality`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
from pathlib import Path
from typing import Any

import pandas as pd

from reprobook.errors import ReprobookError
from reprobook.ml.features import ROLES_ATTR, ROLES_KEY, split_metadata
from reprobook.project.paths import TEST_FILE, TRAIN_FILE


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    roles: dict[str, str] = field(default_factory=dict)
    """Every column's role (:mod:`reprobook.ml.roles`); empty for splits written by an older reprobook."""
    design: dict[str, Any] = field(default_factory=dict)
    """How the split was made (``kind``, ``column``): cross-validation follows it."""


def missing_and_duplicates(frame: pd.DataFrame) -> dict[str, Any]:
    """Missing values per column and duplicate rows, as counts and shares."""
    n = len(frame)
    missing = frame.isna().sum()
    return {
        "rows": n,
        "missing": {
            str(col): {"count": int(missing[col]), "share": float(missing[col] / n) if n else 0.0}
            for col in frame.columns
            if missing[col]
        },
        "missing_cells_share": float(missing.sum() / frame.size) if frame.size else 0.0,
        "duplicate_rows": int(frame.duplicated().sum()),
    }


def split(frame: pd.DataFrame, target: str, *, task: str, test_size: float, seed: int, stratify: bool,
          production_rows: int = 0, kind: str = "stratified", column: str | None = None,
          roles: dict[str, str] | None = None) -> Split:
    """The train/test split ``data.split`` asks for (:func:`reprobook.ml.splits.split_frame`), with the roles
    and the split's design recorded on it (the split files keep both; cross-validation follows the design).

    The last ``production_rows`` rows (labelled production rows, ``reprobook
    retrain``) keep their side however many rows are added later: a seeded
    hash of their values (random, stratified), of their group (group), or
    their time (time: later rows are later). So a model's held-out rows stay
    held out after retraining, and the promotion gate never scores the
    champion on rows it was trained on.
    """
    from reprobook.ml.splits import split_frame

    train, test = split_frame(frame, target, task=task, kind=kind, column=column, test_size=test_size, seed=seed,
                              stratify=stratify, production_rows=production_rows)
    return Split(train=train, test=test, roles=dict(roles or {}), design={"kind": kind, "column": column})


def skew_columns(split_: Split, target: str) -> list[str]:
    """The columns compared between train and test: the model's inputs but datetimes (which a time split moves
    by design), and the label. Ids, text and dropped columns are no skew anyone acts on."""
    from reprobook.ml.features import input_columns

    inputs = input_columns([str(c) for c in split_.train.columns], target, split_.roles or None)
    return [c for c in inputs if split_.roles.get(c) != "datetime"] + [target]


def describe_split(split_: Split) -> str:
    """The split in one line: its kind, sizes, and for a time split the periods on each side."""
    from reprobook.ml.splits import describe

    kind, column = split_.design.get("kind", "stratified"), split_.design.get("column")
    return describe(kind, column, split_.train, split_.test)


def leakage(split_: Split, target: str, *, task: str | None = None, seed: int = 0,
            acknowledged: dict[str, str] | None = None) -> dict[str, Any]:
    """Test rows whose features also appear, identically, in train; columns that give the target away.

    Only feature columns are compared (an id differs on every row and would
    hide a copied row). ``target_leaks`` are the findings that block promotion
    (:func:`reprobook.ml.leaks.find_leaks`, and test rows earlier than training
    rows under a time split); those named in ``data.acknowledged_leaks`` move
    to ``acknowledged_leaks`` with the reason given.
    """
    from reprobook.ml import leaks
    from reprobook.ml.features import input_columns

    features = input_columns([str(c) for c in split_.train.columns], target, split_.roles or None, text=True)
    train_hashes = pd.util.hash_pandas_object(split_.train[features], index=False)
    test_hashes = pd.util.hash_pandas_object(split_.test[features], index=False)
    leaked = test_hashes.isin(set(train_hashes.to_numpy()))
    n_test = len(split_.test)
    roles = split_.roles or {str(c): ("target" if c == target else "numeric") for c in split_.train.columns}
    findings = leaks.find_leaks(split_.train, target, roles, task=task or "classification", seed=seed)
    if split_.design.get("kind") == "time":
        column = split_.design["column"]
        late = leaks.split_order_leak(split_.train, split_.test, column)
        if late:
            findings.append(late)
    blocking, acknowledged_ = leaks.blocking(findings, dict(acknowledged or {}))
    return {
        "leaked_test_rows": int(leaked.sum()),
        "leaked_share": float(leaked.mean()) if n_test else 0.0,
        "examples": split_.test.loc[leaked, features].head(3).astype(str).to_dict(orient="records"),
        "target_leaks": blocking,
        "acknowledged_leaks": acknowledged_,
    }


MIN_SHARED_ROWS = 0.9
"""A feature value must repeat for this share of rows before "it determines the target" means anything:
an id column determines every target too, one row per value."""


def target_leaks(frame: pd.DataFrame, target: str) -> list[dict[str, str]]:
    """Features equal to the target, or that determine it: a model would score by reading them.

    A column is a leak when it equals the target (a copy, numeric or not, up
    to float rounding), or when each of its values repeated across rows maps
    to exactly one target value (a deterministic function of the target's
    label, like ``approved_text = "yes"/"no"``). A model trained on such a
    column looks perfect and is useless where the column is not available.
    """
    y = frame[target]
    found: list[dict[str, str]] = []
    for column in (c for c in frame.columns if c != target):
        x = frame[column]
        present = x.notna() & y.notna()
        if present.sum() < 10:
            continue
        xs, ys = x[present], y[present]
        if _same_values(xs, ys):
            found.append({"column": str(column), "why": f"equals the target '{target}'"})
            continue
        counts = xs.astype(str).value_counts()
        repeated = counts[counts > 1]
        if repeated.sum() < MIN_SHARED_ROWS * len(xs) or len(counts) < 2:
            continue
        purity = ys.astype(str).groupby(xs.astype(str)).nunique()
        if (purity.loc[repeated.index] == 1).all() and ys.astype(str).nunique() > 1:
            found.append({"column": str(column),
                          "why": f"each of its {len(counts)} values maps to a single value of '{target}'"})
    return found


def _same_values(x: pd.Series, y: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(x):
        import numpy as np

        return bool(np.allclose(x.to_numpy(dtype=float), y.to_numpy(dtype=float), rtol=1e-9, atol=1e-12))
    return bool((x.astype(str).to_numpy() == y.astype(str).to_numpy()).all())


def write_split(split_: Split, root: Path) -> tuple[Path, Path]:
    """Both splits as parquet, the roles and the split's design in each file's footer (:data:`ROLES_KEY`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = root / TRAIN_FILE, root / TEST_FILE
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    recorded = json.dumps({"roles": split_.roles, "split": split_.design}, sort_keys=True).encode()
    for frame, path in zip((split_.train, split_.test), paths):
        clean = frame.copy()
        clean.attrs = {}
        table = pa.Table.from_pandas(clean, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), ROLES_KEY: recorded})
        pq.write_table(table, path)
    return paths


def read_split(root: Path) -> Split:
    """The splits, with the roles they were written with (also handed on in each frame's ``attrs``)."""
    for relative in (TRAIN_FILE, TEST_FILE):
        if not (root / relative).is_file():
            raise ReprobookError(f"{relative}: not found; run the data stage first (dvc repro data)")
    recorded = split_metadata(root / TEST_FILE)
    frames = []
    for relative in (TRAIN_FILE, TEST_FILE):
        frame = pd.read_parquet(root / relative)
        frame.attrs = {ROLES_ATTR: recorded} if recorded else {}
        frames.append(frame)
    return Split(train=frames[0], test=frames[1], roles=dict(recorded.get("roles", {})),
                 design=dict(recorded.get("split", {})))
