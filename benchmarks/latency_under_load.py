"""Does the latency verdict flip with machine load? p95 quiet, and while other processes keep every core busy.

The modeling stage's own measurement (``reprobook.ml.modeling.measure_latency``)
on the reference project's model and test split, first on a quiet machine,
then with one busy process per core (each a HistGradientBoosting fit with
default threads, as a concurrent stage would be). Writes
``benchmarks/results/latency_under_load.{json,md}``.

Run from the project root after ``make run``: ``python benchmarks/latency_under_load.py``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _busy(stop_at: float) -> None:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = make_classification(20_000, 30, random_state=0)
    while time.time() < stop_at:
        HistGradientBoostingClassifier(max_iter=50).fit(x, y)


def measure(label: str, rounds: int = 3) -> dict:
    from reprobook.ml.features import xy
    from reprobook.ml.modeling import latency_verdict, load_model, measure_latency
    from reprobook.ml.prep import read_split
    from reprobook.ml.scoping import load_targets

    targets = load_targets(ROOT)
    x, _ = xy(read_split(ROOT).test, targets["target"])
    model = load_model(ROOT / "models/model.skops")
    runs = [measure_latency(model, x, 200) for _ in range(rounds)]
    p95 = [r["latency_p95_ms"] for r in runs]
    return {"label": label, "p95_ms": p95, "load_average_1m": [r["load_average_1m"] for r in runs],
            "budget_ms": targets["latency_budget_ms"],
            "within_budget": [latency_verdict(r, targets["latency_budget_ms"]) for r in runs]}


def main() -> None:
    quiet = measure("quiet")
    cores = os.cpu_count() or 1
    stop_at = time.time() + 120
    spawn = multiprocessing.get_context("spawn")  # fork after OpenMP started would deadlock the children
    workers = [spawn.Process(target=_busy, args=(stop_at,)) for _ in range(cores)]
    for worker in workers:
        worker.start()
    time.sleep(30)  # let the load build (and the 1-minute load average show it)
    try:
        loaded = measure(f"{cores} busy processes")
    finally:
        for worker in workers:
            worker.terminate()
    result = {"cores": cores, "quiet": quiet, "loaded": loaded}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latency_under_load.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| condition | p95 latency (ms), 3 rounds | 1-min load | within budget (None: not judged) |", "|---|---|---|---|"]
    for row in (quiet, loaded):
        lines.append(f"| {row['label']} | {', '.join(f'{v:.2f}' for v in row['p95_ms'])} | "
                     f"{', '.join(map(str, row['load_average_1m']))} | {row['within_budget']} (budget {row['budget_ms']} ms) |")
    (RESULTS / "latency_under_load.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
