"""Data stage logic: is the data fit to train on?

Missing values and duplicates, a seeded (stratified) train/test split, and a
leakage check (identical feature rows on both sides of the split). Schema,
statistics, validation and skew come from :mod:`reprobook.quality`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from reprobook.errors import ReprobookError
from reprobook.project.paths import TEST_FILE, TRAIN_FILE


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    test: pd.DataFrame


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
          production_rows: int = 0) -> Split:
    """A seeded train/test split, stratified on the target for classification.

    The last ``production_rows`` rows (labelled production rows, ``reprobook
    retrain``) are split apart, each row by a seeded hash of its values: the
    source's rows keep the split they had, and a production row keeps its side
    however many rows are added later. So a model's held-out rows stay held out
    after retraining, and the promotion gate never scores the champion on rows
    it was trained on.
    """
    if production_rows:
        source = split(frame.iloc[: len(frame) - production_rows], target, task=task, test_size=test_size, seed=seed,
                       stratify=stratify)
        production = frame.iloc[len(frame) - production_rows:]
        salted = pd.util.hash_pandas_object(production, index=False, hash_key=f"{seed:016d}"[:16])
        held_out = (salted.to_numpy() % 1_000_000) < test_size * 1_000_000
        return Split(train=pd.concat([source.train, production[~held_out]], ignore_index=True),
                     test=pd.concat([source.test, production[held_out]], ignore_index=True))
    labels = frame[target] if (task == "classification" and stratify) else None
    if labels is not None:
        smallest = labels.value_counts().min()
        if smallest < 2:
            rare = labels.value_counts().idxmin()
            raise ReprobookError(
                f"data.stratify: class {rare!r} of '{target}' has {smallest} row; a stratified split needs "
                "at least 2 per class (set data.stratify: false or drop the class)"
            )
    train, test = train_test_split(frame, test_size=test_size, random_state=seed, stratify=labels)
    return Split(train=train.reset_index(drop=True), test=test.reset_index(drop=True))


def leakage(split_: Split, target: str) -> dict[str, Any]:
    """Test rows whose features also appear, identically, in train; features that give the target away."""
    features = [c for c in split_.train.columns if c != target]
    train_hashes = pd.util.hash_pandas_object(split_.train[features], index=False)
    test_hashes = pd.util.hash_pandas_object(split_.test[features], index=False)
    leaked = test_hashes.isin(set(train_hashes.to_numpy()))
    n_test = len(split_.test)
    return {
        "leaked_test_rows": int(leaked.sum()),
        "leaked_share": float(leaked.mean()) if n_test else 0.0,
        "examples": split_.test.loc[leaked, features].head(3).astype(str).to_dict(orient="records"),
        "target_leaks": target_leaks(split_.train, target),
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
    paths = root / TRAIN_FILE, root / TEST_FILE
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    split_.train.to_parquet(paths[0], index=False)
    split_.test.to_parquet(paths[1], index=False)
    return paths


def read_split(root: Path) -> Split:
    for relative in (TRAIN_FILE, TEST_FILE):
        if not (root / relative).is_file():
            raise ReprobookError(f"{relative}: not found; run the data stage first (dvc repro data)")
    return Split(train=pd.read_parquet(root / TRAIN_FILE), test=pd.read_parquet(root / TEST_FILE))
