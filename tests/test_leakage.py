"""Target leaks: copies and deterministic functions of the target are found; ids and honest features are not."""

from __future__ import annotations

from reprobook.ml.loans import make_loans
from reprobook.ml.metrics import METRICS
from reprobook.ml.modeling import suspicious_score
from reprobook.ml.prep import target_leaks


def test_honest_features_and_ids_are_not_leaks():
    frame = make_loans(2000, 3)
    frame["application_id"] = range(len(frame))  # unique per row: determines nothing
    assert target_leaks(frame, "approved") == []


def test_a_copy_and_a_relabelling_of_the_target_are_leaks():
    frame = make_loans(2000, 3)
    frame["approved_copy"] = frame["approved"].astype(float)
    frame["decision"] = frame["approved"].map({0: "declined", 1: "accepted"})
    found = {leak["column"]: leak["why"] for leak in target_leaks(frame, "approved")}
    assert set(found) == {"approved_copy", "decision"}
    assert "equals the target" in found["approved_copy"] and "maps to a single value" in found["decision"]


def test_perfect_and_better_than_human_scores_are_suspicious():
    roc_auc, rmse = METRICS["roc_auc"], METRICS["rmse"]
    assert "perfect score" in suspicious_score(roc_auc, 1.0, None)
    assert "perfect score" in suspicious_score(rmse, 0.0, None)
    assert "human-level" in suspicious_score(roc_auc, 0.97, 0.95)
    assert suspicious_score(roc_auc, 0.9, 0.95) is None and suspicious_score(roc_auc, 0.9, None) is None
