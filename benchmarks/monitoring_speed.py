"""Speed of monitoring one 100,000-row x 20-column batch: the whole stage, the library checks, and Evidently.

A 20-column project: the built-in loan applicants (10 features, ``make_loans``)
plus 10 noise columns (7 numeric with some missing values, 3 categorical),
10,000 rows, written as a CSV and made into a project with ``reprobook new
--data wide.csv --target approved`` and ``reprobook run`` (its champion and
training reference: 10,000 rows x 20 columns). Production batches of 100,000
rows come from the same population (``simulate.make_batch("none")`` plus the
same noise columns), each a different seed.

* **stage**: ``reprobook monitor BATCH`` end to end (preflight, papermill
  notebook in a fresh kernel, MLflow run, history, summary), wall clock of the
  console script in a fresh process, on 3 different batches (the median is
  reported). One 1,000-row batch is monitored first and timed apart: the first
  batch also fetches the model version into the serving cache.
* **library**: in one process, ``read_batch`` + ``score`` + ``monitor_batch``
  on the same batches (without labels; once also with labels), 3 times.
* **Evidently 0.7** DataDriftPreset on the same reference (the reference's
  features.parquet) and the same batch without its id column, in a fresh
  process each (its runner's ``speed`` mode), 3 times: preset time and wall
  clock of the process.

The 1-minute load average is recorded with each measurement (the machine is shared).

    .venv/bin/python benchmarks/monitoring_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
EVIDENTLY_PYTHON = HERE / ".venv-evidently" / "bin" / "python"
sys.path.insert(0, str(HERE))
from monitoring_alarms import bench_env, ensure_project, library_state, reprobook_cli  # noqa: E402

NAME = "monitoring_speed"
DEFAULT_DIR = Path(tempfile.gettempdir()) / "reprobook-bench"
TRAIN_ROWS = 10_000
BATCH_ROWS = 100_000


def noise_columns(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """10 columns unrelated to the label: 7 numeric (3 with 2-5% missing), 3 categorical."""
    frame = pd.DataFrame({
        "noise_normal_0": rng.normal(50, 10, n).round(3),
        "noise_normal_1": rng.normal(0, 1, n).round(4),
        "noise_lognormal": np.exp(rng.normal(3, 0.8, n)).round(2),
        "noise_uniform": rng.uniform(0, 1, n).round(4),
        "noise_count": rng.poisson(3, n).astype(float),
        "noise_exponential": rng.exponential(2.0, n).round(3),
        "noise_bimodal": np.where(rng.random(n) < 0.3, rng.normal(-2, 0.5, n), rng.normal(2, 1, n)).round(3),
        "noise_channel": rng.choice(["web", "branch", "phone", "partner"], n, p=[0.5, 0.25, 0.15, 0.1]),
        "noise_tier": rng.choice(["bronze", "silver", "gold"], n, p=[0.6, 0.3, 0.1]),
        "noise_code": rng.choice([f"c{i:02d}" for i in range(20)], n, p=np.r_[np.full(10, 0.07), np.full(10, 0.03)]),
    })
    for column, share in (("noise_normal_0", 0.02), ("noise_lognormal", 0.05), ("noise_count", 0.03)):
        frame.loc[rng.random(n) < share, column] = np.nan
    return frame


def make_training_csv(path: Path) -> None:
    from reprobook.ml.loans import make_loans

    loans = make_loans(TRAIN_ROWS, seed=11)
    target = loans.pop("approved")
    frame = pd.concat([loans, noise_columns(TRAIN_ROWS, np.random.default_rng(12)), target], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def make_batch_file(path: Path, seed: int, rows: int) -> tuple[Path, Path]:
    """A batch with id column (Parquet) and the same batch without it (for Evidently); plus its labels."""
    from reprobook.monitoring.simulate import make_batch

    features, labels = make_batch("none", rows, seed)
    frame = pd.concat([features, noise_columns(rows, np.random.default_rng(seed + 1))], axis=1)
    frame.to_parquet(path, index=False)
    frame.drop(columns="id").to_parquet(path.with_suffix(".noid.parquet"), index=False)
    labels.to_csv(path.with_suffix(".labels.csv"), index=False)
    return path, path.with_suffix(".noid.parquet")


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def run_stage(project: Path, batch: Path) -> dict:
    """``reprobook monitor BATCH`` in a fresh process; wall clock and the verdict it printed."""
    load_before = load1()
    started = time.perf_counter()
    done = subprocess.run([reprobook_cli(), "monitor", str(batch), "--format", "json"], cwd=project, env=bench_env(),
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    verdict = None
    try:
        verdict = json.loads(done.stdout)["verdict"]
    except (json.JSONDecodeError, KeyError, TypeError):
        if done.returncode not in (0, 1):
            raise RuntimeError(f"reprobook monitor failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return {"batch": batch.name, "seconds": seconds, "exit": done.returncode, "verdict": verdict,
            "load_before": load_before, "load_after": load1()}


def run_library(project: Path, batches: list[Path], with_labels: bool) -> list[dict]:
    """read_batch + score + monitor_batch in this process (model and reference loaded once, timed apart)."""
    from reprobook.monitoring import capture as cap
    from reprobook.monitoring.monitor import monitor_batch
    from reprobook.monitoring.reference import load_reference
    from reprobook.project.params import project_params

    started = time.perf_counter()
    params = project_params(project)
    serving = cap.load_serving_model(project, cap.parse_model_ref(None, params), params)
    reference = load_reference(serving.reference_dir)
    load_seconds = time.perf_counter() - started
    out = []
    for path in batches:
        entry = {"batch": path.name, "load_before": load1(), "model_and_reference_load_seconds": load_seconds}
        t0 = time.perf_counter()
        batch = cap.read_batch(path, params.monitoring.id_column)
        t1 = time.perf_counter()
        scored = cap.score(serving, batch)
        t2 = time.perf_counter()
        labelled = None
        if with_labels:
            labelled = cap.join_labels(scored.predictions, path.with_suffix(".labels.csv"),
                                       reference.profile["target"], params.monitoring.id_column)
        report = monitor_batch(1, batch, scored, serving, reference, params.monitoring, params.error_analysis,
                               labelled=labelled)
        t3 = time.perf_counter()
        entry.update(read_seconds=t1 - t0, score_seconds=t2 - t1, checks_seconds=t3 - t2, total_seconds=t3 - t0,
                     verdict=report.verdict, findings=[f"{f.verdict} {f.check}: {f.reason}" for f in report.findings],
                     load_after=load1())
        out.append(entry)
    return out


def profile_labelled(project: Path, path: Path) -> dict:
    """Where a labelled monitor_batch spends its time (cumulative seconds of the monitoring functions)."""
    import cProfile
    import pstats

    from reprobook.monitoring import capture as cap
    from reprobook.monitoring.monitor import monitor_batch
    from reprobook.monitoring.reference import load_reference
    from reprobook.project.params import project_params

    params = project_params(project)
    serving = cap.load_serving_model(project, cap.parse_model_ref(None, params), params)
    reference = load_reference(serving.reference_dir)
    batch = cap.read_batch(path, params.monitoring.id_column)
    scored = cap.score(serving, batch)
    labelled = cap.join_labels(scored.predictions, path.with_suffix(".labels.csv"), reference.profile["target"],
                               params.monitoring.id_column)
    profiler = cProfile.Profile()
    profiler.enable()
    monitor_batch(1, batch, scored, serving, reference, params.monitoring, params.error_analysis, labelled=labelled)
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    wanted = ("check_quality", "check_feature_drift", "check_prediction_drift", "estimate", "realized",
              "reference_sd", "bootstrap_sd", "slices_and_fairness")
    found, total = {}, 0.0
    for (file, _, name), (_, calls, _, cumulative, _) in stats.items():
        if name == "monitor_batch" and file.endswith("monitor.py"):
            total = cumulative
        if name in wanted and "reprobook" in file:
            key = f"{Path(file).stem}.{name}"
            seconds, count = found.get(key, (0.0, 0))
            found[key] = (seconds + cumulative, count + calls)
    return {"total": total, "functions": dict(sorted(found.items(), key=lambda kv: -kv[1][0]))}


def run_evidently(reference: Path, current: Path) -> dict:
    load_before = load1()
    started = time.perf_counter()
    done = subprocess.run([str(EVIDENTLY_PYTHON), str(HERE / "quality_evidently.py"), "speed", str(reference),
                           str(current)], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(wall_seconds=wall, load_before=load_before, load_after=load1())
    return result


def median(entries: list[dict], key: str) -> float:
    return statistics.median(e[key] for e in entries)


def reading(data: dict) -> list[str]:
    st, lib, ev = data["stage"], data["library"], data.get("evidently") or []
    stage, library = median(st["runs"], "seconds"), median(lib["unlabelled"], "total_seconds")
    checks = median(lib["unlabelled"], "checks_seconds")
    out = ["## Reading the table", "",
           f"- The stage takes {stage:.1f} s for 100,000 rows, of which the library's own work (read, score, "
           f"checks) is {library:.1f} s; the rest is the fixed cost of a stage run (a fresh Python and Jupyter "
           "kernel, imports, papermill, the notebook's HTML, the MLflow run and artifacts, the summary): the "
           f"first batch of 1,000 rows took {st['first']['seconds']:.1f} s in all."]
    if ev:
        preset, wall = median(ev, "seconds"), median(ev, "wall_seconds")
        out.append(f"- Like for like, reprobook's checks ({checks:.2f} s: schema validation, 20 drift tests with "
                   f"effect sizes, prediction drift, the performance estimate) against Evidently's preset "
                   f"({preset:.2f} s: 20 distance tests); a fresh Evidently process ({wall:.1f} s) against the "
                   f"whole stage ({stage:.1f} s).")
    if lib.get("labelled"):
        out.append(f"- With labels joined, {median(lib['labelled'], 'total_seconds'):.1f} s for the library's part "
                   f"(against {library:.1f} s without): realized metrics with their bootstrap SD, the concept-drift "
                   "check, slices and fairness on the labelled rows.")
    prof = data.get("profile_labelled")
    if prof:
        parts = ", ".join(f"{name} {seconds:.2f} s" + (f" ({calls} calls)" if calls > 1 else "")
                          for name, (seconds, calls) in sorted(prof["functions"].items(), key=lambda kv: -kv[1][0]))
        out.append(f"- cProfile of one labelled monitor_batch on the first batch ({prof['total']:.1f} s under the "
                   f"profiler; cumulative time): {parts}.")
    return out + [""]


def render(data: dict) -> str:
    st, lib, ev = data["stage"], data["library"], data.get("evidently") or []
    lines = [
        "# Monitoring speed: one 100,000-row x 20-column batch",
        "",
        f"Measured by `benchmarks/monitoring_speed.py` ({data['machine']}, {data['cores']} cores shared with other "
        f"work; reprobook {data['reprobook']} at commit {data.get('library_state', {}).get('start', {}).get('commit', '?')[:7]}"
        f"{' with uncommitted changes to ' + ', '.join(x.split()[-1] for x in data['library_state']['start']['dirty_sources']) if data.get('library_state', {}).get('start', {}).get('dirty_sources') else ''}"
        f"; library default threads, OMP_NUM_THREADS={data.get('omp_num_threads') or 'unset'}, Evidently {data.get('evidently_version') or 'not run'}). Project: "
        f"`reprobook new --data wide.csv --target approved` + `reprobook run` on {data['train_rows']:,} rows x 20 "
        "features (the 10 loan features + 10 noise columns); its champion "
        f"({data['model']}) and training reference ({data['reference_rows']:,} rows). Batches: "
        f"{data['batch_rows']:,} rows from the same population plus an id column, one per repetition (different "
        "seeds). Median of "
        f"{data['repeats']}; the 1-minute load average before each measurement is shown (2 cores; others' work "
        "included).",
        "",
        "| measurement | median | each run (load before) |",
        "|---|---|---|",
        f"| `reprobook monitor BATCH` end to end, fresh process (papermill notebook, MLflow run, history, summary) | "
        f"{median(st['runs'], 'seconds'):.1f} s | "
        + ", ".join(f"{r['seconds']:.1f} s ({r['load_before']:.1f})" for r in st["runs"]) + " |",
        f"| first `reprobook monitor` of the project (1,000 rows; includes fetching the model version) | "
        f"{st['first']['seconds']:.1f} s | ({st['first']['load_before']:.1f}) |",
        f"| library, no labels: read_batch + score + monitor_batch | {median(lib['unlabelled'], 'total_seconds'):.2f} s | "
        + ", ".join(f"{r['total_seconds']:.2f} s ({r['load_before']:.1f})" for r in lib["unlabelled"]) + " |",
        f"| of which read_batch (Parquet + digest) | {median(lib['unlabelled'], 'read_seconds'):.2f} s | |",
        f"| of which score (predict + predict_proba) | {median(lib['unlabelled'], 'score_seconds'):.2f} s | |",
        f"| of which monitor_batch (quality, drift, prediction drift, estimate, operations) | "
        f"{median(lib['unlabelled'], 'checks_seconds'):.2f} s | |",
    ]
    if lib.get("labelled"):
        lines.append(f"| library, labels joined (adds realized metrics with bootstrap, concept drift, slices, fairness) | "
                     f"{median(lib['labelled'], 'total_seconds'):.2f} s | "
                     + ", ".join(f"{r['total_seconds']:.2f} s ({r['load_before']:.1f})" for r in lib["labelled"]) + " |")
    lines.append(f"| library: load model + reference (once per process) | "
                 f"{lib['unlabelled'][0]['model_and_reference_load_seconds']:.2f} s | |")
    if ev:
        lines += [
            f"| Evidently DataDriftPreset: preset only | {median(ev, 'seconds'):.2f} s | "
            + ", ".join(f"{r['seconds']:.2f} s ({r['load_before']:.1f})" for r in ev) + " |",
            f"| Evidently: fresh process (imports, read both Parquet files, preset) | {median(ev, 'wall_seconds'):.2f} s | "
            + ", ".join(f"{r['wall_seconds']:.2f} s" for r in ev) + " |",
            f"| Evidently peak RSS | {median(ev, 'peak_rss_mb'):.0f} MB | |",
        ]
    lines += [
        "",
        "Verdicts of the stage runs: " + ", ".join(str(r["verdict"]) for r in st["runs"])
        + "; library findings (first batch, no labels): " + ("; ".join(lib["unlabelled"][0]["findings"]) or "none"),
        "",
        "Scope differs: the stage also validates the schema, estimates performance with intervals, checks the "
        "model's outputs, writes the capture, executes and renders the notebook (a fresh Jupyter kernel), logs "
        "an MLflow run and rebuilds the summary over batches; Evidently's preset only compares column "
        "distributions (Wasserstein / Jensen-Shannon distances at this size).",
        "",
    ]
    lines += reading(data)
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{NAME}.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where the project and batches live")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{NAME}.json"
    if args.render_only:
        print(render(json.loads(path.read_text())))
        return
    import reprobook

    state_at_start = library_state()
    base = args.dir.resolve()
    csv = base / "speed-data" / "wide.csv"
    if not csv.exists():
        make_training_csv(csv)
    project = base / "speed-wide"
    ensure_project(project, ["--data", str(csv), "--target", "approved"])
    batches_dir = base / "speed-batches"
    batches_dir.mkdir(parents=True, exist_ok=True)
    batches = [make_batch_file(batches_dir / f"batch-{k}.parquet", 500 + k, BATCH_ROWS)[0]
               for k in range(args.repeats)]
    first = make_batch_file(batches_dir / "first.parquet", 499, 1000)[0]
    # the stage: start from a project without monitoring history, so every run is a new batch
    import shutil

    for folder in ("monitoring", "reports/monitoring"):
        shutil.rmtree(project / folder, ignore_errors=True)
    stage = {"first": run_stage(project, first), "runs": []}
    for batch in batches:
        stage["runs"].append(run_stage(project, batch))
        print("stage", stage["runs"][-1], flush=True)
    library = {"unlabelled": run_library(project, batches, with_labels=False),
               "labelled": run_library(project, batches, with_labels=True)}
    labelled_profile = profile_labelled(project, batches[0])
    print("library", [e["total_seconds"] for e in library["unlabelled"]],
          [e["total_seconds"] for e in library["labelled"]], flush=True)
    evidently = None
    if not args.no_evidently and EVIDENTLY_PYTHON.exists():
        from reprobook.monitoring import capture as cap
        from reprobook.project.params import project_params

        params = project_params(project)
        reference = cap.fetch_version(project, cap.parse_model_ref(None, params)).directory / "reference" / "features.parquet"
        evidently = [run_evidently(reference, b.with_suffix(".noid.parquet")) for b in batches]
        print("evidently", [e["seconds"] for e in evidently], flush=True)
        version = subprocess.run([str(EVIDENTLY_PYTHON), "-c", "import evidently; print(evidently.__version__)"],
                                 capture_output=True, text=True).stdout.strip()
    profile = json.loads((project / "reports" / "modeling" / "outputs" / "reference" / "profile.json").read_text())
    data = {
        "stage": stage, "library": library, "evidently": evidently, "repeats": args.repeats,
        "profile_labelled": labelled_profile,
        "train_rows": TRAIN_ROWS, "batch_rows": BATCH_ROWS, "reference_rows": profile["rows"]["features"],
        "model": f"{profile.get('primary_metric')} {profile['performance'].get(profile.get('primary_metric')):.3f} held out",
        "machine": platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
        "reprobook": getattr(reprobook, "__version__", "?"), "evidently_version": version if evidently else None,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "library_state": {"start": state_at_start, "end": library_state()},
    }
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(render(data))


if __name__ == "__main__":
    main()
