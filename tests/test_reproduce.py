"""``reprobook reproduce``: refusals before any work, then real reproductions from a fresh clone.

Real git, real DVC (a local remote in a temporary directory), real MLflow
SQLite. The refusal tests log hand-written records (tests/test_compare.py);
the end-to-end test runs the pipeline twice with different params, commits,
and reproduces both runs from a clone in another directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import BIN, copy_project, set_params, sh
from test_compare import log_stage_run
from test_progress import run_in_pty, terminal_env

from reprobook.reproduce import remote, reproduce
from reprobook.tracking import record
from reprobook.tracking import store as tracking_store

REMOTE_NAME = "storage"


def use_remote(root: Path, url: Path) -> None:
    """Point the repository's default DVC remote at ``url`` (local config: the test's own store)."""
    sh([str(BIN / "dvc"), "remote", "add", "--local", "--force", "--default", REMOTE_NAME, str(url)], root)


def head(root: Path) -> str:
    return sh(["git", "rev-parse", "HEAD"], root).stdout.strip()


def commit_all(root: Path, message: str) -> str:
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", message], root)
    return head(root)


def clone(source: Path, target: Path, remote_url: Path) -> Path:
    """A fresh clone elsewhere: its own (empty) DVC cache, the same remote."""
    sh(["git", "clone", "-q", str(source), str(target)], source.parent)
    use_remote(target, remote_url)
    return target


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store for the refusal tests (an MLflow schema takes seconds to create)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    from mlflow import MlflowClient

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        yield MlflowClient(tracking_uri=uri)


@pytest.fixture(scope="module")
def data_project(tmp_path_factory) -> dict:
    """A project whose raw data is DVC-tracked: version 1 pushed, version 2 committed but never pushed."""
    base = tmp_path_factory.mktemp("data-project")
    root = copy_project(base / "project")
    remote_dir = base / "remote"
    use_remote(root, remote_dir)
    raw = root / "data" / "raw" / "loans.csv"
    raw.write_text("a,b\n1,2\n")
    sh([str(BIN / "dvc"), "add", "data/raw/loans.csv"], root)
    pushed = commit_all(root, "data v1")
    sh([str(BIN / "dvc"), "push"], root)
    raw.write_text("a,b\n1,2\n3,4\n")
    sh([str(BIN / "dvc"), "add", "data/raw/loans.csv"], root)
    unpushed = commit_all(root, "data v2, not pushed")
    return {"root": root, "remote": remote_dir, "pushed": pushed, "unpushed": unpushed}


def no_reproduction_runs(client) -> bool:
    experiment = client.get_experiment_by_name("reprobook")
    return not client.search_runs([experiment.experiment_id], filter_string="tags.`reprobook.stage` = 'reproduction'")


def test_data_never_pushed_is_refused_before_any_work(store, data_project, tmp_path):
    fresh = clone(data_project["root"], tmp_path / "fresh", data_project["remote"])
    run_id = log_stage_run(store, stage="data", commit=data_project["unpushed"],
                           tags={record.TAG_DATA_PUSHED: "false", record.TAG_DATA_PUSH_ERROR: "no remote"})
    with pytest.raises(reproduce.NotReproducible) as refused:
        reproduce.reproduce(fresh, run_id)
    message = str(refused.value)
    assert "data not retrievable: data/raw/loans.csv.dvc" in message
    assert "never pushed" in message and str(data_project["remote"]) in message
    assert no_reproduction_runs(store)


def test_pushed_data_passes_preflight_from_a_fresh_clone(store, data_project, tmp_path):
    fresh = clone(data_project["root"], tmp_path / "fresh", data_project["remote"])
    run_id = log_stage_run(store, stage="data", commit=data_project["pushed"])
    plan = reproduce.preflight(fresh, record.load_record(store, run_id))
    assert list(plan.dvc_files) == ["data/raw/loans.csv.dvc"] and plan.stores.missing == []


def test_data_changed_in_uncommitted_dvc_file_is_checked_too(store, data_project, tmp_path):
    """A dirty run's .dvc files come from its diff: data added but not committed is still found missing."""
    root = tmp_path / "dirty"
    sh(["git", "clone", "-q", str(data_project["root"]), str(root)], tmp_path)
    sh(["git", "reset", "-q", "--hard", data_project["pushed"]], root)
    (root / "data/raw/loans.csv").write_text("a,b\n9,9\n")
    sh([str(BIN / "dvc"), "add", "data/raw/loans.csv"], root)
    diff = sh(["git", "diff", "HEAD", "--binary"], root).stdout
    run_id = log_stage_run(store, stage="data", commit=data_project["pushed"], status=" M data/raw/loans.csv.dvc\n")
    store.log_text(run_id, diff, "record/git.diff")
    with pytest.raises(reproduce.NotReproducible, match="data not retrievable: data/raw/loans.csv.dvc"):
        reproduce.preflight(data_project["root"], record.load_record(store, run_id))  # its cache lacks the new data


def test_missing_commit_is_a_clear_error(store, data_project):
    run_id = log_stage_run(store, commit="c" * 40)
    with pytest.raises(reproduce.NotReproducible, match=f"commit {'c' * 40} is not in the repository"):
        reproduce.reproduce(data_project["root"], run_id)
    assert no_reproduction_runs(store)


def test_refusal_is_one_line_on_the_command_line(store, data_project):
    run_id = log_stage_run(store, commit="c" * 40)
    result = sh([str(BIN / "reprobook"), "reproduce", run_id], data_project["root"], check=False,
                MLFLOW_TRACKING_URI=store.tracking_uri)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith(f"error: cannot reproduce run {run_id}: commit {'c' * 40}")


def test_failed_run_is_refused_with_its_error(store, data_project):
    run_id = log_stage_run(store, commit=data_project["pushed"], error="cell 3: ValueError: bad")
    with pytest.raises(reproduce.NotReproducible, match="did not finish .*ValueError: bad"):
        reproduce.reproduce(data_project["root"], run_id)


def test_pipeline_run_is_not_a_stage_run(store, data_project):
    experiment = store.get_experiment_by_name("reprobook") or store.create_experiment("reprobook")
    experiment_id = experiment.experiment_id if hasattr(experiment, "experiment_id") else experiment
    run_id = store.create_run(experiment_id, tags={tracking_store.TAG_STAGE: "pipeline"}).info.run_id
    with pytest.raises(record.ReprobookError, match="ran no stage"):
        reproduce.reproduce(data_project["root"], run_id)


# --- end to end: two runs with different params, reproduced from a fresh clone ---------------------

SMALL = {"data.n_rows": 1000, "model.cv_folds": 2, "model.latency_rows": 20, "model.params.max_iter": 40}


def assert_in_order(text: str, *parts: str) -> None:
    positions = [text.find(part) for part in parts]
    assert -1 not in positions and positions == sorted(positions), f"missing or out of order: {parts}\n{text}"


def reprobook(root: Path, *args: str, uri: str, check: bool = True):
    """The command line, with a console wide enough that table cells are not folded."""
    return sh([str(BIN / "reprobook"), *args], root, check=check, MLFLOW_TRACKING_URI=uri, COLUMNS="200")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> dict:
    """Run A (committed params) and run B (max_depth changed, plus an uncommitted code comment), pushed.

    ``dvc repro modeling`` rather than ``reprobook run``: the stage runs are the
    same and error analysis is not needed here (tests/test_pipeline_e2e.py
    covers ``reprobook run``).
    """
    base = tmp_path_factory.mktemp("reproduce-e2e")
    root = copy_project(base / "project", commit=False)
    set_params(root, **SMALL)
    sh(["git", "init", "-q", "-b", "main"], root)
    commit_all(root, "small project")
    use_remote(root, base / "remote")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    modeling_runs = "tags.`reprobook.stage` = 'modeling'"
    runs = {}
    for name in "ab":
        if name == "b":
            set_params(root, **{"model.params.max_depth": 2})
            module = root / "src/reprobook/ml/estimators.py"  # a modeling-only dependency
            module.write_text(module.read_text() + "\n# an uncommitted comment: the tree is dirty\n")
        sh([str(BIN / "dvc"), "repro", "modeling"], root, MLFLOW_TRACKING_URI=uri)
        latest = client.search_runs([client.get_experiment_by_name("reprobook").experiment_id], modeling_runs,
                                    order_by=["attributes.start_time DESC"], max_results=1)[0]
        runs[name] = record.load_record(client, latest.info.run_id)
        with pytest.MonkeyPatch.context() as patch:  # this project's store, whatever other fixtures set
            patch.setenv("MLFLOW_TRACKING_URI", uri)
            assert remote.push_after_run(root, [latest.info.run_id]).startswith("data pushed")  # as `reprobook run` does
    fresh = base / "fresh"
    sh(["git", "clone", "-q", str(root), str(fresh)], base)
    use_remote(fresh, base / "remote")
    return {"root": root, "fresh": fresh, "uri": uri, "client": client, **runs}


@pytest.mark.e2e
@pytest.mark.parametrize("which", ["a", "b"])
def test_both_runs_reproduce_from_a_fresh_clone(two_runs, which):
    """A re-runs scoping, data and modeling (--full); B re-runs modeling on splits pulled from the remote.

    A's output goes to pipes: the verdict alone. B's stderr is a pseudo-terminal:
    its steps show as they start, while the verdict goes to the stdout pipe, plain.
    """
    original = two_runs[which]
    full = ["--full"] if which == "a" else []
    if which == "a":
        # Named by the 8-character prefix `reprobook runs` shows.
        result = reprobook(two_runs["fresh"], "reproduce", original.run_id[:8], *full, uri=two_runs["uri"], check=False)
        code, output = result.returncode, result.stdout + result.stderr
        assert "checking out commit" not in output and "\x1b" not in output, "off a terminal: the verdict, no steps"
    else:
        # B's diff edits a module: the record would run code not in the commit, so it needs the user's consent.
        refused = reprobook(two_runs["fresh"], "reproduce", original.run_id, uri=two_runs["uri"], check=False)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
        assert "src/reprobook/ml/estimators.py" in refused.stderr and "--allow-code-changes" in refused.stderr
        assert "model.params.max_depth" not in refused.stderr.split("would run code")[1], "a hyperparameter is not code"
        code, screen, verdict = run_in_pty([str(BIN / "reprobook"), "reproduce", original.run_id,
                                            "--allow-code-changes"], two_runs["fresh"],
                                           terminal_env(MLFLOW_TRACKING_URI=two_runs["uri"], COLUMNS="200"),
                                           stdout_too=False)
        output = verdict + screen
        assert "\x1b" not in verdict and "checking out commit" not in verdict
        assert_in_order(screen, "reading the record of run", "checking that run", "checking out commit",
                        "applying the run's uncommitted diff", "restoring params.yaml from the run's record",
                        "restoring the outputs of scoping, data at the hashes the run recorded",
                        "dvc repro --force --single-item modeling", "running stage 1 of 1: modeling",
                        "comparing the new stage run with the original")
    assert code == 0, output
    assert "REPRODUCED" in output and "NOT REPRODUCED" not in output
    if full:
        assert "every stage up to modeling re-run" in output
    else:
        assert "(scoping, data) restored from DVC at the recorded hashes" in output
    client = two_runs["client"]
    repro = client.search_runs(
        [original.experiment_id],
        filter_string=f"tags.`reprobook.stage` = 'reproduction' and tags.`reprobook.reproduction_of` = '{original.run_id}'",
    )[0]
    assert repro.data.tags["reprobook.verdict"] == "reproduced" and repro.data.metrics["reproduction.reproduced"] == 1
    new = record.load_record(client, repro.data.tags["reprobook.reproduction_stage_run"])
    assert new.tags[record.TAG_REPRODUCTION_OF] == original.run_id
    assert new.metrics == original.metrics and new.prediction_digest == original.prediction_digest
    assert new.inputs == original.inputs and new.params == original.params
    if which == "b":
        assert "DIRTY" in output and "git apply" in output, "a dirty run is flagged and its diff applied"
        assert "restoring params.yaml from the run's record (model.params.max_depth 4 -> 2)" in screen
        applying = next(line for line in screen.splitlines() if "applying the run's uncommitted diff (git apply):" in line)
        assert "src/reprobook/ml/estimators.py" in applying
        assert new.params["model.params.max_depth"] == "2"


@pytest.mark.e2e
def test_compare_shows_the_differing_param_and_metric_delta(two_runs):
    a, b = two_runs["a"], two_runs["b"]
    markdown = reprobook(two_runs["root"], "compare", a.run_id, b.run_id, "--format", "markdown",
                         uri=two_runs["uri"]).stdout
    assert "| model.params.max_depth | 4 | 2 |" in markdown
    delta = b.metrics["test.roc_auc"] - a.metrics["test.roc_auc"]
    assert f"{delta:+.6g}" in markdown
    payload = json.loads(reprobook(two_runs["root"], "compare", a.run_id, b.run_id, "--format", "json",
                                   uri=two_runs["uri"]).stdout)
    assert [row["key"] for row in payload["params"]] == ["model.params.max_depth"]
    assert "src/reprobook/ml/estimators.py" in json.dumps(payload["code"]), "B's uncommitted code change is shown"


@pytest.mark.e2e
def test_recorded_runs_are_named_by_the_prefix_runs_shows(two_runs):
    """`runs` shows 8 characters and compare takes them (reproduce takes them in the test above)."""
    a, b = two_runs["a"], two_runs["b"]
    listed = reprobook(two_runs["root"], "runs", "--stage", "modeling", uri=two_runs["uri"]).stdout
    assert a.run_id[:8] in listed and b.run_id[:8] in listed and a.run_id not in listed
    payload = json.loads(reprobook(two_runs["root"], "compare", a.run_id[:8], b.run_id[:8], "--format", "json",
                                   uri=two_runs["uri"]).stdout)
    assert [run["run_id"] for run in payload["runs"]] == [a.run_id, b.run_id]
    assert [row["key"] for row in payload["params"]] == ["model.params.max_depth"]
    # After the reproductions above: their stage runs are marked, not shown as the user's dirty runs.
    rows = json.loads(reprobook(two_runs["root"], "runs", "--format", "json", "--limit", "50", uri=two_runs["uri"]).stdout)
    reproduced = [row for row in rows if row["reproduction_of"] and row["stage"] == "modeling"]
    assert {row["reproduction_of"] for row in reproduced} == {a.run_id, b.run_id}
    table = reprobook(two_runs["root"], "runs", "--limit", "50", uri=two_runs["uri"]).stdout
    repro_lines = [line for line in table.splitlines() if "(repro)" in line]
    assert len(repro_lines) >= 2 and not any("*" in line for line in repro_lines), table
