"""Leak findings (reprobook.ml.leaks): each kind on a frame made to have it, honest data with none, the fix named."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from reprobook.ml.leaks import ROW_ORDER, blocking, dominant_feature, find_leaks, split_order_leak
from reprobook.ml.loans import make_loans
from reprobook.ml.roles import infer_roles


def _roles(frame: pd.DataFrame, target: str, **declared: str) -> dict[str, str]:
    roles = {column: found.role for column, found in infer_roles(frame, target).items()}
    return {**roles, **declared}


def _by_column(findings: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {found["column"]: found for found in findings}


def test_a_log_and_an_affine_copy_of_a_numeric_target_are_monotone_leaks():
    rng = np.random.default_rng(3)
    wage = rng.lognormal(3, 0.5, 3000)
    frame = pd.DataFrame({"hours": rng.normal(40, 5, 3000), "log_wage": np.log(wage), "wage_x2": 2 * wage + 3,
                          "experience": wage / 4 + rng.normal(0, 3, 3000), "wage": wage})
    found = _by_column(find_leaks(frame, "wage", _roles(frame, "wage"), task="regression", seed=0))
    assert set(found) == {"log_wage", "wage_x2"}  # a strong honest feature (rank correlation ~0.8) is not one
    for column in ("log_wage", "wage_x2"):
        assert found[column]["kind"] == "monotone"
        assert found[column]["why"].startswith("is a monotone function of the target 'wage' (rank correlation 1.0")
        assert f"data.columns: {{{column}: ignored}}" in found[column]["fix"]
        assert "data.acknowledged_leaks" in found[column]["fix"]


def test_one_column_that_alone_scores_near_perfectly_is_a_single_feature_leak():
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, 4000)
    squares = pd.DataFrame({"x": x, "noise": rng.normal(size=4000), "t": x ** 2})  # not monotone, determined
    found = _by_column(find_leaks(squares, "t", _roles(squares, "t"), task="regression", seed=0))
    assert set(found) == {"x"} and found["x"]["kind"] == "single_feature"
    assert "alone predicts 't'" in found["x"]["why"] and "r2 0.99" in found["x"]["why"]

    loans = make_loans(4000, 3)
    # only filled in once a loan defaulted: its missingness is the label
    loans["days_to_default"] = np.where(loans["approved"] == 0, rng.integers(1, 400, len(loans)), np.nan)
    # 300 branches, each branch's decisions all but identical (0.3% flipped: not a pure many-to-one)
    loans["branch"] = [f"b{i}" for i in rng.integers(0, 300, len(loans))]
    first = loans.groupby("branch")["approved"].transform(lambda s: s.iloc[0])
    loans["branch_decision"] = np.where(rng.random(len(loans)) < 0.003, 1 - first, first)
    frame = loans.drop(columns="approved")
    roles = _roles(frame, "branch_decision", days_to_default="numeric", branch="categorical")
    found = _by_column(find_leaks(frame, "branch_decision", roles, task="classification", seed=0))
    assert set(found) == {"branch"}  # days_to_default follows 'approved', not this target
    assert found["branch"]["kind"] == "single_feature" and "roc_auc 0.99" in found["branch"]["why"]

    roles = _roles(loans, "approved", days_to_default="numeric", branch="categorical", branch_decision="ignored")
    found = _by_column(find_leaks(loans, "approved", roles, task="classification", seed=0))
    assert set(found) == {"days_to_default"}  # branch says nothing of a loan's own decision
    assert found["days_to_default"]["kind"] == "single_feature"


def test_labels_sorted_by_an_id_are_a_row_order_leak():
    frame = make_loans(2000, 3).sort_values("approved", kind="stable").reset_index(drop=True)
    frame["application_id"] = np.arange(len(frame)) + 1000
    roles = _roles(frame, "approved")
    assert roles["application_id"] == "id"
    found = _by_column(find_leaks(frame, "approved", roles, task="classification", seed=0))
    assert set(found) == {ROW_ORDER, "application_id"}
    assert all(leak["kind"] == "row_order" for leak in found.values())
    assert found["application_id"]["why"] == ("the label follows 'application_id' (a tree on it alone scores "
                                              "roc_auc 1.000): the file is sorted by label")
    assert "shuffle/re-export the file" in found["application_id"]["fix"]
    assert "data.acknowledged_leaks" in found[ROW_ORDER]["fix"]

    # a split shuffles the rows but keeps their file row numbers (the index): still the file's order
    shuffled = frame.drop(columns="application_id").sample(frac=1.0, random_state=1)
    found = find_leaks(shuffled, "approved", _roles(shuffled, "approved"), task="classification", seed=0)
    assert [leak["column"] for leak in found] == [ROW_ORDER]


def test_a_file_sorted_by_a_long_tailed_numeric_target_is_a_row_order_leak():
    rng = np.random.default_rng(2)
    n = 30_000  # more than the rows sampled: the sample keeps each row's place in the file
    frame = pd.DataFrame({"hours": rng.normal(40, 5, n), "wage": np.sort(rng.lognormal(3, 1.0, n)),
                          "record": [f"r{i:06d}" for i in range(n)]})
    found = _by_column(find_leaks(frame, "wage", {"hours": "numeric", "wage": "target", "record": "id"},
                                  task="regression", seed=0))
    assert set(found) == {ROW_ORDER, "record"}
    assert found["record"]["why"] == ("the target follows 'record' (rank correlation 1.0000): the file is sorted "
                                      "by the target 'wage'")


def test_an_id_in_time_order_with_a_mild_label_drift_is_not_a_leak():
    rng = np.random.default_rng(7)
    n = 20_000
    frame = pd.DataFrame({"event_id": np.arange(n), "amount": rng.normal(size=n)})
    frame["fraud"] = (rng.random(n) < 0.3 + 0.4 * np.arange(n) / n).astype(int)  # 30% -> 70% over the file
    roles = {"event_id": "id", "amount": "numeric", "fraud": "target"}
    assert find_leaks(frame, "fraud", roles, task="classification", seed=0) == []


def test_honest_loans_data_has_no_leaks():
    frame = make_loans(5000, 42)
    frame["application_id"] = np.random.default_rng(0).permutation(len(frame))  # ids in no particular order
    roles = _roles(frame, "approved", application_id="id")
    assert find_leaks(frame, "approved", roles, task="classification", seed=42) == []
    # the same features asked to predict one of them: strong relations (credit score rises with age), no leak
    regression = frame.drop(columns="approved")
    assert find_leaks(regression, "credit_score", _roles(regression, "credit_score", application_id="id"),
                      task="regression", seed=42) == []


def test_constant_empty_and_odd_columns_do_not_crash_and_are_not_leaks():
    rng = np.random.default_rng(11)
    frame = make_loans(1500, 5)
    frame["constant"] = 7.0
    frame["empty"] = np.nan
    frame["mostly_missing"] = np.where(rng.random(len(frame)) < 0.97, np.nan, rng.normal(size=len(frame)))
    frame["with_inf"] = np.where(rng.random(len(frame)) < 0.1, np.inf, rng.normal(size=len(frame)))
    frame["mixed"] = pd.Series([1, "a", 2.5, None] * (len(frame) // 4), dtype=object)
    frame["flag"] = rng.random(len(frame)) < 0.5
    frame["signed_up"] = pd.date_range("2020-01-01", periods=len(frame), freq="D").astype(str)
    frame.loc[frame.index[:30], "approved"] = np.nan  # rows without a label are left out
    roles = _roles(frame, "approved", constant="numeric", empty="numeric", mostly_missing="numeric",
                   with_inf="numeric", mixed="categorical", flag="boolean", signed_up="datetime")
    assert find_leaks(frame, "approved", roles, task="classification", seed=1) == []
    assert find_leaks(frame.head(5), "approved", roles, task="classification", seed=1) == []
    constant_target = frame.assign(approved=1)
    assert find_leaks(constant_target, "approved", roles, task="classification", seed=1) == []


def test_a_copy_and_a_many_to_one_category_are_still_found_once():
    frame = make_loans(2000, 3)
    frame["approved_copy"] = frame["approved"].astype(float)
    frame["decision"] = frame["approved"].map({0: "declined", 1: "accepted"})
    roles = _roles(frame, "approved", decision="categorical", approved_copy="numeric")
    findings = find_leaks(frame, "approved", roles, task="classification", seed=0)
    found = _by_column(findings)
    assert [leak["column"] for leak in findings] == ["approved_copy", "decision"]  # once each, though a tree
    assert found["approved_copy"]["kind"] == "copy"  # on either would score 1.0 too
    assert found["approved_copy"]["why"] == "equals the target 'approved'"
    assert found["decision"]["kind"] == "many_to_one"
    assert found["decision"]["why"] == "each of its 2 values maps to a single value of 'approved'"
    assert all(set(leak) == {"column", "kind", "why", "fix"} for leak in findings)


def test_an_acknowledged_leak_no_longer_blocks_and_keeps_its_reason():
    findings = [{"column": "decision", "kind": "many_to_one", "why": "w", "fix": "f"},
                {"column": ROW_ORDER, "kind": "row_order", "why": "w2", "fix": "f2"}]
    still, acknowledged = blocking(findings, {"decision": "known at application time", "other": "unused"})
    assert still == [findings[1]]
    assert acknowledged == [{**findings[0], "acknowledged": "known at application time"}]
    assert "acknowledged" not in findings[0]  # the findings given are not changed
    assert blocking(findings, {}) == (findings, [])


def test_test_rows_earlier_than_training_rows_under_a_time_split():
    train = pd.DataFrame({"day": pd.date_range("2024-01-01", periods=10, freq="D")})
    later = pd.DataFrame({"day": pd.date_range("2024-01-10", periods=5, freq="D")})  # a tie is not earlier
    assert split_order_leak(train, later, "day") is None
    overlapping = pd.DataFrame({"day": pd.to_datetime(["2024-01-03", "2024-01-05", "2024-01-20", None])})
    found = split_order_leak(train, overlapping, "day")
    assert found["column"] == "day" and found["kind"] == "time_order"
    assert found["why"].startswith("has 2 of 3 test rows earlier than the last training row (2024-01-10")
    assert 'data.acknowledged_leaks: {day: "why it is fine"} if' in found["fix"]
    text = overlapping["day"].astype(str).where(overlapping["day"].notna())
    as_text = split_order_leak(train["day"].astype(str), text, "day")
    assert as_text["why"] == found["why"]
    assert split_order_leak(pd.Series([1, 2, 3]), pd.Series([3, 4]), "step") is None
    assert "has 1 of 2" in split_order_leak(pd.Series([1, 2, 3]), pd.Series([2.5, 4]), "step")["why"]


def test_a_near_perfect_score_read_off_one_feature_is_suspicious():
    importances = {"credit_score": 0.30, "approved_later": 4.1, "age": -0.02, "income": 0.05}
    message = dominant_feature(importances, 0.998, "roc_auc", True)
    assert "'approved_later'" in message and "roc_auc = 0.998" in message and "data.columns" in message
    assert dominant_feature(importances, 0.95, "roc_auc", True) is None  # not near-perfect
    assert dominant_feature({"a": 0.5, "b": 0.4, "c": 0.1}, 1.0, "roc_auc", True) is None  # shared
    assert dominant_feature(importances, 0.001, "rmse", False) is None  # an error has no scale here
    assert dominant_feature({"only": 1.0}, 1.0, "accuracy", True) is None  # one feature carries all, trivially
    assert dominant_feature({"a": 0.0, "b": -0.1}, 1.0, "r2", True) is None
    assert "'x'" in dominant_feature({"x": 0.95, "y": 0.05}, 0.995, "r2", True)


def test_fifty_thousand_rows_by_thirty_columns_take_under_two_seconds_and_repeat_exactly():
    import sklearn.tree  # noqa: F401  (imported once by any stage; its import is not the check's cost)

    rng = np.random.default_rng(0)
    n = 50_000
    columns = {f"x{i}": rng.normal(size=n) for i in range(19)}
    columns.update({f"c{i}": rng.choice(list("abcdefghij"), n) for i in range(8)})
    columns["signed_up"] = pd.date_range("2020-01-01", periods=n, freq="h").astype(str)
    columns["flag"] = rng.random(n) < 0.3
    frame = pd.DataFrame(columns)
    frame["approved"] = (frame["x0"] + rng.normal(size=n) > 0).astype(int)
    frame["status"] = np.where(frame["approved"] == 1, "closed", "open")  # the 30th feature: a leak
    roles = {column: "numeric" for column in frame}
    roles.update({f"c{i}": "categorical" for i in range(8)}, signed_up="datetime", flag="boolean",
                 status="categorical", approved="target")
    start = time.process_time()
    findings = find_leaks(frame, "approved", roles, task="classification", seed=3)
    elapsed = time.process_time() - start
    assert [leak["column"] for leak in findings] == ["status"]
    assert elapsed < 2.0, f"find_leaks took {elapsed:.2f} s of CPU on 50,000 x 30"
    assert find_leaks(frame, "approved", roles, task="classification", seed=3) == findings
