"""Production batches for the built-in loan data: healthy, drifting, broken, on a seeded schedule.

Monitoring can only be tested against data whose faults are known. Each
scenario changes one thing about the batches a deployed loan model would see,
by a documented amount, from a chosen batch on; everything else stays the
training distribution of :func:`reprobook.ml.loans.make_loans`.

A batch is built in a fixed order on its own random generator: sample complete
applicants, apply a covariate shift, label them (training rule or a drifted
one), blank values as training does, then the scenario's own damage (new
category, creeping or broken values). Scenarios draw the same base numbers, so
``none``, ``covariate_*`` and ``concept_drift`` batches of equal (seed, index)
describe the same applicants, which makes the effect of a scenario easy to see.

Batch ``i`` of a run with ``seed`` uses ``SeedSequence(seed, spawn_key=(i,))``
(child ``i`` of ``SeedSequence(seed).spawn``): batches are independent and batch
``i`` is the same however many batches are generated.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from reprobook.errors import UsageError
from reprobook.ml.loans import TARGET, TRAINING_CONCEPT, Concept, inject_missing, label, sample_applicants

SCENARIOS: dict[str, str] = {
    "none": "same distribution as training",
    "covariate_gradual": "credit_score, debt_to_income, income, age drift towards shift_sd training SDs "
    "(full after 5 batches); same label rule",
    "covariate_sudden": "credit_score, debt_to_income, income, age shifted by shift_sd training SDs at once; "
    "same label rule",
    "new_category": "15 % of rows come from region 'overseas', a category never seen in training",
    "missing_creep": "credit_score, debt_to_income and purpose go missing in 5 % more rows each batch (up to 50 %)",
    "broken_column": "income arrives in thousands (divided by 1000): an upstream unit change; labels unaffected",
    "concept_drift": "same applicants, new approval rule: credit-score weight x(1 - shift_sd), "
    "debt penalty x(1 + 2 shift_sd)",
}
ID_COLUMN = "id"
DEFAULT_SCHEDULE = (
    "none:3,covariate_gradual:4,covariate_sudden:2,new_category:2,missing_creep:3,broken_column:2,concept_drift:3"
)
"""Every scenario once, after three healthy batches (19 batches)."""
SCHEDULE_FILE = "schedule.json"

TRAINING_SD: dict[str, float] = {"credit_score": 81.3, "debt_to_income": 0.160, "age": 16.7, "log_income": 0.598}
"""Standard deviations of the training distribution, measured on ``make_loans(200_000, 0)`` (a test
re-measures them). Income is lognormal, so it shifts on the log scale: by a factor ``exp(-k * 0.598)``
for a shift of k SDs, never below zero."""
SHIFT_DIRECTION = {"credit_score": -1, "debt_to_income": +1, "log_income": -1, "age": +1}
"""A downturn: applicants are older, poorer, more indebted and lower-scored."""
GRADUAL_BATCHES = 5
"""A gradual scenario reaches its full size in this many batches from its start."""
NEW_CATEGORY = ("region", "overseas")
NEW_CATEGORY_SHARE = 0.15
CREEP_COLUMNS = ("credit_score", "debt_to_income", "purpose")
CREEP_STEP, CREEP_MAX = 0.05, 0.5
BROKEN_COLUMN, BROKEN_FACTOR = "income", 1 / 1000


@dataclass(frozen=True)
class ScheduledBatch:
    """One written batch: its number (from 1), scenario and files (``labels`` None when none were written)."""

    index: int
    scenario: str
    features: Path
    labels: Path | None


def strength(scenario: str, index: int, start: int) -> float:
    """How much of the scenario acts on batch ``index`` (0 = like training, 1 = full size)."""
    if scenario == "none" or index < start:
        return 0.0
    if scenario == "covariate_gradual":
        return min(1.0, (index - start + 1) / GRADUAL_BATCHES)
    if scenario == "missing_creep":
        return min(CREEP_MAX, CREEP_STEP * (index - start + 1)) / CREEP_MAX
    return 1.0


def batch_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of batch ``index``: child ``index`` of ``SeedSequence(seed)``, independent of the batch count."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def shift_applicants(applicants: pd.DataFrame, size_sd: float) -> pd.DataFrame:
    """Move the shifted numeric columns by ``size_sd`` training standard deviations.

    credit_score and debt_to_income stay on their scales (300-850, 0-1); age
    moves by whole years and is not capped at the training maximum of 75, so
    the shift is a translation rather than a pile-up at an edge that would make
    small shifts easier to detect than they are.
    """
    shifted = applicants.copy()
    step = {column: size_sd * sign * TRAINING_SD[column] for column, sign in SHIFT_DIRECTION.items()}
    shifted["credit_score"] = np.clip(applicants["credit_score"] + step["credit_score"], 300, 850).round()
    shifted["debt_to_income"] = np.clip(applicants["debt_to_income"] + step["debt_to_income"], 0, 1).round(3)
    shifted["income"] = (applicants["income"] * np.exp(step["log_income"])).round(2)
    shifted["age"] = applicants["age"] + int(round(step["age"]))
    return shifted


def drifted_concept(size: float) -> Concept:
    """The approval rule after concept drift of ``size``: credit score counts less, debt counts more."""
    return Concept(
        credit_weight=TRAINING_CONCEPT.credit_weight * (1 - size),
        debt_weight=TRAINING_CONCEPT.debt_weight * (1 + 2 * size),
        threshold=TRAINING_CONCEPT.threshold,
    )


def _damage(frame: pd.DataFrame, scenario: str, size: float, rng: np.random.Generator) -> None:
    """The scenario's changes after labelling, in place: what reaches the model, not what is true."""
    if scenario == "new_category":
        column, category = NEW_CATEGORY
        frame.loc[rng.random(len(frame)) < NEW_CATEGORY_SHARE, column] = category
    elif scenario == "missing_creep":
        inject_missing(frame, rng, dict.fromkeys(CREEP_COLUMNS, size * CREEP_MAX))
    elif scenario == "broken_column":
        frame[BROKEN_COLUMN] = (frame[BROKEN_COLUMN] * BROKEN_FACTOR).round(5)


def _check_args(scenario: str, n_rows: int, seed: int, index: int, shift_sd: float) -> None:
    if scenario not in SCENARIOS:
        raise UsageError(f"unknown scenario {scenario!r}; known scenarios: {', '.join(SCENARIOS)}")
    if n_rows < 1 or seed < 0 or index < 0 or not np.isfinite(shift_sd) or shift_sd < 0:
        raise UsageError(
            f"expected rows >= 1, seed >= 0, index >= 0 and a finite shift_sd >= 0; "
            f"found rows={n_rows}, seed={seed}, index={index}, shift_sd={shift_sd}"
        )


def make_batch(
    scenario: str, n_rows: int, seed: int, *, index: int = 0, start: int = 0, shift_sd: float = 0.5
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features incl. the id column, labels: id + approved) of batch number ``index``.

    The scenario acts from batch ``start`` on (before it the batch is like
    training); gradual scenarios grow with ``index - start``. ``shift_sd`` sizes
    the covariate scenarios (in training standard deviations) and concept
    drift; the other scenarios have fixed, documented sizes.
    """
    _check_args(scenario, n_rows, seed, index, shift_sd)
    rng = batch_rng(seed, index)
    size = strength(scenario, index, start)
    applicants = sample_applicants(n_rows, rng)
    if scenario.startswith("covariate_") and size:
        applicants = shift_applicants(applicants, size * shift_sd)
    concept = drifted_concept(size * shift_sd) if scenario == "concept_drift" and size else TRAINING_CONCEPT
    approved = label(applicants, rng, concept)
    inject_missing(applicants, rng)
    if size:
        _damage(applicants, scenario, size, rng)
    ids = [f"b{index:03d}-{row:05d}" for row in range(n_rows)]
    features = pd.concat([pd.DataFrame({ID_COLUMN: ids}), applicants], axis=1)
    return features, pd.DataFrame({ID_COLUMN: ids, TARGET: approved})


def parse_schedule(schedule: list[tuple[str, int]] | str) -> list[tuple[str, int]]:
    """``"none:3,concept_drift:2"`` or a list of (scenario, batches), checked; a UsageError names a bad item."""
    if isinstance(schedule, str):
        items = [item.strip() for item in schedule.split(",")]
        pairs = []
        for item in items:
            match = re.fullmatch(r"([a-z_]+)\s*:\s*(\d+)", item)
            if not match:
                raise UsageError(f"schedule item {item!r} is not SCENARIO:BATCHES (e.g. none:3); "
                                 f"known scenarios: {', '.join(SCENARIOS)}")
            pairs.append((match[1], int(match[2])))
    else:
        pairs = list(schedule)
    if not pairs:
        raise UsageError(f"the schedule is empty; give SCENARIO:BATCHES items, known scenarios: {', '.join(SCENARIOS)}")
    for scenario, count in pairs:
        if scenario not in SCENARIOS:
            raise UsageError(f"unknown scenario {scenario!r} in the schedule; known scenarios: {', '.join(SCENARIOS)}")
        if not isinstance(count, int) or count < 1:
            raise UsageError(f"schedule item {scenario}:{count} needs at least 1 batch")
    return pairs


def _plan(pairs: list[tuple[str, int]]) -> list[tuple[int, str, int]]:
    """(index, scenario, start) of every batch: numbered from 1, each segment starting at its first batch."""
    plan: list[tuple[int, str, int]] = []
    for scenario, count in pairs:
        start = len(plan) + 1
        plan.extend((index, scenario, start) for index in range(start, start + count))
    return plan


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Deterministic bytes: pyarrow, no index, no timestamps (same frame and library versions, same file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, compression="snappy")


def _remove_stale(out_dir: Path, keep: set[str]) -> None:
    """Delete batch and label files left by an earlier run, so the folder holds exactly what schedule.json lists."""
    for path in [*out_dir.glob("batch-*.parquet"), *out_dir.glob("labels-*.csv")]:
        if re.fullmatch(r"(batch-\d{3,}\.parquet|labels-\d{3,}\.csv)", path.name) and path.name not in keep:
            path.unlink()


def simulate(
    out_dir: Path,
    schedule: list[tuple[str, int]] | str = DEFAULT_SCHEDULE,
    *,
    n_rows: int = 1000,
    seed: int = 0,
    shift_sd: float = 0.5,
    labels_every: int = 1,
    labels_delay: int = 0,
) -> list[ScheduledBatch]:
    """Write the scheduled batches (``batch-001.parquet`` ...), their labels and ``schedule.json`` to ``out_dir``.

    Batches are numbered from 1; each scenario segment starts at its first
    batch. Labels (``labels-NNN.csv``) are written for every ``labels_every``-th
    batch (0: none), except the last ``labels_delay`` batches, whose labels have
    not arrived yet. Same arguments, byte-identical files.
    """
    pairs = parse_schedule(schedule)
    if labels_every < 0 or labels_delay < 0:
        raise UsageError(f"labels_every and labels_delay must be >= 0; found {labels_every} and {labels_delay}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = _plan(pairs)
    written, records = [], []
    for index, scenario, start in plan:
        features, labels = make_batch(scenario, n_rows, seed, index=index, start=start, shift_sd=shift_sd)
        feature_path = out_dir / f"batch-{index:03d}.parquet"
        _write_parquet(features, feature_path)
        label_path = None
        if labels_every and index % labels_every == 0 and index <= len(plan) - labels_delay:
            label_path = out_dir / f"labels-{index:03d}.csv"
            labels.to_csv(label_path, index=False, lineterminator="\n")
        written.append(ScheduledBatch(index, scenario, feature_path, label_path))
        records.append({
            "index": index, "scenario": scenario, "start": start, "strength": strength(scenario, index, start),
            "seed": seed, "spawn_key": [index], "rows": n_rows, "features": feature_path.name,
            "labels": label_path.name if label_path else None,
        })
    _remove_stale(out_dir, {p.name for b in written for p in (b.features, b.labels) if p is not None})
    description = {
        "schedule": ",".join(f"{scenario}:{count}" for scenario, count in pairs), "seed": seed, "rows": n_rows,
        "shift_sd": shift_sd, "labels_every": labels_every, "labels_delay": labels_delay,
        "id_column": ID_COLUMN, "target": TARGET, "scenarios": SCENARIOS, "batches": records,
    }
    (out_dir / SCHEDULE_FILE).write_text(json.dumps(description, indent=2) + "\n")
    return written
