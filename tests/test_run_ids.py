"""Run ids people can type: `reprobook runs` (table and JSON) and id prefixes on the command line.

A real project copy with a real MLflow SQLite store at its root (where the
command line looks). The runs are written with MlflowClient as the runner tags
them (no pipeline execution); tests/test_reproduce.py repeats the prefix cases
on runs the pipeline recorded. MLflow chooses run ids, so runs that share a
prefix get their id rewritten in the SQLite file right after creation.
"""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
from conftest import BIN, copy_project, sh

from reprobook.tracking import runids, store

COMMIT = "0123456789abcdef0123456789abcdef01234567"
JSON_KEYS = {"run_id", "stage", "status", "start_time", "end_time", "commit", "dirty", "pipeline_run_id",
             "dvc_experiment", "metrics", "reproduction_of", "interactive"}
HEX32 = re.compile(r"[0-9a-f]{32}")


def reprobook(root: Path, *args: str, check: bool = False, **env: str):
    return sh([str(BIN / "reprobook"), *args], root, check=check, **env)


def stage_run(client, experiment_id: str, stage: str, *, pipeline: str | None = None, dirty: bool = False,
              metrics: dict[str, float] | None = None, status: str = "FINISHED") -> str:
    tags = {store.TAG_STAGE: stage, store.TAG_COMMIT: COMMIT, store.TAG_DIRTY: "true" if dirty else "false"}
    if pipeline:
        tags.update({store.TAG_PIPELINE: pipeline, store.TAG_PARENT: pipeline})
    run_id = client.create_run(experiment_id, tags=tags, run_name=stage).info.run_id
    for key, value in (metrics or {}).items():
        client.log_metric(run_id, key, value)
    client.set_terminated(run_id, status)
    return run_id


def run_with_id(client, db: Path, experiment_id: str, run_id: str, stage: str = "modeling") -> str:
    """A finished run whose id we chose: created bare, then renamed in the store before anything is logged."""
    created = client.create_run(experiment_id, run_name="crafted").info.run_id
    with sqlite3.connect(db) as connection:
        connection.execute(
            "UPDATE runs SET run_uuid = ?, artifact_uri = replace(artifact_uri, ?, ?) WHERE run_uuid = ?",
            (run_id, created, run_id, created),
        )
        connection.execute("UPDATE tags SET run_uuid = ? WHERE run_uuid = ?", (run_id, created))
    connection.close()
    client.set_tag(run_id, store.TAG_STAGE, stage)
    client.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    from mlflow import MlflowClient

    root = copy_project(tmp_path_factory.mktemp("run-ids") / "project")
    db = root / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment_id = store.experiment_id(client, "reprobook", root)
    pipeline = client.create_run(experiment_id, tags={store.TAG_STAGE: "pipeline"}, run_name="pipeline").info.run_id
    runs = {"pipeline": pipeline}
    runs["data"] = stage_run(client, experiment_id, "data", pipeline=pipeline,
                             metrics={"skewed_columns": 0, "schema_anomalies": 0})
    runs["modeling"] = stage_run(client, experiment_id, "modeling", pipeline=pipeline, dirty=True,
                                 metrics={"test.roc_auc": 0.91234, "test.f1_macro": 0.8, "timing.fit_s": 1.5})
    runs["error_analysis"] = stage_run(client, experiment_id, "error_analysis", pipeline=pipeline,
                                       metrics={"worst_slice_gap": 0.12}, status="FAILED")
    client.set_terminated(pipeline, "FINISHED")
    twins = [run_with_id(client, db, experiment_id, "abcd" + digit * 28) for digit in "12"]
    crowd = [run_with_id(client, db, experiment_id, "beef" + digit * 28) for digit in "1234567"]
    other = client.create_experiment("someone-else")
    foreign = stage_run(client, other, "modeling", metrics={"test.roc_auc": 0.5})
    return {"root": root, "client": client, "runs": runs, "twins": twins, "crowd": crowd, "foreign": foreign,
            "all": [*runs.values(), *twins, *crowd]}


def absent_prefix(ids: list[str]) -> str:
    return next(p for p in (c * 6 for c in "0123456789abcdef") if not any(i.startswith(p) for i in ids))


def test_short_ids_grow_until_unique():
    ids = ["abcd1234" + "0" * 24, "abcd1234" + "5" * 24, "ffff0000" + "1" * 24]
    assert runids.short_ids(ids) == {ids[0]: "abcd12340", ids[1]: "abcd12345", ids[2]: "ffff0000"}


def test_runs_json_has_full_ids_and_stable_keys(project):
    result = reprobook(project["root"], "runs", "--format", "json", "--limit", "50")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert {run["run_id"] for run in listed} == set(project["all"]), "the project's runs, not another experiment's"
    assert all(set(run) == JSON_KEYS and HEX32.fullmatch(run["run_id"]) for run in listed)
    by_id = {run["run_id"]: run for run in listed}
    modeling = by_id[project["runs"]["modeling"]]
    assert modeling["stage"] == "modeling" and modeling["status"] == "FINISHED"
    assert modeling["commit"] == COMMIT and modeling["dirty"] is True
    assert modeling["pipeline_run_id"] == project["runs"]["pipeline"]
    assert modeling["metrics"]["test.roc_auc"] == 0.91234
    assert datetime.fromisoformat(modeling["start_time"]).tzinfo is not None
    assert by_id[project["runs"]["error_analysis"]]["status"] == "FAILED"
    assert by_id[project["runs"]["pipeline"]]["commit"] is None and by_id[project["runs"]["pipeline"]]["dirty"] is None
    starts = [run["start_time"] for run in listed]
    assert starts == sorted(starts, reverse=True), "newest first"


def test_runs_table_is_one_line_per_run_at_80_columns(project):
    result = reprobook(project["root"], "runs", "--limit", "50", COLUMNS="80")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, result.stdout
    assert not HEX32.search(result.stdout), "short ids, not 32 characters"
    rows = [line for line in lines if re.match(r"[0-9a-f]{8,} ", line)]
    assert len(rows) == len(project["all"]), result.stdout
    short = {row.split()[0] for row in rows}
    assert {run_id[:8] for run_id in project["all"]} == short
    modeling = next(row for row in rows if row.startswith(project["runs"]["modeling"][:8]))
    assert "modeling" in modeling and "FINISHED" in modeling and "012345678" not in modeling
    assert "01234567*" in modeling, "a dirty run's commit is marked"
    assert "test.roc_auc=0.9123" in modeling
    assert "experiment 'reprobook'" in lines[0]


def test_ids_from_the_table_are_accepted_by_compare(project):
    """What `runs` shows (8 characters), and any longer or upper-case prefix, names the run."""
    data, modeling = project["runs"]["data"], project["runs"]["modeling"]
    result = reprobook(project["root"], "compare", data[:8], modeling[:12].upper(), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert [run["run_id"] for run in json.loads(result.stdout)["runs"]] == [data, modeling]


def test_ambiguous_prefix_lists_the_candidates(project):
    result = reprobook(project["root"], "compare", "abcd", project["runs"]["data"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "run id prefix 'abcd' is ambiguous: 2 runs" in result.stderr
    for twin in project["twins"]:
        assert re.search(rf"{twin}\s+modeling\s+FINISHED\s+\d{{4}}-\d\d-\d\d", result.stderr), result.stderr

    crowded = reprobook(project["root"], "reproduce", "beef")
    assert crowded.returncode == 2 and "7 runs" in crowded.stderr
    listed = [line for line in crowded.stderr.splitlines() if HEX32.search(line)]
    assert len(listed) == runids.MAX_CANDIDATES and "and 2 more" in crowded.stderr


def test_unknown_prefix_is_one_line_naming_it(project):
    prefix = absent_prefix(project["all"])
    result = reprobook(project["root"], "reproduce", prefix)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(f"error: no run id starts with '{prefix}' in experiment 'reprobook' of mlflow.db")


def test_too_short_or_not_hex_is_a_usage_error(project):
    short = reprobook(project["root"], "compare", "abc", "not-an-id")
    assert short.returncode == 2 and "'abc' is too short: give at least 4 characters" in short.stderr
    wrong = reprobook(project["root"], "reproduce", "not-an-id")
    assert wrong.returncode == 2 and "'not-an-id' is not a run id" in wrong.stderr


def test_full_id_works_across_experiments_prefix_only_in_the_project(project):
    foreign, data = project["foreign"], project["runs"]["data"]
    full = reprobook(project["root"], "compare", foreign, data, "--format", "json")
    assert full.returncode == 0, full.stderr
    assert [run["run_id"] for run in json.loads(full.stdout)["runs"]] == [foreign, data]
    prefix = reprobook(project["root"], "compare", foreign[:10], data)
    assert prefix.returncode == 2 and f"no run id starts with '{foreign[:10]}'" in prefix.stderr
