"""Schema inference, the YAML file, and clear errors on a malformed file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reprobook.errors import ReprobookError
from reprobook.quality import Schema, infer_schema


def loans() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 400
    income = rng.normal(50_000, 10_000, n)
    income[:40] = np.nan
    return pd.DataFrame({
        "age": rng.integers(18, 70, n),
        "income": income,
        "region": rng.choice(["north", "south"], n),
        "customer_id": [f"c{i}" for i in range(n)],
        "approved": rng.integers(0, 2, n),
    })


def test_inferred_schema_describes_the_data():
    df = loans()
    schema = infer_schema(df, label="approved", max_domain_size=10)
    assert schema.columns["age"].type == "integer"
    assert schema.columns["age"].range.min == df["age"].min() and schema.columns["age"].range.max == df["age"].max()
    assert schema.columns["income"].type == "float"
    assert schema.columns["income"].min_presence == pytest.approx(0.85)  # 90% observed, minus the 5-point margin
    assert schema.columns["region"].domain == ["north", "south"]
    assert schema.columns["customer_id"].domain is None  # 400 values > max_domain_size
    assert schema.columns["approved"].environments == ["TRAINING"]
    assert schema.columns["age"].environments is None


def test_yaml_round_trip_is_readable_and_identical(tmp_path):
    schema = infer_schema(loans(), label="approved")
    path = schema.to_yaml(tmp_path / "schema.yaml")
    text = path.read_text()
    assert "region:" in text and "domain: [north, south]" in text and "environments: [TRAINING]" in text
    assert Schema.from_yaml(path) == schema


def test_integer_column_with_missing_values_stays_integer():
    df = pd.DataFrame({"n": [1.0, 2.0, np.nan, 4.0]})
    assert infer_schema(df).columns["n"].type == "integer"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("columns:\n  age:\n    type: int\n", "columns.age.type"),
        ("columns:\n  age:\n    type: integer\n    min_presense: 0.9\n", "columns.age.min_presense: unknown key"),
        ("columns:\n  age:\n    type: integer\n    range: {min: 5, max: 1}\n", "columns.age.range"),
        ("columns:\n  age:\n    type: integer\n    environments: [PROD]\n", "PROD"),
        ("columns: [a, b\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_malformed_schema_names_file_and_key(tmp_path, text, fragment):
    path = tmp_path / "my_schema.yaml"
    path.write_text(text)
    with pytest.raises(ReprobookError) as info:
        Schema.from_yaml(path)
    assert "my_schema.yaml" in str(info.value) and fragment in str(info.value)


def test_unknown_label_is_an_error_naming_it():
    with pytest.raises(ReprobookError, match="'target'"):
        infer_schema(loans(), label="target")
