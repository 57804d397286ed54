"""Train/test splits that match how the model will be used, and cross-validation that matches the split.

``data.split.kind``:

- ``stratified`` (the default) and ``random``: a seeded ``train_test_split``,
  stratified on the target for classification (``stratified`` on a regression
  target, or with the legacy ``data.stratify: false``, is random);
- ``time``: train on the past, test on the latest ``test_size`` share of
  ``column`` (a datetime dtype, ISO or other date strings, or epoch seconds /
  milliseconds, the unit read from the magnitude). Every test row is at or
  after the last training row: rows tied at the boundary time all go to one
  side, the side that brings the test share nearest ``test_size`` (the test
  side when both are as near). A row without a time is an error, never
  guessed. Each side comes out in time order (stable), and cross-validation
  runs forward in time (``TimeSeriesSplit``, its fold boundaries moved the
  same way so a time never straddles a fold's training and validation rows);
- ``group``: every value of ``column`` (a customer, a patient) on one side,
  decided by a seeded hash of the value, so a group keeps its side however
  many rows are added later (retraining on production rows included); rows
  with no value form one group of their own. When the hash puts every group
  on one side (a few groups), the groups are ranked by their hash and the
  first ``test_size`` share of them (at least one, never all) is tested.
  Cross-validation keeps groups whole (``StratifiedGroupKFold`` /
  ``GroupKFold``, seeded and shuffled).

Labelled production rows (``reprobook retrain``, the last ``production_rows``
rows) keep the split's meaning: under a time split they are simply later;
under a group split their group decides; under a random split a seeded hash
of each row's values does, so the source's rows keep the sides they had.

Everything here is a pure function of its arguments: the same frame and seed
give the same split, byte for byte.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reprobook.errors import ReprobookError

HASH_RESOLUTION = 1_000_000
KINDS = ("random", "stratified", "group", "time")
MISSING_GROUP = "\x00missing"
"""The group key of rows with no group value: all of them form one group."""
Folds = list[tuple[np.ndarray, np.ndarray]]


# --- parsing ----------------------------------------------------------------------------------------------------

def _column(frame: pd.DataFrame, column: str | None, kind: str) -> pd.Series:
    if column is None or column not in frame.columns:
        names = ", ".join(map(str, frame.columns[:30])) + (", ..." if len(frame.columns) > 30 else "")
        raise ReprobookError(
            f"data.split.column: a {kind} split needs a column of the data; {column!r} is not one "
            f"(dropped, misspelled or not set); available columns: {names}"
        )
    return frame[column]


def _epoch_unit(numbers: pd.Series) -> str:
    """Epoch unit from the magnitude: seconds until 1e11 (year 5138), then ms, us, ns."""
    present = numbers.dropna().abs()
    median = float(present.median()) if len(present) else 0.0
    if median > 1e17:
        return "ns"
    if median > 1e14:
        return "us"
    if median > 1e11:
        return "ms"
    return "s"


def times(values: pd.Series) -> pd.Series:
    """A time column's values as UTC timestamps (NaT where missing or not a time), index reset.

    A datetime dtype as it is; numbers (and strings of digits only, 9 or
    more: not a compact ``20210701`` date) as epoch seconds / ms / us / ns by
    magnitude; other strings as ISO 8601 when they parse so, else any format
    value by value (:func:`reprobook.ml.encoders.parse_datetimes`).
    """
    values = pd.Series(values).reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, errors="coerce")
        return parsed.dt.tz_localize("UTC") if parsed.dt.tz is None else parsed.dt.tz_convert("UTC")
    numbers: pd.Series | None = None
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values
    else:
        text = values.dropna().astype(str).str.strip()
        if len(text) and text.str.fullmatch(r"-?\d{9,}(\.\d+)?").all():
            numbers = pd.to_numeric(values.astype("string").str.strip(), errors="coerce")
    if numbers is not None:
        # Integers stay integers (epoch nanoseconds do not fit a float exactly).
        unit = _epoch_unit(pd.to_numeric(numbers, errors="coerce").astype("float64"))
        return pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce")
    from reprobook.ml.encoders import parse_datetimes, string_format

    return parse_datetimes(values, string_format(values))


def _nanoseconds(when: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds (NaT as the smallest int64)."""
    return when.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").astype("int64")


def _both_sides(train: pd.Series, test: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Both sides parsed the same way (the epoch unit or format read once, on both)."""
    joined = times(pd.concat([pd.Series(train), pd.Series(test)], ignore_index=True))
    return joined.iloc[: len(train)].reset_index(drop=True), joined.iloc[len(train):].reset_index(drop=True)


def _group_keys(values: pd.Series) -> pd.Series:
    """Each group value as a canonical string, so a group's key (and hash) survives a dtype change when rows
    are added (``7`` in an int column and ``7.0`` in a float one are the same customer); missing values are
    one group (:data:`MISSING_GROUP`)."""
    values = pd.Series(values).reset_index(drop=True)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    keys = np.array([_key(v) for v in uniques] + [MISSING_GROUP], dtype=object)
    return pd.Series(keys[codes], dtype=object)  # code -1 (missing) picks the last entry


def _key(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def _hash_share(values: pd.Series | pd.DataFrame, seed: int) -> np.ndarray:
    """A seeded position in [0, 1) per row, from its values alone (stable as rows are added)."""
    salted = pd.util.hash_pandas_object(values, index=False, hash_key=f"{seed:016d}"[:16])
    return (salted.to_numpy() % HASH_RESOLUTION) / HASH_RESOLUTION


def _tie_cut(sorted_ns: np.ndarray, cut: int) -> int:
    """Move a cut of time-sorted rows off a tie: all rows at the boundary time go to one side, the side that
    moves the cut least (later rows' side on a draw); 0 or ``len`` when every row shares that time."""
    n = len(sorted_ns)
    if cut <= 0 or cut >= n:
        return cut
    left = int(np.searchsorted(sorted_ns, sorted_ns[cut], side="left"))
    right = int(np.searchsorted(sorted_ns, sorted_ns[cut], side="right"))
    if left == cut:
        return cut
    candidates = [c for c in (left, right) if 0 < c < n]
    if not candidates:
        return left
    return min(candidates, key=lambda c: (abs(c - cut), c))


# --- train/test -------------------------------------------------------------------------------------------------

def split_frame(frame: pd.DataFrame, target: str, *, task: str, kind: str, column: str | None, test_size: float,
                seed: int, stratify: bool = True, production_rows: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test), index reset, as ``kind`` says (module docstring).

    ``production_rows``: the last rows of ``frame`` are labelled production
    rows; under random/stratified each goes to a side by a seeded hash of its
    values, and the rows before them are split exactly as without them.
    """
    if kind not in KINDS:
        raise ReprobookError(f"data.split.kind: expected one of {', '.join(KINDS)}; found {kind!r}")
    if not 0 < test_size < 1:
        raise ReprobookError(f"data.test_size: expected a share between 0 and 1; found {test_size!r}")
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
        counts = labels.value_counts()
        if len(counts) and counts.min() < 2:
            rare = counts.idxmin()
            rare = rare.item() if isinstance(rare, np.generic) else rare  # 2, not np.int64(2)
            raise ReprobookError(
                f"data.split: class {rare!r} of '{target}' has {counts.min()} row; a stratified split needs "
                "at least 2 per class (set data.split.kind: random or drop the class)"
            )
    train, test = train_test_split(frame, test_size=test_size, random_state=seed, stratify=labels)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def _time_split(frame: pd.DataFrame, column: str | None, test_size: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    raw = _column(frame, column, "time")
    when = times(raw)
    missing = when.isna().to_numpy()
    if missing.any():
        bad = raw.reset_index(drop=True)[missing & raw.reset_index(drop=True).notna().to_numpy()]
        example = f" (such as {bad.iloc[0]!r}, not a time)" if len(bad) else ""
        raise ReprobookError(
            f"data.split.column: a time split orders rows by '{column}', but {int(missing.sum())} of {len(frame)} "
            f"rows have no time there{example}; drop those rows or choose another split (data.split.kind)"
        )
    n = len(frame)
    if n < 2:
        raise ReprobookError(f"data.split: a time split needs at least 2 rows; found {n}")
    ns = _nanoseconds(when)
    order = np.argsort(ns, kind="stable")
    sorted_ns = ns[order]
    n_test = min(n - 1, max(1, int(round(test_size * n))))
    cut = _tie_cut(sorted_ns, n - n_test)
    if cut <= 0 or cut >= n:
        raise ReprobookError(
            f"data.split.column: every row has the same time in '{column}' ({when.iloc[0]}); a time split needs "
            "rows at two times at least: choose another column or data.split.kind"
        )
    ordered = frame.iloc[order].reset_index(drop=True)
    return ordered.iloc[:cut].reset_index(drop=True), ordered.iloc[cut:].reset_index(drop=True)


def _group_split(frame: pd.DataFrame, column: str | None, test_size: float,
                 seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    keys = _group_keys(_column(frame, column, "group"))
    unique = pd.Series(keys.drop_duplicates().to_numpy(), dtype=object)
    if len(unique) < 2:
        raise ReprobookError(
            f"data.split.column: a group split needs at least two groups; '{column}' has {len(unique)}; "
            "choose another column or data.split.kind"
        )
    share = _hash_share(unique, seed)
    held = share < test_size
    if not held.any() or held.all():
        # Too few groups for the hash to reach both sides: the groups of the lowest positions go to test.
        ranked = np.argsort(share, kind="stable")
        n_held = min(len(unique) - 1, max(1, int(round(test_size * len(unique)))))
        held = np.zeros(len(unique), dtype=bool)
        held[ranked[:n_held]] = True
    in_test = keys.isin(set(unique[held])).to_numpy()
    return frame[~in_test].reset_index(drop=True), frame[in_test].reset_index(drop=True)


# --- cross-validation -------------------------------------------------------------------------------------------

def cv_folds(x: pd.DataFrame, y: pd.Series, *, task: str, kind: str, groups_or_times: Any, n_folds: int,
             seed: int) -> Folds:
    """Cross-validation (train, validation) row positions that follow the split's kind (module docstring).

    ``groups_or_times``: the split's column on the same rows as ``x`` (in
    the same order), for ``group`` and ``time``; ignored otherwise.
    """
    if kind == "time":
        return _time_folds(pd.Series(groups_or_times), n_folds)
    if kind == "group":
        from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

        groups = _group_keys(pd.Series(groups_or_times)).to_numpy()
        if len(groups) != len(x):
            raise ValueError(f"groups_or_times has {len(groups)} rows, x has {len(x)}")
        n_groups = len(set(groups))
        if n_groups < n_folds:
            raise ReprobookError(
                f"model.cv_folds: {n_folds} folds that keep groups whole need at least {n_folds} groups; "
                f"the training rows have {n_groups}; lower model.cv_folds to {max(2, n_groups)} or less"
                + (" (or choose another data.split.kind)" if n_groups < 2 else "")
            )
        if task == "classification":
            splitter = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)
        else:
            splitter = GroupKFold(n_folds, shuffle=True, random_state=seed)
        return [(np.sort(train), np.sort(valid)) for train, valid in splitter.split(x, y, groups)]
    from sklearn.model_selection import KFold, StratifiedKFold

    splitter = (StratifiedKFold if task == "classification" else KFold)(n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(x, y))


def _time_folds(values: pd.Series, n_folds: int) -> Folds:
    from sklearn.model_selection import TimeSeriesSplit

    when = times(values)
    missing = int(when.isna().sum())
    if missing:
        raise ReprobookError(
            f"model.cv_folds: forward-in-time folds order the training rows by time, but {missing} of "
            f"{len(when)} have none; drop those rows or choose another split (data.split.kind)"
        )
    n = len(when)
    if n < n_folds + 1:
        raise ReprobookError(f"model.cv_folds: {n_folds} folds forward in time need at least {n_folds + 1} "
                             f"training rows; found {n}; lower model.cv_folds")
    ns = _nanoseconds(when)
    order = np.argsort(ns, kind="stable")
    sorted_ns = ns[order]
    folds: Folds = []
    for train, valid in TimeSeriesSplit(n_splits=n_folds).split(order):
        start, end = _tie_cut(sorted_ns, len(train)), _tie_cut(sorted_ns, len(train) + len(valid))
        if not 0 < start < end:
            raise ReprobookError(
                f"model.cv_folds: {n_folds} folds forward in time need more distinct times: the training rows "
                f"have {len(np.unique(sorted_ns))}; lower model.cv_folds"
            )
        folds.append((np.sort(order[:start]), np.sort(order[start:end])))
    return folds


# --- reporting --------------------------------------------------------------------------------------------------

def _period(when: pd.Series, with_clock: bool) -> str:
    pattern = "%Y-%m-%d %H:%M:%S" if with_clock else "%Y-%m-%d"
    return f"{when.min():{pattern}}..{when.max():{pattern}}"


def describe(kind: str, column: str | None, train: pd.DataFrame, test: pd.DataFrame, *, target: str | None = None,
             task: str | None = None, stratify: bool = True) -> str:
    """The split in one line, for the data report and the run record; it says what was checked, not what was
    asked (a time split whose sides overlap in time, or a group on both sides, is said so)."""
    sizes = f"train {len(train)} rows, test {len(test)} rows"
    if kind == "time" and column in train.columns and column in test.columns and len(train) and len(test):
        before, after = _both_sides(train[column], test[column])
        before, after = before.dropna(), after.dropna()
        if len(before) and len(after):
            both = pd.concat([before, after])
            with_clock = bool((both != both.dt.normalize()).any())
            problem = check_time_order(train, test, column)
            verdict = problem or "every test row at or after the last training row"
            return (f"time split on '{column}': train {_period(before, with_clock)} ({len(train)} rows), "
                    f"test {_period(after, with_clock)} ({len(test)} rows); {verdict}")
    if kind == "group" and column in train.columns and column in test.columns:
        a, b = set(_group_keys(train[column])), set(_group_keys(test[column]))
        shared = len(a & b)
        verdict = f"{shared} groups on both sides" if shared else "no group on both sides"
        return (f"group split on '{column}': train {len(train)} rows in {len(a)} groups, test {len(test)} rows in "
                f"{len(b)} groups; {verdict}")
    if kind == "stratified" and (task == "regression" or not stratify):
        why = "a regression target has no classes" if task == "regression" else "data.stratify is false"
        return f"random split (seeded; stratified asked, but {why}): {sizes}"
    if kind == "stratified" and target:
        return f"stratified split on '{target}' (seeded; each class keeps its share on both sides): {sizes}"
    return f"{kind} split (seeded): {sizes}"


def check_time_order(train: pd.DataFrame, test: pd.DataFrame, column: str) -> str | None:
    """Under a time split on ``column``: a message when some test row is earlier than the last training row,
    else None. Both sides are parsed the same way; a tie with the last training time is not earlier; rows
    without a time are not counted."""
    if column not in train.columns or column not in test.columns:
        return (f"time split on '{column}': the column is not in both split files, so the time order of train "
                "and test cannot be checked")
    from reprobook.ml.leaks import split_order_leak

    found = split_order_leak(*_both_sides(train[column], test[column]), column)  # one rule: the leak check's
    return None if found is None else f"time split on '{column}': {found['why']}"


def propose(frame: pd.DataFrame, target: str, roles: dict[str, str], task: str) -> tuple[str, str | None, str]:
    """The split ``reprobook new`` writes, and why: time on a datetime column (the first, in ``roles`` order,
    with a time on every row and two times at least), else group on a repeated id, else the default."""
    n = len(frame)
    skipped = ""
    for name, role in roles.items():
        if role != "datetime" or name == target or name not in frame.columns:
            continue
        when = times(frame[name])
        missing = int(when.isna().sum())
        if missing:
            skipped = skipped or f"; '{name}' has {missing} rows without a time, so no time split on it"
            continue
        if when.nunique() > 1:
            return "time", name, (f"rows carry dates in '{name}': a model is used on later rows, so it is tested on "
                                  "the latest ones")
    for name, role in roles.items():
        if role != "id" or name == target or name not in frame.columns:
            continue
        distinct = int(frame[name].nunique())
        if 2 <= distinct < 0.9 * n:
            return "group", name, (f"'{name}' repeats: {distinct} groups of about {n / distinct:.0f} rows; rows of "
                                   "one group on both sides would let the model recognise them" + skipped)
    if task == "classification":
        return "stratified", None, (f"no dates or repeated ids: a seeded split stratified on '{target}' keeps each "
                                    "class's share on both sides" + skipped)
    return "random", None, "no dates or repeated ids: a seeded random split" + skipped
