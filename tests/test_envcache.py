"""Facts about the environment are computed once per environment, and again when it changes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from reprobook.project import envcache


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_a_fact_is_computed_once_per_environment():
    calls = []
    compute = lambda: calls.append(1) or {"answer": len(calls)}  # noqa: E731
    assert envcache.cached("fact", compute) == {"answer": 1}
    assert envcache.cached("fact", compute) == {"answer": 1}
    assert len(calls) == 1


def test_installing_into_a_path_folder_changes_the_environment(tmp_path, monkeypatch):
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    before = envcache.environment_key()
    assert envcache.cached("fact", lambda: "old") == "old"
    time.sleep(0.01)
    (site / "newpkg-1.0.dist-info").mkdir()  # what pip install does
    assert envcache.environment_key() != before
    assert envcache.cached("fact", lambda: "new") == "new"


def test_an_unwritable_cache_still_answers(tmp_path, monkeypatch):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    assert envcache.cached("fact", lambda: 42) == 42


def test_installed_and_project_modules_are_told_apart(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text("class Model: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert envcache.is_installed_module("sklearn.ensemble.RandomForestClassifier")
    assert not envcache.is_installed_module("mymodels.Model", tmp_path)
    assert not envcache.is_installed_module("no_such_module_anywhere.Thing")


def test_the_package_list_of_a_run_record_comes_from_the_cache_and_matches_the_metadata():
    from reprobook.tracking import environment

    assert environment.packages() == environment.installed_packages()
    assert envcache.cache_file().is_file()
    assert "scikit-learn" in environment.packages()


def test_a_repeated_params_check_does_not_import_scikit_learn(tmp_path):
    """`reprobook run` checks the estimator before DVC starts: once per environment and settings.

    Run from a folder nothing else writes to: ``python -c`` puts the working
    folder on ``sys.path``, so its modification time is part of the environment.
    """
    from conftest import ROOT as root

    work = tmp_path / "work"  # not where the cache is written (the fixture puts it in tmp_path/cache)
    work.mkdir()
    code = (
        "import sys; from pathlib import Path\n"
        "from reprobook.project import preflight; from reprobook.project.params import project_params\n"
        f"root = Path({str(root)!r}); preflight.check(root, project_params(root))\n"
        "print('sklearn' in sys.modules)"
    )
    env = {**os.environ}
    first = subprocess.run([sys.executable, "-c", code], env=env, cwd=work, capture_output=True, text=True,
                           check=True)
    second = subprocess.run([sys.executable, "-c", code], env=env, cwd=work, capture_output=True, text=True,
                            check=True)
    assert first.stdout.strip() == "True" and second.stdout.strip() == "False"


def test_changed_settings_are_checked_again(tmp_path):
    from reprobook.project import preflight
    from reprobook.project.params import Params

    good = Params.model_validate({"model": {"estimator": "sklearn.ensemble.RandomForestClassifier",
                                            "params": {"max_depth": 4}}})
    bad = Params.model_validate({"model": {"estimator": "sklearn.ensemble.RandomForestClassifier",
                                           "params": {"max_depth": "deep"}}})
    assert preflight._estimator_problems(good, "classification") == []
    assert preflight._estimator_problems(bad, "classification")
    assert preflight._estimator_problems(good, "classification") == []


def test_a_project_estimator_is_never_answered_from_the_cache(tmp_path, monkeypatch):
    from reprobook.project import preflight
    from reprobook.project.params import Params

    module = tmp_path / "local_estimators.py"
    module.write_text("from sklearn.ensemble import RandomForestClassifier as Model\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    params = Params.model_validate({"model": {"estimator": "local_estimators.Model", "params": {"max_depth": 4}}})
    assert preflight._estimator_problems(params, "classification") == []
    module.write_text("from sklearn.linear_model import LogisticRegression as Model\n")
    sys.modules.pop("local_estimators", None)
    assert preflight._estimator_problems(params, "classification")  # max_depth is no longer a hyperparameter
