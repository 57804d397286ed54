"""The registry compares like with like (real MLflow on SQLite, no mocks).

A registered model name is bound to its task, target and label classes, not
to its feature columns; a run of another problem is refused before anything
is logged. A version that reads fewer or other columns registers and
competes: the promotion gate scores the current champion on the challenger's
own test rows, by the champion's own columns. A champion that cannot score
them (broken, or reading a column the data no longer has) is never replaced
automatically, nor is it by a version that needs an input the champion did not
read (a serving contract change, which `reprobook deploy promote` promotes
only with --accept-contract-change).

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
import pyarrow as pa
import pyarrow.parquet as pq
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
from reprobook.ml.features import ROLES_KEY
from reprobook.ml.persistence import load_model, save_model
from reprobook.monitoring import deployment
from reprobook.project.paths import MODEL_FILE
from reprobook.project.params import Params
from reprobook.reproduce import compare
from reprobook.tracking import contract, record, registry, store
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
    ids: tuple[str, ...] = (),
    labels: dict | None = None,
    trusted: tuple[str, ...] = (),
) -> Path:
    """A project folder after the modeling stage: model, split, targets.json, metrics.json, params.yaml.

    ``drop`` removes columns from the data (as data.drop_columns does), ``add``
    adds feature columns, ``ids`` keeps columns in the splits with the role
    ``id`` (recorded in their footer, as the data stage does), so the model does
    not read them; ``labels`` renames the target's classes.
    """
    frame = DATA.rename(columns={"target": target}).drop(columns=list(drop))
    for i, column in enumerate(add):
        frame[column] = (frame.index * (i + 7)) % 13 / 13
    if labels:
        frame[target] = frame[target].map(labels)
    train, test = train_test_split(frame, test_size=0.3, random_state=seed, stratify=frame[target])
    x_train, y_train = train.drop(columns=[target, *ids]), train[target]
    model = make_pipeline(StandardScaler(), estimator).fit(x_train, y_train)
    (root / "data/processed").mkdir(parents=True)
    roles = {column: "id" if column in ids else "numeric" for column in frame.columns if column != target}
    for name, split in (("train", train), ("test", test)):
        write_split_file(split.reset_index(drop=True), root / f"data/processed/{name}.parquet", roles if ids else None)
    save_model(model, root / MODEL_FILE, trusted=trusted)
    own = own_score(model, test.drop(columns=list(ids)), target)
    (root / "reports/scoping/outputs").mkdir(parents=True)
    targets = {"task": task, "target": target, "primary_metric": metric, "higher_is_better": True,
               "threshold": 0.5, "latency_budget_ms": 1000}
    (root / "reports/scoping/outputs/targets.json").write_text(json.dumps(targets))
    (root / "reports/modeling").mkdir(parents=True)
    comparison = {"primary_metric": metric, "value": own, "meets_threshold": True}
    (root / "reports/modeling/metrics.json").write_text(json.dumps({"test": {metric: own}, "comparison": comparison}))
    (root / "params.yaml").write_text(f"model:\n  registered_name: loans\n  trusted_types: {json.dumps(list(trusted))}\n")
    return root


def write_split_file(frame: pd.DataFrame, path: Path, roles: dict[str, str] | None) -> None:
    """A split file; with ``roles``, recorded in its footer as the data stage records them."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if roles is not None:
        recorded = json.dumps({"roles": roles, "split": {"kind": "random"}}).encode()
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), ROLES_KEY: recorded})
    pq.write_table(table, path)


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
    assert json.loads(tags[registry.TAG_CLASSES]) == [0, 1]
    assert registry.TAG_FEATURES not in tags, "the feature list binds nothing any more"
    run_tags = client.get_run(run_id).data.tags
    assert run_tags[registry.TAG_CHAMPION_SCORE].startswith("none")
    assert json.loads(run_tags[contract.TAG_INPUTS]) == FEATURES
    assert registry.TAG_CONTRACT not in run_tags, "no champion: no contract to change"
    own = own_score(load_model(root / MODEL_FILE), pd.read_parquet(root / "data/processed/test.parquet"))
    assert float(run_tags[registry.TAG_CHALLENGER_SCORE]) == pytest.approx(own)


def test_a_run_of_another_problem_is_refused_before_anything_is_logged(mlflow_store, tmp_path):
    client, _ = mlflow_store
    register(mlflow_store, make_project(tmp_path / "first", LogisticRegression(), seed=1), "loans")
    others = {
        "target: expected 'target', found 'malignant'": {"target": "malignant"},
        "task: expected 'classification', found 'regression'": {"task": "regression", "metric": "r2"},
        'classes: expected [0, 1], found ["benign", "malignant"] (new ["benign", "malignant"], gone [0, 1])':
            {"labels": {0: "benign", 1: "malignant"}},
    }
    for i, (mismatch, change) in enumerate(others.items()):
        root = make_project(tmp_path / f"other{i}", LogisticRegression(), seed=2, **change)
        with pytest.raises(RegistryMismatch) as refused:
            register(mlflow_store, root, "loans")
        message = str(refused.value)
        assert "'loans'" in message and mismatch in message, message
        assert "model.registered_name" in message and "params.yaml" in message
        assert "\n" not in message
    assert isinstance(refused.value, ReprobookError)
    assert [str(v.version) for v in client.search_model_versions("name='loans'")] == ["1"]
    assert champion_version(client, "loans") == "1"
    refused_runs = [r for r in client.search_runs([mlflow_store[1]]) if store.TAG_PROMOTION not in r.data.tags]
    assert len(refused_runs) == 3 and not any(client.list_artifacts(r.info.run_id) for r in refused_runs)


def test_check_binding_refuses_without_a_model_file(mlflow_store, tmp_path):
    client, _ = mlflow_store
    # A name an older reprobook bound to a feature list (with 'id' among them): that tag is read and ignored.
    old_features = json.dumps(["id", *FEATURES])
    client.create_registered_model("legacy", tags={registry.TAG_TASK: "classification",
                                                   registry.TAG_TARGET: "target", registry.TAG_FEATURES: old_features})
    check_binding(client, "legacy", "classification", "target", [0, 1])
    check_binding(client, "never-registered", "regression", "price")
    _, promotion = register(mlflow_store, make_project(tmp_path / "p1", LogisticRegression(), seed=1), "legacy")
    assert promotion.promoted
    tags = client.get_registered_model("legacy").tags
    assert json.loads(tags[registry.TAG_CLASSES]) == [0, 1], "the next registration binds the classes"
    assert tags[registry.TAG_FEATURES] == old_features, "an old tag is left as it was"

    check_binding(client, "legacy", "classification", "target", [1, 0.0])  # same labels (1.0 is the integer 1)
    check_binding(client, "legacy", "classification", "target")  # classes not known yet (no split): not compared
    with pytest.raises(RegistryMismatch, match="task: expected 'classification', found 'regression'"):
        check_binding(client, "legacy", "regression", "target")
    with pytest.raises(RegistryMismatch, match=r"classes: expected \[0, 1\], found \[0, 1, 2\] \(new \[2\]\)"):
        check_binding(client, "legacy", "classification", "target", [0, 1, 2])

    # From the project's files, before the notebook has written a model: the classes come from the splits.
    other = make_project(tmp_path / "p2", LogisticRegression(), seed=2, target="malignant")
    (other / MODEL_FILE).unlink()
    with pytest.raises(RegistryMismatch, match="target: expected 'target', found 'malignant'"):
        check_project_binding(client, other, "legacy")
    relabelled = make_project(tmp_path / "p3", LogisticRegression(), seed=2, labels={0: "no", 1: "yes"})
    (relabelled / MODEL_FILE).unlink()
    with pytest.raises(RegistryMismatch, match=r'classes: expected \[0, 1\], found \["no", "yes"\]'):
        check_project_binding(client, relabelled, "legacy")
    assert registry.split_classes(relabelled, "target") == ("no", "yes")
    fewer = make_project(tmp_path / "p4", LogisticRegression(), seed=2, drop=("mean texture",), ids=("worst area",))
    (fewer / MODEL_FILE).unlink()
    check_project_binding(client, fewer, "legacy")  # other feature columns: the same problem
    check_project_binding(client, tmp_path / "empty", "legacy")  # scoping/data not run yet: nothing to check


def test_dropping_an_input_registers_and_competes_on_the_same_rows(mlflow_store, tmp_path):
    """The issue's case: a column that was an input (here 'mean texture') is no input any more but stays in the
    split (an id, say). The new version registers; the champion is scored on its rows by its own six columns."""
    client, _ = mlflow_store
    register(mlflow_store, make_project(tmp_path / "stump", DecisionTreeClassifier(max_depth=1, random_state=0),
                                        seed=1), "loans")
    fewer = make_project(tmp_path / "fewer", LogisticRegression(), seed=2, ids=("mean texture",))
    rows = pd.read_parquet(fewer / "data/processed/test.parquet")
    expected = own_score(champion_model(client), rows)  # the champion reads 'mean texture', which rows still have
    run_id, promotion = register(mlflow_store, fewer, "loans")
    assert promotion.promoted, promotion.reason
    assert champion_version(client, "loans") == "2"
    assert promotion.champion_score == pytest.approx(expected, abs=1e-12)
    assert "beats the champion's" in promotion.reason
    assert "no longer reads 'mean texture' (callers may keep sending them" in promotion.reason
    assert promotion.contract == contract.ContractChange((), ("mean texture",), "1")
    for tags in (client.get_run(run_id).data.tags, client.get_model_version("loans", "2").tags):
        assert json.loads(tags[registry.TAG_CONTRACT]) == {"added": [], "removed": ["mean texture"],
                                                           "champion_version": "1"}
    inputs = json.loads(client.get_run(run_id).data.tags[contract.TAG_INPUTS])
    assert inputs == [c for c in FEATURES if c != "mean texture"]


def test_a_champion_reading_a_column_the_data_no_longer_has_is_unavailable_not_replaced(mlflow_store, tmp_path):
    """data.drop_columns removes the column from the splits: the champion cannot score the new test rows, so
    nothing compares the two on the same rows; the new version registers, and a human decides."""
    client, _ = mlflow_store
    register(mlflow_store, make_project(tmp_path / "stump", DecisionTreeClassifier(max_depth=1, random_state=0),
                                        seed=1), "loans")
    dropped = make_project(tmp_path / "dropped", LogisticRegression(), seed=2, drop=("mean texture",))
    run_id, promotion = register(mlflow_store, dropped, "loans")
    assert not promotion.promoted
    assert sorted(str(v.version) for v in client.search_model_versions("name='loans'")) == ["1", "2"]
    assert champion_version(client, "loans") == "1"
    assert str(client.get_model_version_by_alias("loans", registry.CHALLENGER).version) == "2"
    assert "is unavailable: it reads column(s) 'mean texture' that this run's test split no longer has" in \
        promotion.reason
    assert "reprobook deploy promote --challenger loans/2 --batch FILE --labels FILE" in promotion.reason
    tags = client.get_run(run_id).data.tags
    assert tags[registry.TAG_CHAMPION_SCORE] == "unavailable (needs column(s) 'mean texture' the data no longer has)"
    assert json.loads(tags[registry.TAG_CONTRACT])["removed"] == ["mean texture"]
    assert registry.METRIC_CHAMPION_SCORE not in client.get_run(run_id).data.metrics


def test_a_new_input_is_a_contract_change_held_back_until_promoted_with_consent(mlflow_store, tmp_path, monkeypatch,
                                                                               capsys):
    """A version needing 'timestamp_ms' beats the champion on the same rows, but callers of @champion do not send
    that column: it stays challenger, says why, and blue-green promotion asks for --accept-contract-change."""
    client, _ = mlflow_store
    first_run, _ = register(mlflow_store, make_project(
        tmp_path / "stump", DecisionTreeClassifier(max_depth=1, random_state=0), seed=1), "loans")
    more = make_project(tmp_path / "more", LogisticRegression(), seed=2, add=("timestamp_ms",))
    rows = pd.read_parquet(more / "data/processed/test.parquet")
    expected = own_score(champion_model(client), rows.drop(columns=["timestamp_ms"]))
    run_id, promotion = register(mlflow_store, more, "loans")
    assert promotion.champion_score == pytest.approx(expected, abs=1e-12), "the champion scored by its own columns"
    assert not promotion.promoted
    assert promotion.reason.startswith("not promoted automatically: roc_auc"), promotion.reason
    assert "beats the champion's" in promotion.reason
    assert "needs input column(s) 'timestamp_ms' that version 1 does not read" in promotion.reason
    assert "reprobook deploy promote --challenger loans/2 --accept-contract-change" in promotion.reason
    assert champion_version(client, "loans") == "1"
    for tags in (client.get_run(run_id).data.tags, client.get_model_version("loans", "2").tags):
        assert json.loads(tags[registry.TAG_CONTRACT]) == {"added": ["timestamp_ms"], "removed": [],
                                                           "champion_version": "1"}
        assert tags[store.TAG_PROMOTION] == "challenger"

    # Blue-green without consent: refused before any gate runs, one line naming the column and the flag.
    with pytest.raises(deployment.ContractChangeRefused) as refused:
        deployment.promote(more)
    assert str(refused.value) == (
        "version 2 of 'loans' needs input column(s) 'timestamp_ms' that the champion (version 1) does not read, "
        "so callers that send the champion's columns would be refused; once they send them, promote with "
        "--accept-contract-change (no alias was changed)")
    with pytest.raises(deployment.ContractChangeRefused):
        deployment.promote(more, force=True)  # --force overrides gates, not the contract
    monkeypatch.chdir(more)
    from reprobook.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["deploy", "promote"])
    assert exited.value.code == 1, "a refused promotion, as when a gate fails"
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert said == [f"error: {refused.value}"], said
    assert champion_version(client, "loans") == "1"
    assert not (more / "monitoring/deployments.jsonl").exists(), "nothing is written without consent"

    report = deployment.promote(more, accept_contract_change=True)
    assert report.promoted, report.reason
    assert champion_version(client, "loans") == "2"
    assert report.contract_change == {"added": ["timestamp_ms"], "removed": [], "champion_version": "1"}
    assert "serving contract change (accepted with --accept-contract-change): needs input column(s) " \
           "'timestamp_ms'" in report.reason
    logged = json.loads((more / "monitoring/deployments.jsonl").read_text().splitlines()[-1])
    assert logged["figures"]["contract_change"]["added"] == ["timestamp_ms"]

    # reprobook compare shows the change between the two modeling runs, from the tag or from the model signature.
    records = [record.load_record(client, first_run), record.load_record(client, run_id)]
    shown = compare.compare_records(records)
    span = f"{first_run[:8]}..{run_id[:8]}"
    assert shown.serving_contract == {span: {"added": ["timestamp_ms"], "removed": []}}
    assert f"| {span} | +timestamp_ms |" in compare.to_markdown(shown)
    for run in (first_run, run_id):
        client.delete_tag(run, contract.TAG_INPUTS)
    records = [record.load_record(client, first_run), record.load_record(client, run_id)]
    assert compare.compare_records(records).serving_contract == {}, "no tag and no client: unknown, not shown"
    assert compare.compare_records(records, client=client).serving_contract == shown.serving_contract


def test_contract_decisions_are_pure():
    """What needs consent and what is only said, without a registry."""
    change = contract.diff(["a", "b", "id"], ["b", "a", "ts"], "3")
    assert (change.added, change.removed, change.short()) == (("ts",), ("id",), "+ts −id")
    assert change.needs_consent and "no longer reads 'id'" in change.describe()
    assert not contract.diff(["a", "id"], ["a"]).needs_consent
    assert contract.diff(["a"], ["a"]).short() == "same inputs"
    assert deployment.contract_consent("m", "4", "3", change, accepted=False).startswith("version 4 of 'm' needs")
    assert deployment.contract_consent("m", "4", "3", change, accepted=True) is None
    assert deployment.contract_consent("m", "4", "3", contract.diff(["a", "id"], ["a"]), accepted=False) is None
    wide = contract.ContractChange(tuple(f"column_{i:05d}" for i in range(2000)), ())
    tag = json.loads(wide.tag())
    assert len(wide.tag()) <= contract.MAX_RUN_TAG and tag["added_count"] == 2000 and 0 < len(tag["added"]) < 2000


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
