"""The production-batch simulator: reproducible files, and each scenario does what it says (and only that)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from reprobook.errors import ReprobookError
from reprobook.ml.loans import TARGET, make_loans
from reprobook.monitoring.simulate import (
    DEFAULT_SCHEDULE, ID_COLUMN, SCENARIOS, TRAINING_SD, make_batch, parse_schedule, simulate,
)
from reprobook.quality import detect_drift

CONSOLE_SCRIPT = Path(sys.executable).parent / "reprobook"


@pytest.fixture(scope="module")
def training() -> pd.DataFrame:
    return make_loans(5000, 42)


@pytest.mark.parametrize(("n_rows", "seed", "digest"), [
    (5000, 42, 13754994725253909878),
    (1000, 0, 14928322265274160958),
    (37, 7, 10026375999317918759),
])
def test_make_loans_output_is_unchanged_by_the_refactor(n_rows, seed, digest):
    # Regression pin: digests computed with make_loans before it was split into sample_applicants / label /
    # inject_missing. The reference pipeline's DVC lock depends on these bytes; never update the values.
    assert int(pd.util.hash_pandas_object(make_loans(n_rows, seed), index=True).sum()) == digest


def test_training_standard_deviations_match_a_large_sample():
    frame = make_loans(200_000, 0)
    measured = {column: frame[column].std() for column in ("credit_score", "debt_to_income", "age")}
    measured["log_income"] = np.log(frame["income"].dropna()).std()
    for column, sd in measured.items():
        assert TRAINING_SD[column] == pytest.approx(sd, rel=0.01), column


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_same_arguments_write_byte_identical_files(tmp_path):
    first = simulate(tmp_path / "a", "none:2,covariate_gradual:2,missing_creep:2", n_rows=300, seed=5)
    simulate(tmp_path / "b", "none:2,covariate_gradual:2,missing_creep:2", n_rows=300, seed=5)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert [b.features.name for b in first] == [f"batch-00{i}.parquet" for i in range(1, 7)]
    simulate(tmp_path / "c", "none:2,covariate_gradual:2,missing_creep:2", n_rows=300, seed=6)
    assert (tmp_path / "c" / "batch-001.parquet").read_bytes() != (tmp_path / "a" / "batch-001.parquet").read_bytes()


def test_batch_i_does_not_depend_on_how_many_batches_follow(tmp_path):
    simulate(tmp_path / "short", "none:1,covariate_gradual:2", n_rows=200, seed=3)
    simulate(tmp_path / "long", "none:1,covariate_gradual:9", n_rows=200, seed=3)
    for name in ("batch-001.parquet", "batch-003.parquet", "labels-003.csv"):
        assert (tmp_path / "short" / name).read_bytes() == (tmp_path / "long" / name).read_bytes()
    features, labels = make_batch("covariate_gradual", 200, 3, index=3, start=2)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "long" / "batch-003.parquet"), features)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "long" / "labels-003.csv"), labels, check_dtype=False)


def test_batches_have_ids_matching_their_labels_and_never_the_target(tmp_path):
    batches = simulate(tmp_path, "none:2,concept_drift:2", n_rows=100, seed=1)
    seen: set[str] = set()
    for batch in batches:
        features, labels = pd.read_parquet(batch.features), pd.read_csv(batch.labels)
        assert TARGET not in features.columns
        assert list(labels.columns) == [ID_COLUMN, TARGET]
        assert labels[ID_COLUMN].tolist() == features[ID_COLUMN].tolist()
        assert set(labels[TARGET]) <= {0, 1}
        assert features[ID_COLUMN].is_unique and seen.isdisjoint(features[ID_COLUMN])
        seen.update(features[ID_COLUMN])
    assert features[ID_COLUMN].iloc[42] == "b004-00042"


def test_labels_every_k_and_delay_and_the_schedule_file(tmp_path):
    batches = simulate(tmp_path, "none:2,new_category:4", n_rows=50, seed=0, labels_every=2, labels_delay=1)
    assert [b.labels.name if b.labels else None for b in batches] == [
        None, "labels-002.csv", None, "labels-004.csv", None, None,  # 6: due, but its labels have not arrived
    ]
    described = json.loads((tmp_path / "schedule.json").read_text())
    assert [(b["index"], b["scenario"], b["start"], b["rows"], b["labels"]) for b in described["batches"]] == [
        (1, "none", 1, 50, None), (2, "none", 1, 50, "labels-002.csv"),
        (3, "new_category", 3, 50, None), (4, "new_category", 3, 50, "labels-004.csv"),
        (5, "new_category", 3, 50, None), (6, "new_category", 3, 50, None),
    ]
    assert described["seed"] == 0 and described["scenarios"] == SCENARIOS
    simulate(tmp_path, "none:2", n_rows=50, seed=0, labels_every=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch-001.parquet", "batch-002.parquet", "schedule.json"]


def _drifted_columns(training: pd.DataFrame, batch: pd.DataFrame) -> list[str]:
    report = detect_drift(training.drop(columns=TARGET), batch.drop(columns=ID_COLUMN))
    return [column.column for column in report.columns if column.drifted]


def test_none_is_like_training_and_a_half_sd_covariate_shift_is_found(training):
    assert _drifted_columns(training, make_batch("none", 5000, 0, index=1)[0]) == []
    drifted = _drifted_columns(training, make_batch("covariate_sudden", 5000, 0, index=1, shift_sd=0.5)[0])
    assert set(drifted) == {"age", "income", "credit_score", "debt_to_income"}


def test_a_scenario_waits_for_its_start_and_gradual_drift_grows():
    before, _ = make_batch("covariate_sudden", 500, 2, index=2, start=5)
    pd.testing.assert_frame_equal(before, make_batch("none", 500, 2, index=2)[0])
    def credit_drop(index: int) -> float:
        healthy = make_batch("none", 2000, 2, index=index)[0]["credit_score"]
        return (healthy - make_batch("covariate_gradual", 2000, 2, index=index, start=1)[0]["credit_score"]).mean()

    shifts = [credit_drop(index) for index in range(1, 7)]
    assert shifts == sorted(shifts) and shifts[4] == shifts[5]  # grows, full size after 5 batches
    assert shifts[5] == pytest.approx(0.5 * TRAINING_SD["credit_score"], rel=0.05)
    small = make_batch("covariate_sudden", 2000, 2, index=1, shift_sd=0.2)[0]["credit_score"]
    healthy = make_batch("none", 2000, 2, index=1)[0]["credit_score"]
    assert (healthy - small).mean() == pytest.approx(0.2 * TRAINING_SD["credit_score"], rel=0.05)


def test_new_category_brings_a_region_training_never_saw(training):
    features, _ = make_batch("new_category", 2000, 0, index=1)
    unseen = set(features["region"].dropna()) - set(training["region"].dropna())
    assert unseen == {"overseas"}
    assert (features["region"] == "overseas").mean() == pytest.approx(0.15, abs=0.03)


def test_missing_values_creep_in_batch_after_batch(tmp_path):
    batches = simulate(tmp_path, "none:1,missing_creep:4", n_rows=1000, seed=0)
    shares = [pd.read_parquet(b.features)[["credit_score", "purpose"]].isna().mean() for b in batches]
    assert shares[0].max() == 0
    for column in ("credit_score", "purpose"):
        creep = [share[column] for share in shares[1:]]
        assert creep == sorted(creep) and creep[0] > 0.02 and creep[-1] > 0.15, (column, creep)


def test_broken_column_delivers_income_in_thousands_with_true_labels():
    healthy, healthy_labels = make_batch("none", 1000, 4, index=1)
    broken, broken_labels = make_batch("broken_column", 1000, 4, index=1)
    ratio = healthy["income"].median() / broken["income"].median()
    assert ratio == pytest.approx(1000, rel=0.01)
    pd.testing.assert_frame_equal(healthy_labels, broken_labels)


def _model(training: pd.DataFrame):
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = ["age", "income", "loan_amount", "credit_score", "employment_years", "debt_to_income"]
    categorical = ["gender", "region", "employment", "purpose"]
    fill_and_encode = make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore"))
    prepare = make_column_transformer(
        (make_pipeline(SimpleImputer(), StandardScaler()), numeric), (fill_and_encode, categorical)
    )
    model = make_pipeline(prepare, LogisticRegression(max_iter=1000))
    return model.fit(training.drop(columns=TARGET), training[TARGET])


def test_concept_drift_changes_labels_not_features_and_costs_accuracy(training):
    model = _model(training)

    def accuracy(scenario: str) -> float:
        features, labels = make_batch(scenario, 5000, 9, index=1)
        return float((model.predict(features.drop(columns=ID_COLUMN)) == labels[TARGET]).mean())

    healthy, healthy_labels = make_batch("none", 5000, 9, index=1)
    drifted, drifted_labels = make_batch("concept_drift", 5000, 9, index=1)
    pd.testing.assert_frame_equal(healthy, drifted)  # same applicants
    assert drifted_labels[TARGET].mean() < healthy_labels[TARGET].mean() - 0.05
    assert accuracy("concept_drift") < accuracy("none") - 0.03
    assert accuracy("covariate_sudden") > accuracy("none") - 0.02  # P(y|x) unchanged: no comparable loss


@pytest.mark.parametrize(("schedule", "fragment"), [
    ("none:3,bogus:2", "'bogus'"),
    ("none:3;concept_drift:2", "'none:3;concept_drift:2'"),
    ("none", "'none'"),
    ("none:0", "none:0"),
    ("", "''"),
    ([("nope", 1)], "'nope'"),
])
def test_bad_schedules_name_the_item_and_the_known_scenarios(schedule, fragment):
    with pytest.raises(ReprobookError, match="known scenarios|at least 1") as caught:
        parse_schedule(schedule)
    assert fragment in str(caught.value)


def test_default_schedule_covers_every_scenario_after_healthy_batches():
    pairs = parse_schedule(DEFAULT_SCHEDULE)
    assert pairs[0][0] == "none" and pairs[0][1] >= 2
    assert {scenario for scenario, _ in pairs} == set(SCENARIOS)
    with pytest.raises(ReprobookError, match="unknown scenario 'drift'"):
        make_batch("drift", 10, 0)


@pytest.fixture
def cli() -> typer.Typer:
    from reprobook.cli.simulate import register

    app = typer.Typer()
    register(app)
    return app


def test_cli_writes_batches_and_summarises_each_on_stderr(cli, tmp_path):
    out = tmp_path / "batches"
    result = CliRunner().invoke(cli, [str(out), "--schedule", "none:2,broken_column:1", "--rows", "20",
                                      "--seed", "3", "--labels-every", "2"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0].split() == ["batch", "001", "none", "20", "rows", "labels:", "no"]
    assert lines[2].split() == ["batch", "003", "broken_column", "20", "rows", "labels:", "no"]
    assert "labels: yes" in lines[1] and str(out) in lines[-1]
    assert sorted(p.name for p in out.iterdir()) == [
        "batch-001.parquet", "batch-002.parquet", "batch-003.parquet", "labels-002.csv", "schedule.json"]
    assert len(pd.read_parquet(out / "batch-003.parquet")) == 20


def test_cli_bad_schedule_exits_2_with_one_line(cli, tmp_path):
    result = CliRunner().invoke(cli, [str(tmp_path), "--schedule", "none:2,covariate:1"])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "'covariate'" in result.stderr and "covariate_gradual" in result.stderr
    assert not list(tmp_path.iterdir())


def _console_script_knows_simulate() -> bool:
    try:
        done = subprocess.run([str(CONSOLE_SCRIPT), "simulate", "--help"], capture_output=True, timeout=60)
        return done.returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _console_script_knows_simulate(), reason="`reprobook simulate` is not mounted in the CLI yet")
def test_console_script_simulate(tmp_path):
    done = subprocess.run([str(CONSOLE_SCRIPT), "simulate", str(tmp_path), "--schedule", "none:1,concept_drift:1",
                           "--rows", "10"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "concept_drift" in done.stderr and (tmp_path / "labels-002.csv").exists()
    bad = subprocess.run([str(CONSOLE_SCRIPT), "simulate", str(tmp_path), "--schedule", "none:x"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "'none:x'" in bad.stderr
