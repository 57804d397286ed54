"""Encoders benchmark: a table that used to take 18.5 GB, through ``reprobook new`` and ``reprobook run``.

Run on demand, never in the timed tests:
``.venv/bin/python benchmarks/encoders_bench.py [--rows 50000] [--growth 50000,200000,500000,2000000]``.

1. **End to end.** A generated loan table of ``--rows`` rows with a unique
   ISO timestamp string per row, a unique integer id and a 10,000-level
   categorical (plus numeric and low-cardinality columns), through the
   installed console script: ``reprobook new`` with no edit, then
   ``reprobook run``. Measured: each stage's wall time (from the run's
   MLflow records) and the peak resident memory of any one process of the
   run (the stage kernels included), polled every 0.1 s with psutil.
   Before this work, the same shape took 18.5 GB and more than 13 minutes
   in the modeling kernel (the timestamp one-hot encoded densely).
2. **Growth.** What the modeling notebook does (the pipeline built from the
   inferred roles, 5-fold CV, the final fit), in this process, at each size
   of ``--growth``: seconds and the peak RSS increase, to show it stays linear.

Results go to benchmarks/results/encoders.json and encoders.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGETS = {"modeling_s": 60.0, "peak_rss_mb": 1536.0}


def make_table(rows: int, seed: int = 0) -> pd.DataFrame:
    """The shape of the issue: a unique timestamp string and id per row, a 10,000-level categorical."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2021-01-01")
    seconds = np.sort(rng.choice(3 * 365 * 86_400, rows, replace=False))
    dealer = rng.integers(0, 10_000, rows)
    income = rng.lognormal(10.5, 0.5, rows).round(2)
    amount = rng.lognormal(9.5, 0.7, rows).round(2)
    score = rng.normal(650, 80, rows).round()
    grade = rng.choice(list("ABCDEFG"), rows)
    dealer_effect = np.sin(dealer) * 0.8
    logit = (score - 650) / 60 - np.log(amount / income * 10) + dealer_effect + rng.normal(0, 1, rows)
    return pd.DataFrame({
        "id": rng.permutation(rows) + 1_000_000,
        "timestamp": (start + pd.to_timedelta(seconds, unit="s")).strftime("%Y-%m-%dT%H:%M:%S"),
        "dealer": [f"dealer-{d:05d}" for d in dealer],
        "grade": grade,
        "income": income,
        "loan_amount": amount,
        "credit_score": score,
        "default": (logit < -0.5).astype(int),
    })


class PeakMemory:
    """Peak RSS (MB) of any single process started since it was created and working in ``folder``, polled.

    Not only the children of the command: stage kernels are forked from the
    environment's warm process (:mod:`reprobook.warm`), which is no child of
    it; their working directory (the project) tells them from other work.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder)
        self.started = time.time() - 1
        self.peak = 0.0
        self.where = ""
        """The command line of the process that peaked: the kernel of a stage, DVC, the warm process."""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        import psutil

        while not self.stop.is_set():
            for process in psutil.process_iter(["create_time", "memory_info", "cwd", "cmdline"]):
                info = process.info
                if (info["create_time"] and info["create_time"] >= self.started and info["memory_info"]
                        and (info["cwd"] or "").startswith(self.folder)):
                    rss = info["memory_info"].rss / 1024**2
                    if rss > self.peak:
                        self.peak = rss
                        self.where = " ".join(Path(part).name for part in (info["cmdline"] or [])[:4])
            time.sleep(0.1)

    def __enter__(self) -> "PeakMemory":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def end_to_end(rows: int) -> dict:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "MPLBACKEND": "Agg", "PATH": f"{BIN}:{os.environ['PATH']}"}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "loans.csv"
        make_table(rows).to_csv(data, index=False)
        project = Path(tmp) / "carloan"
        started = time.perf_counter()
        new = subprocess.run([str(BIN / "reprobook"), "new", str(project), "--data", str(data), "--target", "default"],
                             env=env, capture_output=True, text=True, check=True)
        new_s = time.perf_counter() - started
        started = time.perf_counter()
        with PeakMemory(project) as memory:
            process = subprocess.Popen([str(BIN / "reprobook"), "run"], cwd=project, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
            output, _ = process.communicate()
        run_s = time.perf_counter() - started
        if process.returncode:
            raise SystemExit(f"reprobook run failed ({process.returncode}):\n{output[-3000:]}")
        stages = stage_seconds(project)
        features = json.loads((project / "reports/data/outputs/roles.json").read_text())["roles"]
        widths = encoded_width(project)
    return {"rows": rows, "new_s": round(new_s, 2), "run_s": round(run_s, 2), "stages_s": stages,
            "peak_rss_mb": round(memory.peak, 1), "peak_process": memory.where, "roles": features, "encoded_columns": widths,
            "new_output": new.stdout}


def stage_seconds(project: Path) -> dict[str, float]:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return {run.info.run_name.split(" ")[0]: round((run.info.end_time - run.info.start_time) / 1000, 2)
            for run in runs if run.info.end_time and run.data.tags.get("reprobook.stage")}


def encoded_width(project: Path) -> int:
    sys.path.insert(0, str(ROOT / "src"))
    from reprobook.ml.persistence import load_model

    model = load_model(project / "models/model.skops")
    return int(len(model.named_steps["preprocess"].get_feature_names_out()))


def growth(sizes: list[int]) -> list[dict]:
    from threadpoolctl import threadpool_limits

    from reprobook.ml import estimators, modeling
    from reprobook.ml.features import xy
    from reprobook.ml.roles import infer_roles
    from reprobook.project.params import ModelParams

    params = ModelParams(params={"max_depth": 4, "learning_rate": 0.1, "max_iter": 150})
    results = []
    for rows in sizes:
        frame = make_table(rows)
        roles = {name: found.role for name, found in infer_roles(frame, "default").items()}
        x, y = xy(frame, "default", roles)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        with threadpool_limits(2):
            pipeline = estimators.build_pipeline(x, params, "classification", roles)
            cv = modeling.cross_validate(pipeline, x, y, "classification", params)
            modeling.fit(pipeline, x, y)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results.append({"rows": rows, "seconds": round(seconds, 2), "seconds_per_100k": round(seconds / rows * 1e5, 2),
                        "peak_rss_mb": round(after, 1), "peak_rss_increase_mb": round(max(0.0, after - before), 1),
                        "roc_auc_cv": round(cv["roc_auc_mean"], 4)})
        print(json.dumps(results[-1]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--growth", default="50000,200000,500000,2000000")
    args = parser.parse_args()
    e2e = end_to_end(args.rows)
    print(json.dumps({k: v for k, v in e2e.items() if k != "new_output"}, indent=1), flush=True)
    sizes = [int(s) for s in args.growth.split(",") if s]
    previous = ROOT / "benchmarks/results/encoders.json"
    # --growth "": re-measure the end-to-end part only, keeping the last growth figures.
    grown = growth(sizes) if sizes else (json.loads(previous.read_text()).get("growth", []) if previous.is_file() else [])
    result = {"machine": {"cores": os.cpu_count(), "python": platform.python_version()},
              "load_average_1m": os.getloadavg()[0], "targets": TARGETS, "end_to_end": e2e, "growth": grown}
    out = ROOT / "benchmarks/results"
    (out / "encoders.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "# Encoders benchmark (benchmarks/encoders_bench.py)", "",
        f"{args.rows:,} rows: a unique ISO timestamp string and a unique id per row, a 10,000-level categorical, "
        "`reprobook new --data FILE --target default` with no edit, then `reprobook run`, on "
        f"{os.cpu_count()} cores (load {result['load_average_1m']:.2f}).", "",
        "| measure | value | target | before this work |", "|---|---|---|---|",
        f"| modeling stage | {e2e['stages_s'].get('modeling', float('nan')):.1f} s | < {TARGETS['modeling_s']:.0f} s "
        "| stopped after 13 min of CPU |",
        f"| peak RSS of any process started by the run (stage kernels included) | {e2e['peak_rss_mb']:.0f} MB ({e2e.get('peak_process', '?')}) | < {TARGETS['peak_rss_mb']:.0f} MB | 18.5 GB |",
        f"| encoded columns | {e2e['encoded_columns']} | | about 40,000 |",
        f"| whole `reprobook run` | {e2e['run_s']:.1f} s | | |", "",
        "Stages (s): " + ", ".join(f"{k} {v}" for k, v in sorted(e2e["stages_s"].items())), "",
        "Roles inferred: " + ", ".join(f"{k}={v}" for k, v in e2e["roles"].items()), "",
    ]
    if grown:
        lines += ["## Growth (modeling work in one process: pipeline by roles, 5-fold CV, final fit; 2 threads)", "",
                  "| rows | seconds | s per 100k rows | peak RSS MB | CV ROC AUC |", "|---|---|---|---|---|"]
        lines += [f"| {g['rows']:,} | {g['seconds']} | {g['seconds_per_100k']} | {g['peak_rss_mb']} | {g['roc_auc_cv']} |"
                  for g in grown]
    (out / "encoders.md").write_text("\n".join(lines) + "\n")
    print((out / "encoders.md").read_text())


if __name__ == "__main__":
    main()
