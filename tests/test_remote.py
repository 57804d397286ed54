"""The DVC remote: pushing a run's data, tagging the runs, and the default location.

Real DVC and a real MLflow SQLite store; remotes are temporary directories.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BIN, sh
from test_compare import log_stage_run

from reprobook.reproduce import remote
from reprobook.tracking import record


def dvc_repo(root: Path) -> Path:
    """A bare git + DVC repository with one tracked data file (no project config)."""
    root.mkdir(parents=True)
    sh(["git", "init", "-q", "-b", "main"], root)
    sh([str(BIN / "dvc"), "init", "-q"], root)
    (root / "data.csv").write_text("a,b\n1,2\n")
    sh([str(BIN / "dvc"), "add", "data.csv"], root)
    return root


@pytest.fixture
def store(tmp_path: Path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_push_after_run_pushes_and_tags_the_runs(tmp_path, store):
    root = dvc_repo(tmp_path / "repo")
    target = tmp_path / "remote"
    sh([str(BIN / "dvc"), "remote", "add", "-d", "storage", str(target)], root)
    run_ids = [log_stage_run(store, stage="data"), log_stage_run(store, stage="modeling")]
    summary = remote.push_after_run(root, run_ids)
    assert summary == f"data pushed to the DVC remote {target}"
    assert any(path.is_file() for path in (target / "files" / "md5").rglob("*"))
    for run_id in run_ids:
        tags = store.get_run(run_id).data.tags
        assert tags[record.TAG_DATA_PUSHED] == "true" and tags[record.TAG_DATA_REMOTE] == str(target)


def test_run_without_remote_says_its_data_was_not_pushed(tmp_path, store):
    root = dvc_repo(tmp_path / "repo")
    run_id = log_stage_run(store, stage="data")
    summary = remote.push_after_run(root, [run_id])
    assert summary.startswith("data NOT pushed (no default DVC remote configured")
    tags = store.get_run(run_id).data.tags
    assert tags[record.TAG_DATA_PUSHED] == "false" and tags[record.TAG_DATA_REMOTE] == remote.NO_REMOTE
    assert "no default DVC remote" in tags[record.TAG_DATA_PUSH_ERROR]


def test_failed_push_is_recorded_with_dvcs_reason(tmp_path, store):
    root = dvc_repo(tmp_path / "repo")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the remote should be")
    sh([str(BIN / "dvc"), "remote", "add", "-d", "storage", str(blocker)], root)
    run_id = log_stage_run(store, stage="data")
    assert remote.push_after_run(root, [run_id]).startswith("data NOT pushed")
    tags = store.get_run(run_id).data.tags
    assert tags[record.TAG_DATA_PUSHED] == "false" and tags[record.TAG_DATA_PUSH_ERROR]


def test_default_remote_under_the_users_cache_is_shared_by_clones(tmp_path, monkeypatch):
    """``~`` in .dvc/config is expanded per user, so every clone on the machine reaches one store."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    first = dvc_repo(tmp_path / "first")
    sh([str(BIN / "dvc"), "remote", "add", "-d", remote.DEFAULT_REMOTE_NAME, remote.DEFAULT_REMOTE_URL], first)
    sh(["git", "add", "-A"], first)
    sh(["git", "commit", "-qm", "data"], first)
    second = tmp_path / "elsewhere" / "second"
    sh(["git", "clone", "-q", str(first), str(second)], tmp_path)
    expected = str(tmp_path / "home" / ".cache" / "reprobook" / "dvc-storage")
    assert remote.remote_url(first) == remote.remote_url(second) == expected
    assert "~/.cache/reprobook/dvc-storage" in (second / ".dvc" / "config").read_text()
