"""Reading run records back and comparing them, on a real MLflow SQLite store.

The runs are written by hand following the record contract (docs/run-record.md)
so that these tests need no pipeline execution: tags, params, metrics with
timings, and the ``record/`` artifacts.
"""

from __future__ import annotations

import functools
import json

import pytest

from reprobook.reproduce import compare, reproduce
from reprobook.tracking import environment, record, store

PACKAGES = {"mlflow": "3.17.2", "scikit-learn": "1.9.0", "numpy": "2.3.0"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """One store for the module: creating an MLflow SQLite schema takes seconds."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}")


def log_stage_run(
    client,
    *,
    stage: str = "modeling",
    params: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
    inputs: dict[str, str] | None = None,
    packages: dict[str, str] | None = None,
    commit: str = "a" * 40,
    status: str = "",
    digest: str | None = "d" * 64,
    tags: dict[str, str] | None = None,
    error: str | None = None,
) -> str:
    """A finished (or failed) stage run with the record ``runner.record_run`` writes."""
    experiment = client.get_experiment_by_name("reprobook")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("reprobook")
    run_tags = {store.TAG_STAGE: stage, store.TAG_COMMIT: commit, store.TAG_DIRTY: "true" if status else "false",
                **(tags or {})}
    if digest:
        run_tags[store.TAG_PREDICTION_DIGEST] = digest
    if error:
        run_tags[store.TAG_ERROR] = error
    run_id = client.create_run(experiment_id, tags=run_tags, run_name=stage).info.run_id
    for key, value in (params or {"model.params.max_depth": "4", "seed.model.seed": "42"}).items():
        client.log_param(run_id, key, value)
    for key, value in {**(metrics or {"test.roc_auc": 0.9, "cv.roc_auc_mean": 0.88}), "timing.fit_s": 1.5}.items():
        client.log_metric(run_id, key, value)
    env = {"python": "3.11.9", "implementation": "CPython", "platform": "Linux", "machine": "x86_64",
           "packages": packages or PACKAGES, "variables": {}}
    files = {
        "params.yaml": "model:\n  seed: 42\n",
        "environment.json": json.dumps(env),
        "inputs.json": json.dumps({p: {"md5": m, "size": 1} for p, m in (inputs or {"data/processed/train.parquet": "1" * 32}).items()}),
        "code.json": json.dumps({"commit": commit, "dirty": bool(status), "status": status}),
        "seeds.json": json.dumps({"model.seed": 42}),
    }
    for name, text in files.items():
        client.log_text(run_id, text, f"record/{name}")
    client.set_terminated(run_id, "FAILED" if error else "FINISHED")
    return run_id


def test_record_reads_tags_params_metrics_and_files(client):
    run_id = log_stage_run(client)
    loaded = record.load_record(client, run_id)
    assert loaded.stage == "modeling" and loaded.commit == "a" * 40 and not loaded.dirty
    assert loaded.metrics == {"test.roc_auc": 0.9, "cv.roc_auc_mean": 0.88}
    assert loaded.timings == {"timing.fit_s": 1.5}, "timings vary run to run and are kept apart"
    assert loaded.environment["packages"]["mlflow"] == "3.17.2"
    assert loaded.inputs["data/processed/train.parquet"]["md5"] == "1" * 32
    assert loaded.files["params.yaml"].startswith("model:")


def test_unknown_run_is_a_clear_error(client):
    with pytest.raises(record.ReprobookError, match="not found in the MLflow store"):
        record.load_record(client, "0" * 32)


def test_experiment_baseline_is_the_commit_to_reproduce(client):
    run_id = log_stage_run(client, tags={store.TAG_DVC_BASELINE: "b" * 40, store.TAG_DVC_EXP: "exp-1"})
    assert record.load_record(client, run_id).commit == "b" * 40


def test_params_lock_and_reports_are_not_code_changes(client):
    status = " M params.yaml\n M dvc.lock\n M reports/modeling/metrics.json\n M src/reprobook/modeling.py\n?? notes.py\n"
    loaded = record.load_record(client, log_stage_run(client, status=status))
    assert record.code_changes(loaded) == ["src/reprobook/modeling.py", "notes.py"]
    assert record.untracked_files(loaded) == ["notes.py"]


def test_compare_shows_differing_param_data_and_metric_delta(client):
    first = record.load_record(client, log_stage_run(client))
    second = record.load_record(client, log_stage_run(
        client,
        params={"model.params.max_depth": "6", "seed.model.seed": "42"},
        metrics={"test.roc_auc": 0.92, "cv.roc_auc_mean": 0.88},
        inputs={"data/processed/train.parquet": "2" * 32},
        digest="e" * 64,
    ))
    comparison = compare.compare_records([first, second])
    assert [(row.key, row.values) for row in comparison.params] == [("model.params.max_depth", ["4", "6"])]
    assert {row.key for row in comparison.data} == {"data/processed/train.parquet", "prediction digest"}
    assert comparison.deltas["test.roc_auc"][0] == pytest.approx(0.02)
    assert comparison.deltas["cv.roc_auc_mean"] == [0.0]
    markdown = compare.to_markdown(comparison)
    assert "| model.params.max_depth | 4 | 6 |" in markdown and "+0.02" in markdown
    payload = json.loads(compare.to_json(comparison))
    assert payload["params"][0]["values"] == ["4", "6"] and "timing.fit_s" not in json.dumps(payload["metrics"])


def test_compare_shows_the_serving_contract_between_modeling_runs(client):
    """Input columns added (callers must send them) and removed, from each run's inputs tag."""
    from rich.console import Console

    from reprobook.tracking.contract import TAG_INPUTS

    first = record.load_record(client, log_stage_run(client, tags={TAG_INPUTS: json.dumps(["id", "age", "income"])}))
    same = record.load_record(client, log_stage_run(client, tags={TAG_INPUTS: json.dumps(["income", "age", "id"])}))
    other = record.load_record(client, log_stage_run(
        client, tags={TAG_INPUTS: json.dumps(["age", "income", "timestamp_ms"])}))
    data = record.load_record(client, log_stage_run(client, stage="data", digest=None))
    comparison = compare.compare_records([first, same, other, data])
    span = f"{first.run_id[:8]}..{other.run_id[:8]}"
    assert comparison.serving_contract == {span: {"added": ["timestamp_ms"], "removed": ["id"]}}, \
        "same columns in another order, and a run without a model, show no change"
    assert f"| {span} | +timestamp_ms −id |" in compare.to_markdown(comparison)
    assert json.loads(compare.to_json(comparison))["serving_contract"][span]["added"] == ["timestamp_ms"]
    console = Console(record=True, width=200)
    console.print(compare.to_rich(comparison))
    text = console.export_text()
    assert "serving contract" in text and "+timestamp_ms −id" in text
    assert compare.compare_records([first, same]).serving_contract == {}


def test_compare_runs_of_different_stages(client):
    data = record.load_record(client, log_stage_run(client, stage="data", params={"data.seed": "42"},
                                                      metrics={"rows": 1000.0}, digest=None))
    model = record.load_record(client, log_stage_run(client))
    comparison = compare.compare_records([data, model])
    assert {row.key for row in comparison.params} == {"data.seed", "model.params.max_depth", "seed.model.seed"}
    assert comparison.deltas["rows"] == [None] and comparison.deltas["test.roc_auc"] == [None]
    compare.to_rich(comparison)  # renders with absent fields


def test_changed_package_version_is_an_environment_difference(client):
    then = record.load_record(client, log_stage_run(client))
    now = record.load_record(client, log_stage_run(client, packages={**PACKAGES, "scikit-learn": "1.9.1"}))
    rows = compare.compare_records([then, now]).environment
    assert [(row.key, row.values) for row in rows] == [("package scikit-learn", ["1.9.0", "1.9.1"])]
    assert environment.package_differences(then.environment["packages"], now.environment["packages"]) == [
        {"package": "scikit-learn", "then": "1.9.0", "now": "1.9.1"}
    ]
    checks = reproduce.judge(then, now, [], rtol=0.0, atol=0.0)
    assert any(c.name == "  package scikit-learn" and c.ok is None for c in checks), "listed, informational"
    assert all(c.ok is not False for c in checks), "an environment difference alone does not fail the verdict"


def test_verdict_fails_on_metric_digest_or_data_difference(client):
    original = record.load_record(client, log_stage_run(client))
    same = record.load_record(client, log_stage_run(client))
    assert all(c.ok is not False for c in reproduce.judge(original, same, [], 0.0, 0.0))
    drifted = record.load_record(client, log_stage_run(
        client, metrics={"test.roc_auc": 0.9000001, "cv.roc_auc_mean": 0.88}, digest="f" * 64,
        inputs={"data/processed/train.parquet": "3" * 32},
    ))
    failed = {c.name.strip() for c in reproduce.judge(original, drifted, [], 0.0, 0.0) if c.ok is False}
    assert {"quality metrics", "test.roc_auc", "prediction digest", "data digests (inputs.json)"} <= failed
    tolerant = {c.name.strip() for c in reproduce.judge(original, drifted, [], 1e-6, 0.0) if c.ok is False}
    assert "quality metrics" not in tolerant


def test_dirty_run_is_flagged(client):
    dirty = record.load_record(client, log_stage_run(client, status=" M src/reprobook/modeling.py\n"))
    checks = reproduce.judge(dirty, dirty, ["its uncommitted diff was applied with `git apply` in the checkout"], 0.0, 0.0)
    code = next(c for c in checks if c.name == "code")
    assert "DIRTY" in code.note and "git apply" in code.note


def test_a_unique_prefix_names_the_run_and_a_shared_one_lists_both(client):
    """The resolver on this store: a prefix finds the run; with a 1-character minimum, runs soon share one."""
    from reprobook.errors import UsageError
    from reprobook.tracking import runids

    run_id = log_stage_run(client)
    experiment_id = client.get_experiment_by_name("reprobook").experiment_id
    resolve = functools.partial(runids.resolve_in, client, experiment_ids=[experiment_id], where="this store")
    assert resolve(run_id[:6]) == resolve(run_id[:8].upper()) == resolve(run_id) == run_id
    assert record.load_record(client, resolve(run_id[:6])).metrics["test.roc_auc"] == 0.9
    first: dict[str, str] = {}
    while True:  # 17 runs at most: only 16 hex digits
        new = client.create_run(experiment_id, tags={store.TAG_STAGE: "data"}).info.run_id
        if new[0] in first:
            break
        first[new[0]] = new
    with pytest.raises(UsageError, match=f"'{new[0]}' is ambiguous") as ambiguous:
        resolve(new[0], min_length=1)
    assert first[new[0]] in str(ambiguous.value) and new in str(ambiguous.value)
    unused = next(c for c in "0123456789abcdef" if not client.search_runs(
        [experiment_id], f"attributes.run_id LIKE '{c * 4}%'"))
    with pytest.raises(UsageError, match=f"no run id starts with '{unused * 4}' in this store"):
        resolve(unused * 4)


def test_a_recorded_commit_is_never_an_option_to_git(tmp_path):
    """A store that says a run's commit is `--output=FILE` must not make git truncate FILE."""
    import subprocess

    from reprobook.reproduce.compare import changed_files
    from reprobook.tracking.gitinfo import is_commit_id

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    head = "0" * 40
    assert changed_files(tmp_path, f"--output={victim}", head) is None
    assert changed_files(tmp_path, head, f"--output={victim}") is None
    assert victim.read_text() == "precious\n"
    assert is_commit_id("a" * 40) and not is_commit_id("A" * 40) and not is_commit_id("--help") and not is_commit_id(None)
