"""Mistakes found before any stage runs: one line each, exit 1, nothing run, nothing deleted.

Driven through the installed console script on a real project copy; the
store faults use copies of the store (read-only, random bytes) and an
unreachable server URI.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import BIN, copy_project, sh


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("preflight") / "project")


def refused(root: Path, *args: str, **env: str) -> str:
    before = {p: p.stat().st_mtime_ns for p in (root / "reports").rglob("*") if p.is_file()}
    started = time.time()
    result = sh([str(BIN / "reprobook"), "run", *args], root, check=False, **env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")
    assert time.time() - started < 60
    after = {p: p.stat().st_mtime_ns for p in (root / "reports").rglob("*") if p.is_file()}
    assert after == before, "a refused run must not touch the outputs"
    return result.stderr


CASES = {
    "model.params.max_depth=oops": "max_depth",
    "model.params.max_dept=3": "did you mean 'max_depth'",
    "scoping.threshold=1.5": "scoping.threshold: 1.5 can never be met by roc_auc",
    "model.estimator=sklearn.linear_model.LinearRegression": "'roc_auc' is a classification metric but model.estimator",
    "model.estimator=sklearn.ensemble.NoSuchForest": "model.estimator",
    "model.registered_name=a/b": "model.registered_name: 'a/b'",
    "error_analysis.sensitive_features=[nosuch]": "error_analysis.sensitive_features: no column 'nosuch'",
    "data.drop_columns=[nosuch]": "data.drop_columns: no column 'nosuch'",
    "data.target=approved": None,  # valid: the control case is below
    "scoping.primary_metric=r2": "'r2' is a regression metric but model.estimator",
    "data.numeric_text=sometimes": "data.numeric_text",
    "model.trusted_types=[not a type]": "model.trusted_types",
    "model.cv_folds=1": "model.cv_folds",
    "data.test_size=1.5": "data.test_size",
    "data.source=ftp:loans.csv": "data.source",
    "model.latency_rows=5": "model.latency_rows",
    "error_analysis.top_k=0": "error_analysis.top_k",
}


@pytest.mark.parametrize("override", [k for k, v in CASES.items() if v])
def test_a_mistake_in_params_is_refused_before_anything_runs(project, override):
    message = refused(project, "-S", override)
    assert CASES[override] in message and "nothing was run" in message
    assert len(message.strip().splitlines()) == 1
    assert not (project / "mlflow.db").exists()


def test_several_mistakes_are_listed_together(project):
    message = refused(project, "-S", "scoping.threshold=7", "-S", "model.registered_name=a:b")
    assert "2 problems" in message and "scoping.threshold" in message and "model.registered_name" in message


def test_the_target_in_a_feature_list_is_refused(project):
    message = refused(project, "-S", "data.target=approved", "-S", "error_analysis.sensitive_features=[approved]")
    assert "is the target" in message


def test_an_empty_params_file_is_refused(project):
    params = project / "params.yaml"
    saved = params.read_bytes()
    try:
        params.write_text("# nothing here\n")
        message = refused(project)
        assert "params.yaml: empty" in message
    finally:
        params.write_bytes(saved)


def test_a_read_only_store_is_refused(project):
    store = project / "mlflow.db"
    store.write_bytes(b"SQLite format 3\x00" + bytes(84))
    os.chmod(store, 0o444)
    try:
        if os.access(store, os.W_OK):
            pytest.skip("running as a user that can write read-only files")
        assert "read-only" in refused(project)
    finally:
        os.chmod(store, 0o644)
        store.unlink()


def test_a_corrupt_store_is_refused(project):
    store = project / "mlflow.db"
    store.write_bytes(os.urandom(4096))
    try:
        assert "not an SQLite database" in refused(project)
    finally:
        store.unlink()


def test_an_unreachable_server_is_refused_within_seconds(project):
    message = refused(project, MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    assert "tracking store http://127.0.0.1:9" in message and "unreachable" in message


def test_a_csv_repeating_the_target_column_is_refused_before_anything_runs(project):
    data = project / "dup.csv"
    data.write_text("age,approved,income,approved\n30,1,100.0,1\n40,0,200.0,0\n")
    try:
        message = refused(project, "-S", "data.source=csv:dup.csv", "-S", "data.target=approved")
        assert "repeats column 'approved'" in message and "nothing was run" in message
    finally:
        data.unlink()
