"""NannyML CBPE runner, executed by the separate NannyML environment (benchmarks/.venv-nannyml).

NannyML 0.13 is built for pandas 2, so it cannot share the project's interpreter
(pandas 3): ``benchmarks/monitoring_estimation.py`` starts this file with
``benchmarks/.venv-nannyml/bin/python`` and talks to it in JSON lines.

Mode ``worker``: read one JSON request per line from stdin,
    {"reference": path, "analysis": path, "chunk_size": n, "metrics": ["roc_auc", "accuracy"]}
where both Parquet files hold ``y_pred_proba`` (raw score of class 1) and ``y_pred``, the reference also
``y_true``; answer each with one JSON line
    {"estimates": {metric: [value per chunk]}, "lower": {...}, "upper": {...}, "chunks": m,
     "fit_seconds": s, "estimate_seconds": s, "calibrated": bool, "nannyml": version}.
CBPE is fitted on the reference (it decides itself whether to calibrate, and with what: isotonic
regression when calibrating lowers the expected calibration error on cross-validation) and
estimates the analysis set in chunks of ``chunk_size`` rows, in row order.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
warnings.filterwarnings("ignore")

import nannyml as nml  # noqa: E402
import pandas as pd  # noqa: E402


def run(request: dict) -> dict:
    reference = pd.read_parquet(request["reference"])
    analysis = pd.read_parquet(request["analysis"])
    metrics = request.get("metrics", ["roc_auc", "accuracy"])
    estimator = nml.CBPE(
        y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true", metrics=metrics,
        chunk_size=int(request["chunk_size"]), problem_type="classification_binary",
    )
    start = time.perf_counter()
    estimator.fit(reference)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    results = estimator.estimate(analysis)
    estimate_seconds = time.perf_counter() - start
    frame = results.filter(period="analysis").to_df()
    answer = {"estimates": {}, "lower": {}, "upper": {}, "chunks": len(frame), "fit_seconds": fit_seconds,
              "estimate_seconds": estimate_seconds, "nannyml": nml.__version__, "pandas": pd.__version__,
              "calibrated": bool(getattr(estimator, "needs_calibration", None))}
    for metric in metrics:
        answer["estimates"][metric] = [float(v) for v in frame[(metric, "value")]]
        answer["lower"][metric] = [float(v) for v in frame[(metric, "lower_confidence_boundary")]]
        answer["upper"][metric] = [float(v) for v in frame[(metric, "upper_confidence_boundary")]]
    return answer


def main(argv: list[str]) -> None:
    if argv[:1] != ["worker"]:
        raise SystemExit("usage: cbpe_runner.py worker")
    for line in sys.stdin:
        print(json.dumps(run(json.loads(line))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
