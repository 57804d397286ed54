"""A column that gives the target away never makes a champion (the report says which, and why).

A user's CSV where `decision` is the target `approved` spelt yes/no: the data
report names the leak, the modeling report calls the perfect score suspicious,
and the registry keeps the model as challenger only, with the reason on the
version. Real tools: `reprobook new` and `reprobook run` through the console
script, DVC, papermill, MLflow on SQLite.
"""

from __future__ import annotations

import json

import pytest
from conftest import BIN, sh

from reprobook.ml.loans import make_loans

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def leaky(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("leak")
    frame = make_loans(800, 7)
    frame["decision"] = frame["approved"].map({0: "no", 1: "yes"})
    data = base / "applications.csv"
    frame.to_csv(data, index=False)
    root = base / "leaky"
    sh([str(BIN / "reprobook"), "new", str(root), "--data", str(data), "--target", "approved",
        "--remote", str(base / "storage")], base)
    result = sh([str(BIN / "reprobook"), "run"], root)
    return {"root": root, "output": result.stdout + result.stderr}


def outputs_text(root, stage: str) -> str:
    notebook = json.loads((root / "reports" / stage / "notebook.ipynb").read_text())
    return "".join("".join(o.get("text", "")) for c in notebook["cells"] for o in c.get("outputs", []))


def test_the_data_report_names_the_leaking_column(leaky):
    root = leaky["root"]
    assert "LEAK: 'decision'" in outputs_text(root, "data")
    assert json.loads((root / "reports/data/metrics.json").read_text())["target_leak_columns"] == 1


def test_the_perfect_score_is_called_suspicious(leaky):
    assert "SUSPICIOUS: roc_auc = 1 is a perfect score" in outputs_text(leaky["root"], "modeling")


def test_the_leaky_model_is_not_champion_and_the_version_says_why(leaky):
    import yaml
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    root = leaky["root"]
    name = yaml.safe_load((root / "params.yaml").read_text())["model"]["registered_name"]
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # other tests in this process may set a global one
    challenger = client.get_model_version_by_alias(name, "challenger")
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias(name, "champion")
    reason = challenger.tags["reprobook.promotion_reason"]
    assert "'decision'" in reason and "data.drop_columns" in reason
