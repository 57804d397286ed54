"""Real tables, right models: `reprobook new` and `reprobook run` with no edit on tables of every shape.

Three generated tables, each made into a project and run once (module-scoped)
through the installed console script, with real git, DVC, papermill and
MLflow on SQLite:

- **events**: a loan table with an integer id, a UUID, a row number, an ISO
  timestamp string per row, epoch seconds, a 5,000-level categorical, free
  text and a constant column. Roles, encoders, a time split proposed and
  kept, then a column dropped (schema file set) and a registered successor
  without it.
- **wages**: a regression target with its log and an affine copy among the
  columns: both named as leaks, no champion.
- **customers**: rows grouped by customer, labels sorted by id: a group
  split proposed and kept, the id leak named.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import BIN, sh

pytestmark = pytest.mark.e2e


def reprobook(*args: str, cwd: Path, check: bool = True):
    return sh([str(BIN / "reprobook"), *args], cwd, check=check)


def commit_line(output: str) -> str:
    """The commit command `reprobook run` prints after new results."""
    line = next(line for line in output.splitlines() if line.strip().startswith("commit:"))
    return line.split("commit:", 1)[1].split("  (")[0].strip()


def follow_commit_line(root: Path, output: str) -> str:
    """Run the printed commit line as a user would; return `git status --porcelain` afterwards."""
    sh(["bash", "-c", commit_line(output).replace("'...'", "'results'")], root)
    return sh(["git", "status", "--porcelain"], root).stdout


def make_project(base: Path, name: str, frame: pd.DataFrame, target: str) -> dict:
    data = base / f"{name}.csv"
    frame.to_csv(data, index=False)
    root = base / name
    created = reprobook("new", str(root), "--data", str(data), "--target", target, "--remote",
                        str(base / f"{name}-storage"), cwd=base)
    run = reprobook("run", cwd=root, check=False)
    return {"root": root, "created": created.stdout, "run": run, "output": run.stdout + run.stderr,
            "params": yaml.safe_load((root / "params.yaml").read_text())}


def model_inputs(root: Path) -> list[str]:
    from reprobook.ml.persistence import load_model

    return [str(c) for c in load_model(root / "models/model.skops").feature_names_in_]


def encoded_width(root: Path) -> int:
    from reprobook.ml.persistence import load_model

    return len(load_model(root / "models/model.skops").named_steps["preprocess"].get_feature_names_out())


def registry(root: Path, name: str):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db", registry_uri=f"sqlite:///{root}/mlflow.db")
    return client, client.search_model_versions(f"name = '{name}'")


# ---------------------------------------------------------------- the tables


def events_table(n: int = 2500, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.choice(2 * 365 * 86_400, n, replace=False))
    when = pd.Timestamp("2023-01-01") + pd.to_timedelta(seconds, unit="s")
    words = np.array(["new", "car", "used", "van", "family", "commute", "weekend", "loan", "cash", "trade"])
    income = rng.lognormal(10.5, 0.5, n).round(2)
    amount = rng.lognormal(9.5, 0.6, n).round(2)
    score = rng.normal(660, 70, n).round()
    logit = (score - 660) / 50 - np.log(amount / income * 8) + rng.normal(0, 0.8, n)
    return pd.DataFrame({
        "loan_id": rng.permutation(n) + 700_000,
        "ref": [str(uuid.UUID(int=int(v))) for v in rng.integers(0, 2**62, n)],
        "Unnamed: 0": np.arange(n),
        "applied_at": when.strftime("%Y-%m-%dT%H:%M:%S"),
        "epoch": 1_672_531_200 + seconds + 3600,  # epoch seconds of applied_at, an hour later
        "dealer": [f"dealer-{v:04d}" for v in rng.integers(0, 5000, n)],
        "grade": rng.choice(list("ABCDE"), n),
        "note": [" ".join(rng.choice(words, 6)) for _ in range(n)],
        "channel": "online",
        "income": income,
        "loan_amount": amount,
        "credit_score": score,
        "approved": np.where(logit > -0.3, "yes", "no"),
    })


def wages_table(n: int = 1200, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    years = rng.integers(0, 40, n)
    education = rng.choice(["school", "college", "degree", "phd"], n)
    wage = np.exp(2.5 + 0.03 * years + pd.Series(education).map({"school": 0, "college": 0.2, "degree": 0.4,
                                                                    "phd": 0.6}).to_numpy() + rng.normal(0, 0.3, n))
    wage = wage.round(2)
    return pd.DataFrame({"years": years, "education": education, "hours": rng.integers(20, 60, n),
                         "log_wage": np.log(wage), "wage_in_cents_plus_fee": wage * 100 + 5, "wage": wage})


def customers_table(n: int = 2000, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    customer = rng.integers(0, 250, n)
    spend = rng.gamma(2, 50, n).round(2) + customer % 7
    visits = rng.poisson(4, n)
    churned = (spend / 100 + rng.normal(0, 1, n) < 1.2).astype(int)
    frame = pd.DataFrame({"customer_id": customer, "spend": spend, "visits": visits, "region": rng.choice(
        ["n", "s", "e", "w"], n), "churned": churned})
    frame = frame.sort_values("churned", kind="stable").reset_index(drop=True)
    frame.insert(0, "record_id", np.arange(n) * 3 + 11)  # ids given after sorting by the label
    return frame


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> dict:
    return make_project(tmp_path_factory.mktemp("events"), "carloan", events_table(), "approved")


@pytest.fixture(scope="module")
def wages(tmp_path_factory) -> dict:
    return make_project(tmp_path_factory.mktemp("wages"), "wages", wages_table(), "wage")


@pytest.fixture(scope="module")
def customers(tmp_path_factory) -> dict:
    return make_project(tmp_path_factory.mktemp("customers"), "churn", customers_table(), "churned")


# ---------------------------------------------------------------- roles and encoders


def test_new_declares_every_role_with_its_reason_and_prints_them(events):
    roles = events["params"]["data"]["columns"]
    assert roles == {
        "loan_id": "id", "ref": "id", "Unnamed: 0": "id", "applied_at": "datetime", "epoch": "datetime",
        "dealer": "categorical", "grade": "categorical", "note": "text", "channel": "ignored",
        "income": "numeric", "loan_amount": "numeric", "credit_score": "numeric", "approved": "target",
    }
    text = (events["root"] / "params.yaml").read_text()
    assert "loan_id: id  # a sequence" in text and "channel: ignored  # constant" in text
    assert "ref: id  # UUID-like strings" in text
    printed = events["created"]
    assert "column roles" in printed and "applied_at" in printed and "UUID-like" in printed
    assert events["params"]["monitoring"]["id_column"] == "loan_id"


def test_ids_text_and_constants_are_never_features_and_the_width_stays_small(events):
    assert events["run"].returncode == 0, events["output"][-3000:]
    inputs = model_inputs(events["root"])
    assert set(inputs) == {"applied_at", "epoch", "dealer", "grade", "income", "loan_amount", "credit_score"}
    assert encoded_width(events["root"]) < 40  # 2,500 unique timestamps and ~2,000 dealers
    train = pd.read_parquet(events["root"] / "data/processed/train.parquet")
    assert "loan_id" in train.columns  # an id is kept for joins; a constant stays in the file, unread by the model
    report = json.loads((events["root"] / "reports/data/outputs/roles.json").read_text())
    assert report["roles"]["ref"] == "id" and "channel" in report["dropped"]


def test_the_serving_signature_takes_the_raw_columns(events):
    import mlflow.pyfunc
    from conftest import mlflow_store_uris

    _, versions = registry(events["root"], "carloan")
    uri = f"sqlite:///{events['root']}/mlflow.db"
    with mlflow_store_uris(uri):
        loaded = mlflow.pyfunc.load_model(f"models:/carloan/{versions[-1].version}")
    names = loaded.metadata.get_input_schema().input_names()
    assert "applied_at" in names and "loan_id" not in names
    batch = events_table(20, seed=11).drop(columns=["approved"])  # raw strings: the model parses the dates
    assert len(loaded.predict(batch[names])) == 20


def test_a_table_with_dates_is_split_in_time_and_cross_validated_forward(events):
    params = events["params"]["data"]["split"]
    assert params == {"kind": "time", "column": "applied_at"}
    assert "split: time on 'applied_at'" in events["created"]
    train = pd.read_parquet(events["root"] / "data/processed/train.parquet")
    test = pd.read_parquet(events["root"] / "data/processed/test.parquet")
    assert pd.to_datetime(test["applied_at"]).min() >= pd.to_datetime(train["applied_at"]).max()
    assert "TimeSeriesSplit" in (events["root"] / "reports/modeling/notebook.ipynb").read_text()


def test_honest_data_shows_no_leak_and_the_model_is_champion(events):
    leakage = json.loads((events["root"] / "reports/data/outputs/leakage.json").read_text())
    assert leakage["target_leaks"] == [], leakage["target_leaks"]
    client, versions = registry(events["root"], "carloan")
    assert client.get_model_version_by_alias("carloan", "champion").version == versions[0].version


def test_following_the_printed_commit_line_leaves_git_clean(events):
    assert follow_commit_line(events["root"], events["output"]) == ""


def test_dropping_a_feature_with_a_schema_file_registers_a_successor(events):
    root = events["root"]
    assert events["params"]["data"]["schema_file"]
    text = (root / "params.yaml").read_text().replace("  drop_columns: []", "  drop_columns: [grade]")
    (root / "params.yaml").write_text(text)
    sh(["git", "commit", "-qam", "drop grade"], root)  # the user's edit; the run's results are the printed line's
    again = reprobook("run", cwd=root, check=False)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-3000:]
    assert "grade" not in model_inputs(root)
    _, versions = registry(root, "carloan")
    assert len(versions) == 2  # registered and competing, not "bound to another problem"
    assert follow_commit_line(root, output) == ""


# ---------------------------------------------------------------- leaks


def test_the_log_and_an_affine_copy_of_the_target_are_named_and_block_promotion(wages):
    leakage = json.loads((wages["root"] / "reports/data/outputs/leakage.json").read_text())
    named = {leak["column"] for leak in leakage["target_leaks"]}
    assert {"log_wage", "wage_in_cents_plus_fee"} <= named, leakage
    assert all(leak["fix"] for leak in leakage["target_leaks"])
    assert "LEAK: 'log_wage'" in (wages["root"] / "reports/data/notebook.ipynb").read_text()
    client, versions = registry(wages["root"], "wages")
    assert versions, wages["output"][-3000:]
    aliases = {alias for version in versions for alias in version.aliases}
    assert "champion" not in aliases
    reason = client.get_model_version("wages", versions[0].version).tags.get("reprobook.promotion_reason", "")
    assert "log_wage" in reason


def test_an_acknowledged_leak_no_longer_blocks(wages):
    root = wages["root"]
    text = (root / "params.yaml").read_text().replace(
        "  acknowledged_leaks: {}",
        "  acknowledged_leaks: {log_wage: known at scoring time, wage_in_cents_plus_fee: known at scoring time}")
    (root / "params.yaml").write_text(text)
    again = reprobook("run", cwd=root, check=False)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    leakage = json.loads((root / "reports/data/outputs/leakage.json").read_text())
    assert leakage["target_leaks"] == [] and {a["column"] for a in leakage["acknowledged_leaks"]} >= {"log_wage"}


def test_a_grouped_table_is_split_by_group_and_the_sorted_label_is_named(customers):
    split = customers["params"]["data"]["split"]
    assert split == {"kind": "group", "column": "customer_id"}, customers["created"]
    roles = customers["params"]["data"]["columns"]
    assert roles["customer_id"] == "id" and roles["record_id"] == "id"
    train = pd.read_parquet(customers["root"] / "data/processed/train.parquet")
    test = pd.read_parquet(customers["root"] / "data/processed/test.parquet")
    assert not set(train["customer_id"]) & set(test["customer_id"])
    assert "customer_id" not in model_inputs(customers["root"])
    leakage = json.loads((customers["root"] / "reports/data/outputs/leakage.json").read_text())
    assert "record_id" in {leak["column"] for leak in leakage["target_leaks"]}, leakage
