"""Batch monitoring over time: false alarms on unchanged data and the delay to detect a shift, vs Evidently.

A loan project made by ``reprobook new`` and ``reprobook run`` (built-in data,
5,000 rows) provides the champion model and its training reference. Every
batch goes through the library's checks, ``monitor_batch`` (quality, feature
and prediction drift, estimated performance, operations, and with labels
realized performance and concept drift) exactly as the monitoring notebook
calls them, without the notebook and MLflow around them (that is
``benchmarks/monitoring_speed.py``).

* **No change**: N sequences of 30 ``none`` batches (simulate.make_batch, one
  seed per sequence, batch i = SeedSequence(seed, spawn_key=(i,))). A sequence
  false-alarms when any of its batches gets the verdict; reported for
  "retrain" and for "watch or worse", per sequence and per batch. Without
  labels on every sequence; with labels (joined by ``capture.join_labels``
  from a CSV, every batch) on the first ``--labelled-sequences`` of them (a
  labelled batch costs ~5x an unlabelled one: the realized metrics'
  bootstrap). The labelled report holds the unlabelled one: its findings
  minus "realized performance" and "concept drift" (checked against a real
  unlabelled run on the first two labelled sequences).
* **Shift**: the same seeds, ``covariate_sudden`` with shift_sd 0.2 from batch
  10 (batches 0-9 are byte-identical to the no-change ones, checked, so their
  verdicts are reused). Batches to detection = first flagged batch - 10 + 1
  (1 = flagged on the first shifted batch), run until flagged or batch 29.
* **Evidently 0.7** DataDriftPreset (defaults) on the same reference (the
  reference's features.parquet) and the same batches without the id column,
  in its own environment (benchmarks/.venv-evidently, quality_evidently.py
  worker mode, running concurrently with reprobook's checks): its data-set
  verdict (drifted share >= 0.5) and "any column drifted".

    .venv/bin/python benchmarks/monitoring_alarms.py                  # 5,000 rows (~10 min on 2 shared cores)
    .venv/bin/python benchmarks/monitoring_alarms.py --rows 1000      # adds the 1,000-row setting to the results
    .venv/bin/python benchmarks/monitoring_alarms.py --render-only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TMP = HERE / "tmp"
EVIDENTLY_PYTHON = HERE / ".venv-evidently" / "bin" / "python"
DEFAULT_PROJECTS = Path(tempfile.gettempdir()) / "reprobook-bench"
NAME = "monitoring_alarms"
LABEL_ONLY_CHECKS = {"realized performance", "concept drift"}
RANK = {"healthy": 0, "watch": 1, "retrain": 2}
LETTER = {"healthy": ".", "watch": "w", "retrain": "R"}


# --- set-up ----------------------------------------------------------------------


def bench_env() -> dict[str, str]:
    """The environment of a child reprobook command: without the MLflow URIs that reprobook's ``store.client``
    leaves in ``os.environ`` (mlflow.set_tracking_uri exports them), or a child would use the last loaded
    project's store instead of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.setdefault("MPLBACKEND", "Agg")
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        env.setdefault(key, "bench")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        env.setdefault(key, "bench@localhost")
    return env


def reprobook_cli() -> str:
    found = Path(sys.executable).parent / "reprobook"
    return str(found) if found.exists() else (shutil.which("reprobook") or "reprobook")


def ensure_project(project: Path, new_args: list[str] | None = None, data_seed: int | None = None) -> None:
    """A project whose pipeline has run (champion registered); made with the command line when missing.

    ``data_seed`` replaces ``data.seed`` in params.yaml (generation of the built-in data and the split) before
    the run: another draw of the training data, the held-out rows and hence the reference.
    """
    import re

    if (project / "mlflow.db").exists() and (project / "reports" / "modeling" / "outputs" / "reference").is_dir():
        return
    if project.exists():
        shutil.rmtree(project)
    project.parent.mkdir(parents=True, exist_ok=True)
    print(f"making {project}: reprobook new + reprobook run", flush=True)
    subprocess.run([reprobook_cli(), "new", str(project), *(new_args or [])], check=True, env=bench_env(),
                   stdout=subprocess.DEVNULL)
    if data_seed is not None:
        params = project / "params.yaml"
        text, n = re.subn(r"(\ndata:\n(?:[ #].*\n)*?  seed: )\d+", rf"\g<1>{data_seed}", params.read_text(), count=1)
        assert n == 1, "data.seed not found in params.yaml"
        params.write_text(text)
    subprocess.run([reprobook_cli(), "run"], check=True, cwd=project, env=bench_env(), stdout=subprocess.DEVNULL)
    if not (project / "mlflow.db").exists():
        raise RuntimeError(f"{project}: no mlflow.db after reprobook run")


def load_champion(project: Path):
    from reprobook.monitoring import capture as cap
    from reprobook.monitoring.reference import load_reference
    from reprobook.project.params import project_params

    # reprobook's store.client exports MLFLOW_TRACKING_URI (mlflow.set_tracking_uri), and tracking_uri() honours
    # that variable first: without this, the second project loaded in a process would read the first one's store
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(key, None)
    params = project_params(project)
    serving = cap.load_serving_model(project, cap.parse_model_ref(None, params), params)
    return params, serving, load_reference(serving.reference_dir)


# --- statistics -----------------------------------------------------------------------


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate(k: int, n: int) -> dict:
    low, high = wilson(k, n)
    return {"k": k, "n": n, "rate": k / n if n else None, "low": low, "high": high}


def delays(values: list[int | None], horizon: int) -> dict:
    """Batches to detection (1 = first shifted batch); None = not detected within the horizon."""
    n = len(values)
    found = sorted(v for v in values if v is not None)
    as_array = np.array([v if v is not None else np.inf for v in values], dtype=float)
    def q(p: float):
        value = float(np.quantile(as_array, p, method="higher")) if n else math.nan
        return None if not math.isfinite(value) else int(value)
    return {
        "n": n, "detected": len(found), "horizon": horizon, "median": q(0.5), "p90": q(0.9),
        "max": (found[-1] if len(found) == n and n else None),
        "within_1": rate(sum(v <= 1 for v in found), n), "within_2": rate(sum(v <= 2 for v in found), n),
        "histogram": {str(k): v for k, v in sorted(Counter(found).items())} | ({"not detected": n - len(found)} if n - len(found) else {}),
    }


# --- Evidently -------------------------------------------------------------------------


class EvidentlyWorker:
    """One long-lived Evidently process; a request is sent, reprobook works, then the answer is read."""

    def __init__(self) -> None:
        self.current = TMP / f"{NAME}_current_{os.getpid()}.parquet"
        self.process = subprocess.Popen([str(EVIDENTLY_PYTHON), str(HERE / "quality_evidently.py"), "worker"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pending = False
        self.seconds: list[float] = []

    def send(self, reference: Path, features: pd.DataFrame) -> None:
        assert not self.pending
        features.to_parquet(self.current, index=False)
        self.process.stdin.write(json.dumps({"ref": str(reference), "cur": str(self.current)}) + "\n")
        self.process.stdin.flush()
        self.pending = True

    def receive(self) -> dict:
        line = self.process.stdout.readline()
        self.pending = False
        if not line:
            raise RuntimeError("the Evidently worker stopped (see its stderr above)")
        answer = json.loads(line)
        self.seconds.append(answer["seconds"])
        return answer

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)
        self.current.unlink(missing_ok=True)


# --- one batch through reprobook ---------------------------------------------------------------


class Timing:
    def __init__(self) -> None:
        self.score_seconds: list[float] = []
        self.check_seconds: dict[bool, list[float]] = {False: [], True: []}


class Monitor:
    """One champion (one draw of the training data) and its reference."""

    def __init__(self, project: Path, data_seed: int, timing: Timing) -> None:
        self.project, self.data_seed = project, data_seed
        self.params, self.serving, self.reference = load_champion(project)
        self.labels_path = TMP / f"{NAME}_labels_{os.getpid()}.csv"
        self.timing = timing
        self.primary = self.reference.profile["primary_metric"]

    @property
    def score_seconds(self) -> list[float]:
        return self.timing.score_seconds

    @property
    def check_seconds(self) -> dict[bool, list[float]]:
        return self.timing.check_seconds

    def truth(self, rows: int = 50_000) -> dict:
        """The model on a large unchanged batch: its real primary metric, and what the calibrated scores expect."""
        from sklearn.metrics import roc_auc_score

        from reprobook.monitoring import capture as cap
        from reprobook.monitoring.monitor import estimate
        from reprobook.monitoring.simulate import make_batch

        features, labels = make_batch("none", rows, 99_000 + self.data_seed)
        batch = cap.Batch(path=Path("truth"), frame=features, digest="truth", ids=features["id"].astype(str))
        scored = cap.score(self.serving, batch)
        expected = estimate(self.reference, scored.predictions, scored.raw_scores, self.params.monitoring)
        held_out_sd = (self.reference.profile.get("performance_sd") or {}).get(self.primary)
        if held_out_sd is None:
            from reprobook.monitoring.monitor import reference_sd

            held_out_sd = reference_sd(self.reference, self.primary, self.params.monitoring.seed)
        found = {"data_seed": self.data_seed, "rows": rows, "metric": self.primary,
                 "held_out": self.reference.profile["performance"][self.primary],
                 "held_out_sd": held_out_sd,
                 "expected_from_calibration": expected[self.primary].value if self.primary in expected else None}
        if self.primary == "roc_auc" and scored.raw_scores is not None:
            found["true"] = float(roc_auc_score(labels["approved"], scored.raw_scores[:, 1]))
        return found

    def run(self, index: int, features: pd.DataFrame, labels: pd.DataFrame | None):
        from reprobook.monitoring import capture as cap
        from reprobook.monitoring.monitor import monitor_batch

        batch = cap.Batch(path=Path(f"mem-{index:03d}"), frame=features, digest=f"bench-{index:03d}",
                          ids=features["id"].astype(str).reset_index(drop=True).rename(cap.ID))
        scored = cap.score(self.serving, batch)
        self.score_seconds.append(scored.seconds)
        labelled = None
        start = time.perf_counter()
        if labels is not None:
            labels.to_csv(self.labels_path, index=False)
            labelled = cap.join_labels(scored.predictions, self.labels_path, self.reference.profile["target"],
                                       self.params.monitoring.id_column)
        report = monitor_batch(index, batch, scored, self.serving, self.reference, self.params.monitoring,
                               self.params.error_analysis, labelled=labelled,
                               extra_columns=[c for c in features.columns if c not in self.serving.features])
        self.check_seconds[labels is not None].append(time.perf_counter() - start)
        return report


def verdict_of(findings, exclude: set[str] = frozenset()) -> str:
    ranks = [RANK[f.verdict] for f in findings if f.check not in exclude]
    return [k for k, v in RANK.items() if v == max(ranks, default=0)][0]


def finding_records(findings) -> list[dict]:
    return [{"check": f.check, "verdict": f.verdict, "reason": f.reason} for f in findings]


# --- the experiment --------------------------------------------------------------------------------


def run_setting(monitors: list[Monitor], rows: int, sequences: int, labelled_sequences: int,
                evidently_sequences: int, batches: int, start: int, shift_sd: float, evidently: bool) -> dict:
    """Sequence s is watched by model s mod K (K = len(monitors)), so every reference sees its share."""
    from reprobook.monitoring.simulate import make_batch

    seeds = [7_000_000 + 1000 * rows + s for s in range(sequences)]
    worker = EvidentlyWorker() if evidently else None
    loads = [os.getloadavg()]
    started = time.perf_counter()
    # pre-shift batches of the shift scenario are the no-change batches (their verdicts are reused)
    for i in (0, start - 1):
        a, b = make_batch("none", rows, seeds[0], index=i), make_batch("covariate_sudden", rows, seeds[0], index=i,
                                                                       start=start, shift_sd=shift_sd)
        pd.testing.assert_frame_equal(a[0], b[0])
        pd.testing.assert_frame_equal(a[1], b[1])

    sequences_out = []
    consistency_checked = 0
    gaps = []  # labelled batches: realized and estimated primary metric on the same rows (concept-drift check)
    for s, seed in enumerate(seeds):
        monitor = monitors[s % len(monitors)]
        primary = monitor.primary
        labelled_run = s < labelled_sequences
        ask = worker is not None and s < evidently_sequences
        record = {"seed": seed, "data_seed": monitor.data_seed, "labelled": labelled_run, "unlabelled": "", "with_labels": "",
                  "evidently_dataset": "", "evidently_column": "", "findings": []}
        for i in range(batches):
            features, labels = make_batch("none", rows, seed, index=i)
            if ask:
                worker.send(monitor.serving.reference_dir / "features.parquet", features.drop(columns="id"))
            report = monitor.run(i, features, labels if labelled_run else None)
            unlabelled = verdict_of(report.findings, LABEL_ONLY_CHECKS)
            if labelled_run and s < 2:  # the labelled report contains the unlabelled one: check it for real
                plain = monitor.run(i, features, None)
                # (operations is re-timed, so it is left out of the comparison)
                assert verdict_of(plain.findings, {"operations"}) == verdict_of(
                    report.findings, LABEL_ONLY_CHECKS | {"operations"}), (seed, i, plain.findings, report.findings)
                consistency_checked += 1
            record["unlabelled"] += LETTER[unlabelled]
            if labelled_run:
                record["with_labels"] += LETTER[report.verdict]
                real, est = report.realized.get(primary), report.estimated.get(primary)
                if real and est:
                    gaps.append({"seed": seed, "data_seed": monitor.data_seed, "batch": i, "realized": real.value, "realized_sd": real.sd,
                                 "estimated": est.value, "estimated_sd": est.sd})
            non_healthy = [f for f in report.findings if f.verdict != "healthy"]
            if non_healthy:
                record["findings"].append({"batch": i, "findings": finding_records(non_healthy)})
            if ask:
                answer = worker.receive()
                record["evidently_dataset"] += "D" if answer["dataset_drift"] else "."
                record["evidently_column"] += str(min(9, len(answer["drifted_columns"]))) if answer["drifted_columns"] else "."
                if answer["drifted_columns"]:
                    record.setdefault("evidently_columns_seen", []).append(answer["drifted_columns"])
        sequences_out.append(record)
        loads.append(os.getloadavg())
        print(f"rows={rows} seq {s + 1:>3}/{sequences} seed {seed} model {monitor.data_seed}: ours {record['unlabelled']} "
              f"{('labels ' + record['with_labels']) if labelled_run else ''} ev {record['evidently_column']} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    no_change_seconds = time.perf_counter() - started

    # --- shift ---
    shift_out = []
    shift_started = time.perf_counter()
    for s, seed in enumerate(seeds):
        monitor = monitors[s % len(monitors)]
        labelled_run = s < labelled_sequences
        todo = {"unlabelled", "with_labels"} if labelled_run else {"unlabelled"}
        if worker and s < evidently_sequences:
            todo |= {"evidently_dataset", "evidently_column"}
        found: dict[str, int | None] = dict.fromkeys(todo)
        at_detection: dict[str, list] = {}
        for i in range(start, batches):
            if not todo:
                break
            features, labels = make_batch("covariate_sudden", rows, seed, index=i, start=start, shift_sd=shift_sd)
            if worker and todo & {"evidently_dataset", "evidently_column"}:
                worker.send(monitor.serving.reference_dir / "features.parquet", features.drop(columns="id"))
                asked = True
            else:
                asked = False
            if todo & {"unlabelled", "with_labels"}:
                report = monitor.run(i, features, labels if "with_labels" in todo else None)
                verdicts = {"unlabelled": verdict_of(report.findings, LABEL_ONLY_CHECKS), "with_labels": report.verdict}
                for key in ("unlabelled", "with_labels"):
                    if key in todo and verdicts[key] != "healthy":
                        found[key] = i - start + 1
                        at_detection[key] = finding_records([f for f in report.findings if f.verdict != "healthy"
                                                             and (key == "with_labels" or f.check not in LABEL_ONLY_CHECKS)])
                        todo.discard(key)
            if asked:
                answer = worker.receive()
                for key, hit in (("evidently_dataset", answer["dataset_drift"]),
                                 ("evidently_column", bool(answer["drifted_columns"]))):
                    if key in todo and hit:
                        found[key] = i - start + 1
                        at_detection[key] = answer["drifted_columns"]
                        todo.discard(key)
        shift_out.append({"seed": seed, "data_seed": monitor.data_seed, "batches_to_detection": found, "at_detection": at_detection})
    shift_seconds = time.perf_counter() - shift_started
    loads.append(os.getloadavg())
    if worker:
        worker.close()
    for monitor in monitors:
        monitor.labels_path.unlink(missing_ok=True)
    summary = summarise(rows, sequences_out, shift_out, batches, start, shift_sd, monitors[0], worker, loads,
                        no_change_seconds, shift_seconds, consistency_checked)
    summary["concept_drift_inputs"] = {
        str(m.data_seed): concept_gap([g for g in gaps if g["data_seed"] == m.data_seed], m.reference.profile, m.primary)
        for m in monitors}
    summary["per_model"] = per_model(sequences_out, monitors)
    summary["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS")
    return summary


def per_model(sequences_out: list[dict], monitors: list[Monitor]) -> dict:
    out = {}
    for m in monitors:
        mine = [r for r in sequences_out if r["data_seed"] == m.data_seed]
        lab = [r for r in mine if r["labelled"]]
        out[str(m.data_seed)] = {
            "sequences": len(mine), "labelled_sequences": len(lab),
            "unlabelled_sequence_retrain": rate(sum("R" in r["unlabelled"] for r in mine), len(mine)),
            "unlabelled_sequence_watch": rate(sum(bool(set(r["unlabelled"]) - {"."}) for r in mine), len(mine)),
            "unlabelled_batch_watch": rate(sum(ch != "." for r in mine for ch in r["unlabelled"]),
                                           sum(len(r["unlabelled"]) for r in mine)),
            "labelled_sequence_retrain": rate(sum("R" in r["with_labels"] for r in lab), len(lab)),
            "labelled_batch_retrain": rate(sum(ch == "R" for r in lab for ch in r["with_labels"]),
                                           sum(len(r["with_labels"]) for r in lab)),
            "labelled_batch_watch": rate(sum(ch != "." for r in lab for ch in r["with_labels"]),
                                         sum(len(r["with_labels"]) for r in lab)),
        }
    return out


def concept_gap(gaps: list[dict], profile: dict, primary: str) -> dict:
    """Realized minus expected primary metric on unchanged labelled batches: the concept-drift check's input."""
    if not gaps:
        return {}
    diff = np.array([g["realized"] - g["estimated"] for g in gaps])
    base_sd = (profile.get("performance_sd") or {}).get(primary, 0.0)
    # as monitor._concept_drift computes it (the expectation's SD includes the calibration's bootstrap refits)
    z = diff / np.sqrt(np.array([g["realized_sd"] ** 2 + g["estimated_sd"] ** 2 for g in gaps]))
    return {"metric": primary, "batches": len(gaps), "reference": profile["performance"][primary],
            "realized_mean": float(np.mean([g["realized"] for g in gaps])),
            "estimated_mean": float(np.mean([g["estimated"] for g in gaps])),
            "gap_mean": float(diff.mean()), "gap_sd": float(diff.std(ddof=1)) if len(gaps) > 1 else None,
            "z_mean": float(z.mean()), "z_sd": float(z.std(ddof=1)) if len(gaps) > 1 else None,
            "realized_sd_median": float(np.median([g["realized_sd"] for g in gaps])),
            "estimated_sd_median": float(np.median([g["estimated_sd"] for g in gaps])),
            "calibration_sd": base_sd, "per_batch": gaps}


def summarise(rows, sequences_out, shift_out, batches, start, shift_sd, monitor, worker, loads, no_change_seconds,
              shift_seconds, consistency_checked) -> dict:
    def sequences_with(key: str, letters: str, subset) -> dict:
        chosen = [r for r in sequences_out if subset(r)]
        return rate(sum(any(ch in letters for ch in r[key]) for r in chosen), len(chosen))

    def batches_with(key: str, letters: str, subset) -> dict:
        chosen = [r for r in sequences_out if subset(r)]
        return rate(sum(ch in letters for r in chosen for ch in r[key]), sum(len(r[key]) for r in chosen))

    every, labelled = (lambda r: True), (lambda r: r["labelled"])
    asked = lambda r: len(r["evidently_dataset"]) > 0  # noqa: E731
    no_change = {
        "unlabelled": {"sequences": sum(1 for _ in sequences_out),
                       "sequence_retrain": sequences_with("unlabelled", "R", every),
                       "sequence_watch_or_worse": sequences_with("unlabelled", "wR", every),
                       "batch_retrain": batches_with("unlabelled", "R", every),
                       "batch_watch_or_worse": batches_with("unlabelled", "wR", every)},
        "with_labels": {"sequences": sum(1 for r in sequences_out if r["labelled"]),
                        "sequence_retrain": sequences_with("with_labels", "R", labelled),
                        "sequence_watch_or_worse": sequences_with("with_labels", "wR", labelled),
                        "batch_retrain": batches_with("with_labels", "R", labelled),
                        "batch_watch_or_worse": batches_with("with_labels", "wR", labelled)},
    }
    if worker:
        no_change["evidently"] = {
            "sequences": sum(1 for r in sequences_out if asked(r)),
            "sequence_dataset": sequences_with("evidently_dataset", "D", asked),
            "sequence_any_column": sequences_with("evidently_column", "123456789", asked),
            "batch_dataset": batches_with("evidently_dataset", "D", asked),
            "batch_any_column": batches_with("evidently_column", "123456789", asked),
        }
        columns = Counter(c for r in sequences_out for seen in r.get("evidently_columns_seen", []) for c in seen)
        no_change["evidently"]["columns_flagged"] = dict(columns.most_common())
    # which checks raise the alarms (per batch, unlabelled sequences count their label-free findings only)
    by_check: dict[str, Counter] = {}
    examples: dict[str, list[str]] = {}
    n_batches = {"unlabelled": sum(len(r["unlabelled"]) for r in sequences_out),
                 "with_labels": sum(len(r["with_labels"]) for r in sequences_out)}
    for r in sequences_out:
        for entry in r["findings"]:
            for f in entry["findings"]:
                key = f"{f['check']} ({f['verdict']})"
                counter = by_check.setdefault(key, Counter())
                if f["check"] not in LABEL_ONLY_CHECKS:
                    counter["unlabelled"] += 1
                if r["labelled"]:
                    counter["with_labels"] += 1
                if len(examples.setdefault(key, [])) < 3:
                    examples[key].append(f"seed {r['seed']} batch {entry['batch']}: {f['reason']}")
    # without the timing-based operations check: what the statistics alone do
    no_ops = {"unlabelled": rate(sum(any(f["check"] not in LABEL_ONLY_CHECKS | {"operations"} for f in e["findings"])
                                     for r in sequences_out for e in r["findings"]), n_batches["unlabelled"])}
    no_ops["unlabelled_sequences"] = rate(sum(any(any(f["check"] not in LABEL_ONLY_CHECKS | {"operations"}
                                                      for f in e["findings"]) for e in r["findings"])
                                              for r in sequences_out), len(sequences_out))
    shift = {key: delays([s["batches_to_detection"][key] for s in shift_out if key in s["batches_to_detection"]],
                         batches - start)
             for key in ("unlabelled", "with_labels", "evidently_dataset", "evidently_column")
             if any(key in s["batches_to_detection"] for s in shift_out)}
    detecting = Counter(f["check"] for s in shift_out for f in s["at_detection"].get("unlabelled", []))
    score = np.array(monitor.score_seconds)
    return {
        "rows": rows, "batches_per_sequence": batches, "shift_start": start, "shift_sd": shift_sd,
        "no_change": no_change, "no_change_without_operations_check": no_ops,
        "findings_by_check": {k: {"batches": dict(v), "examples": examples[k]} for k, v in sorted(by_check.items())},
        "batches_monitored": n_batches, "shift": shift, "shift_detecting_checks": dict(detecting.most_common()),
        "timing": {"no_change_seconds": no_change_seconds, "shift_seconds": shift_seconds,
                   "monitor_batch_seconds_unlabelled_median": float(np.median(monitor.check_seconds[False])) if monitor.check_seconds[False] else None,
                   "monitor_batch_seconds_labelled_median": float(np.median(monitor.check_seconds[True])) if monitor.check_seconds[True] else None,
                   "scoring_seconds_median": float(np.median(score)), "scoring_seconds_max": float(score.max()),
                   "scoring_rows_per_s_min": float(rows / score.max()),
                   "evidently_seconds_median": float(np.median(worker.seconds)) if worker and worker.seconds else None},
        "load_average": {"start": loads[0], "end": loads[-1],
                         "max_1min": max(l[0] for l in loads), "samples_1min": [round(l[0], 2) for l in loads]},
        "consistency_checked_batches": consistency_checked,
        "sequences": sequences_out, "shift_sequences": shift_out,
    }


# --- output -----------------------------------------------------------------------------------------------


def pct(r: dict | None) -> str:
    if not r or not r["n"]:
        return "—"
    return f"{r['rate']:.1%} [{r['low']:.1%}, {r['high']:.1%}] ({r['k']}/{r['n']})"


def target(r: dict, limit: float) -> str:
    if r["rate"] <= limit:
        return "met"
    return "consistent (limit inside the 95% interval)" if r["low"] <= limit else "NOT met"


def render(data: dict) -> str:
    lines = [
        "# Batch monitoring over time: false alarms and detection delay",
        "",
        f"Measured by `benchmarks/monitoring_alarms.py` ({data['machine']}, {data['cores']} cores shared with other "
        f"work; reprobook {data['reprobook']} at commit {data.get('library_state', {}).get('start', {}).get('commit', '?')[:7]}"
        f"{' with uncommitted changes to ' + ', '.join(x.split()[-1] for x in data['library_state']['start']['dirty_sources']) if data.get('library_state', {}).get('start', {}).get('dirty_sources') else ''}"
        f"{measured_note(data)}, Evidently {data.get('evidently_version') or 'not run'}). Models: the "
        f"champions of {len(data.get('models', []))} `reprobook new` loan projects after `reprobook run` (built-in "
        "data, 5,000 rows, HistGradientBoosting, default params.yaml except data.seed: "
        f"{', '.join(str(m['data_seed']) for m in data.get('models', []))}); sequence s is watched by model s mod "
        "K against that model's training reference (5,000 rows). Each batch goes through `monitor_batch` (the "
        "checks of `reprobook monitor` without the notebook and MLflow; the default monitoring params); Evidently "
        "0.7 DataDriftPreset (defaults) sees the same reference features and the same batches (id column dropped). "
        "Rates: share [Wilson 95% interval] (count/trials).",
        "",
    ]
    for key in sorted(data["settings"], key=int, reverse=True):
        d = data["settings"][key]
        nc, rows = d["no_change"], d["rows"]
        u, w, ev = nc["unlabelled"], nc["with_labels"], nc.get("evidently")
        lines += [
            f"## {rows:,} rows per batch",
            "",
            f"### No change: {u['sequences']} sequences x {d['batches_per_sequence']} `none` batches "
            f"({w['sequences']} of them also with labels on every batch; Evidently on "
            f"{ev['sequences'] if ev else 0} of them)",
            "",
            "| verdict | sequences with any | per batch |",
            "|---|---|---|",
            f"| reprobook retrain, no labels | {pct(u['sequence_retrain'])} | {pct(u['batch_retrain'])} |",
            f"| reprobook retrain, labels on every batch | {pct(w['sequence_retrain'])} | {pct(w['batch_retrain'])} |",
            f"| reprobook watch or worse, no labels | {pct(u['sequence_watch_or_worse'])} | {pct(u['batch_watch_or_worse'])} |",
            f"| reprobook watch or worse, labels | {pct(w['sequence_watch_or_worse'])} | {pct(w['batch_watch_or_worse'])} |",
            f"| reprobook watch or worse, no labels, without the timing-based operations check | "
            f"{pct(d['no_change_without_operations_check']['unlabelled_sequences'])} | "
            f"{pct(d['no_change_without_operations_check']['unlabelled'])} |",
        ]
        if ev:
            lines += [
                f"| Evidently data-set drift (drift_share 0.5) | {pct(ev['sequence_dataset'])} | {pct(ev['batch_dataset'])} |",
                f"| Evidently any column drifted | {pct(ev['sequence_any_column'])} | {pct(ev['batch_any_column'])} |",
            ]
        lines += ["", "Findings behind the alarms (batches with a finding of that check; examples):", "",
                  "| check (verdict) | batches, no labels | batches, labels | example |", "|---|---|---|---|"]
        for check, entry in d["findings_by_check"].items():
            b = entry["batches"]
            example = entry["examples"][0].replace("|", "/") if entry["examples"] else ""
            lines.append(f"| {check} | {b.get('unlabelled', 0)} / {d['batches_monitored']['unlabelled']} | "
                         f"{b.get('with_labels', 0)} / {d['batches_monitored']['with_labels']} | {example} |")
        if ev and ev.get("columns_flagged"):
            lines += ["", "Evidently's flagged columns (batches): " +
                      ", ".join(f"{c} {n}" for c, n in ev["columns_flagged"].items())]
        truth = {str(m["data_seed"]): m for m in data.get("models", [])}
        lines += ["", "Per model (one `reprobook run` per data seed: another draw of the training data, held-out rows "
                  "and reference). true = the model's ROC AUC on 50,000 fresh unchanged rows; expected = what the "
                  "calibrated scores predict for those rows (estimated performance; also the concept-drift "
                  "check's expectation); z = the concept-drift check's standardized gap (realized - expected) on the "
                  "labelled unchanged batches (mean; retrain below -3.09, watch below -1.96).", "",
                  "| data seed | held-out AUC (sd) | true AUC | expected AUC | seq. with watch, no labels | "
                  "batch watch, no labels | batch watch, labels | batch retrain, labels | seq. with retrain, labels | "
                  "concept-drift z mean (sd) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for seed, pm in d.get("per_model", {}).items():
            tr, cg = truth.get(seed, {}), d["concept_drift_inputs"].get(seed) or {}
            num = lambda v, f=".4f": "—" if v is None else format(v, f)  # noqa: E731
            short = lambda r: "—" if not r["n"] else f"{r['k']}/{r['n']}"  # noqa: E731
            lines.append(f"| {seed} | {num(tr.get('held_out'))} ({num(tr.get('held_out_sd'))}) | {num(tr.get('true'))} | "
                         f"{num(tr.get('expected_from_calibration'))} | {short(pm['unlabelled_sequence_watch'])} | "
                         f"{short(pm['unlabelled_batch_watch'])} | {short(pm['labelled_batch_watch'])} | "
                         f"{short(pm['labelled_batch_retrain'])} | {short(pm['labelled_sequence_retrain'])} | "
                         f"{num(cg.get('z_mean'), '+.2f')} ({num(cg.get('z_sd'), '.2f')}) |")
        sh = d["shift"]
        lines += [
            "",
            f"### Shift: covariate_sudden, {d['shift_sd']:g} training SD on credit_score, debt_to_income, income, "
            f"age from batch {d['shift_start']} (same seeds)",
            "",
            f"Batches to detection: 1 = flagged on the first shifted batch; searched up to batch "
            f"{d['batches_per_sequence'] - 1} ({d['batches_per_sequence'] - d['shift_start']} shifted batches).",
            "",
            "| detector | sequences | median | p90 | within 1 | within 2 | distribution |",
            "|---|---|---|---|---|---|---|",
        ]
        names = {"unlabelled": "reprobook verdict != healthy, no labels",
                 "with_labels": "reprobook verdict != healthy, labels",
                 "evidently_dataset": "Evidently data-set drift", "evidently_column": "Evidently any column"}
        for key, name in names.items():
            if key in sh:
                s = sh[key]
                show = lambda v: "not detected" if v is None else str(v)  # noqa: E731
                hist = ", ".join(f"{k}: {v}" for k, v in s["histogram"].items())
                lines.append(f"| {name} | {s['n']} | {show(s['median'])} | {show(s['p90'])} | {pct(s['within_1'])} | "
                             f"{pct(s['within_2'])} | {hist} |")
        if d["shift_detecting_checks"]:
            lines += ["", "Checks flagging the first detected batch (no labels): " +
                      ", ".join(f"{c} {n}" for c, n in d["shift_detecting_checks"].items())]
        t, la = d["timing"], d["load_average"]
        lines += [
            "",
            "### Targets",
            "",
            f"- false retrain in a 30-batch sequence <= 5%: no labels {pct(u['sequence_retrain'])} — "
            f"{target(u['sequence_retrain'], 0.05)}; labels {pct(w['sequence_retrain'])} — "
            f"{target(w['sequence_retrain'], 0.05)}",
        ]
        if rows >= 5000:
            lines.append(f"- 0.2-SD shift flagged within 2 batches: {pct(sh['unlabelled']['within_2'])}, median "
                         f"{sh['unlabelled']['median']}, p90 {sh['unlabelled']['p90']} (target <= 2): "
                         f"{'met' if sh['unlabelled']['p90'] is not None and sh['unlabelled']['p90'] <= 2 else 'NOT met'}")
        lines += [
            "",
            f"Time: no-change part {t['no_change_seconds'] / 60:.1f} min, shift part {t['shift_seconds'] / 60:.1f} min; "
            f"monitor_batch median {t['monitor_batch_seconds_unlabelled_median']:.2f} s without labels"
            + (f", {t['monitor_batch_seconds_labelled_median']:.2f} s with labels" if t['monitor_batch_seconds_labelled_median'] else "")
            + f"; scoring median {t['scoring_seconds_median'] * 1000:.0f} ms (slowest {t['scoring_seconds_max']:.2f} s = "
            f"{t['scoring_rows_per_s_min']:.0f} rows/s)"
            + (f"; Evidently preset median {t['evidently_seconds_median']:.2f} s" if t['evidently_seconds_median'] else "")
            + f". Load average (1 min) from {la['start'][0]:.1f} to {la['end'][0]:.1f}, max {la['max_1min']:.1f}.",
            "",
        ]
    lines += notes(data)
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{NAME}.md").write_text(text)
    return text


def check_rate(setting: dict, key: str) -> str:
    found = setting["findings_by_check"].get(key, {}).get("batches", {}).get("unlabelled", 0)
    return f"{found / setting['batches_monitored']['unlabelled']:.1%}"


def notes(data: dict) -> list[str]:
    """Reading the tables: what raises the alarms, from the saved figures."""
    out = ["## Reading the results", ""]
    for key in sorted(data["settings"], key=int, reverse=True):
        d = data["settings"][key]
        threads = d.get("omp_num_threads")
        out.append(f"- {int(key):,} rows: run with OMP_NUM_THREADS={threads or 'unset (library default)'}.")
    out += [
        "- **No false retrain** in any setting: without labels a retrain needs the *estimated* metric to fail "
        "with confidence, with labels the realized metric or the concept-drift check; both stayed far from "
        "their retrain_alpha = 0.001 bounds (see the concept-drift z column: retrain needs z < -3.09).",
        "- **Watch** is the per-batch drift alarm: feature drift (Bonferroni over 10 columns at alpha 0.05) and "
        "prediction drift (alpha 0.05) each false-alarm at most ~alpha per batch, so over 30 batches a watch in "
        "a sequence is expected. Per batch without labels: " + "; ".join(
            f"{int(k):,} rows: feature drift {check_rate(data['settings'][k], 'feature drift (watch)')}, prediction "
            f"drift {check_rate(data['settings'][k], 'prediction drift (watch)')}, either "
            f"{data['settings'][k]['no_change']['unlabelled']['batch_watch_or_worse']['rate']:.1%}"
            for k in sorted(data["settings"], key=int, reverse=True)) + ". The rate differs a lot between models: "
        "each reference is one sample of the training distribution, fixed for all batches, so a reference whose "
        "sample of one column is a little atypical raises that column again and again (model 42: `income` in "
        "most of its feature-drift alarms). Marginally over references the two-sample tests keep alpha; for "
        "one deployed model the watch rate is conditional on its reference.",
        "- **Concept drift (watch) and estimated performance** depend on how well the held-out rows (1,000) "
        "describe the model: model 42's held-out AUC (0.896) is 2 SDs above its true AUC (0.875), and the "
        "calibration learnt on the same rows expects 0.893, so realized AUC on unchanged batches sits ~0.017 "
        "below the expectation whatever the batch size (see its z in the per-model table): the error of the "
        "calibration is shared by every batch of that model, so its concept-drift watches recur; the "
        "expectation's interval carries the calibration's bootstrap refits, which is what keeps z above the "
        "retrain bound.",
        "- **The shift** (0.2 SD on four columns) is flagged on the first shifted batch in every sequence, by "
        "three checks at once: feature drift (the four columns), prediction drift, and data quality (`age` "
        "moves 3 years past the schema's observed maximum of 75 in ~5% of rows). Evidently at 5,000 rows "
        "uses distance thresholds (Wasserstein-normed >= 0.1, Jensen-Shannon >= 0.1; with this 5,000-row reference "
        "also for 1,000-row batches): clean batches rarely flag a column, the shifted ones flag some of the four "
        "columns at once, but its data-set verdict (half of the columns drifted) almost never fires for four "
        "drifted columns out of ten.",
        "- Wall time exceeds the ~10-minute aim (see Time per setting): a labelled batch costs several times an "
        "unlabelled one and Evidently ~1 s per batch on the shared cores; `--sequences`, "
        "`--labelled-sequences`, `--evidently-sequences` scale the run.",
    ]
    probe = data.get("operations_probe")
    if probe:
        out.append(
            f"- **The operations check is timing-based and false-alarms on a busy machine.** In a short run with "
            f"the library's default threads ({probe['rows']:,}-row batches, load average {probe['load']:.1f} on 2 cores), "
            f"\"scored N rows/s, below the scoping budget of 1000\" gave a watch on {probe['batches_flagged']} of "
            f"{probe['batches']} unchanged batches (scoring median {probe['scoring_median_s'] * 1000:.0f} ms, slowest "
            f"{probe['scoring_max_s']:.2f} s for {probe['rows']:,} rows): HistGradientBoosting's OpenMP threads "
            "stall when the cores are oversubscribed; with OMP_NUM_THREADS=1 the same predictions take ~20 ms. "
            "The runs above use OMP_NUM_THREADS=1 so that the statistics are measured, not the machine's load; "
            "the check judges one timing of one batch against the budget.")
    return out + [""]


def measured_note(data: dict) -> str:
    state = data.get("library_state") or {}
    start, end = (state.get("start") or {}).get("commit"), (state.get("end") or {}).get("commit")
    if start and end and start != end:
        return (f"; the library's modules are loaded at the start, so {start[:7]} is what was measured (HEAD moved "
                f"to {end[:7]} during the run)")
    return ""


def library_state() -> dict:
    """The commit of the library measured and whether its sources had uncommitted changes (others edit them)."""
    root = HERE.parent
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout.strip()
    return {"commit": git("rev-parse", "HEAD"), "commit_time": git("log", "-1", "--format=%ci"),
            "dirty_sources": git("status", "--short", "--", "src").splitlines()}


def evidently_version() -> str | None:
    if not EVIDENTLY_PYTHON.exists():
        return None
    out = subprocess.run([str(EVIDENTLY_PYTHON), "-c", "import evidently; print(evidently.__version__)"],
                         capture_output=True, text=True)
    return out.stdout.strip() or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=Path, default=DEFAULT_PROJECTS,
                        help="folder of the loan projects (made once, reused)")
    parser.add_argument("--models", type=int, default=4, help="champions = draws of the training data (data.seed)")
    parser.add_argument("--rows", type=int, nargs="+", default=[5000])
    parser.add_argument("--sequences", type=int, default=40)
    parser.add_argument("--labelled-sequences", type=int, default=8)
    parser.add_argument("--evidently-sequences", type=int, default=20)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--shift-start", type=int, default=10)
    parser.add_argument("--shift-sd", type=float, default=0.2)
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--rebuild", action="store_true", help="make the projects again with the current library")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{NAME}.json"
    data = json.loads(path.read_text()) if path.exists() else {"settings": {}}
    if not args.render_only:
        import reprobook
        from reprobook.monitoring.simulate import make_batch

        TMP.mkdir(parents=True, exist_ok=True)
        evidently = not args.no_evidently and EVIDENTLY_PYTHON.exists()
        data_seeds = [42, *range(1, args.models)]
        timing = Timing()
        state_at_start = library_state()
        projects = {s: (args.projects / f"loans-seed{s}").resolve() for s in data_seeds}
        if args.rebuild:
            for project in projects.values():
                shutil.rmtree(project, ignore_errors=True)
        for data_seed, project in projects.items():  # all made before any is loaded (see bench_env)
            ensure_project(project, data_seed=data_seed)
        monitors = [Monitor(project, data_seed, timing) for data_seed, project in projects.items()]
        data["models"] = [m.truth() for m in monitors]
        warm = make_batch("none", 1000, 1)[0]
        for m in monitors:
            m.run(0, warm, None)  # imports and thread pools: not measured
        for rows in args.rows:
            timing.score_seconds.clear()
            timing.check_seconds = {False: [], True: []}
            data["settings"][str(rows)] = run_setting(monitors, rows, args.sequences, args.labelled_sequences,
                                                      args.evidently_sequences, args.batches, args.shift_start,
                                                      args.shift_sd, evidently)
        primary = monitors[0].primary
        data.update(library_state={"start": state_at_start, "end": library_state()},
                    omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
                    machine=platform.machine(), cores=os.cpu_count(), python=platform.python_version(),
                    reprobook=getattr(reprobook, "__version__", "?"),
                    evidently_version=evidently_version() if evidently else None,
                    reference_performance=monitors[0].reference.profile["performance"][primary], primary_metric=primary,
                    monitoring_params=monitors[0].params.monitoring.model_dump(mode="json"))
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(render(data))


if __name__ == "__main__":
    main()
