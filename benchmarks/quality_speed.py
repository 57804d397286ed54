"""Speed and peak memory of statistics, validation and drift, side by side with Evidently.

For n = 1,000,000 and 10,000,000 rows x 20 columns (15 numeric, 5 categorical),
a reference and a current data set are written to Parquet once (benchmarks/tmp,
gitignored). Each measurement runs in a fresh child process, which reports its
wall times and its peak resident memory (``resource.getrusage``, ru_maxrss), so
one run cannot inherit another's memory:

* reprobook: load both files, infer the schema from the reference, then
  ``compute_statistics(current)``, ``validate(current, schema)`` and
  ``detect_drift(reference, current)``, repeated; the best and median of the
  repetitions are reported (the machine is shared, so the best is the figure
  least disturbed by other load).
* reprobook streamed: ``statistics_from_file(current.parquet)`` without loading
  the data (bounded memory).
* Evidently 0.7 ``DataDriftPreset`` on the same files, in its own environment
  (``benchmarks/.venv-evidently``, pandas < 3); at 10M only with --evidently-10m.

    .venv/bin/python benchmarks/quality_speed.py [--sizes 1000000 10000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TMP = HERE / "tmp"
EVIDENTLY_PYTHON = HERE / ".venv-evidently" / "bin" / "python"
sys.path.insert(0, str(HERE))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_files(n: int) -> tuple[Path, Path]:
    """Reference and current Parquet files; current has four injected shifts."""
    import numpy as np
    import pandas as pd
    from quality_data import make_frame

    ref_path, cur_path = TMP / f"quality_speed_{n}_ref.parquet", TMP / f"quality_speed_{n}_cur.parquet"
    if ref_path.exists() and cur_path.exists():
        return ref_path, cur_path
    TMP.mkdir(parents=True, exist_ok=True)
    make_frame(n, seed=1).to_parquet(ref_path)
    current = make_frame(n, seed=2)
    rng = np.random.default_rng(3)
    current["num_0"] += 1.0  # +0.1 SD
    current["num_4"] = 0.3 + (current["num_4"] - 0.3) * 1.2
    values = current["cat_3"].to_numpy(dtype=object)
    values[rng.random(n) < 0.02] = "c3_new"
    current["cat_3"] = pd.Series(values, dtype="str")
    current.to_parquet(cur_path)
    return ref_path, cur_path


def child_ours(ref_path: str, cur_path: str, repeats: int) -> dict:
    """Runs in a fresh process: load, infer, then statistics + validation + drift, repeated."""
    import pandas as pd
    import pyarrow as pa

    from reprobook.quality import (
        compute_statistics,
        detect_drift,
        infer_schema,
        validate,
    )

    start = time.perf_counter()
    reference = pd.read_parquet(ref_path)
    pa.default_memory_pool().release_unused()  # Arrow's allocator keeps freed conversion buffers otherwise
    current = pd.read_parquet(cur_path)
    pa.default_memory_pool().release_unused()
    load = time.perf_counter() - start
    data_mb = (reference.memory_usage(deep=True).sum() + current.memory_usage(deep=True).sum()) / 2**20
    rss_loaded = current_rss_mb()
    start = time.perf_counter()
    schema = infer_schema(reference)
    infer = time.perf_counter() - start
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        compute_statistics(current)
        t1 = time.perf_counter()
        report = validate(current, schema)
        t2 = time.perf_counter()
        drift = detect_drift(reference, current)
        t3 = time.perf_counter()
        runs.append({"statistics": t1 - t0, "validation": t2 - t1, "drift": t3 - t2, "total": t3 - t0})
    return {
        "load_seconds": load, "infer_schema_seconds": infer, "runs": runs, "data_mb": data_mb,
        "rss_after_load_mb": rss_loaded, "peak_rss_mb": peak_rss_mb(),
        "drifted_columns": drift.drifted_columns, "anomalies": [a.kind + ":" + str(a.column) for a in report.anomalies],
    }


def child_stream(cur_path: str) -> dict:
    """Runs in a fresh process: statistics streamed from the file, never loading it whole."""
    from reprobook.quality import statistics_from_file

    start = time.perf_counter()
    statistics_from_file(cur_path)
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}


def run_child(args: list[str], python: str = sys.executable) -> dict:
    env = dict(os.environ)
    result = subprocess.run([python, *args], capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--evidently-10m", action="store_true", help="also run Evidently at 10M rows (slow)")
    parser.add_argument("--render-only", action="store_true", help="re-render the Markdown from the saved JSON")
    parser.add_argument("--child", choices=["ours", "stream"])
    parser.add_argument("--ref")
    parser.add_argument("--cur")
    args = parser.parse_args()
    if args.child == "ours":
        print(json.dumps(child_ours(args.ref, args.cur, args.repeats)))
        return
    if args.child == "stream":
        print(json.dumps(child_stream(args.cur)))
        return
    if args.render_only:
        write_results({}, args.repeats)
        return

    results = {}
    for n in args.sizes:
        print(f"n={n}: preparing data", flush=True)
        ref_path, cur_path = make_files(n)
        load_avg = os.getloadavg()[0]
        ours = run_child([__file__, "--child", "ours", "--ref", str(ref_path), "--cur", str(cur_path),
                          "--repeats", str(args.repeats)])
        print(f"n={n}: reprobook {json.dumps(ours)[:300]}", flush=True)
        stream = run_child([__file__, "--child", "stream", "--cur", str(cur_path)])
        print(f"n={n}: streamed {stream}", flush=True)
        evidently = None
        if not args.no_evidently and (n <= 1_000_000 or args.evidently_10m):
            if EVIDENTLY_PYTHON.exists():
                evidently = run_child([str(HERE / "quality_evidently.py"), "speed", str(ref_path), str(cur_path)],
                                      python=str(EVIDENTLY_PYTHON))
            else:
                evidently = {"error": f"{EVIDENTLY_PYTHON} missing"}
            print(f"n={n}: evidently {evidently}", flush=True)
        results[n] = {"reprobook": ours, "streamed": stream, "evidently": evidently, "load_average_1min": load_avg}
    write_results(results, args.repeats)


def write_results(results: dict, repeats: int) -> None:
    """Merge with earlier results for other sizes (so one size can be re-measured), save, render."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    saved = RESULTS / "quality_speed.json"
    merged = {int(k): v for k, v in json.loads(saved.read_text()).items()} if saved.exists() else {}
    merged.update(results)
    results = dict(sorted(merged.items()))
    saved.write_text(json.dumps({str(k): v for k, v in results.items()}, indent=2, sort_keys=True))
    lines = [
        "# Data quality speed and memory",
        "",
        f"Measured by `benchmarks/quality_speed.py` on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}. 20 columns (15 numeric, 5 categorical), reference and current "
        "of n rows each, Parquet in; current has 4 injected shifts. Every row of the table is a fresh child "
        "process; peak memory = that process's peak RSS (ru_maxrss), data loaded included. reprobook times are "
        f"the best (and median) of {repeats} repetitions (fewer if a size was measured separately); the machine is shared with other work (1-minute load "
        "average at the start of each size shown).",
        "",
    ]
    for n, r in results.items():
        ours, ev, st = r["reprobook"], r["evidently"], r["streamed"]
        lines += [f"## n = {n:,} rows x 20 columns (load average {r['load_average_1min']:.1f})", ""]
        if "error" in ours:
            lines += [f"reprobook failed: {ours['error']}", ""]
            continue
        best = {k: min(run[k] for run in ours["runs"]) for k in ("statistics", "validation", "drift", "total")}
        med = {k: median([run[k] for run in ours["runs"]]) for k in best}
        lines += [
            "| step | reprobook best | reprobook median |",
            "|---|---|---|",
            *[f"| {k} | {best[k]:.2f} s | {med[k]:.2f} s |" for k in ("statistics", "validation", "drift", "total")],
            f"| (infer schema of reference, once) | {ours['infer_schema_seconds']:.2f} s | |",
            f"| (load both Parquet files) | {ours['load_seconds']:.2f} s | |",
            "",
            f"- both data sets in memory: {ours['data_mb']:.0f} MB; RSS after loading {ours['rss_after_load_mb']:.0f} MB; "
            f"**peak RSS {ours['peak_rss_mb']:.0f} MB** = {ours['peak_rss_mb'] / ours['data_mb']:.2f} x the data",
            f"- drifted columns found: {', '.join(ours['drifted_columns']) or 'none'} (shifted: num_0, num_4, cat_3; "
            "any other column is a chance false alarm, which the batch alpha of 5% allows)",
            f"- statistics streamed from the Parquet file (nothing loaded): {st.get('seconds', float('nan')):.2f} s, "
            f"peak RSS {st.get('peak_rss_mb', float('nan')):.0f} MB",
        ]
        if ev and "error" not in ev:
            lines += [
                f"- Evidently {'0.7'} DataDriftPreset (drift only): {ev['seconds']:.2f} s, peak RSS {ev['peak_rss_mb']:.0f} MB "
                f"(pandas {ev['pandas']}); drifted columns: {', '.join(ev['drifted_columns']) or 'none'}",
                f"- **ratio: Evidently drift time / reprobook drift time = {ev['seconds'] / best['drift']:.0f}x; "
                f"/ reprobook statistics+validation+drift = {ev['seconds'] / best['total']:.0f}x; "
                f"peak memory Evidently / reprobook = {ev['peak_rss_mb'] / ours['peak_rss_mb']:.1f}x**",
            ]
        elif ev:
            lines.append(f"- Evidently failed: {ev['error']}")
        else:
            lines.append("- Evidently not run at this size (use --evidently-10m)")
        lines.append("")
    (RESULTS / "quality_speed.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
