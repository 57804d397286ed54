"""Tracking URI resolution: every workspace logs to the home project's store."""

from pathlib import Path

from reprobook.project.paths import home_root
from reprobook.tracking import store


def test_default_uri_is_absolute_sqlite_in_project(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert store.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_dvc_experiment_workspace_maps_to_home(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    workspace = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc123"
    workspace.mkdir(parents=True)
    assert home_root(workspace) == tmp_path.resolve()
    assert store.tracking_uri(workspace) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_relative_sqlite_uri_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///store/runs.db")
    assert store.tracking_uri(tmp_path) == f"sqlite:///{(tmp_path / 'store/runs.db').resolve()}"


def test_server_uri_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert store.tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_file_digest_equals_md5(tmp_path):
    import hashlib

    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 3_000_000)
    assert store.file_digest(path) == hashlib.md5(b"x" * 3_000_000).hexdigest()


def test_metrics_flattened_numeric_only():
    flat = store.metrics_for_mlflow({"test": {"auc": 0.9, "ok": True}, "name": "x", "nan": float("nan")})
    assert flat == {"test.auc": 0.9, "test.ok": 1.0}


def test_context_tags_from_environment():
    tags = store.context_tags({"REPROBOOK_PARENT_RUN_ID": "abc", "DVC_EXP_NAME": "exp-1"})
    assert tags[store.TAG_PARENT] == "abc" and tags[store.TAG_PIPELINE] == "abc"
    assert tags[store.TAG_DVC_EXP] == "exp-1"
