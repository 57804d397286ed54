"""CI for every change, end to end: the script `reprobook new` writes, on a repository with a base branch
and two proposed branches (git worktrees): one change improves the model, one breaks it.

Real git, DVC, papermill and MLflow; the script is the generated ci/reprobook-ci.sh, run with bash as a CI
service would (minus the install: this environment is the installed one). The base's runs are shared by
the two branches through the CI folder, as a CI cache would share them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import BIN, set_params, sh

BASE = {
    "data.n_rows": 1500, "model.cv_folds": 2, "scoping.threshold": 0.7,
    "model.params.max_iter": 10, "model.params.learning_rate": 0.05, "model.params.max_depth": 2,
}
IMPROVED = {"model.params.max_iter": 150, "model.params.learning_rate": 0.1, "model.params.max_depth": 4}
BROKEN = {"model.params.max_iter": 3, "model.params.learning_rate": 0.01, "model.params.max_depth": 1}


def _branch(repo: Path, name: str, params: dict[str, object]) -> Path:
    tree = repo.parent / name
    sh(["git", "worktree", "add", "-q", "-b", name, str(tree), "main"], repo)
    set_params(tree, **params)
    sh(["git", "commit", "-qam", f"{name}: {', '.join(params)}"], tree)
    return tree


def _ci(tree: Path, folder: Path) -> tuple[object, str]:
    report = folder / f"{tree.name}.md"
    done = sh(["bash", "ci/reprobook-ci.sh", "main"], tree, check=False, REPROBOOK_CI_SKIP_INSTALL="1",
              REPROBOOK_CI_DIR=str(folder / "runs"), REPROBOOK_CI_REPORT=str(report))
    return done, report.read_text() if report.is_file() else ""


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    top = tmp_path_factory.mktemp("ci")
    sh([str(BIN / "reprobook"), "new", "shop"], top)
    repo = top / "shop"
    sh(["git", "branch", "-M", "main"], repo)
    set_params(repo, **BASE)
    sh(["git", "commit", "-qam", "base: a small, weak model"], repo)
    return repo


@pytest.fixture(scope="module")
def improved(repository):
    tree = _branch(repository, "improve", IMPROVED)
    return tree, *_ci(tree, repository.parent)


@pytest.fixture(scope="module")
def broken(repository, improved):
    tree = _branch(repository, "broken", BROKEN)
    return tree, *_ci(tree, repository.parent)


def _gate(report: str, metric: str) -> tuple[str, float]:
    """(pass/FAIL, delta) of a metric's row in the report's gates table."""
    row = re.search(rf"^\| {re.escape(metric)} no worse than the base[^|]*\| (\*\*FAIL\*\*|pass) \| .*\(([+-][0-9.]+)\) \|$",
                    report, re.M)
    assert row, f"no gate row for {metric} in:\n{report}"
    return row.group(1).strip("*"), float(row.group(2))


def test_new_project_carries_the_ci_script_and_workflow(repository):
    script = repository / "ci" / "reprobook-ci.sh"
    assert script.stat().st_mode & 0o111, "the CI script is not executable"
    workflow = (repository / ".github" / "workflows" / "reprobook.yml").read_text()
    assert "ci/reprobook-ci.sh" in workflow and "fetch-depth: 0" in workflow and "gh pr comment" in workflow


def test_a_change_that_improves_the_model_passes_and_says_why(improved):
    tree, done, report = improved
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert report.startswith("## reprobook CI: passed")
    # The changed params are named with both values, the metric delta is there and positive.
    assert re.search(r"^\| model\.params\.max_iter \| 10 \| 150 \|$", report, re.M), report
    verdict, delta = _gate(report, "test.roc_auc")
    assert verdict == "pass" and delta > 0.02
    assert "**the modeling runs side by side**" in report and "Δ" in report
    # Both sides ran into CI stores of their own: the branch's own store was never written.
    assert not (tree / "mlflow.db").exists()


def test_a_change_that_breaks_the_model_fails_its_gates(broken):
    tree, done, report = broken
    assert done.returncode == 1, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert report.startswith("## reprobook CI: FAILED")
    assert re.search(r"^\| model\.params\.max_depth \| 2 \| 1 \|$", report, re.M), report
    verdict, delta = _gate(report, "test.roc_auc")
    assert verdict == "FAIL" and delta < -0.005
    assert re.search(r"^\| promotion gate: roc_auc ≥ 0\.7 \| \*\*FAIL\*\* \|", report, re.M), report
    # The base had run for the first branch: its runs were reused, not run again.
    assert "has run before; its runs are reused" in done.stderr


def test_an_unknown_base_is_a_usage_error(repository):
    done = sh([str(BIN / "reprobook"), "ci", "--base", "no-such-branch"], repository, check=False)
    assert done.returncode == 2
    assert "--base no-such-branch: no such commit, branch or tag" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_change_whose_pipeline_fails_fails_with_a_report_that_says_so(repository, improved):
    """No verdict can be reached: exit 1, and the comment says which side failed (the log says why)."""
    tree = _branch(repository, "schema", {"data.columns.credit_rating": "numeric"})  # a column the data lacks
    report = repository.parent / "schema.md"
    done = sh([str(BIN / "reprobook"), "ci", "--base", "main", "--report", str(report)], tree, check=False,
              REPROBOOK_CI_DIR=str(repository.parent / "runs"))
    assert done.returncode == 1
    text = report.read_text()
    assert text.startswith("## reprobook CI: FAILED") and "the pipeline failed on the proposed change" in text
    assert "data.columns: no column 'credit_rating'" in done.stderr  # the pipeline's own message, in the job's log
    assert "Traceback" not in done.stderr
