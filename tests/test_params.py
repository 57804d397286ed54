"""params.yaml validation: every bad value is named by its key."""

from pathlib import Path

import pytest
import yaml

from reprobook.errors import ReprobookError
from reprobook.project.params import flatten, load_params, stage_params

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, tree: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def reference() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_reference_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.data.source == "builtin:loans"
    assert params.model.seed == 42


def test_typo_key_is_named_with_a_suggestion(tmp_path):
    tree = reference()
    tree["model"]["estimatr"] = tree["model"].pop("estimator")
    with pytest.raises(ReprobookError) as err:
        load_params(write(tmp_path, tree))
    message = str(err.value)
    assert "model.estimatr" in message and "did you mean 'estimator'" in message
    assert str(tmp_path / "params.yaml") in message


def test_unknown_section_is_named(tmp_path):
    tree = reference() | {"modelling": {}}
    with pytest.raises(ReprobookError, match="unknown section 'modelling' \\(did you mean 'model'\\?\\)"):
        load_params(write(tmp_path, tree))


def test_a_users_own_section_is_allowed_when_a_stage_reads_it(tmp_path):
    tree = reference() | {"features": {"window": 7}}
    params = load_params(write(tmp_path, tree), user_sections={"features"})
    assert params.model_extra["features"] == {"window": 7}


def test_wrong_type_names_key_expected_and_found(tmp_path):
    tree = reference()
    tree["data"]["n_rows"] = "lots"
    with pytest.raises(ReprobookError) as err:
        load_params(write(tmp_path, tree))
    assert "data.n_rows" in str(err.value) and "'lots'" in str(err.value) and "integer" in str(err.value)


def test_out_of_range_value(tmp_path):
    tree = reference()
    tree["data"]["test_size"] = 1.5
    with pytest.raises(ReprobookError, match=r"data.test_size.*less than 1.*1\.5"):
        load_params(write(tmp_path, tree))


def test_bad_source_scheme(tmp_path):
    tree = reference()
    tree["data"]["source"] = "ftp:somewhere"
    with pytest.raises(ReprobookError, match=r"data.source.*builtin:loans.*'ftp:somewhere'"):
        load_params(write(tmp_path, tree))


def test_all_problems_reported_at_once(tmp_path):
    tree = reference()
    tree["data"]["n_rows"] = -5
    tree["model"]["cv_folds"] = 1
    with pytest.raises(ReprobookError) as err:
        load_params(write(tmp_path, tree))
    assert "data.n_rows" in str(err.value) and "model.cv_folds" in str(err.value)


def test_invalid_yaml_names_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  source: [unclosed\n")
    with pytest.raises(ReprobookError, match="params.yaml: line"):
        load_params(path)


def test_missing_file(tmp_path):
    with pytest.raises(ReprobookError, match="params file not found"):
        load_params(tmp_path / "params.yaml")


def test_stage_params_are_the_keys_dvc_yaml_declares():
    from reprobook.project.stages import load_stages

    params = load_params(ROOT / "params.yaml")
    stages = load_stages(ROOT)
    modeling = stage_params(params, stages["modeling"].params)
    assert set(modeling) == {"model", "monitoring"} and modeling["monitoring"] == {"reference_rows": 50000}
    scoping = stage_params(params, stages["scoping"].params)
    assert set(scoping) == {"scoping", "data"} and "schema_file" not in scoping["data"]
    assert scoping["data"]["seed"] == 42


def test_a_stage_reads_only_what_it_declares():
    from reprobook.project.params import DeclaredParams, UndeclaredParamError

    view = DeclaredParams(load_params(ROOT / "params.yaml"), ("model", "data.seed"), "modeling")
    assert view.model.params["max_depth"] == 4 and view.data.seed == 42
    with pytest.raises(UndeclaredParamError, match="reads params key 'data.test_size'.*add 'data.test_size'"):
        view.data.test_size
    with pytest.raises(UndeclaredParamError, match="'scoping'"):
        view.scoping


def test_flatten_dotted_keys():
    assert flatten({"model": {"params": {"max_depth": 4}, "seed": 1}}) == {"model.params.max_depth": 4, "model.seed": 1}
