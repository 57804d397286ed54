"""The registry compares like with like (real MLflow on SQLite, no mocks).

A registered model name is bound to its task, target and feature columns; a
run of another problem is refused before anything is logged. The promotion
gate scores the current champion on the challenger's own test rows, and a
champion that cannot score them is never replaced automatically.

Each "project" is a tiny folder holding exactly the files
``log_and_register`` reads: the model, the test split, targets.json and the
modeling metrics.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from conftest import mlflow_store_uris
from reprobook.errors import ReprobookError
from reprobook.ml.persistence import load_model, save_model
from reprobook.project.paths import MODEL_FILE
from reprobook.project.params import Params
from reprobook.tracking import registry, store
from reprobook.tracking.registry import (
    RegistryMismatch,
    check_binding,
    check_project_binding,
    log_and_register,
)

FEATURES = ["mean radius", "mean texture", "mean smoothness", "mean concavity", "worst area", "worst symmetry"]
DATA = load_breast_cancer(as_frame=True).frame[[*FEATURES, "target"]]

# The switch that breaks a registered champion's predictions (as a changed dependency would).
FRAGILE = {"broken": False}


class FragileClassifier(LogisticRegression):
    """Scores normally when registered; raises once FRAGILE['broken'] is set."""

    def predict(self, X):
        self._check()
        return super().predict(X)

    def predict_proba(self, X):
        self._check()
        return super().predict_proba(X)

    def _check(self) -> None:
        if FRAGILE["broken"]:
            raise RuntimeError("fragile champion cannot predict any more")


@pytest.fixture
def mlflow_store(tmp_path):
    """A real SQLite store in tmp_path: (client, experiment id)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with mlflow_store_uris(uri):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        experiment = client.create_experiment("registry-tests", artifact_location=(tmp_path / "mlartifacts").as_uri())
        yield client, experiment


def make_project(
    root: Path,
    estimator,
    *,
    seed: int,
    target: str = "target",
    task: str = "classification",
    metric: str = "roc_auc",
    drop: tuple[str, ...] = (),
    add: tuple[str, ...] = (),
    trusted: tuple[str, ...] = (),
) -> Path:
    """A project folder after the modeling stage: model, split, targets.json, metrics.json."""
    frame = DATA.rename(columns={"target": target}).drop(columns=list(drop))
    for i, column in enumerate(add):
        frame[column] = (frame.index * (i + 7)) % 13 / 13
    train, test = train_test_split(frame, test_size=0.3, random_state=seed, stratify=frame[target])
    x_train, y_train = train.drop(columns=[target]), train[target]
    model = make_pipeline(StandardScaler(), estimator).fit(x_train, y_train)
    (root / "data/processed").mkdir(parents=True)
    train.reset_index(drop=True).to_parquet(root / "data/processed/train.parquet", index=False)
    test.reset_index(drop=True).to_parquet(root / "data/processed/test.parquet", index=False)
    save_model(model, root / MODEL_FILE, trusted=trusted)
    own = own_score(model, test, target)
    (root / "reports/scoping/outputs").mkdir(parents=True)
    targets = {"task": task, "target": target, "primary_metric": metric, "higher_is_better": True}
    (root / "reports/scoping/outputs/targets.json").write_text(json.dumps(targets))
    (root / "reports/modeling").mkdir(parents=True)
    comparison = {"primary_metric": metric, "value": own, "meets_threshold": True}
    (root / "reports/modeling/metrics.json").write_text(json.dumps({"test": {metric: own}, "comparison": comparison}))
    return root


def own_score(model, test: pd.DataFrame, target: str = "target") -> float:
    """ROC AUC of a model on a test frame, computed here, independently of reprobook."""
    x, y = test.drop(columns=[target]), test[target]
    return float(roc_auc_score(y, model.predict_proba(x)[:, 1]))


def register(store, root: Path, name: str, trusted: tuple[str, ...] = ()):
    """What the run record does after the modeling stage: a run, then log_and_register."""
    client, experiment = store
    run_id = client.create_run(experiment).info.run_id
    params = Params.model_validate({"model": {"registered_name": name, "trusted_types": list(trusted)}})
    return run_id, log_and_register(client, run_id, root, params)


def champion_version(client, name: str) -> str:
    return str(client.get_model_version_by_alias(name, registry.CHAMPION).version)


def champion_model(client, name: str = "loans"):
    return registry.load_registered_model(client, name, champion_version(client, name))


FRAGILE_TYPE = f"{FragileClassifier.__module__}.{FragileClassifier.__qualname__}"


def test_first_model_becomes_champion_and_binds_the_name(mlflow_store, tmp_path):
    client, _ = mlflow_store
    root = make_project(tmp_path / "p1", LogisticRegression(), seed=1)
    run_id, promotion = register(mlflow_store, root, "loans")
    assert promotion.promoted and "no champion yet" in promotion.reason
    assert champion_version(client, "loans") == "1"
    tags = client.get_registered_model("loans").tags
    assert tags[registry.TAG_TASK] == "classification"
    assert tags[registry.TAG_TARGET] == "target"
    assert json.loads(tags[registry.TAG_FEATURES]) == FEATURES
    run_tags = client.get_run(run_id).data.tags
    assert run_tags[registry.TAG_CHAMPION_SCORE].startswith("none")
    own = own_score(load_model(root / MODEL_FILE), pd.read_parquet(root / "data/processed/test.parquet"))
    assert float(run_tags[registry.TAG_CHALLENGER_SCORE]) == pytest.approx(own)


def test_a_run_of_another_problem_is_refused_before_anything_is_logged(mlflow_store, tmp_path):
    client, _ = mlflow_store
    register(mlflow_store, make_project(tmp_path / "first", LogisticRegression(), seed=1), "loans")
    others = {
        "target: expected 'target', found 'malignant'": {"target": "malignant"},
        "task: expected 'classification', found 'regression'": {"task": "regression", "metric": "r2"},
        "missing 'mean texture'": {"drop": ("mean texture",), "add": ("branch_code",)},
    }
    for i, (mismatch, change) in enumerate(others.items()):
        root = make_project(tmp_path / f"other{i}", LogisticRegression(), seed=2, **change)
        with pytest.raises(RegistryMismatch) as refused:
            register(mlflow_store, root, "loans")
        message = str(refused.value)
        assert "'loans'" in message and mismatch in message, message
        assert "model.registered_name" in message and "params.yaml" in message
        assert "\n" not in message
        if "drop" in change:
            assert "extra 'branch_code'" in message
    assert isinstance(refused.value, ReprobookError)
    assert [str(v.version) for v in client.search_model_versions("name='loans'")] == ["1"]
    assert champion_version(client, "loans") == "1"
    refused_runs = [r for r in client.search_runs([mlflow_store[1]]) if store.TAG_PROMOTION not in r.data.tags]
    assert len(refused_runs) == 3 and not any(client.list_artifacts(r.info.run_id) for r in refused_runs)


def test_check_binding_refuses_without_a_model_file(mlflow_store, tmp_path):
    client, _ = mlflow_store
    # A name registered by an older reprobook (no binding tags) accepts anything, then the next registration binds it.
    client.create_registered_model("legacy")
    check_binding(client, "legacy", "regression", "price", ["a", "b"])
    check_binding(client, "never-registered", "regression", "price", ["a", "b"])
    _, promotion = register(mlflow_store, make_project(tmp_path / "p1", LogisticRegression(), seed=1), "legacy")
    assert promotion.promoted
    assert json.loads(client.get_registered_model("legacy").tags[registry.TAG_FEATURES]) == FEATURES

    check_binding(client, "legacy", "classification", "target", list(reversed(FEATURES)))  # same columns: comparable
    with pytest.raises(RegistryMismatch, match="task: expected 'classification', found 'regression'"):
        check_binding(client, "legacy", "regression", "target", FEATURES)
    with pytest.raises(RegistryMismatch, match=r"missing 'worst area'.*extra 'zip'"):
        check_binding(client, "legacy", "classification", "target", [*FEATURES[:4], "worst symmetry", "zip"])

    # From the project's files, before the notebook has written a model.
    other = make_project(tmp_path / "p2", LogisticRegression(), seed=2, target="malignant")
    (other / MODEL_FILE).unlink()
    with pytest.raises(RegistryMismatch, match="target: expected 'target', found 'malignant'"):
        check_project_binding(client, other, "legacy")
    check_project_binding(client, tmp_path / "empty", "legacy")  # scoping/data not run yet: nothing to check


def test_registry_module_imports_light():
    """The runner imports check_binding in the outer process, which must not load scikit-learn."""
    code = (
        "import sys, reprobook.tracking.registry, reprobook.ml.features; "
        "print(sorted(m for m in ('sklearn', 'mlflow', 'pandas') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_champion_is_rescored_on_the_challengers_rows(mlflow_store, tmp_path):
    client, _ = mlflow_store
    first = make_project(tmp_path / "stump", DecisionTreeClassifier(max_depth=1, random_state=0), seed=1)
    stump_run, _ = register(mlflow_store, first, "loans")
    stump_own = json.loads((first / "reports/modeling/metrics.json").read_text())["comparison"]["value"]
    client.log_metric(stump_run, "test.roc_auc", stump_own)  # its old score, on its own split

    better = make_project(tmp_path / "better", LogisticRegression(), seed=2)
    better_rows = pd.read_parquet(better / "data/processed/test.parquet")
    expected = own_score(champion_model(client), better_rows)
    assert expected != stump_own
    run_id, promotion = register(mlflow_store, better, "loans")
    assert promotion.promoted, promotion.reason
    assert champion_version(client, "loans") == "2"
    assert promotion.champion_score == pytest.approx(expected, abs=1e-12)
    version_tags = client.get_model_version("loans", "2").tags
    assert float(version_tags[registry.TAG_CHAMPION_SCORE]) == pytest.approx(expected, abs=1e-12)
    assert version_tags[registry.TAG_CHAMPION_VERSION] == "1"
    assert version_tags[store.TAG_PROMOTION] == "champion"
    run = client.get_run(run_id).data
    assert run.metrics[registry.METRIC_CHAMPION_SCORE] == pytest.approx(expected, abs=1e-12)
    assert run.metrics[registry.METRIC_CHALLENGER_SCORE] == pytest.approx(promotion.challenger_score)
    assert run.tags[registry.TAG_REASON] == promotion.reason

    worse = make_project(tmp_path / "worse", DummyClassifier(strategy="prior"), seed=3)
    worse_rows = pd.read_parquet(worse / "data/processed/test.parquet")
    expected = own_score(champion_model(client), worse_rows)
    run_id, promotion = register(mlflow_store, worse, "loans")
    assert not promotion.promoted and "does not beat" in promotion.reason
    assert champion_version(client, "loans") == "2"
    assert str(client.get_model_version_by_alias("loans", registry.CHALLENGER).version) == "3"
    tags = client.get_run(run_id).data.tags
    assert tags[store.TAG_PROMOTION] == "challenger"
    assert float(tags[registry.TAG_CHAMPION_SCORE]) == pytest.approx(expected, abs=1e-12)


def test_a_champion_that_cannot_predict_is_not_replaced(mlflow_store, tmp_path, monkeypatch):
    client, _ = mlflow_store
    fragile = make_project(tmp_path / "fragile", FragileClassifier(), seed=1, trusted=(FRAGILE_TYPE,))
    register(mlflow_store, fragile, "loans", trusted=(FRAGILE_TYPE,))
    assert champion_version(client, "loans") == "1"
    monkeypatch.setitem(FRAGILE, "broken", True)
    following = make_project(tmp_path / "next", LogisticRegression(), seed=2)
    run_id, promotion = register(mlflow_store, following, "loans", trusted=(FRAGILE_TYPE,))
    assert not promotion.promoted
    assert "RuntimeError: fragile champion cannot predict any more" in promotion.reason
    assert "set the alias champion on version 2 by hand" in promotion.reason
    assert champion_version(client, "loans") == "1"
    run = client.get_run(run_id).data
    assert run.tags[store.TAG_PROMOTION] == "challenger"
    assert run.tags[registry.TAG_CHAMPION_SCORE].startswith("unavailable")
    assert registry.METRIC_CHAMPION_SCORE not in run.metrics and registry.METRIC_CHALLENGER_SCORE in run.metrics


def test_a_champion_that_cannot_load_is_not_replaced(mlflow_store, tmp_path):
    client, _ = mlflow_store
    register(mlflow_store, make_project(tmp_path / "first", LogisticRegression(), seed=1), "loans")
    source = client.get_model_version("loans", "1").source  # models:/<logged model id>
    logged = client.get_logged_model(source.removeprefix("models:/"))
    shutil.rmtree(Path(logged.artifact_location.removeprefix("file://")))
    _, promotion = register(mlflow_store, make_project(tmp_path / "next", LogisticRegression(), seed=2), "loans")
    assert not promotion.promoted
    assert "could not score" in promotion.reason and "version 2 by hand" in promotion.reason
    assert champion_version(client, "loans") == "1"


def test_project_client_registers_in_the_project_store_whatever_the_process_registry(tmp_path, monkeypatch):
    """A notebook or library that set MLflow's process-wide registry URI must not divert registrations."""
    (tmp_path / "project").mkdir()
    with mlflow_store_uris(f"sqlite:///{tmp_path}/elsewhere.db"):
        monkeypatch.delenv("MLFLOW_TRACKING_URI")  # as if only the registry had been pointed elsewhere
        client = store.client(tmp_path / "project")
        client.create_registered_model("loans")
        monkeypatch.undo()
    assert [m.name for m in client.search_registered_models()] == ["loans"]
    assert not (tmp_path / "elsewhere.db").exists()


def test_a_custom_estimator_is_refused_until_its_type_is_trusted(mlflow_store, tmp_path):
    """skops never instantiates a type the project has not listed: the error names it and the params key."""
    with pytest.raises(ReprobookError, match=rf"{FRAGILE_TYPE}.*model.trusted_types"):
        make_project(tmp_path / "untrusted", FragileClassifier(), seed=1)
    root = make_project(tmp_path / "trusted", FragileClassifier(), seed=1, trusted=(FRAGILE_TYPE,))
    with pytest.raises(ReprobookError, match=rf"{FRAGILE_TYPE}.*model.trusted_types"):
        load_model(root / MODEL_FILE)  # a reader that does not trust it refuses it too
    assert isinstance(load_model(root / MODEL_FILE, [FRAGILE_TYPE])[-1], FragileClassifier)
    _, promotion = register(mlflow_store, root, "loans", trusted=(FRAGILE_TYPE,))
    assert promotion.promoted


def test_a_pickled_champion_is_never_loaded(mlflow_store, tmp_path):
    """A champion stored with cloudpickle (as reprobook once did) is refused, not unpickled, and not replaced."""
    import mlflow.sklearn

    client, experiment = mlflow_store
    first = make_project(tmp_path / "first", LogisticRegression(), seed=1)
    register(mlflow_store, first, "loans")
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(load_model(first / MODEL_FILE), name="model", registered_model_name="loans",
                                        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE)
    client.set_registered_model_alias("loans", registry.CHAMPION, str(info.registered_model_version))
    _, promotion = register(mlflow_store, make_project(tmp_path / "next", LogisticRegression(C=0.5), seed=2), "loans")
    assert not promotion.promoted
    assert "pickle, which reprobook never loads" in promotion.reason
    assert champion_version(client, "loans") == "2"


def test_a_champion_score_prepared_during_training_is_used_only_for_that_champion_and_split(mlflow_store, tmp_path):
    """The modeling stage scores the champion while its kernel trains (registry.prepare); registration
    reuses that score only if the champion and the test split are still the ones scored."""
    client, _ = mlflow_store
    stump = make_project(tmp_path / "stump", DecisionTreeClassifier(max_depth=1, random_state=0), seed=1)
    register(mlflow_store, stump, "loans")
    challenger = make_project(tmp_path / "challenger", LogisticRegression(), seed=2)
    params = Params.model_validate({"model": {"registered_name": "loans"}})
    rows = pd.read_parquet(challenger / "data/processed/test.parquet")
    registry.prepare(client, challenger, params)
    stump_score = own_score(champion_model(client), rows)

    # Another model becomes champion between the preparation and the registration.
    deeper = make_project(tmp_path / "deeper", DecisionTreeClassifier(max_depth=4, random_state=0), seed=3)
    register(mlflow_store, deeper, "loans")
    assert champion_version(client, "loans") == "2"
    expected = own_score(champion_model(client), rows)
    assert expected != pytest.approx(stump_score, abs=1e-9)
    _, promotion = register(mlflow_store, challenger, "loans")
    assert promotion.champion_score == pytest.approx(expected, abs=1e-12)

    # The test split changes after the preparation: the champion is scored on the rows it has now.
    again = make_project(tmp_path / "again", LogisticRegression(C=0.5), seed=4)
    registry.prepare(client, again, params)
    changed = rows.iloc[: len(rows) // 2]
    changed.to_parquet(again / "data/processed/test.parquet", index=False)
    expected = own_score(champion_model(client), changed)
    _, promotion = register(mlflow_store, again, "loans")
    assert promotion.champion_score == pytest.approx(expected, abs=1e-12)
