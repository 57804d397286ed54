"""The quality commands: exit codes 0/1/2 and messages naming the file or column."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from reprobook.cli.quality import register

runner = CliRunner()


@pytest.fixture()
def app():
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    n = 2000
    ref = pd.DataFrame({"x": rng.normal(size=n), "colour": rng.choice(["red", "blue"], n), "y": rng.integers(0, 2, n)})
    cur = ref.sample(frac=1.0, random_state=1).reset_index(drop=True)
    shifted = cur.assign(x=cur["x"] + 1)
    paths = {"ref": tmp_path / "ref.csv", "same": tmp_path / "same.parquet", "shifted": tmp_path / "shifted.csv"}
    ref.to_csv(paths["ref"], index=False)
    cur.to_parquet(paths["same"])
    shifted.to_csv(paths["shifted"], index=False)
    paths["schema"] = tmp_path / "schema.yaml"
    return paths


def invoke(app, *args):
    return runner.invoke(app, [str(a) for a in args])


def test_infer_then_validate_clean_data_exits_0(app, files):
    assert invoke(app, "infer-schema", files["ref"], "-o", files["schema"], "--label", "y").exit_code == 0
    assert "colour" in files["schema"].read_text()
    result = invoke(app, "validate", files["same"], "--schema", files["schema"], "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["valid"] is True


def test_validate_with_errors_exits_1_and_names_the_column(app, files, tmp_path):
    invoke(app, "infer-schema", files["ref"], "-o", files["schema"])
    bad = tmp_path / "bad.csv"
    pd.read_csv(files["ref"]).drop(columns="colour").to_csv(bad, index=False)
    html = tmp_path / "report.html"
    result = invoke(app, "validate", bad, "--schema", files["schema"], "--html", html)
    assert result.exit_code == 1
    assert "missing_column" in result.stdout and "'colour'" in result.stdout
    assert "colour" in html.read_text()


def test_drift_exit_codes_and_report(app, files, tmp_path):
    assert invoke(app, "drift", files["ref"], files["same"]).exit_code == 0
    html = tmp_path / "drift.html"
    result = invoke(app, "drift", files["ref"], files["shifted"], "--format", "json", "--html", html)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["drifted_columns"] == ["x"]
    assert "<b>x</b>" in html.read_text()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["drift", "missing.csv", "{ref}"], "missing.csv: file not found"),
        (["validate", "{ref}", "--schema", "nothere.yaml"], "nothere.yaml: schema file not found"),
        (["drift", "{ref}", "{ref}", "--column", "nope"], "nope"),
        (["drift", "{ref}", "{ref}", "--correction", "holm"], "--correction"),
        (["infer-schema", "{ref}", "-o", "{schema}", "--label", "target"], "'target'"),
    ],
)
def test_usage_errors_exit_2_with_a_short_message(app, files, args, fragment):
    result = invoke(app, *[a.format(**files) for a in args])
    assert result.exit_code == 2
    assert fragment in result.stderr and "Traceback" not in result.output


def test_unreadable_data_exits_2(app, files, tmp_path):
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_text("not parquet at all")
    result = invoke(app, "drift", files["ref"], corrupt)
    assert result.exit_code == 2 and "corrupt.parquet" in result.stderr


def test_malformed_schema_exits_2_naming_file_and_key(app, files, tmp_path):
    schema = tmp_path / "edited.yaml"
    schema.write_text("columns:\n  x:\n    type: number\n")
    result = invoke(app, "validate", files["ref"], "--schema", schema)
    assert result.exit_code == 2 and "edited.yaml" in result.stderr and "columns.x.type" in result.stderr
