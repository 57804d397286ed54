"""Splits that match use (reprobook.ml.splits): time, group, random/stratified, and CV that follows them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reprobook.errors import ReprobookError
from reprobook.ml.splits import check_time_order, cv_folds, describe, propose, split_frame, times


def _dated(n: int = 500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 1000, n), unit="D")
    return pd.DataFrame({"date": days, "x": rng.normal(size=n), "y": rng.integers(0, 2, n)})


def _grouped(n: int = 600, groups: int = 100, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"customer_id": rng.integers(0, groups, n), "x": rng.normal(size=n),
                         "y": rng.integers(0, 2, n)})


def _split(frame, kind, column=None, **kw):
    args = {"task": "classification", "test_size": 0.2, "seed": 7, **kw}
    return split_frame(frame, "y", kind=kind, column=column, **args)


# --- time -------------------------------------------------------------------------------------------------------

def test_time_split_tests_on_the_latest_rows_sorted_by_time():
    frame = _dated()
    train, test = _split(frame, "time", "date")
    assert len(train) + len(test) == len(frame)
    assert train["date"].max() <= test["date"].min()
    assert abs(len(test) / len(frame) - 0.2) < 0.02
    assert train["date"].is_monotonic_increasing and test["date"].is_monotonic_increasing
    assert list(train.index) == list(range(len(train))) and list(test.index) == list(range(len(test)))
    assert check_time_order(train, test, "date") is None


def test_time_split_keeps_rows_tied_at_the_boundary_on_one_side():
    # 10 days of 10 rows; test_size 0.25 cuts inside day 8: the tie goes to the side nearest the share.
    frame = pd.DataFrame({"date": np.repeat(pd.date_range("2021-01-01", periods=10), 10),
                          "x": np.arange(100.0), "y": np.tile([0, 1], 50)}).sample(frac=1, random_state=1)
    train, test = _split(frame, "time", "date", test_size=0.25)
    assert train["date"].max() < test["date"].min()
    assert len(test) in (20, 30)
    # every row on one day but the boundary: train keeps the earliest time, test the rest
    few = pd.DataFrame({"date": ["2021-01-01"] * 9 + ["2021-01-02"], "x": range(10), "y": [0, 1] * 5})
    train, test = _split(few, "time", "date", test_size=0.5)
    assert (len(train), len(test)) == (9, 1)


@pytest.mark.parametrize("encode", [
    lambda d: d.dt.strftime("%Y-%m-%dT%H:%M:%S"),  # ISO strings
    lambda d: d.dt.strftime("%d %B %Y"),  # other date strings
    lambda d: (d - pd.Timestamp("1970-01-01")).dt.total_seconds().astype("int64"),  # epoch seconds
    lambda d: (d - pd.Timestamp("1970-01-01")).dt.total_seconds().astype("int64") * 1000,  # epoch ms
], ids=["iso", "text", "epoch_s", "epoch_ms"])
def test_time_split_reads_strings_and_epochs(encode):
    frame = _dated()
    encoded = frame.assign(date=encode(frame["date"]))
    train, test = _split(encoded, "time", "date")
    expected_train, expected_test = _split(frame, "time", "date")
    assert train["x"].tolist() == expected_train["x"].tolist()
    assert test["x"].tolist() == expected_test["x"].tolist()
    assert times(train["date"]).max() <= times(test["date"]).min()


def test_epoch_unit_is_read_from_the_magnitude():
    seconds = pd.Series([1_600_000_000, 1_600_086_400])
    assert times(seconds).tolist() == times(seconds * 1000).tolist()
    assert times(seconds).iloc[0] == pd.Timestamp("2020-09-13 12:26:40", tz="UTC")


def test_time_split_refuses_rows_without_a_time():
    frame = _dated(50).astype({"date": str})
    frame.loc[[3, 9], "date"] = None
    frame.loc[5, "date"] = "not a date"
    with pytest.raises(ReprobookError, match=r"'date'.*3 of 50 rows.*drop those rows or choose another split"):
        _split(frame, "time", "date")


def test_time_split_needs_two_times():
    frame = pd.DataFrame({"date": ["2021-01-01"] * 10, "x": range(10), "y": [0, 1] * 5})
    with pytest.raises(ReprobookError, match="same time"):
        _split(frame, "time", "date")


def test_production_rows_are_later_under_a_time_split():
    frame = _dated()
    later = _dated(50, seed=1).assign(date=lambda f: f["date"] + pd.Timedelta(days=2000))
    train, test = _split(pd.concat([frame, later], ignore_index=True), "time", "date", production_rows=50)
    assert set(later["x"]) <= set(test["x"])


def test_check_time_order_names_test_rows_earlier_than_training():
    frame = _dated()
    train, test = _split(frame, "time", "date")
    swapped = pd.concat([test, train.head(3)], ignore_index=True)
    message = check_time_order(train, swapped, "date")
    assert message and "'date'" in message and "3 of" in message and "earlier than the last training row" in message
    # epoch seconds on one side and the other are parsed the same way
    as_epoch = lambda f: f.assign(date=(f["date"] - pd.Timestamp("1970-01-01")).dt.total_seconds().astype("int64"))
    assert check_time_order(as_epoch(train), as_epoch(test), "date") is None


# --- group ------------------------------------------------------------------------------------------------------

def test_group_split_keeps_each_group_on_one_side():
    frame = _grouped()
    train, test = _split(frame, "group", "customer_id")
    assert not set(train["customer_id"]) & set(test["customer_id"])
    assert len(train) + len(test) == len(frame)
    assert 0.1 < len(test) / len(frame) < 0.3


def test_a_group_keeps_its_side_when_rows_are_added():
    frame = _grouped()
    train, test = _split(frame, "group", "customer_id")
    added = _grouped(300, groups=150, seed=3).assign(customer_id=lambda f: f["customer_id"].astype(float))
    added.loc[::7, "customer_id"] = np.nan  # float ids now, and some rows without one
    more_train, more_test = _split(pd.concat([frame, added], ignore_index=True), "group", "customer_id",
                                   production_rows=len(added))
    assert set(train["customer_id"]) <= set(more_train["customer_id"])
    assert set(test["customer_id"]) <= set(more_test["customer_id"])
    assert not set(more_train["customer_id"].dropna()) & set(more_test["customer_id"].dropna())
    # rows without a group are one group: all on one side
    assert (more_train["customer_id"].isna().sum() == 0) or (more_test["customer_id"].isna().sum() == 0)


def test_group_split_with_few_groups_still_has_both_sides():
    frame = pd.DataFrame({"g": ["a"] * 5 + ["b"] * 5, "x": range(10), "y": [0, 1] * 5})
    for seed in range(20):
        train, test = _split(frame, "group", "g", seed=seed)
        assert len(train) and len(test) and not set(train["g"]) & set(test["g"])


def test_group_split_needs_two_groups():
    frame = pd.DataFrame({"g": ["a"] * 10, "x": range(10), "y": [0, 1] * 5})
    with pytest.raises(ReprobookError, match="at least two groups; 'g' has 1"):
        _split(frame, "group", "g")


# --- errors, random, determinism ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["time", "group"])
def test_an_unknown_column_is_named(kind):
    with pytest.raises(ReprobookError, match=r"data\.split\.column.*'when'.*available columns: date, x, y"):
        _split(_dated(), kind, "when")


def test_stratified_split_keeps_class_shares_and_refuses_a_lone_class():
    frame = _dated(1000).assign(y=lambda f: (np.arange(len(f)) % 10 == 0).astype(int))
    train, test = _split(frame, "stratified")
    assert test["y"].mean() == pytest.approx(0.1, abs=0.005) and len(test) == 200
    lone = frame.copy()
    lone.loc[0, "y"] = 2
    with pytest.raises(ReprobookError, match=r"class 2 of 'y' has 1 row.*data\.split\.kind: random"):
        _split(lone, "stratified")
    _split(lone, "stratified", stratify=False)  # legacy data.stratify: false is random
    _split(lone.assign(y=lone["y"] + 0.5), "stratified", task="regression")  # regression is random


def test_production_rows_keep_their_side_under_a_random_split():
    frame = _dated(400)
    production = _dated(100, seed=5)
    train, test = _split(pd.concat([frame, production.iloc[:50]], ignore_index=True), "stratified", production_rows=50)
    more_train, more_test = _split(pd.concat([frame, production], ignore_index=True), "stratified", production_rows=100)
    assert set(train["x"]) <= set(more_train["x"]) and set(test["x"]) <= set(more_test["x"])
    assert set(_split(frame, "stratified")[1]["x"]) <= set(test["x"])


@pytest.mark.parametrize("kind,column", [("time", "date"), ("group", "customer_id"), ("stratified", None),
                                         ("random", None)])
def test_the_same_seed_gives_the_same_split_bytes(kind, column):
    frame = _dated().assign(customer_id=_grouped(500)["customer_id"])
    first, second = _split(frame, kind, column), _split(frame, kind, column)
    for a, b in zip(first, second):
        assert pd.util.hash_pandas_object(a).to_numpy().tobytes() == pd.util.hash_pandas_object(b).to_numpy().tobytes()
    if kind in ("group", "random"):
        other = _split(frame, kind, column, seed=8)
        assert set(other[1]["x"]) != set(first[1]["x"])


# --- cross-validation -------------------------------------------------------------------------------------------

def test_time_folds_validate_on_rows_later_than_their_training_rows():
    frame = _dated(300).sample(frac=1, random_state=2).reset_index(drop=True)  # not in time order
    frame["date"] = frame["date"].dt.strftime("%Y-%m")  # 33 months: ties at most fold boundaries
    folds = cv_folds(frame[["x"]], frame["y"], task="classification", kind="time", groups_or_times=frame["date"],
                     n_folds=4, seed=0)
    assert len(folds) == 4
    when = times(frame["date"])
    for train, valid in folds:
        assert len(train) and len(valid) and not set(train) & set(valid)
        assert when.iloc[train].max() < when.iloc[valid].min()  # ties never straddle a fold
    assert [len(t) for t, _ in folds] == sorted(len(t) for t, _ in folds)


def test_group_folds_keep_groups_whole():
    frame = _grouped(600, groups=60)
    for task, y in (("classification", frame["y"]), ("regression", frame["x"])):
        folds = cv_folds(frame[["x"]], y, task=task, kind="group", groups_or_times=frame["customer_id"], n_folds=5,
                         seed=3)
        assert len(folds) == 5
        for train, valid in folds:
            assert not set(frame["customer_id"].iloc[train]) & set(frame["customer_id"].iloc[valid])
        again = cv_folds(frame[["x"]], y, task=task, kind="group", groups_or_times=frame["customer_id"], n_folds=5,
                         seed=3)
        assert all((a == c).all() and (b == d).all() for (a, b), (c, d) in zip(folds, again))


def test_too_few_groups_for_the_folds_is_named():
    frame = _grouped(40, groups=3)
    with pytest.raises(ReprobookError, match=r"model\.cv_folds.*at least 5 groups.*have 3"):
        cv_folds(frame[["x"]], frame["y"], task="classification", kind="group",
                 groups_or_times=frame["customer_id"], n_folds=5, seed=0)


def test_random_folds_are_todays_seeded_kfold():
    from sklearn.model_selection import KFold, StratifiedKFold

    frame = _dated(200)
    folds = cv_folds(frame[["x"]], frame["y"], task="classification", kind="stratified", groups_or_times=None,
                     n_folds=5, seed=4)
    expected = StratifiedKFold(5, shuffle=True, random_state=4).split(frame[["x"]], frame["y"])
    assert all((a == c).all() and (b == d).all() for (a, b), (c, d) in zip(folds, expected))
    folds = cv_folds(frame[["x"]], frame["x"], task="regression", kind="random", groups_or_times=None,
                     n_folds=3, seed=4)
    expected = KFold(3, shuffle=True, random_state=4).split(frame[["x"]])
    assert all((a == c).all() and (b == d).all() for (a, b), (c, d) in zip(folds, expected))


# --- describe, propose ------------------------------------------------------------------------------------------

def test_describe_says_what_the_split_is():
    frame = _dated()
    train, test = _split(frame, "time", "date")
    line = describe("time", "date", train, test)
    assert line.startswith("time split on 'date': train 2019-01-")
    assert f"({len(test)} rows); every test row at or after the last training row" in line
    grouped = _grouped()
    line = describe("group", "customer_id", *_split(grouped, "group", "customer_id"))
    assert "group split on 'customer_id'" in line and "no group on both sides" in line
    assert "random split" in describe("stratified", None, train, test, task="regression")
    assert "stratified split on 'y'" in describe("stratified", None, train, test, target="y",
                                                 task="classification")


def test_propose_follows_dates_then_repeated_ids():
    frame = _dated(600).assign(customer_id=_grouped(600)["customer_id"], row=range(600))
    kind, column, reason = propose(frame, "y", {"date": "datetime", "customer_id": "id", "x": "numeric"},
                                   "classification")
    assert (kind, column) == ("time", "date") and "'date'" in reason and "latest" in reason
    kind, column, reason = propose(frame, "y", {"row": "id", "customer_id": "id", "x": "numeric"}, "classification")
    assert (kind, column) == ("group", "customer_id")
    assert reason.startswith("'customer_id' repeats: 100 groups of about 6 rows")
    assert propose(frame, "y", {"row": "id", "x": "numeric"}, "classification")[:2] == ("stratified", None)
    assert propose(frame, "x", {"row": "id"}, "regression")[:2] == ("random", None)
