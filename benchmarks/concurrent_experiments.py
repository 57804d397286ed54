"""Eight queued DVC experiments at once: the shared server (PostgreSQL) against the default SQLite store.

Run on demand, never in the timed tests. For each configuration a clean
clone of the committed project runs the pipeline once (``reprobook run``),
then queues eight experiments (``model.params.max_depth`` 2..10, with the
cheaper folds and trees of the tests) and runs them with ``dvc queue start
-j WORKERS``. Measured: wall time from ``queue start`` until the queue is
empty, and what the store holds afterwards against what eight complete
experiments must leave (a parent run, a modeling and an error-analysis run
each FINISHED with metrics, one model version per modeling run): runs lost
and runs duplicated.

Configurations: SQLite with 2 and 4 workers; ``reprobook server`` (PostgreSQL
from pgserver, artifacts in a directory) with 4 workers.

Results go to benchmarks/results/concurrent_experiments.{json,md}.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEPTHS = [2, 3, 5, 6, 7, 8, 9, 10]
CHEAP = ["-S", "model.cv_folds=2", "-S", "model.latency_rows=20", "-S", "model.params.max_iter=30"]
STAGES_PER_EXPERIMENT = ("pipeline", "modeling", "error_analysis")


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "REPROBOOK_"))}
    base.update(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", DVC_NO_ANALYTICS="1", MPLBACKEND="Agg",
                GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@localhost",
                GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@localhost", **extra)
    return base


def run(args: list[str], cwd: Path, **extra: str) -> str:
    done = subprocess.run(args, cwd=cwd, env=env(**extra), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def project(base: Path, **extra: str) -> Path:
    root = base / "project"
    run(["git", "clone", "-q", str(ROOT), str(root)], base)
    run([str(BIN / "dvc"), "remote", "add", "--local", "-f", "-d", "storage", str(base / "remote")], root)
    run([str(BIN / "reprobook"), "run"], root, **extra)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "first run", "--allow-empty"], root)
    return root


def queue(root: Path, workers: int, **extra: str) -> float:
    for depth in DEPTHS:
        run([str(BIN / "dvc"), "exp", "run", "--queue", "-S", f"model.params.max_depth={depth}", *CHEAP], root, **extra)
    started = time.perf_counter()
    subprocess.run([str(BIN / "dvc"), "queue", "start", "-j", str(workers)], cwd=root, env=env(**extra),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    while True:
        status = run([str(BIN / "dvc"), "queue", "status"], root, **extra)
        if "Queued" not in status and "Running" not in status:
            return time.perf_counter() - started
        time.sleep(1)


def audit(uri: str) -> dict:
    """What eight complete experiments must leave, against what the store holds."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("reprobook").experiment_id
    complete = Counter()
    modeling_runs = []
    for found in client.search_runs([experiment], max_results=5000):
        name, stage = found.data.tags.get("reprobook.dvc_exp_name"), found.data.tags.get("reprobook.stage")
        if not name or stage not in STAGES_PER_EXPERIMENT:
            continue
        if found.info.status == "FINISHED" and (stage == "pipeline" or found.data.metrics):
            complete[(name, stage)] += 1
            if stage == "modeling":
                modeling_runs.append(found.info.run_id)
    versions = Counter(v.run_id for v in client.search_model_versions("name = 'reprobook-loans'", max_results=1000))
    names = {name for name, _ in complete}
    expected_runs = len(DEPTHS) * len(STAGES_PER_EXPERIMENT)
    found_runs = sum(min(count, 1) for count in complete.values())
    return {
        "experiments_in_store": len(names),
        "runs_lost": expected_runs - found_runs,
        "runs_duplicated": sum(count - 1 for count in complete.values() if count > 1),
        "model_versions_lost": sum(1 for run_id in modeling_runs if versions[run_id] == 0)
        + (len(DEPTHS) - len(modeling_runs)),
        "model_versions_duplicated": sum(versions[run_id] - 1 for run_id in modeling_runs if versions[run_id] > 1),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure_sqlite(workers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as tmp:
        root = project(Path(tmp))
        load = os.getloadavg()[0]
        seconds = queue(root, workers)
        return {"store": "SQLite", "workers": workers, "seconds": round(seconds, 1), "load": round(load, 2),
                **audit(f"sqlite:///{root / 'mlflow.db'}")}


def measure_server(workers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        base = Path(tmp)
        port = free_port()
        server = subprocess.Popen([str(BIN / "reprobook"), "server", "--data-dir", str(base / "server"), "--port",
                                   str(port)], env=env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            uri = server.stdout.readline().strip().split("=", 1)[-1]
            root = project(base, MLFLOW_TRACKING_URI=uri)
            load = os.getloadavg()[0]
            seconds = queue(root, workers, MLFLOW_TRACKING_URI=uri)
            return {"store": "server (PostgreSQL)", "workers": workers, "seconds": round(seconds, 1),
                    "load": round(load, 2), **audit(uri)}
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)


def write(results: list[dict]) -> None:
    out = ROOT / "benchmarks" / "results"
    machine = f"{platform.platform()}, {os.cpu_count()} cores; Python {platform.python_version()}"
    (out / "concurrent_experiments.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    lines = [
        "# Eight queued DVC experiments at once: server against SQLite",
        "",
        f"Machine: {machine}. Produced by `benchmarks/concurrent_experiments.py`: a clean clone runs the pipeline,",
        "then eight experiments (`model.params.max_depth` 2..10; 2 folds, 30 trees) run with `dvc queue start -j N`.",
        "Time: from `queue start` until the queue is empty. Lost/duplicated: against a parent, a modeling and an",
        "error-analysis run (FINISHED, with metrics) and one model version per experiment. Load: 1-minute load",
        "average when the queue started.",
        "",
        "| store | workers | wall time s | load | experiments in store | runs lost | runs duplicated "
        "| model versions lost | duplicated | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        met = "met" if r["runs_lost"] == 0 and r["runs_duplicated"] == 0 and r["model_versions_lost"] == 0 \
            and r["model_versions_duplicated"] == 0 else "**NOT MET**"
        lines.append(f"| {r['store']} | {r['workers']} | {r['seconds']} | {r['load']} | {r['experiments_in_store']} "
                     f"| {r['runs_lost']} | {r['runs_duplicated']} | {r['model_versions_lost']} "
                     f"| {r['model_versions_duplicated']} | 0 lost: {met} |")
    lines += ["", "On 2 cores the workers share the machine: four workers are not faster than two (each stage's",
              "thread budget is cores / running stages), they only test more writers at once."]
    (out / "concurrent_experiments.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    results = [measure_sqlite(2), measure_sqlite(4), measure_server(4)]
    write(results)
    print((ROOT / "benchmarks" / "results" / "concurrent_experiments.md").read_text())


if __name__ == "__main__":
    main()
