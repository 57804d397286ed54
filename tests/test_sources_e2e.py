"""The pipeline on scikit-learn's bundled data: binary classification and regression."""

from __future__ import annotations

import json

import pytest
from conftest import BIN, copy_project, set_params, sh

pytestmark = pytest.mark.e2e


def run(tmp_path, **params):
    root = copy_project(tmp_path / "project", commit=False)
    set_params(root, **{"data.schema_file": None, "data.columns": {}, "error_analysis.sensitive_features": [], **params})
    sh(["git", "init", "-q"], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "variant"], root)
    sh([str(BIN / "dvc"), "repro"], root)
    return root


def test_breast_cancer_classification(tmp_path):
    root = run(tmp_path, **{"data.source": "sklearn:breast_cancer", "scoping.threshold": 0.9})
    targets = json.loads((root / "reports/scoping/outputs/targets.json").read_text())
    assert targets["task"] == "classification" and targets["primary_metric"] == "roc_auc"
    metrics = json.loads((root / "reports/modeling/metrics.json").read_text())
    assert metrics["test"]["roc_auc"] > 0.95 and metrics["comparison"]["meets_threshold"]
    assert (root / "reports/modeling/plots/roc.png").is_file()


def test_diabetes_regression(tmp_path):
    root = run(
        tmp_path,
        **{
            "data.source": "sklearn:diabetes",
            "scoping.primary_metric": None,
            "scoping.threshold": 0.2,
            "model.estimator": "sklearn.ensemble.HistGradientBoostingRegressor",
            "model.params": {"max_depth": 3, "max_iter": 100, "learning_rate": 0.05},
        },
    )
    targets = json.loads((root / "reports/scoping/outputs/targets.json").read_text())
    assert targets["task"] == "regression" and targets["primary_metric"] == "r2"
    assert "inferred" in targets["task_reason"]
    metrics = json.loads((root / "reports/modeling/metrics.json").read_text())
    assert metrics["test"]["r2"] > metrics["comparison"]["baseline_score"] + 0.2
    assert (root / "reports/modeling/plots/residuals.png").is_file()
    slices = (root / "reports/error_analysis/outputs/slices.csv").read_text()
    assert "mae" in slices.splitlines()[1]
