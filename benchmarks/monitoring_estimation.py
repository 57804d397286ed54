"""Performance estimation without labels: estimated vs realized accuracy and ROC AUC, vs NannyML CBPE.

The reference model is the loan model of tests/test_estimate.py: scikit-learn's
HistGradientBoostingClassifier(max_depth=4, max_iter=150, random_state=42) on
``make_loans(5000, 42)`` split 80/20 (stratified, seed 42), categorical columns
ordinal-encoded. It is calibrated on the 1,000 held-out rows
(``reprobook.monitoring.estimate.fit_calibration``, defaults), then batches of
1,000 and 5,000 rows from ``reprobook.monitoring.simulate.make_batch`` —
``covariate_sudden`` at shift_sd 0, 0.25, 0.5 and 1.0 (pure covariate shift:
the label rule is the training one), 20 batches each, and ``concept_drift``
for contrast — are estimated without their labels and compared with the
realized metrics. NannyML's CBPE (0.13, own environment: benchmarks/nannyml/)
gets the same held-out rows as reference (raw scores and labels: it decides
itself whether to calibrate) and each batch as one chunk.

Calibration variants, to show where the error comes from: the default (spline
on the 1,000 held-out rows), isotonic regression on the same rows, the spline
on out-of-fold scores of all 5,000 reference rows (5-fold cross-fitting), and
the spline on 50,000 fresh rows scored by the model (the large-sample limit:
what remains is the estimation method's own error under shift).

    .venv/bin/python benchmarks/monitoring_estimation.py                # 2-5 min on 2 cores
    .venv/bin/python benchmarks/monitoring_estimation.py --batches 5    # quick look
    .venv/bin/python benchmarks/monitoring_estimation.py --render-only  # Markdown from the saved JSON
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OrdinalEncoder

from reprobook.ml.loans import TARGET, make_loans
from reprobook.monitoring.estimate import estimate_from_scores, estimate_performance, fit_calibration
from reprobook.monitoring.simulate import ID_COLUMN, make_batch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
NANNYML_PYTHON = HERE / ".venv-nannyml" / "bin" / "python"
NANNYML_RUNNER = HERE / "nannyml" / "cbpe_runner.py"
SIZES = (1_000, 5_000)
SETTINGS: tuple[tuple[str, float], ...] = (
    ("covariate_sudden", 0.0), ("covariate_sudden", 0.25), ("covariate_sudden", 0.5), ("covariate_sudden", 1.0),
    ("concept_drift", 0.5),
)
METRICS = ("accuracy", "roc_auc")
TARGET_MAE = 0.02
VARIANTS = {
    "spline_holdout": "spline, 1,000 held-out rows (default)",
    "isotonic_holdout": "isotonic, 1,000 held-out rows",
    "spline_crossfit": "spline, 5,000 cross-fitted rows",
    "spline_large": "spline, 50,000 fresh rows (limit)",
}
NANNYML_REFERENCES = {"holdout": "1,000 held-out rows", "crossfit": "5,000 cross-fitted rows"}


def loan_model(features: pd.DataFrame):
    categorical = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    encode = ColumnTransformer(
        [("categories", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                       encoded_missing_value=-1), categorical)],
        remainder="passthrough",
    )
    return make_pipeline(encode, HistGradientBoostingClassifier(max_depth=4, max_iter=150, random_state=42))


def reference():
    """The model, and the labelled scores each calibration variant is fitted on."""
    frame = make_loans(5000, 42)
    features = [c for c in frame.columns if c != TARGET]
    train, holdout = train_test_split(frame, test_size=0.2, random_state=42, stratify=frame[TARGET])
    model = loan_model(train[features]).fit(train[features], train[TARGET])
    oof = cross_val_predict(clone(model), frame[features], frame[TARGET], method="predict_proba",
                            cv=StratifiedKFold(5, shuffle=True, random_state=0))
    large = make_loans(50_000, 99)
    sets = {
        "holdout": (model.predict_proba(holdout[features]), holdout[TARGET].to_numpy()),
        "crossfit": (oof, frame[TARGET].to_numpy()),
        "large": (model.predict_proba(large[features]), large[TARGET].to_numpy()),
    }
    return model, features, sets


def reference_quality(sets: dict) -> dict:
    """The model's realized accuracy and AUC on each calibration set: what a calibration fitted on it inherits."""
    return {
        name: {"rows": int(len(y)), "accuracy": float(skm.accuracy_score(y, (scores[:, 1] > 0.5).astype(int))),
               "roc_auc": float(skm.roc_auc_score(y, scores[:, 1]))}
        for name, (scores, y) in sets.items()
    }


class NannyML:
    """One long-lived CBPE worker (benchmarks/nannyml/cbpe_runner.py) fed Parquet files."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
        self.process = subprocess.Popen([str(NANNYML_PYTHON), str(NANNYML_RUNNER), "worker"], env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, reference: pd.DataFrame, analysis: pd.DataFrame, chunk_size: int) -> dict:
        ref_path, ana_path = self.tmp / "reference.parquet", self.tmp / "analysis.parquet"
        reference.to_parquet(ref_path)
        analysis.to_parquet(ana_path)
        request = {"reference": str(ref_path), "analysis": str(ana_path), "chunk_size": chunk_size,
                   "metrics": list(METRICS)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the NannyML worker stopped (exit code {self.process.poll()})")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def nannyml_frame(scores: np.ndarray, y: np.ndarray | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"y_pred_proba": scores[:, 1], "y_pred": (scores[:, 1] > 0.5).astype(np.int64)})
    if y is not None:
        frame["y_true"] = y.astype(np.int64)
    return frame


def label(setting: tuple[str, float]) -> str:
    scenario, shift = setting
    return f"covariate shift {shift:g} SD" if scenario.startswith("covariate") else f"concept drift {shift:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=20, help="batches per batch size and setting")
    parser.add_argument("--no-nannyml", action="store_true")
    parser.add_argument("--render-only", action="store_true", help="re-render the Markdown from the saved JSON")
    args = parser.parse_args()
    if args.render_only:
        render(json.loads((RESULTS / "monitoring_estimation.json").read_text()))
        return

    started = time.perf_counter()
    model, features, sets = reference()
    calibrations, fit_seconds = {}, {}
    for variant in VARIANTS:
        method, source = variant.split("_")
        start = time.perf_counter()
        calibrations[variant] = fit_calibration(*sets[source], model.classes_, method=method)
        fit_seconds[variant] = time.perf_counter() - start

    rows: dict[tuple[int, str, float], dict] = {}
    analysis: dict[tuple[int, str, float], pd.DataFrame] = {}
    for n in SIZES:
        for setting in SETTINGS:
            scenario, shift = setting
            record = {"realized": {m: [] for m in METRICS}, "seconds": {v: [] for v in VARIANTS}}
            record.update({v: {m: [] for m in METRICS} for v in [*VARIANTS, "labels_only"]})
            frames = []
            for index in range(args.batches):
                batch, labels = make_batch(scenario, n, seed=n, index=index, shift_sd=shift)
                x = batch.drop(columns=[ID_COLUMN])[features]
                y = labels[TARGET].to_numpy()
                raw = model.predict_proba(x)
                predicted = model.predict(x)
                record["realized"]["accuracy"].append(float(skm.accuracy_score(y, predicted)))
                record["realized"]["roc_auc"].append(float(skm.roc_auc_score(y, raw[:, 1])))
                for variant, calibration in calibrations.items():
                    start = time.perf_counter()
                    estimates = estimate_from_scores(calibration, raw, METRICS, predicted=predicted, seed=index)
                    record["seconds"][variant].append(time.perf_counter() - start)
                    for m in METRICS:
                        record[variant][m].append(estimates[m].to_dict())
                default = calibrations["spline_holdout"]
                labels_only = estimate_performance(default.apply(raw), model.classes_, METRICS, predicted=predicted,
                                                   raw_scores=raw, seed=index)
                for m in METRICS:
                    record["labels_only"][m].append(labels_only[m].to_dict())
                frames.append(nannyml_frame(raw))
            rows[(n, scenario, shift)] = record
            analysis[(n, scenario, shift)] = pd.concat(frames, ignore_index=True)
            print(f"n={n:>5} {label(setting):26} realized acc {np.mean(record['realized']['accuracy']):.3f} "
                  f"estimated {np.mean([e['value'] for e in record['spline_holdout']['accuracy']]):.3f}", flush=True)

    nannyml_note, nannyml_meta = "", {}
    if args.no_nannyml:
        nannyml_note = "NannyML not run (--no-nannyml)."
    elif not NANNYML_PYTHON.exists():
        nannyml_note = (f"NannyML not run: {NANNYML_PYTHON.relative_to(HERE.parent)} missing "
                        "(python3.11 -m venv benchmarks/.venv-nannyml; "
                        "pip install -r benchmarks/nannyml/requirements.txt).")
    else:
        with tempfile.TemporaryDirectory(prefix="nannyml-") as tmp:
            worker = NannyML(Path(tmp))
            try:
                for ref_name in NANNYML_REFERENCES:
                    ref = nannyml_frame(*sets[ref_name])
                    for key, frame in analysis.items():
                        answer = worker.run(ref, frame, chunk_size=key[0])
                        if answer["chunks"] != args.batches:
                            raise RuntimeError(f"NannyML made {answer['chunks']} chunks of {key}, not {args.batches}")
                        rows[key][f"nannyml_{ref_name}"] = {
                            m: [{"value": v, "low": lo, "high": hi} for v, lo, hi in
                                zip(answer["estimates"][m], answer["lower"][m], answer["upper"][m])]
                            for m in METRICS
                        }
                        rows[key].setdefault("seconds", {})[f"nannyml_{ref_name}"] = [
                            answer["estimate_seconds"] / answer["chunks"]] * answer["chunks"]
                        nannyml_meta[ref_name] = {
                            "calibrated": answer["calibrated"], "fit_seconds": answer["fit_seconds"],
                            "nannyml": answer["nannyml"], "pandas": answer["pandas"],
                        }
            finally:
                worker.close()

    elapsed = time.perf_counter() - started
    write_results(rows, fit_seconds, nannyml_meta, nannyml_note, elapsed, args.batches, reference_quality(sets))


def summarise(record: dict, source: str) -> dict:
    """MAE, bias and interval coverage of one estimator over the batches of one setting."""
    if source not in record:
        return {}
    out = {}
    for m in METRICS:
        realized = np.array(record["realized"][m])
        value = np.array([e["value"] for e in record[source][m]])
        low = np.array([e["low"] for e in record[source][m]])
        high = np.array([e["high"] for e in record[source][m]])
        out[m] = {
            "mae": float(np.mean(np.abs(value - realized))), "bias": float(np.mean(value - realized)),
            "max_error": float(np.max(np.abs(value - realized))),
            "coverage": float(np.mean((low <= realized) & (realized <= high))),
            "mean_width": float(np.mean(high - low)), "mean_estimate": float(np.mean(value)),
        }
    seconds = record.get("seconds", {}).get(source)
    out["ms_per_batch"] = float(np.mean(seconds) * 1000) if seconds else None
    return out


def write_results(rows, fit_seconds, nannyml_meta, nannyml_note, elapsed, batches, quality) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    sources = [*VARIANTS, "labels_only", *(f"nannyml_{r}" for r in NANNYML_REFERENCES)]
    table = []
    for (n, scenario, shift), record in rows.items():
        table.append({
            "n": n, "scenario": scenario, "shift_sd": shift, "batches": batches,
            "realized_mean": {m: float(np.mean(record["realized"][m])) for m in METRICS},
            **{source: summarise(record, source) for source in sources},
        })
    data = {
        "rows": table, "variants": VARIANTS, "nannyml_references": NANNYML_REFERENCES,
        "calibration_fit_seconds": fit_seconds, "nannyml": nannyml_meta, "nannyml_note": nannyml_note,
        "elapsed_seconds": elapsed, "cores": os.cpu_count(), "machine": platform.machine(),
        "python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__,
        "target_mae": TARGET_MAE, "calibration_sets": quality,
    }
    (RESULTS / "monitoring_estimation.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    render(data)


def render(data: dict) -> None:
    """benchmarks/results/monitoring_estimation.md from the saved JSON (and printed)."""
    rows = data["rows"]
    # JSON keys come back sorted: put the variants back in the order of the constants above
    variants = {v: data["variants"][v] for v in VARIANTS if v in data["variants"]}
    references = {r: data["nannyml_references"][r] for r in NANNYML_REFERENCES if r in data["nannyml_references"]}
    nml = {r: data["nannyml"][r] for r in NANNYML_REFERENCES if r in data.get("nannyml", {})}
    nml_version = next(iter(nml.values()), {}).get("nannyml", "0.13")
    cell = lambda s, m, key="mae": "—" if not s else f"{s[m][key]:.4f}"  # noqa: E731
    pct = lambda s, m: "—" if not s else f"{s[m]['coverage']:.0%}"  # noqa: E731
    ms = lambda s: "—" if not s or s.get("ms_per_batch") is None else f"{s['ms_per_batch']:.1f}"  # noqa: E731
    shift_label = lambda r: (f"{r['shift_sd']:g}" if r["scenario"].startswith("covariate")  # noqa: E731
                             else f"concept drift {r['shift_sd']:g}")
    lines = [
        "# Performance estimation without labels",
        "",
        f"Measured by `benchmarks/monitoring_estimation.py` on {data['machine']} with {data['cores']} cores (shared "
        f"with other work) in {data['elapsed_seconds'] / 60:.1f} minutes. Model: HistGradientBoostingClassifier"
        "(max_depth=4, max_iter=150) trained on 4,000 rows of `make_loans(5000, 42)`; batches from "
        "`reprobook.monitoring.simulate.make_batch` (`covariate_sudden`: credit score, debt-to-income, income "
        "and age moved by *shift* training SDs, same label rule; `concept_drift`: a new label rule), "
        f"{rows[0]['batches']} batches per row. Each batch is estimated without its labels, then compared with "
        "its realized accuracy and ROC AUC. MAE = mean |estimate - realized| over the batches; coverage = share "
        "of batches whose realized value lies inside the estimate's 95% interval.",
        "",
        f"NannyML {nml_version} CBPE runs in its own environment (`benchmarks/.venv-nannyml`, "
        "`benchmarks/nannyml/requirements.txt`) on the same batches: reference = the same held-out rows' raw "
        "scores and labels (CBPE calibrates them itself if its cross-validated check says calibration helps), "
        "one chunk per batch.",
        "",
    ]
    if data.get("nannyml_note"):
        lines += [f"**{data['nannyml_note']}**", ""]
    for name, meta in nml.items():
        lines.append(f"- NannyML reference '{name}': calibration applied = {meta['calibrated']}, "
                     f"fit {meta['fit_seconds']:.2f} s")
    if nml:
        lines.append("")
    lines += [
        "## reprobook (default) vs NannyML CBPE — reference: the 1,000 held-out rows",
        "",
        "| rows | shift (SD) | realized acc | realized AUC | reprobook MAE acc | reprobook MAE AUC | coverage acc "
        "| coverage AUC | NannyML MAE acc | NannyML MAE AUC | reprobook ms/batch | NannyML ms/batch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ours, theirs = r["spline_holdout"], r.get("nannyml_holdout", {})
        lines.append(
            f"| {r['n']:,} | {shift_label(r)} | {r['realized_mean']['accuracy']:.3f} | "
            f"{r['realized_mean']['roc_auc']:.3f} | {cell(ours, 'accuracy')} | {cell(ours, 'roc_auc')} | "
            f"{pct(ours, 'accuracy')} | {pct(ours, 'roc_auc')} | {cell(theirs, 'accuracy')} | "
            f"{cell(theirs, 'roc_auc')} | {ms(ours)} | {ms(theirs)} |")
    lines += [
        "",
        "reprobook ms/batch: applying the stored calibration and estimating both metrics with their intervals "
        "(400 draws, 40 calibration replicates). NannyML ms/batch: its `estimate()` time divided by the chunks "
        "(fitting excluded, as for reprobook).",
        "",
        "## Where the error comes from: calibration variants (MAE accuracy / MAE AUC)",
        "",
        "| rows | shift (SD) | " + " | ".join(variants.values()) + " | NannyML, "
        + " | NannyML, ".join(references.values()) + " |",
        "|---|---|" + "---|" * (len(variants) + len(references)),
    ]
    for r in rows:
        cells = [f"{cell(r[v], 'accuracy')} / {cell(r[v], 'roc_auc')}" for v in variants]
        cells += [f"{cell(r.get('nannyml_' + k, {}), 'accuracy')} / {cell(r.get('nannyml_' + k, {}), 'roc_auc')}"
                  for k in references]
        lines.append(f"| {r['n']:,} | {shift_label(r)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Interval coverage (accuracy / AUC; nominal 95%)",
        "",
        "| rows | shift (SD) | default (labels + calibration replicates) | labels only (no replicates) | "
        "spline, 5,000 cross-fitted rows | NannyML band (±3 SE), held-out reference |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        def cov(s):
            return "—" if not s else f"{pct(s, 'accuracy')} / {pct(s, 'roc_auc')}"
        lines.append(f"| {r['n']:,} | {shift_label(r)} | {cov(r['spline_holdout'])} | {cov(r['labels_only'])} | "
                     f"{cov(r['spline_crossfit'])} | {cov(r.get('nannyml_holdout', {}))} |")
    checks = []
    for r in rows:
        if r["n"] != 5_000 or not r["scenario"].startswith("covariate"):
            continue
        worst = max(r["spline_holdout"][m]["mae"] for m in METRICS)
        crossfit = max(r["spline_crossfit"][m]["mae"] for m in METRICS)
        checks.append(f"- 5,000 rows, shift {r['shift_sd']:g} SD: worst MAE {worst:.4f} with the default "
                      f"(held-out) calibration — {'met' if worst <= data['target_mae'] else 'NOT met'}; "
                      f"{crossfit:.4f} with cross-fitted calibration — "
                      f"{'met' if crossfit <= data['target_mae'] else 'NOT met'}")
    lines += ["", f"## Target: MAE <= {data['target_mae']} at 5,000 rows (covariate shift)", "", *checks, ""]
    quality = data.get("calibration_sets", {})
    if quality:
        lines += ["The model's realized quality on each calibration set (a calibration fitted on a set inherits "
                  "its luck; the 50,000 fresh rows stand for the population the unshifted batches come from):", "",
                  "| calibration set | rows | accuracy | ROC AUC |", "|---|---|---|---|"]
        for name in ("holdout", "crossfit", "large"):
            q = quality[name]
            lines.append(f"| {name} | {q['rows']:,} | {q['accuracy']:.4f} | {q['roc_auc']:.4f} |")
        lines.append("")
    fits = ", ".join(f"{variants[v]}: {data['calibration_fit_seconds'][v]:.2f} s" for v in variants)
    lines += [f"Calibration fit times (with 40 bootstrap replicates): {fits}.", ""]
    lines += READING
    text = "\n".join(lines) + "\n"
    (RESULTS / "monitoring_estimation.md").write_text(text)
    print(text)


READING: list[str] = [
    "## Reading the tables (figures quoted from the 20-batch run; everything is seeded, only timings vary)",
    "",
    "- **Target met with the default.** At 5,000 rows under covariate shift the worst MAE is 0.0175 (accuracy, "
    "no shift) and 0.0200 (AUC, 1 SD) — the last on the edge. NannyML CBPE with the same reference misses "
    "it for AUC at every shift (0.026-0.049).",
    "- **NannyML = isotonic.** CBPE decided to calibrate, with isotonic regression; reprobook's isotonic "
    "variant matches its MAEs to within 0.0003 on every row (the 'isotonic' and 'NannyML, 1,000 "
    "held-out rows' columns), so the difference between the tools is the calibration map. Isotonic's "
    "end blocks, fitted on a few dozen rows each, pin the tails; a shifted batch concentrates there (most "
    "1-SD rows score below 0.2), hence AUC MAE 0.049 against the spline's 0.020 at 1 SD.",
    "- **Most of the remaining error is the calibration set, not the method.** The 1,000 held-out rows are "
    "easier than the population (the model's accuracy on them 0.822 against 0.806 on 50,000 fresh rows; AUC "
    "0.895 against 0.874), and any calibration fitted on them inherits that for every batch alike: the "
    "default's errors are one-sided (bias +0.0175 accuracy and +0.0174 AUC at 5,000 rows without shift, "
    "equal to its MAE). Calibrating on out-of-fold scores of all 5,000 reference rows (5-fold "
    "cross-fitting of the same estimator; the final model is unchanged) cuts the error to 0.005-0.007 "
    "at 5,000 rows without shift, close to the 50,000-row limit (0.004-0.005).",
    "- **Covariate shift is not quite harmless.** CBPE's premise is that P(y | score) stays put. Under "
    "covariate shift P(y | x) does, but P(y | score) only approximately: at 1 SD (applicants older and "
    "poorer than nearly all of training) even the 50,000-row calibration overestimates AUC by 0.019 and "
    "underestimates accuracy by 0.008, where the model extrapolates. At 0.25-0.5 SD the 50,000-row "
    "calibration's MAE stays at or below 0.006 (5,000 rows).",
    "- **Concept drift is not estimable**, as documented: the estimate stays at the reference level "
    "(accuracy about 0.82) while the realized accuracy falls to 0.76; no interval covers it. Only labels "
    "reveal this; the estimate is a covariate-shift tool.",
    "- **Intervals.** The spread of the realized metric from the labels' randomness alone ('labels only') is "
    "about ±0.01 at 5,000 rows, smaller than the calibration set's error, so such an interval covers the "
    "realized value in only 5-45% of batches there (shifts up to 0.5 SD). With the calibration's 40 bootstrap "
    "replicates "
    "(default) coverage is 85-100% (nominal 95%), at widths of 0.045-0.073 for accuracy; with cross-fitted "
    "calibration 90-100% at half that width. NannyML's ±3 SE band covers AUC in 0% of 5,000-row batches.",
    "- **Speed.** Estimating both metrics with intervals takes about 5 ms per 1,000-row batch and 30-70 ms "
    "per 5,000-row batch, with 400 Monte-Carlo draws (up to 4 times that when the 2 cores are busy with "
    "other work; 100,000 rows take about a second, tests/test_estimate.py); NannyML's estimate takes about 4 ms per chunk (a closed-form band, no draws). "
    "Fitting a calibration takes 0.1-0.2 s.",
    "",
]
"""Hand-written reading of the figures above (kept in the script so --render-only reproduces it)."""


if __name__ == "__main__":
    main()
