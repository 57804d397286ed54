"""The gates of `reprobook ci` (reprobook.reproduce.change.judge): which way each metric is better, the
tolerance, the scoping threshold and the latency budget."""

from __future__ import annotations

from reprobook.reproduce.change import changed_params, judge

BASE = {"test.roc_auc": 0.85, "test.log_loss": 0.40, "test.accuracy": 0.80, "comparison.meets_threshold": 1.0}


def _verdicts(head: dict[str, float], **kwargs) -> dict[str, bool]:
    gates = judge(BASE, head, "classification", "roc_auc", 0.8, 0.005, **kwargs)
    return {gate.name.split(" ")[0] if gate.name.startswith("test.") else gate.name: gate.passed for gate in gates}


def test_a_drop_beyond_the_tolerance_fails_and_within_it_passes():
    verdicts = _verdicts({**BASE, "test.roc_auc": 0.846, "test.accuracy": 0.79})
    assert verdicts["test.roc_auc"] is True  # 0.004 worse: within 0.005
    assert verdicts["test.accuracy"] is False  # 0.01 worse


def test_lower_is_better_metrics_are_judged_the_other_way():
    assert _verdicts({**BASE, "test.log_loss": 0.30})["test.log_loss"] is True
    assert _verdicts({**BASE, "test.log_loss": 0.45})["test.log_loss"] is False


def test_errors_in_the_target_units_are_judged_relative_to_the_base():
    base = {"test.rmse": 55.0, "test.r2": 0.40}
    # 0.2 worse on an rmse of 55 is 0.36%: within 0.5%; 0.5 worse is 0.9%: not.
    within = judge(base, {"test.rmse": 55.2, "test.r2": 0.40}, "regression", "r2", None, 0.005)
    beyond = judge(base, {"test.rmse": 55.5, "test.r2": 0.40}, "regression", "r2", None, 0.005)
    assert [g.passed for g in within if "rmse" in g.name] == [True]
    assert [g.passed for g in beyond if "rmse" in g.name] == [False]
    assert "0.50% of it" in next(g.name for g in beyond if "rmse" in g.name)


def test_the_scoping_threshold_and_the_latency_budget_are_gates():
    verdicts = _verdicts({**BASE, "comparison.meets_threshold": 0.0},
                         head_timings={"timing.latency_p95_ms": 40.0, "timing.within_latency_budget": 0.0},
                         latency_budget_ms=25.0)
    assert verdicts["promotion gate: roc_auc ≥ 0.8"] is False
    assert verdicts["promotion gate: latency p95 ≤ 25 ms"] is False
    # Timed on a busy machine: not judged, so it does not fail the change.
    busy = judge(BASE, BASE, "classification", "roc_auc", 0.8, 0.005,
                 head_timings={"timing.latency_p95_ms": 90.0}, latency_budget_ms=25.0)
    latency = next(g for g in busy if "latency" in g.name)
    assert latency.passed and "not judged" in latency.detail


def test_metrics_of_another_task_or_missing_on_the_base_are_not_gates():
    gates = judge({"test.roc_auc": 0.8}, {"test.roc_auc": 0.8, "test.r2": 0.1, "test.accuracy": 0.5},
                  "classification", "roc_auc", None, 0.0)
    assert [g.name.split(" ")[0] for g in gates] == ["test.roc_auc"]


def test_changed_params_lists_both_values_and_new_keys():
    assert changed_params({"a": "1", "b": "2"}, {"a": "1", "b": "3", "c": "x"}) == [("b", "2", "3"), ("c", None, "x")]


def test_outside_git_the_base_cannot_be_resolved(tmp_path):
    import pytest

    from reprobook.errors import UsageError
    from reprobook.reproduce.change import resolve_commit

    with pytest.raises(UsageError, match="not a git repository"):
        resolve_commit(tmp_path, "main")
