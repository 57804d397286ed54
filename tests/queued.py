"""Queued DVC experiments run by parallel workers, and the check that the tracking store lost none of them.

Shared by the server test (eight experiments, four workers, PostgreSQL) and the
SQLite test (eight experiments, two workers): what "nothing lost" means is the
same for both stores.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

from conftest import BIN, sh, tool_env

# Cheap experiments: the real modeling stage (a run, metrics, a registered version, the promotion gate)
# with fewer folds, trees and latency rows, up to it only (`dvc exp run modeling`): what an experiment
# writes to the store is what matters here, and error analysis would double the suite's time.
EXPERIMENT_PARAMS = ["-S", "model.cv_folds=2", "-S", "model.latency_rows=20", "-S", "model.params.max_iter=30"]
EXPERIMENT_STAGES = ("pipeline", "modeling")
DEPTHS = [2, 3, 5, 6, 7, 8, 9, 10]


def queue_and_run(root: Path, workers: int, depths: list[int] = DEPTHS, timeout_s: float = 540, **env: str) -> str:
    """Queue one experiment per depth, run them with ``workers`` workers, wait; the queue's final status."""
    for depth in depths:
        sh([str(BIN / "dvc"), "exp", "run", "--queue", "modeling", "-S", f"model.params.max_depth={depth}",
            *EXPERIMENT_PARAMS], root, **env)
    # Its workers are daemons that inherit the command's output: a pipe would stay open until they exit.
    subprocess.run([str(BIN / "dvc"), "queue", "start", "-j", str(workers)], cwd=root, env=tool_env(**env),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=120)
    deadline = time.time() + timeout_s
    status = ""
    while time.time() < deadline:
        status = sh([str(BIN / "dvc"), "queue", "status"], root, **env).stdout
        if "Queued" not in status and "Running" not in status:
            return status
        time.sleep(3)
    raise AssertionError(f"queued experiments still running after {timeout_s:.0f} s:\n{status}")


def assert_nothing_lost(client, experiment_id: str, registered_name: str, depths: list[int] = DEPTHS) -> None:
    """Every experiment: one parent named after it, its stage runs once each under it, its params and
    metrics, one model version."""
    runs = client.search_runs([experiment_id], max_results=5000)
    by_name: dict[str, list] = {}
    for run in runs:
        name = run.data.tags.get("reprobook.dvc_exp_name")
        if name:
            by_name.setdefault(name, []).append(run)
    assert len(by_name) == len(depths), f"experiments in the store: {sorted(by_name)}"
    modeling_runs = []
    recorded = []
    for name, group in by_name.items():
        stages = Counter(run.data.tags.get("reprobook.stage") for run in group)
        assert stages == Counter(dict.fromkeys(EXPERIMENT_STAGES, 1)), f"{name}: {dict(stages)}"
        parent = next(run for run in group if run.data.tags["reprobook.stage"] == "pipeline")
        assert parent.info.status == "FINISHED" and parent.info.run_name == name, f"{name}: parent {parent.info}"
        for run in group:
            if run is parent:
                continue
            assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent.info.run_id, name
            assert run.data.metrics, f"{name}: {run.data.tags['reprobook.stage']} has no metrics"
        modeling = next(run for run in group if run.data.tags["reprobook.stage"] == "modeling")
        assert modeling.data.params["model.cv_folds"] == "2" and "test.roc_auc" in modeling.data.metrics
        recorded.append(int(modeling.data.params["model.params.max_depth"]))
        modeling_runs.append(modeling.info.run_id)
    assert sorted(recorded) == sorted(depths), "each experiment's own params were recorded"
    versions = client.search_model_versions(f"name = '{registered_name}'", max_results=1000)
    registered = Counter(version.run_id for version in versions)
    assert all(registered[run_id] == 1 for run_id in modeling_runs), \
        f"model versions per experiment's modeling run: {[registered[r] for r in modeling_runs]}"
    assert len({version.version for version in versions}) == len(versions), "version numbers are unique"
