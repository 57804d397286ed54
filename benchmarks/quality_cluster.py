"""Statistics + drift of partitioned Parquet data on a local Dask cluster: time, memory per worker, scaling.

For n = 10,000,000 and 100,000,000 rows x 20 columns (15 numeric, 5
categorical, the columns of ``quality_data.make_frame``), a reference and a
current data set are written as directories of Parquet files of 1,000,000
rows (benchmarks/tmp, gitignored); the current set has the shifts of
``quality_speed.py``. Each measurement runs in a fresh child process:

* cluster: a LocalCluster of 2 single-threaded worker processes; the
  reference is profiled (and saved), the current profiled, drift computed
  from the two merged summaries. Wall time of the whole; peak RSS of each
  worker process (``ru_maxrss`` read on the workers with ``client.run``) and
  of the client. Then the same drift again, reusing the saved reference
  profile.
* in-process (10M only): the same partitioned engine without a cluster.
* single-process (10M only): the existing in-memory engine on the same data
  (load both data sets, ``compute_statistics`` of each, ``detect_drift``).

    nice -n 10 .venv/bin/python benchmarks/quality_cluster.py [--sizes 10000000 100000000] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TMP = HERE / "tmp" / "quality_cluster"
ROWS_PER_FILE = 1_000_000
sys.path.insert(0, str(HERE))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_file(args: tuple[str, int, int]) -> None:
    """One file of ROWS_PER_FILE rows (seeded by side and index); current files carry the shifts."""
    import numpy as np
    import pandas as pd
    from quality_data import make_frame

    side, index, _ = args
    path = TMP / f"{args[2]}" / side / f"part-{index:04d}.parquet"
    if path.exists():
        return
    seed = (1 if side == "reference" else 2) * 1_000_003 + index
    frame = make_frame(ROWS_PER_FILE, seed=seed)
    if side == "current":
        rng = np.random.default_rng(seed + 7)
        frame["num_0"] += 1.0  # +0.1 SD
        frame["num_4"] = 0.3 + (frame["num_4"] - 0.3) * 1.2
        values = frame["cat_3"].to_numpy(dtype=object)
        values[rng.random(ROWS_PER_FILE) < 0.02] = "c3_new"
        frame["cat_3"] = pd.Series(values, dtype="str")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    frame.to_parquet(temporary, row_group_size=ROWS_PER_FILE)
    temporary.rename(path)


def make_data(n: int) -> tuple[Path, Path]:
    from multiprocessing import Pool

    files = n // ROWS_PER_FILE
    jobs = [(side, i, n) for side in ("reference", "current") for i in range(files)]
    with Pool(2) as pool:
        pool.map(write_file, jobs, chunksize=1)
    return TMP / str(n) / "reference", TMP / str(n) / "current"


def child_cluster(ref: str, cur: str, profile: str) -> dict:
    """Fresh process: a LocalCluster of 2 workers; cold run (profile ref + cur, drift), then a warm rerun."""
    from reprobook.execution.cluster import dask_client
    from reprobook.quality.cluster import drift
    from reprobook.quality.runner import OnDask

    shutil.rmtree(profile, ignore_errors=True)
    with dask_client("local", workers=2, memory_limit="4GiB") as client:
        started = time.perf_counter()
        report, ref_profile, cur_profile = drift(ref, cur, runner=OnDask(client), reference_profile=profile)
        cold = time.perf_counter() - started
        workers = client.run(resource.getrusage, resource.RUSAGE_SELF)
        started = time.perf_counter()
        again, ref_again, _ = drift(ref, cur, runner=OnDask(client), reference_profile=profile)
        warm = time.perf_counter() - started
    profile_mb = sum(f.stat().st_size for f in Path(profile).rglob("*") if f.is_file()) / 2**20
    return {
        "cold_s": cold, "warm_s": warm,
        "worker_peak_rss_mb": sorted(r.ru_maxrss / 1024 for r in workers.values()),
        "client_peak_rss_mb": peak_rss_mb(),
        "drifted": report.drifted_columns, "drifted_warm": again.drifted_columns,
        "reference_computed": len(ref_profile.computed), "reference_reused_warm": len(ref_again.reused),
        "warm_computed": len(ref_again.computed), "recounted": ref_profile.recounted + cur_profile.recounted,
        "profile_mb": profile_mb,
        "ks_error_bound": max((c.error_bounds.get("statistic", 0.0) for c in report.columns), default=0.0),
    }


def child_in_process(ref: str, cur: str) -> dict:
    from reprobook.quality.cluster import drift

    started = time.perf_counter()
    report, _, _ = drift(ref, cur)
    return {"seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb(), "drifted": report.drifted_columns}


def child_single(ref: str, cur: str) -> dict:
    import pandas as pd

    from reprobook.quality import compute_statistics, detect_drift

    started = time.perf_counter()
    reference, current = pd.read_parquet(ref), pd.read_parquet(cur)
    loaded = time.perf_counter()
    compute_statistics(reference)
    compute_statistics(current)
    report = detect_drift(reference, current)
    done = time.perf_counter()
    return {"seconds": done - started, "load_s": loaded - started, "compute_s": done - loaded,
            "peak_rss_mb": peak_rss_mb(), "drifted": report.drifted_columns}


def run_child(kind: str, *args: str) -> dict:
    output = subprocess.run([sys.executable, __file__, "--child", kind, *args], check=True,
                            capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def load_average() -> float:
    return os.getloadavg()[0]


def markdown(results: dict) -> str:
    lines = [
        "# Data quality on a cluster: partitioned statistics and drift",
        "",
        f"Measured by `benchmarks/quality_cluster.py` on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, dask {results['dask']}. 20 columns (15 numeric, 5 categorical), "
        f"a reference and a current data set of n rows each, as directories of Parquet files of "
        f"{ROWS_PER_FILE:,} rows; the current set has 3 injected shifts (num_0, num_4, cat_3). Every measurement "
        "is a fresh child process. Cluster: a Dask LocalCluster of 2 single-threaded worker processes "
        "(memory limit 4 GiB each); time = profile the reference (saved), profile the current set, drift from the "
        "two merged summaries. Peak memory per worker = the worker process's ru_maxrss. The machine is shared "
        "(1-minute load average at the start of each size shown).",
        "",
        "| n rows | cluster: stats + drift | rerun with saved reference | peak RSS per worker | client peak RSS "
        "| saved reference profile | KS error bound |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, r in sorted(results["sizes"].items(), key=lambda item: int(item[0])):
        c = r["cluster"]
        lines.append(
            f"| {int(n):,} (load {r['load']:.1f}) | {c['cold_s']:.1f} s | {c['warm_s']:.1f} s "
            f"| {' / '.join(f'{m:.0f} MB' for m in c['worker_peak_rss_mb'])} | {c['client_peak_rss_mb']:.0f} MB "
            f"| {c['profile_mb']:.0f} MB | ±{c['ks_error_bound']:.4f} |")
    lines.append("")
    sizes = results["sizes"]
    if "10000000" in sizes:
        r = sizes["10000000"]
        lines += [
            "## 10M rows: the same work single-process",
            "",
            "| engine | wall time | peak RSS |",
            "|---|---|---|",
            f"| cluster, 2 workers (above) | {r['cluster']['cold_s']:.1f} s | "
            f"{max(r['cluster']['worker_peak_rss_mb']):.0f} MB per worker |",
            f"| partitioned engine in one process (no scheduler) | {r['in_process']['seconds']:.1f} s | "
            f"{r['in_process']['peak_rss_mb']:.0f} MB |",
            f"| in-memory engine (load both, statistics of both, drift) | {r['single']['seconds']:.1f} s "
            f"(load {r['single']['load_s']:.1f} s + compute {r['single']['compute_s']:.1f} s) | "
            f"{r['single']['peak_rss_mb']:.0f} MB |",
            "",
            f"- drifted columns: cluster {', '.join(r['cluster']['drifted'])}; in-memory "
            f"{', '.join(r['single']['drifted'])}",
            "",
        ]
    lines += ["## Targets", ""]
    worst = max(max(r["cluster"]["worker_peak_rss_mb"]) for r in sizes.values())
    lines.append(f"- peak memory per worker <= 2 GB: {'met' if worst <= 2048 else 'NOT met'} "
                 f"(largest {worst:.0f} MB)")
    if "10000000" in sizes and "100000000" in sizes:
        ratio = sizes["100000000"]["cluster"]["cold_s"] / sizes["10000000"]["cluster"]["cold_s"]
        lines.append(f"- scaling 10M -> 100M: time x{ratio:.2f} for x10 the rows: "
                     f"{'met (at most linear)' if ratio <= 10 else 'NOT met (worse than linear)'}")
    for n, r in sorted(sizes.items(), key=lambda item: int(item[0])):
        c = r["cluster"]
        lines.append(f"- {int(n):,} rows: rerun recomputed {c['warm_computed']} reference partition(s), reused "
                     f"{c['reference_reused_warm']}; drifted columns {', '.join(c['drifted'])}; histograms "
                     f"recounted: {', '.join(c['recounted']) or 'none'}")
    if results.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in results["notes"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000_000, 100_000_000])
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        function = {"cluster": child_cluster, "in_process": child_in_process, "single": child_single}[kind]
        print(json.dumps(function(*rest)))
        return
    import dask

    results: dict = {"dask": dask.__version__, "sizes": {}}
    previous = RESULTS / "quality_cluster.json"
    if previous.exists():
        saved = json.loads(previous.read_text())
        results["sizes"].update(saved.get("sizes", {}))
        results["notes"] = saved.get("notes", [])
    for n in args.sizes:
        print(f"generating {n:,} rows x 2 ...", file=sys.stderr, flush=True)
        ref, cur = make_data(n)
        entry: dict = {"load": load_average()}
        print(f"cluster {n:,} ...", file=sys.stderr, flush=True)
        entry["cluster"] = run_child("cluster", str(ref), str(cur), str(TMP / str(n) / "profile"))
        if n <= 10_000_000:
            entry["in_process"] = run_child("in_process", str(ref), str(cur))
            entry["single"] = run_child("single", str(ref), str(cur))
        results["sizes"][str(n)] = entry
        print(json.dumps(entry), file=sys.stderr, flush=True)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "quality_cluster.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        (RESULTS / "quality_cluster.md").write_text(markdown(results))
        if not args.keep:
            shutil.rmtree(TMP / str(n), ignore_errors=True)


if __name__ == "__main__":
    main()
