"""The DVC remote: push the data a run used, and tell whether data is retrievable.

The reference project's default remote is a plain directory in the user's cache
(``~/.cache/reprobook/dvc-storage``, configured in ``.dvc/config``; DVC expands
``~``), so every clone on the same machine reaches the same content-addressed
store with no set-up. A run records whether its data was pushed
(``reprobook.data_pushed``) and where (``reprobook.data_remote``).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from reprobook.tracking import secrets, store
from reprobook.tracking.record import (
    TAG_DATA_PUSH_ERROR,
    TAG_DATA_PUSHED,
    TAG_DATA_REMOTE,
)

DEFAULT_REMOTE_NAME = "storage"
from reprobook.project.paths import DEFAULT_REMOTE_URL  # noqa: E402,F401  (re-exported for callers)
NO_REMOTE = "none"


@dataclass(frozen=True)
class PushResult:
    ok: bool
    remote: str
    error: str | None = None


@dataclass(frozen=True)
class DataStores:
    """Where DVC objects can come from: the local cache and the default remote (if any)."""

    cache_dir: str
    remote_url: str
    missing: list[str]


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    from reprobook.execution.pipeline import dvc_executable

    return subprocess.run([dvc_executable(), *args], cwd=root, capture_output=True, text=True)


def remote_url(root: Path) -> str:
    """URL of the default remote (``~`` expanded), or ``none``."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return _default_remote_url(repo)


def _default_remote_url(repo) -> str:
    name = repo.config["core"].get("remote")
    if not name or name not in repo.config["remote"]:
        return NO_REMOTE
    return str(repo.config["remote"][name]["url"])


def push(root: Path) -> PushResult:
    """``dvc push`` everything the workspace's stages and .dvc files point to."""
    url = remote_url(root)
    if url == NO_REMOTE:
        return PushResult(False, NO_REMOTE, "no default DVC remote configured (dvc remote add -d NAME URL)")
    completed = _dvc(root, "push", "--quiet")
    if completed.returncode != 0:
        lines = (completed.stderr or completed.stdout).strip().splitlines()
        return PushResult(False, url, lines[-1] if lines else f"dvc push exited {completed.returncode}")
    return PushResult(True, url)


def tag_runs(client, run_ids: list[str], result: PushResult) -> None:
    for run_id in run_ids:
        client.set_tag(run_id, TAG_DATA_PUSHED, str(result.ok).lower())
        client.set_tag(run_id, TAG_DATA_REMOTE, secrets.redact_text(result.remote))
        if result.error:
            client.set_tag(run_id, TAG_DATA_PUSH_ERROR, secrets.redact_text(result.error)[:5000])


def push_after_run(root: Path, run_ids: list[str]) -> str:
    """Push the data a pipeline execution used, tag its runs, and say what happened (one line)."""
    result = push(root)
    tag_runs(store.client(root), run_ids, result)
    if result.ok:
        return f"data pushed to the DVC remote {result.remote}"
    return f"data NOT pushed ({result.error}); these runs are reproducible only where the DVC cache has their data"


def _tree_entries(odb, oid: str) -> list[str]:
    """The object ids listed in a ``.dir`` manifest."""
    return [entry["md5"] for entry in json.loads(odb.fs.cat_file(odb.oid_to_path(oid)))]


def locate(root: Path, oids: list[str]) -> DataStores:
    """Which of ``oids`` (DVC md5s, ``.dir`` included) neither the cache nor the default remote holds."""
    from dvc.config import NoRemoteError
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        cache = repo.cache.local
        try:
            remote = repo.cloud.get_remote_odb(command="reproduce")
            url = _default_remote_url(repo)
        except NoRemoteError:
            remote, url = None, NO_REMOTE
        stores = [odb for odb in (cache, remote) if odb is not None]
        missing: list[str] = []
        for oid in oids:
            holder = next((odb for odb in stores if odb.exists(oid)), None)
            if holder is None:
                missing.append(oid)
            elif oid.endswith(".dir"):
                missing.extend(e for e in _tree_entries(holder, oid) if not any(odb.exists(e) for odb in stores))
        return DataStores(cache_dir=str(repo.cache.local_cache_dir), remote_url=url, missing=missing)
