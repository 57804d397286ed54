"""Reproduction benchmark: time to reproduce a run, and a sweep of queued experiments.

Run on demand (``python benchmarks/reproduce_bench.py``), never in the timed
tests. It clones the committed project into a temporary directory with its own
DVC remote, then measures:

1. ``reprobook run`` (the original, which pushes its data) against
   ``reprobook reproduce`` of its last stage run from a fresh clone in another
   directory: by default (upstream outputs pulled from the remote, the stage
   re-run) and with ``--full`` (all four stages re-run); target ≤ 1.5×;
2. a sweep: five experiments queued with ``dvc exp run --queue -S ...``, run
   by ``dvc queue start``, then each modeling run reproduced from the fresh
   clone (target: 5 of 5 reproduced exactly).

Results go to benchmarks/results/reproduce.json and reproduce.md.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline_bench import BIN, ROOT, env

SWEEP = [2, 3, 5, 6, 8]
"""``model.params.max_depth`` of the five queued experiments."""
TARGET_RATIO = 1.5


def run(args: list[str], cwd: Path, **extra: str) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    completed = subprocess.run(args, cwd=cwd, env={**env(), **extra}, capture_output=True, text=True)
    if completed.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(args)} exited {completed.returncode}\n{completed.stdout}\n{completed.stderr}")
    return time.perf_counter() - start, completed


def clone(source: Path, target: Path, remote_dir: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(source), str(target)], check=True, env=env())
    run([str(BIN / "dvc"), "remote", "add", "--local", "-f", "-d", "storage", str(remote_dir)], target)
    return target


def wait_for_queue(project: Path, timeout_s: float = 1800) -> str:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        _, status = run([str(BIN / "dvc"), "queue", "status"], project)
        if "Queued" not in status.stdout and "Running" not in status.stdout:
            return status.stdout
        time.sleep(2)
    raise SystemExit("queued experiments did not finish in time")


def reproduce(fresh: Path, run_id: str, uri: str, *options: str) -> dict:
    seconds, completed = run([str(BIN / "reprobook"), "reproduce", run_id, *options], fresh,
                             MLFLOW_TRACKING_URI=uri, COLUMNS="250")
    restored = "restored from DVC at the recorded hashes" in completed.stdout
    return {"run_id": run_id, "seconds": seconds, "reproduced": completed.returncode == 0,
            "re_ran": "the stage only (upstream outputs pulled)" if restored else "every stage up to it"}


def main() -> None:
    from mlflow import MlflowClient

    from reprobook.tracking.record import resolve_stage_run

    with tempfile.TemporaryDirectory(prefix="reprobook-reproduce-bench-") as tmp:
        base = Path(tmp)
        project = clone(ROOT, base / "project", base / "remote")
        uri = f"sqlite:///{project / 'mlflow.db'}"
        client = MlflowClient(tracking_uri=uri)
        results: dict = {"machine": f"{platform.platform()}, {os.cpu_count()} cores", "python": sys.version.split()[0]}

        print("original: reprobook run ...", flush=True)
        results["original_s"], first = run([str(BIN / "reprobook"), "run"], project, MLFLOW_TRACKING_URI=uri)
        pipeline_id = first.stdout.split("(MLflow run ")[1].split(")")[0]
        last_stage = resolve_stage_run(client, pipeline_id)
        run(["git", "add", "-A"], project)
        run(["git", "commit", "-q", "--allow-empty", "-m", "bench: after the first run"], project)  # nothing new when the lock is current
        fresh = clone(project, base / "fresh", base / "remote")

        print(f"reproduce the pipeline's last stage ({last_stage.stage}) from a fresh clone ...", flush=True)
        results["reproduction"] = reproduce(fresh, last_stage.run_id, uri)
        results["ratio"] = results["reproduction"]["seconds"] / results["original_s"]
        print("... and again with --full (every stage re-run) ...", flush=True)
        results["reproduction_full"] = reproduce(fresh, last_stage.run_id, uri, "--full")
        results["ratio_full"] = results["reproduction_full"]["seconds"] / results["original_s"]

        print(f"sweep: {len(SWEEP)} queued experiments ...", flush=True)
        started = time.perf_counter()
        for depth in SWEEP:
            run([str(BIN / "dvc"), "exp", "run", "--queue", "-S", f"model.params.max_depth={depth}"], project)
        # Not captured: the queue's workers inherit the pipes and outlive `dvc queue start`, so reading its
        # output to the end waits for them (a worker idle after the last experiment kept it open for good).
        subprocess.run([str(BIN / "dvc"), "queue", "start", "-j", "2"], cwd=project, env=env(), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_queue(project)
        results["sweep_run_s"] = time.perf_counter() - started
        experiment = client.get_experiment_by_name("reprobook")
        modeling = client.search_runs(
            [experiment.experiment_id],
            filter_string="tags.`reprobook.stage` = 'modeling' and tags.`reprobook.dvc_exp_name` != ''",
        )
        sweep = []
        for found in modeling:
            print(f"  reproduce experiment {found.data.tags['reprobook.dvc_exp_name']} ...", flush=True)
            row = reproduce(fresh, found.info.run_id, uri)
            row["max_depth"] = found.data.params.get("model.params.max_depth")
            row["experiment"] = found.data.tags["reprobook.dvc_exp_name"]
            row["original_s"] = (found.info.end_time - found.info.start_time) / 1000
            sweep.append(row)
        results["sweep"] = sorted(sweep, key=lambda row: int(row["max_depth"] or 0))
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "reproduce.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "reproduce.md").write_text(render(results))
    print(render(results))


def render(results: dict) -> str:
    reproduction, full = results["reproduction"], results["reproduction_full"]
    verdict = lambda row: "reproduced" if row["reproduced"] else "NOT reproduced"  # noqa: E731
    reproduced = sum(row["reproduced"] for row in results["sweep"])
    ok = lambda met: "yes" if met else "NO"  # noqa: E731
    lines = [
        "# Reproduction benchmark",
        "",
        f"Machine: {results['machine']}; Python {results['python']}. Produced by "
        "`python benchmarks/reproduce_bench.py` (default params.yaml).",
        "",
        "| measurement | value | target | met |",
        "|---|---:|---:|---|",
        f"| original `reprobook run` (4 stages) | {results['original_s']:.1f} s | | |",
        f"| `reprobook reproduce` of its last stage run, fresh clone: upstream outputs pulled, error_analysis re-run "
        f"| {reproduction['seconds']:.1f} s | | {verdict(reproduction)} |",
        f"| reproduction / original | {results['ratio']:.2f}× | ≤ {TARGET_RATIO}× | {ok(results['ratio'] <= TARGET_RATIO)} |",
        f"| `reprobook reproduce --full`, fresh clone: all 4 stages re-run "
        f"| {full['seconds']:.1f} s | | {verdict(full)} |",
        f"| full reproduction / original | {results['ratio_full']:.2f}× | ≤ {TARGET_RATIO}× | {ok(results['ratio_full'] <= TARGET_RATIO)} |",
        f"| sweep: {len(SWEEP)} queued experiments reproduced exactly from a fresh clone "
        f"| {reproduced} of {len(results['sweep'])} | {len(SWEEP)} of {len(SWEEP)} | {ok(reproduced == len(SWEEP))} |",
        "",
        f"The sweep ran `dvc exp run --queue -S model.params.max_depth=N` for N in {SWEEP} and "
        f"`dvc queue start -j 2` ({results['sweep_run_s']:.1f} s in all); each experiment's modeling run was then "
        "reproduced from the fresh clone from its baseline commit and recorded params.",
        "",
        "| experiment | max_depth | original modeling stage s | reproduction s | re-ran | reproduced |",
        "|---|---:|---:|---:|---|---|",
    ]
    for row in results["sweep"]:
        lines.append(
            f"| {row['experiment']} | {row['max_depth']} | {row['original_s']:.1f} | {row['seconds']:.1f} | {row['re_ran']} | {ok(row['reproduced'])} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
