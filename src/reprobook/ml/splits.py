"""Train/test splits that match how the model will be used, and cross-validation that matches the split.

``data.split.kind``:

- ``stratified`` (the default; random for regression) and ``random``: a
  seeded ``train_test_split``;
- ``time``: train on the past, test on the latest ``test_size`` share of
  ``column``; every test row is at or after the last training row (rows tied
  at the boundary all go to the test side), and cross-validation runs forward
  in time (``TimeSeriesSplit``);
- ``group``: every value of ``column`` (a customer, a patient) on one side,
  decided by a seeded hash of the value, so a group keeps its side however
  many rows are added later (retraining on production rows included);
  cross-validation keeps groups whole (``StratifiedGroupKFold`` /
  ``GroupKFold``).

Labelled production rows (``reprobook retrain``, the last ``production_rows``
rows) keep the split's meaning: under a time split they are simply later;
under a group split their group decides; under a random split a seeded hash
of each row's values does, so the source's rows keep the sides they had.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reprobook.errors import ReprobookError

HASH_RESOLUTION = 1_000_000


def _column(frame: pd.DataFrame, column: str | None, kind: str) -> pd.Series:
    if column not in frame.columns:
        names = ", ".join(map(str, frame.columns[:30]))
        raise ReprobookError(
            f"data.split.column: a {kind} split needs a column of the data; '{column}' is not one "
            f"(dropped, or misspelled); columns are: {names}"
        )
    return frame[column]


def times(values: pd.Series) -> pd.Series:
    """A datetime column's values as UTC timestamps, however stored (the encoders' parsing, so both agree)."""
    from reprobook.ml.encoders import datetime_kind, parse_datetimes

    return parse_datetimes(values.reset_index(drop=True), datetime_kind(values))


def _hash_share(values: pd.Series | pd.DataFrame, seed: int) -> np.ndarray:
    """A seeded position in [0, 1) per row, from its values alone (stable as rows are added)."""
    salted = pd.util.hash_pandas_object(values, index=False, hash_key=f"{seed:016d}"[:16])
    return (salted.to_numpy() % HASH_RESOLUTION) / HASH_RESOLUTION


def split_frame(frame: pd.DataFrame, target: str, *, task: str, kind: str, column: str | None, test_size: float,
                seed: int, stratify: bool = True, production_rows: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test), index reset, as ``kind`` says (module docstring)."""
    if kind == "time":
        return _time_split(frame, column, test_size)
    if kind == "group":
        return _group_split(frame, column, test_size, seed)
    if production_rows:
        source = frame.iloc[: len(frame) - production_rows]
        train, test = split_frame(source, target, task=task, kind=kind, column=column, test_size=test_size,
                                  seed=seed, stratify=stratify)
        production = frame.iloc[len(frame) - production_rows:]
        held_out = _hash_share(production, seed) < test_size
        return (pd.concat([train, production[~held_out]], ignore_index=True),
                pd.concat([test, production[held_out]], ignore_index=True))
    from sklearn.model_selection import train_test_split

    labels = frame[target] if (task == "classification" and stratify and kind == "stratified") else None
    if labels is not None:
        smallest = labels.value_counts().min()
        if smallest < 2:
            rare = labels.value_counts().idxmin()
            raise ReprobookError(
                f"data.split: class {rare!r} of '{target}' has {smallest} row; a stratified split needs "
                "at least 2 per class (set data.split.kind: random or drop the class)"
            )
    train, test = train_test_split(frame, test_size=test_size, random_state=seed, stratify=labels)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def _time_split(frame: pd.DataFrame, column: str | None, test_size: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    when = times(_column(frame, column, "time"))
    missing = int(when.isna().sum())
    if missing:
        raise ReprobookError(
            f"data.split.column: a time split orders rows by '{column}', but {missing} of {len(frame)} rows have "
            "no time there (missing or not a date); expected a time on every row; drop those rows in the data, "
            "or choose another data.split.kind"
        )
    ns = when.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").astype("int64")
    order = np.argsort(ns, kind="stable")
    ordered = frame.iloc[order].reset_index(drop=True)
    sorted_ns = ns[order]
    cut = len(frame) - max(1, int(round(test_size * len(frame))))
    # Rows tied with the first test row's time go to the test side too: max(train) < min(test).
    cut = int(np.searchsorted(sorted_ns, sorted_ns[cut], side="left"))
    if cut <= 0:
        raise ReprobookError(
            f"data.split.column: '{column}' has too few distinct times for a time split: the latest "
            f"{test_size:.0%} of rows all share the first time; expected earlier rows to train on"
        )
    return ordered.iloc[:cut].reset_index(drop=True), ordered.iloc[cut:].reset_index(drop=True)


def _group_split(frame: pd.DataFrame, column: str | None, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    groups = _column(frame, column, "group")
    unique = groups.drop_duplicates()
    if len(unique) < 2:
        raise ReprobookError(
            f"data.split.column: a group split needs at least two groups; '{column}' has {len(unique)}; "
            "choose another column or data.split.kind"
        )
    share = pd.Series(_hash_share(unique.to_frame(), seed), index=unique.index)
    held = set(unique[share < test_size].astype(str))
    if not held or len(held) == len(unique):
        # Too few groups for the hash to reach both sides: the groups of the lowest positions go to test.
        ranked = unique.iloc[np.argsort(share.to_numpy(), kind="stable")].astype(str)
        held = set(ranked.iloc[: max(1, int(round(test_size * len(unique))))])
    in_test = groups.astype(str).isin(held).to_numpy()
    return frame[~in_test].reset_index(drop=True), frame[in_test].reset_index(drop=True)


def cv_folds(x: pd.DataFrame, y: pd.Series, *, task: str, kind: str, groups_or_times: pd.Series, n_folds: int,
             seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cross-validation row positions that follow the split's kind (module docstring)."""
    if kind == "time":
        from sklearn.model_selection import TimeSeriesSplit

        when = times(groups_or_times).dt.tz_convert("UTC").dt.tz_localize(None)
        order = np.argsort(when.to_numpy(dtype="datetime64[ns]").astype("int64"), kind="stable")
        return [(order[train], order[valid]) for train, valid in TimeSeriesSplit(n_folds).split(order)]
    if kind == "group":
        from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

        groups = groups_or_times.astype(str).to_numpy()
        n_groups = len(set(groups))
        if n_groups < n_folds:
            raise ReprobookError(
                f"model.cv_folds: {n_folds} folds that keep groups whole need at least {n_folds} groups; "
                f"the training rows have {n_groups} values of the group column; lower model.cv_folds"
            )
        if task == "classification":
            splitter = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)
        else:
            splitter = GroupKFold(n_folds, shuffle=True, random_state=seed)
        return [(train, valid) for train, valid in splitter.split(x, y, groups)]
    from sklearn.model_selection import KFold, StratifiedKFold

    splitter = (StratifiedKFold if task == "classification" else KFold)(n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(x, y))


def describe(kind: str, column: str | None, train: pd.DataFrame, test: pd.DataFrame) -> str:
    """The split in one line, for the data report."""
    sizes = f"train {len(train)} rows, test {len(test)} rows"
    if kind == "time" and column in train.columns and len(train) and len(test):
        first, last = times(train[column]), times(test[column])
        return (f"time split on '{column}': {sizes}; train {first.min():%Y-%m-%d} to {first.max():%Y-%m-%d}, "
                f"test {last.min():%Y-%m-%d} to {last.max():%Y-%m-%d} (every test row at or after the last training row)")
    if kind == "group" and column in train.columns:
        return (f"group split on '{column}': {sizes}; {train[column].nunique()} groups in train, "
                f"{test[column].nunique()} in test, none on both sides")
    return f"{kind} split: {sizes}"


def propose(frame: pd.DataFrame, target: str, roles: dict[str, str], task: str) -> tuple[str, str | None, str]:
    """The split ``reprobook new`` writes, and why: time on a datetime column, group on a repeated id, else the default."""
    n = len(frame)
    for name, role in roles.items():
        if role == "datetime" and frame[name].notna().all() and frame[name].nunique() > 1:
            return "time", name, (f"rows carry dates in '{name}': a model is used on later rows, so it is tested on "
                                  "the latest ones")
    for name, role in roles.items():
        if role == "id":
            distinct = int(frame[name].nunique())
            if 2 <= distinct < 0.9 * n:
                return "group", name, (f"'{name}' repeats: {distinct} groups of about {n / distinct:.1f} rows; rows of "
                                       "one group on both sides would let the model recognise them")
    if task == "classification":
        return "stratified", None, "stratified on the target: the classes keep their shares on both sides"
    return "random", None, "a seeded random split: no dates or groups in the data"

