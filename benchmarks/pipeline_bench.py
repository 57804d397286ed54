"""Pipeline benchmark: whole default pipeline, no-op rerun, per-stage framework overhead.

Run on demand (``make bench``), never in the timed tests. It clones the
committed project into a temporary directory (a clean copy), then measures:

1. the whole default pipeline (``reprobook run``) from the clean clone;
2. a no-op ``dvc repro`` (median of 5);
3. for each stage, ``reprobook stage NAME`` (fresh interpreter, Jupyter kernel
   start, parameter injection, HTML export, MLflow tracking) against the same
   notebook code executed as plain Python in a fresh interpreter; the
   difference is the framework's overhead.

Results go to benchmarks/results/pipeline.json and pipeline.md.
"""

from __future__ import annotations

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
TARGETS = {"pipeline_s": 60.0, "noop_s": 1.5, "overhead_s": 2.0}

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


def timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(args, cwd=cwd, env=env(), check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="reprobook-bench-") as tmp:
        project = Path(tmp) / "project"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(project)], check=True)
        results: dict = {"machine": f"{platform.platform()}, {os.cpu_count()} cores", "python": sys.version.split()[0]}
        print("whole pipeline from a clean clone ...", flush=True)
        results["pipeline_s"] = timed([str(BIN / "reprobook"), "run"], project)
        print("no-op dvc repro x5 ...", flush=True)
        results["noop_s"] = statistics.median(timed([str(BIN / "dvc"), "repro"], project) for _ in range(5))
        overhead = {}
        for stage in STAGES:
            print(f"stage {stage}: framework vs plain python (median of 3) ...", flush=True)
            framework = statistics.median(timed([str(BIN / "reprobook"), "stage", stage, "--no-progress"], project) for _ in range(3))
            notebook = str(project / "notebooks" / f"{NOTEBOOKS[stage]}.ipynb")
            plain = statistics.median(timed([sys.executable, "-c", PLAIN_RUNNER, notebook], project) for _ in range(3))
            overhead[stage] = {"framework_s": framework, "plain_s": plain, "overhead_s": framework - plain}
        results["stages"] = overhead
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "pipeline.md").write_text(render(results))
    print(render(results))


def render(results: dict) -> str:
    ok = lambda value, target: "yes" if value <= target else "NO"  # noqa: E731
    lines = [
        "# Pipeline benchmark",
        "",
        f"Machine: {results['machine']}; Python {results['python']}. Produced by `make bench`.",
        "",
        "| measurement | seconds | target | met |",
        "|---|---:|---:|---|",
        f"| whole default pipeline, clean clone (`reprobook run`) | {results['pipeline_s']:.1f} | ≤ {TARGETS['pipeline_s']:.0f} | {ok(results['pipeline_s'], TARGETS['pipeline_s'])} |",
        f"| no-op `dvc repro` (median of 5) | {results['noop_s']:.2f} | ≤ {TARGETS['noop_s']} | {ok(results['noop_s'], TARGETS['noop_s'])} |",
        "",
        "Per stage, median of 3: `reprobook stage NAME` (kernel start, parameter injection, HTML export,",
        "MLflow tracking) against the same notebook code run as plain Python in a fresh interpreter.",
        "",
        "| stage | framework s | plain s | overhead s | target | met |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for stage, row in results["stages"].items():
        lines.append(
            f"| {stage} | {row['framework_s']:.2f} | {row['plain_s']:.2f} | {row['overhead_s']:.2f} | ≤ {TARGETS['overhead_s']} | {ok(row['overhead_s'], TARGETS['overhead_s'])} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
