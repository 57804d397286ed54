"""Pipeline benchmark: framework overhead per stage, the whole pipeline, no-op reruns.

Run on demand (``make bench``), never in the timed tests. It clones the
committed project into a temporary directory (a clean copy) and measures,
each command in a fresh process, with the machine's 1-minute load average
beside every figure (a busy machine explains a slow one):

1. the whole default pipeline (``reprobook run``) from a clean clone, median
   over ``--pipelines`` fresh clones (install not included), with the
   environment's warm process running (:mod:`reprobook.warm`), and once more
   with none running (the first run after an installation or a reboot);
2. a no-op ``reprobook run`` and a no-op ``dvc repro`` (median of ``--repeat``);
3. for each stage, ``reprobook stage NAME`` (kernel start, parameter
   injection, HTML export, MLflow tracking) against the same notebook code
   executed as plain Python in a fresh interpreter, alternated so that load
   falls on both alike (median of ``--repeat`` each); the difference is the
   framework's overhead. The stage is measured as users run it (forked from
   the warm process) and in a process of its own (``REPROBOOK_WARM=0``).

Results go to benchmarks/results/pipeline.json and pipeline.md.
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

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STAGES = ("scoping", "data", "modeling", "error_analysis")
NOTEBOOKS = dict(zip(STAGES, ("01_scoping", "02_data", "03_modeling", "04_error_analysis")))
TARGETS = {"pipeline_s": 20.0, "noop_run_s": 1.5, "noop_dvc_s": 1.0, "overhead_s": 1.0}

PLAIN_RUNNER = """
import json, sys
import matplotlib
matplotlib.use("Agg")
from IPython.display import display
nb = json.load(open(sys.argv[1]))
namespace = {"display": display}
for cell in nb["cells"]:
    if cell["cell_type"] == "code":
        exec(compile("".join(cell["source"]), sys.argv[1], "exec"), namespace)
"""


def env() -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "REPROBOOK_"))}
    base.update(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        DVC_NO_ANALYTICS="1",
        MPLBACKEND="Agg",
        GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@localhost",
        GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@localhost",
    )
    return base


def timed(args: list[str], cwd: Path, **extra: str) -> tuple[float, float]:
    """Wall seconds of one command in a fresh process, and the 1-minute load average when it started."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env={**env(), **extra}, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds, load


def median(samples: list[tuple[float, float]]) -> dict:
    seconds = [s for s, _ in samples]
    return {
        "median_s": round(statistics.median(seconds), 3),
        "samples_s": [round(s, 3) for s in seconds],
        "load_1m": round(statistics.median(load for _, load in samples), 2),
    }


def clone(tmp: Path, name: str) -> Path:
    project = tmp / name
    subprocess.run(["git", "clone", "-q", str(ROOT), str(project)], check=True)
    return project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="samples per median (stages, no-op runs)")
    parser.add_argument("--pipelines", type=int, default=3, help="clean clones timed for the whole pipeline")
    args = parser.parse_args()
    reprobook, dvc = str(BIN / "reprobook"), str(BIN / "dvc")
    results: dict = {
        "machine": f"{platform.platform()}, {os.cpu_count()} cores",
        "python": sys.version.split()[0],
        "repeat": args.repeat,
        "targets": TARGETS,
    }
    with tempfile.TemporaryDirectory(prefix="reprobook-bench-") as tmp:
        print("whole pipeline from a clean clone, no warm process running ...", flush=True)
        subprocess.run([reprobook, "warm", "--stop"], env=env(), capture_output=True, check=True)
        time.sleep(2)  # let the load of the last stage settle
        results["pipeline_cold"] = median([timed([reprobook, "run"], clone(Path(tmp), "pipeline-cold"))])
        runs = []
        for index in range(args.pipelines):
            print(f"whole pipeline from a clean clone ({index + 1}/{args.pipelines}) ...", flush=True)
            runs.append(timed([reprobook, "run"], clone(Path(tmp), f"pipeline-{index}")))
        results["pipeline"] = median(runs)
        project = Path(tmp) / "pipeline-0"
        print(f"no-op reprobook run and dvc repro x{args.repeat} ...", flush=True)
        results["noop_run"] = median([timed([reprobook, "run"], project) for _ in range(args.repeat)])
        results["noop_dvc"] = median([timed([dvc, "repro"], project) for _ in range(args.repeat)])
        stages = {}
        for stage in STAGES:
            print(f"stage {stage}: framework vs plain python (median of {args.repeat}) ...", flush=True)
            notebook = str(project / "notebooks" / f"{NOTEBOOKS[stage]}.ipynb")
            framework, plain, own_process = [], [], []
            for _ in range(args.repeat):
                framework.append(timed([reprobook, "stage", stage, "--no-progress"], project))
                plain.append(timed([sys.executable, "-c", PLAIN_RUNNER, notebook], project))
                own_process.append(timed([reprobook, "stage", stage, "--no-progress"], project, REPROBOOK_WARM="0"))
            row = {"framework": median(framework), "plain": median(plain), "own_process": median(own_process)}
            row["overhead_s"] = round(row["framework"]["median_s"] - row["plain"]["median_s"], 3)
            row["own_process_overhead_s"] = round(row["own_process"]["median_s"] - row["plain"]["median_s"], 3)
            stages[stage] = row
        results["stages"] = stages
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "pipeline.md").write_text(render(results))
    print(render(results))


def render(results: dict) -> str:
    ok = lambda value, target: "yes" if value <= target else "**NO**"  # noqa: E731
    repeat = results["repeat"]
    rows = [
        ("whole default pipeline, clean clone (`reprobook run`)", "pipeline", "pipeline_s"),
        (f"no-op `reprobook run` (median of {repeat})", "noop_run", "noop_run_s"),
        (f"no-op `dvc repro` (median of {repeat})", "noop_dvc", "noop_dvc_s"),
    ]
    lines = [
        "# Pipeline benchmark",
        "",
        f"Machine: {results['machine']}; Python {results['python']}. Produced by `make bench`;",
        "every command in a fresh process; load = the 1-minute load average when it started (median).",
        "",
        "| measurement | seconds | load | target | met |",
        "|---|---:|---:|---:|---|",
    ]
    for label, key, target in rows:
        value = results[key]["median_s"]
        lines.append(f"| {label} | {value:.2f} | {results[key]['load_1m']:.2f} | ≤ {TARGETS[target]} | "
                     f"{ok(value, TARGETS[target])} |")
    if "pipeline_cold" in results:
        cold = results["pipeline_cold"]
        lines.append(f"| the same with no warm process running yet (once) | {cold['median_s']:.2f} | "
                     f"{cold['load_1m']:.2f} | ≤ {TARGETS['pipeline_s']} | {ok(cold['median_s'], TARGETS['pipeline_s'])} |")
    lines += [
        "",
        f"Per stage, median of {repeat}: `reprobook stage NAME` (kernel start, parameter injection, HTML export,",
        "MLflow tracking) against the same notebook code run as plain Python in a fresh interpreter; the stage",
        "forked from the environment's warm process (as it runs by default) and in a process of its own",
        "(`REPROBOOK_WARM=0`).",
        "",
        "| stage | framework s | plain s | overhead s | load | target | met | own process s | its overhead s |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for stage, row in results["stages"].items():
        own = row.get("own_process")
        lines.append(
            f"| {stage} | {row['framework']['median_s']:.2f} | {row['plain']['median_s']:.2f} | "
            f"{row['overhead_s']:.2f} | {row['framework']['load_1m']:.2f} | ≤ {TARGETS['overhead_s']} | "
            f"{ok(row['overhead_s'], TARGETS['overhead_s'])} | "
            + (f"{own['median_s']:.2f} | {row['own_process_overhead_s']:.2f} |" if own else "– | – |")
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
