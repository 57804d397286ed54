"""Deployment patterns end to end: shadow, canary, blue-green promotion and rollback on registry aliases.

Real tools throughout: a project made by the installed `reprobook new` (the
built-in loan data), two real pipeline runs registering two versions in MLflow
(SQLite), production batches from the same generator, and every decision taken
through the `reprobook` console script. Version 1 is a weak model (10 boosting
iterations), version 2 a better one (150). Each test sets the aliases it needs
through MlflowClient first, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import BIN, set_params, sh

pytestmark = pytest.mark.e2e

MODEL = "proj-loans"
BATCH_ROWS = 4000


def reprobook(root: Path, *args: str, check: bool = True):
    return sh([str(BIN / "reprobook"), *args], root, check=check)


def client(root: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db", registry_uri=f"sqlite:///{root}/mlflow.db")


def aliases(root: Path) -> dict[str, str]:
    return {alias: str(version) for alias, version in client(root).get_registered_model(MODEL).aliases.items()}


def set_aliases(root: Path, **wanted: str | None) -> None:
    """The situation a test starts from: each alias on a version, or removed (None)."""
    registry = client(root)
    for alias, version in wanted.items():
        if version is None:
            if alias in aliases(root):
                registry.delete_registered_model_alias(MODEL, alias)
        else:
            registry.set_registered_model_alias(MODEL, alias, version)


def version_tags(root: Path) -> dict[str, dict[str, str]]:
    return {str(v.version): dict(v.tags) for v in client(root).search_model_versions(f"name='{MODEL}'")}


def listing(folder: Path) -> list[tuple[str, int]]:
    """Files and their modification times: what a command wrote there."""
    return sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) if folder.is_dir() else []


def log_lines(root: Path) -> list[dict]:
    path = root / "monitoring/deployments.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A new loan project with two registered versions (weak v1, better v2) and eight production batches."""
    base = tmp_path_factory.mktemp("deploy")
    root = base / "proj"
    sh([str(BIN / "reprobook"), "new", str(root), "--remote", str(base / "storage")], base)
    set_params(root, **{"data.n_rows": 1500, "model.cv_folds": 2, "model.latency_rows": 20,
                        "model.params.max_iter": 10, "error_analysis.permutation_repeats": 1,
                        "error_analysis.ice_rows": 10})
    reprobook(root, "run")
    set_params(root, **{"model.params.max_iter": 150})
    reprobook(root, "run")
    make_batches(root / "batches", count=8)
    return root


def make_batches(folder: Path, count: int) -> None:
    """batchN.csv (features and an id, no label) and labelsN.csv (id, approved), as production would give them."""
    from reprobook.ml.loans import make_loans

    folder.mkdir()
    for n in range(count):
        frame = make_loans(BATCH_ROWS, seed=1000 + n)
        frame.insert(0, "id", [f"b{n}-{row}" for row in range(len(frame))])
        frame[["id", "approved"]].to_csv(folder / f"labels{n}.csv", index=False)
        frame.drop(columns="approved").to_csv(folder / f"batch{n}.csv", index=False)


def labelled(n: int) -> str:
    return f"batches/batch{n}.csv:batches/labels{n}.csv"


def test_the_pipeline_registered_two_versions(project: Path) -> None:
    """The pipeline's own registry logic: every new version is @challenger; v2 beats v1 on the same test rows."""
    found = aliases(project)
    assert found["challenger"] == "2", found
    assert found["champion"] == "2", f"v2 should beat v1 on the test rows: {found}, {version_tags(project)['2']}"
    assert set(version_tags(project)) == {"1", "2"}


def test_shadow_serves_the_champion_and_compares_both_on_the_same_rows(project: Path) -> None:
    import pandas as pd

    set_aliases(project, champion="1", challenger="2")
    result = reprobook(project, "deploy", "shadow", "batches/batch0.csv", "--labels", "batches/labels0.csv",
                       "--format", "json")
    report = json.loads(result.stdout)
    assert (report["champion"], report["challenger"], report["rows"], report["labelled_rows"]) == ("1", "2", 4000, 4000)
    assert 0.6 < report["agreement"] < 1.0 and 0.5 < report["score_correlation"] < 1.0
    champion, challenger = report["metrics"]["champion"], report["metrics"]["challenger"]
    assert set(champion) == set(challenger) >= {"roc_auc", "accuracy", "log_loss"}
    assert challenger["roc_auc"] > champion["roc_auc"] + 0.01
    assert report["comparison"]["rows"] == 4000 and report["comparison"]["difference"] > 0
    assert report["comparison"]["low"] > -0.01, "a clearly better challenger is shown not worse"
    assert [g["name"] for g in report["gates"]] == ["threshold", "latency", "champion"]
    assert report["decision"] == "gates passed"
    served = pd.read_parquet(project / report["captures"]["champion"])
    shadowed = pd.read_parquet(project / report["captures"]["challenger"])
    assert report["captures"]["challenger"] == "monitoring/captures/batch0.shadow-v2.parquet"
    assert set(served["model_version"]) == {"1"} and set(shadowed["model_version"]) == {"2"}
    assert list(served["id"]) == list(shadowed["id"]) and len(served) == 4000
    assert log_lines(project)[-1]["action"] == "shadow" and log_lines(project)[-1]["decision"] == "gates passed"
    assert version_tags(project)["2"]["reprobook.deployment.shadow"] == "gates passed"

    unlabelled = reprobook(project, "deploy", "shadow", "batches/batch1.csv")  # text: tables, no gates without labels
    assert "same prediction" in unlabelled.stdout and "observed" in unlabelled.stdout, unlabelled.stdout
    assert "promotion gates" not in unlabelled.stdout


def test_canary_ramps_a_better_challenger_up_through_every_step(project: Path) -> None:
    import pandas as pd

    set_aliases(project, champion="1", challenger="2")
    batches = [labelled(1), "batches/batch2.csv", *(labelled(n) for n in range(3, 8))]
    result = reprobook(project, "deploy", "canary", *batches, "--format", "json", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"] == "complete"
    steps = report["steps"]
    assert {s["share"] for s in steps} == {0.05, 0.25, 0.5, 1.0}
    assert [s["decision"] for s in steps if s["decision"] != "hold"] == ["ramp up", "ramp up", "ramp up", "complete"]
    unlabelled = steps[1]
    assert unlabelled["batch"] == "batches/batch2.csv" and unlabelled["decision"] == "hold"
    assert "not evidence of accuracy" in unlabelled["reason"]
    for step in steps:  # the challenger's share of served rows is the step's share
        assert abs(step["challenger_rows"] / step["rows"] - step["share"]) < 0.04, step
        served = pd.read_parquet(project / "monitoring/captures" / f"{Path(step['batch']).stem}.parquet")
        assert (served["model_version"] == "2").sum() == step["challenger_rows"]
    canary_lines = [line for line in log_lines(project) if line["action"] == "canary"][-len(steps):]
    assert [line["decision"] for line in canary_lines] == [s["decision"] for s in steps]
    assert version_tags(project)["2"]["reprobook.deployment.canary"] == "complete"
    assert aliases(project)["champion"] == "1", "a canary serves rows; only a promotion moves @champion"


def test_canary_routes_a_row_the_same_way_at_every_share() -> None:
    import pandas as pd

    from reprobook.monitoring.deployment import route

    ids = pd.Series([f"row-{i}" for i in range(5000)])
    shares = [route(ids, share, seed=42) for share in (0.05, 0.25, 0.5, 1.0)]
    for smaller, larger in zip(shares, shares[1:]):
        assert (smaller <= larger).all(), "a row served by the challenger keeps being served by it"
    assert shares[-1].all() and abs(shares[0].mean() - 0.05) < 0.01
    assert (route(ids, 0.25, seed=42) == shares[1]).all() and not (route(ids, 0.25, seed=7) == shares[1]).all()


def test_canary_rolls_back_a_clearly_worse_challenger(project: Path) -> None:
    set_aliases(project, champion="2", challenger="1")
    result = reprobook(project, "deploy", "canary", *(labelled(n) for n in (1, 3, 4, 5, 6)), check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "canary rolled back" in result.stdout and "roll back" in result.stdout
    last = [line for line in log_lines(project) if line["action"] == "canary"][-1]
    assert last["decision"] == "roll back" and last["versions"] == {"champion": "2", "challenger": "1"}
    assert last["figures"]["comparison"]["high"] < 0 and last["figures"]["comparison"]["difference"] < -0.01
    assert version_tags(project)["1"]["reprobook.deployment.canary"] == "roll back"
    assert aliases(project)["champion"] == "2"


def test_promote_moves_the_champion_keeps_previous_and_rollback_restores_it(project: Path) -> None:
    set_aliases(project, champion="1", challenger="2", previous=None)
    promoted = reprobook(project, "deploy", "promote", "--format", "json")
    report = json.loads(promoted.stdout)
    assert report["promoted"] and report["decision"] == "promoted" and not report["forced"]
    assert report["rows"].startswith("test.parquet")
    assert {k: v for k, v in aliases(project).items() if k != "challenger"} == {"champion": "2", "previous": "1"}
    tags = version_tags(project)
    assert tags["2"]["reprobook.deployment.promote"] == "promoted"
    assert tags["1"]["reprobook.deployment.promote"] == "replaced by version 2"
    assert "every gate passed" in tags["2"]["reprobook.deployment.promote_reason"]

    rolled = reprobook(project, "rollback")
    assert "moved back from version 2 to version 1" in rolled.stdout
    assert aliases(project) == {"champion": "1"}  # no @previous left, and v2 is no challenger any more
    tags = version_tags(project)
    assert tags["2"]["reprobook.deployment.rollback"] == "rolled back"
    assert tags["1"]["reprobook.deployment.rollback"] == "restored"

    again = reprobook(project, "rollback", check=False)
    assert again.returncode == 2 and "no alias 'previous'" in again.stderr and "@champion (v1)" in again.stderr
    entries = json.loads(reprobook(project, "deploy", "log", "--format", "json").stdout)
    assert [e["action"] for e in entries[-2:]] == ["promote", "rollback"]
    assert entries[-1]["versions"] == {"rolled_back": "2", "restored": "1"}
    assert all({"time", "action", "model", "versions", "decision", "reason", "figures"} <= set(e) for e in entries)


def test_promote_refuses_a_worse_challenger_unless_forced(project: Path) -> None:
    set_aliases(project, champion="2", challenger="1", previous=None)
    refused = reprobook(project, "deploy", "promote", check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "refused" in refused.stdout and aliases(project)["champion"] == "2" and "previous" not in aliases(project)
    assert version_tags(project)["1"]["reprobook.deployment.promote"] == "refused"

    forced = reprobook(project, "deploy", "promote", "--force", "--format", "json")
    report = json.loads(forced.stdout)
    assert report["forced"] and report["decision"] == "forced" and "champion:" in report["reason"]
    assert aliases(project)["champion"] == "1" and aliases(project)["previous"] == "2"
    assert log_lines(project)[-1]["figures"]["forced"] is True


def test_bad_input_is_refused_with_a_clear_message_and_changes_nothing(project: Path) -> None:
    import pandas as pd

    set_aliases(project, champion="1", challenger="2", previous=None)
    batches = project / "batches"
    pd.read_csv(batches / "batch0.csv").drop(columns="income").to_csv(batches / "no_income.csv", index=False)
    labels = pd.read_csv(batches / "labels0.csv")
    labels.assign(id="other-" + labels["id"]).to_csv(batches / "other_labels.csv", index=False)
    captures = project / "monitoring/captures"
    before = (aliases(project), version_tags(project), len(log_lines(project)), listing(captures))

    unknown = reprobook(project, "deploy", "shadow", "batches/batch0.csv", "--challenger", "@nope", check=False)
    assert unknown.returncode == 2 and "--challenger" in unknown.stderr and "no alias 'nope'" in unknown.stderr
    assert "@champion (v1)" in unknown.stderr and "@challenger (v2)" in unknown.stderr, unknown.stderr

    missing = reprobook(project, "deploy", "canary", "batches/no_income.csv", check=False)
    assert missing.returncode == 2 and "income" in missing.stderr and "no_income.csv" in missing.stderr

    unmatched = reprobook(project, "deploy", "promote", "--batch", "batches/batch0.csv", "--labels",
                          "batches/other_labels.csv", check=False)
    assert unmatched.returncode == 2 and "none of its 4000 id(s) match" in unmatched.stderr, unmatched.stderr

    after = (aliases(project), version_tags(project), len(log_lines(project)), listing(captures))
    assert after == before, "a refused command leaves the registry, the log and the captures as they were"
