"""Evidently 0.7 DataDriftPreset runner, executed by the separate Evidently environment.

Evidently 0.7 needs pandas < 3, so it cannot share the project's interpreter:
the benchmarks start this file with ``benchmarks/.venv-evidently/bin/python``.

Modes:
  speed REF CUR     run the preset once on two Parquet files; print one JSON line
                    (seconds, peak RSS, drifted columns).
  worker            read JSON lines {"ref": path, "cur": path} from stdin and answer
                    each with a JSON line (for the calibration harness).

Evidently's column verdict: p-value methods drift when p < threshold, distance
methods when the distance >= threshold; its data-set verdict is "drifted
columns share >= 0.5" (DriftedColumnsCount(drift_share=0.5)).
"""

from __future__ import annotations

import json
import re
import resource
import sys
import time
import warnings

import pandas as pd

warnings.filterwarnings("ignore")

from evidently import Report  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

COLUMN = re.compile(r"ValueDrift\(column=(?P<column>.+?),method=(?P<method>.+?),threshold=(?P<threshold>[^)]+)\)")


def run_preset(reference: pd.DataFrame, current: pd.DataFrame) -> dict:
    """Evidently's per-column and data-set verdicts, and the time the preset took."""
    start = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    seconds = time.perf_counter() - start
    drifted, methods, share = [], {}, None
    for metric in snapshot.dict()["metrics"]:
        name = metric["metric_name"]
        if name.startswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
            continue
        match = COLUMN.match(name)
        if not match:
            continue
        method, threshold, value = match["method"], float(match["threshold"]), float(metric["value"])
        methods[match["column"]] = method
        is_drift = value < threshold if "p_value" in method else value >= threshold
        if is_drift:
            drifted.append(match["column"])
    return {
        "seconds": seconds,
        "drifted_columns": sorted(drifted),
        "dataset_drift": share is not None and share >= 0.5,
        "methods": sorted(set(methods.values())),
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str]) -> None:
    if argv[:1] == ["speed"]:
        load_start = time.perf_counter()
        reference, current = pd.read_parquet(argv[1]), pd.read_parquet(argv[2])
        load = time.perf_counter() - load_start
        result = run_preset(reference, current)
        result.update(load_seconds=load, peak_rss_mb=peak_rss_mb(), pandas=pd.__version__)
        print(json.dumps(result), flush=True)
        return
    if argv[:1] == ["worker"]:
        for line in sys.stdin:
            request = json.loads(line)
            result = run_preset(pd.read_parquet(request["ref"]), pd.read_parquet(request["cur"]))
            print(json.dumps(result), flush=True)
        return
    raise SystemExit("usage: quality_evidently.py speed REF CUR | worker")


if __name__ == "__main__":
    main(sys.argv[1:])
