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

from reprobook.layout import TEST_FILE, TRAIN_FILE


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


def split(frame: pd.DataFrame, target: str, *, task: str, test_size: float, seed: int, stratify: bool) -> Split:
    """A seeded train/test split, stratified on the target for classification."""
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
    """Test rows whose features also appear, identically, in train."""
    features = [c for c in split_.train.columns if c != target]
    train_hashes = pd.util.hash_pandas_object(split_.train[features], index=False)
    test_hashes = pd.util.hash_pandas_object(split_.test[features], index=False)
    leaked = test_hashes.isin(set(train_hashes.to_numpy()))
    n_test = len(split_.test)
    return {
        "leaked_test_rows": int(leaked.sum()),
        "leaked_share": float(leaked.mean()) if n_test else 0.0,
        "examples": split_.test.loc[leaked, features].head(3).astype(str).to_dict(orient="records"),
    }


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
