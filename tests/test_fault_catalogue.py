"""The catalogue of bad input and faults: one line, the documented exit code, nothing lost.

One project copy runs the pipeline once (small params), so there is something
to lose: outputs, committed metrics, a registered champion. Each case then
makes one mistake or fault (a params override, a broken file, a broken copy
of the store, an unreachable server, a command-line slip) through the
installed console script, and asserts what a user would notice:

- the exit code (1 bad input or fault, 2 usage error);
- one line on stderr naming the key, file or store, and no traceback;
- no MLflow run left RUNNING, no new run at all for a refused command;
- the outputs byte-identical and the registry's champion unchanged.

Store faults use copies of the store (read-only file, random bytes) or an
unreachable URI, never the project's own store. Faults inside running stages
(signals, a failing notebook) are in test_interrupts_e2e.py and
test_bad_input_e2e.py; secrets in test_secrets.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import BIN, copy_project, set_params, sh

pytestmark = pytest.mark.e2e

SMALL = {"data.n_rows": 600, "model.cv_folds": 2, "model.params.max_iter": 20, "model.latency_rows": 10}
KEPT = ("models/model.skops", "data/processed/train.parquet", "data/processed/test.parquet",
        "reports/scoping/metrics.json", "reports/data/metrics.json", "reports/modeling/metrics.json",
        "reports/modeling/notebook.html", "dvc.lock")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = copy_project(tmp_path_factory.mktemp("catalogue") / "project", commit=False)
    set_params(root, **SMALL)
    sh(["git", "init", "-q", "-b", "main"], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "small project"], root)
    sh([str(BIN / "reprobook"), "run"], root)
    return root


def client_of(root: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{root / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@dataclass
class State:
    digests: dict[str, str]
    runs: int
    running: list[str]
    champion: str


def state(root: Path) -> State:
    client = client_of(root)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=5000)
    return State(
        digests={path: hashlib.md5((root / path).read_bytes()).hexdigest() for path in KEPT},
        runs=len(runs),
        running=[r.info.run_id for r in runs if r.info.status == "RUNNING"],
        champion=str(client.get_model_version_by_alias("reprobook-loans", "champion").version),
    )


@dataclass
class Case:
    args: list[str]
    expected: str
    code: int = 1
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    """Files written into the project for the case (and removed, or put back, after it)."""
    store: str | None = None
    """A broken copy of the store to point MLFLOW_TRACKING_URI at: 'read-only' or 'corrupt'."""
    lines: int = 1
    """Lines of the message: one, or a heading and one per problem when several are listed together."""


def run(*args: str, **kw) -> Case:
    return Case(["run", *args], **kw)


def override(value: str, expected: str | None = None) -> Case:
    return run("-S", value, expected=expected or value.split("=")[0])


CSV_HEADER_REPEATS_TARGET = b"age,approved,income,approved\n30,1,100.0,1\n40,0,200.0,0\n"

CASES = {
    # params.yaml values, checked alone and against each other (before DVC deletes anything)
    "hyperparameter of the wrong type": override("model.params.max_depth=oops", "max_depth"),
    "misspelt hyperparameter": override("model.params.max_dept=3", "did you mean 'max_depth'"),
    "threshold the metric cannot reach": override("scoping.threshold=1.5", "scoping.threshold: 1.5 can never be met"),
    "regressor on a classification task": override("model.estimator=sklearn.linear_model.LinearRegression",
                                                    "LinearRegression' is not a classifier"),
    "unknown estimator": override("model.estimator=sklearn.ensemble.NoSuchForest", "model.estimator"),
    "estimator that is not an estimator": override("model.estimator=os.system", "model.estimator"),
    "registry name MLflow refuses": override("model.registered_name=a/b", "model.registered_name: 'a/b'"),
    "unknown sensitive feature": override("error_analysis.sensitive_features=[nosuch]",
                                          "error_analysis.sensitive_features: no column 'nosuch'"),
    "unknown dropped column": override("data.drop_columns=[nosuch]", "data.drop_columns: no column 'nosuch'"),
    "target dropped": override("data.drop_columns=[approved]", "data.drop_columns"),
    "metric of the other task": override("scoping.primary_metric=r2", "'r2' is a regression metric"),
    "unknown metric": override("scoping.primary_metric=nosuch", "scoping.primary_metric"),
    "unknown numeric_text policy": override("data.numeric_text=sometimes", "data.numeric_text"),
    "trusted type that is not a type name": override("model.trusted_types=[not a type]", "model.trusted_types"),
    "too few folds": override("model.cv_folds=1", "model.cv_folds"),
    "test share above 1": override("data.test_size=1.5", "data.test_size"),
    "unknown data source scheme": override("data.source=ftp:loans.csv", "data.source"),
    "too few latency rows": override("model.latency_rows=5", "model.latency_rows"),
    "no slices listed": override("error_analysis.top_k=0", "error_analysis.top_k"),
    "negative seed": override("model.seed=-1", "model.seed"),
    "too few rows": override("data.n_rows=5", "data.n_rows"),
    "unknown params key": override("model.estimatr=x", "did you mean 'estimator'"),
    "unknown params section": override("nosuch.key=1", "nosuch"),
    "wrong type": override("model.cv_folds=five", "model.cv_folds"),
    "empty experiment name": override("tracking.experiment=", "tracking.experiment"),
    "token pasted as the model name": override("model.registered_name=ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
                                               "model.registered_name"),
    "two mistakes at once": run("-S", "scoping.threshold=7", "-S", "model.registered_name=a:b", expected="2 problems",
                                lines=3),
    "target among the sensitive features": run("-S", "error_analysis.sensitive_features=[approved]",
                                               expected="is the target"),
    # files
    "empty params.yaml": run(expected="params.yaml: empty", files={"params.yaml": b"# nothing here\n"}),
    "params.yaml that is not YAML": run(expected="params.yaml", files={"params.yaml": b"model: [\n"}),
    "params.yaml that is a list": run(expected="params.yaml", files={"params.yaml": b"- a\n- b\n"}),
    "CSV header repeating the target": run("-S", "data.source=csv:dup.csv", "-S", "data.target=approved",
                                           expected="repeats column 'approved'", files={"dup.csv": CSV_HEADER_REPEATS_TARGET}),
    "bad -S syntax": run("-S", "model.seed", expected="-S 'model.seed': expected KEY=VALUE"),
    # the tracking store
    "read-only store": run(expected="read-only", store="read-only"),
    "corrupt store": run(expected="not an SQLite database", store="corrupt"),
    "unreachable server": run(expected="tracking store http://127.0.0.1:9", env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}),
    # the command line
    "unknown command": Case(["nosuch"], "No such command", code=2),
    "unknown stage": Case(["stage", "nosuch"], "nosuch", code=2),
    "malformed run id": Case(["reproduce", "not-a-run-id!"], "run id", code=2),
    "run id prefix naming no run": Case(["reproduce", "ffffffff"], "ffffffff", code=2),
    "compare with one run": Case(["compare", "ffffffff"], "two", code=2),
    "validate a missing file": Case(["validate", "nosuch.csv", "--schema", "schemas/loans.yaml"], "nosuch.csv", code=2),
    "unknown option": Case(["run", "--nosuch"], "--nosuch", code=2),
}


def _broken_store(kind: str, root: Path, folder: Path) -> str:
    copy = folder / f"{kind}.db"
    if kind == "read-only":
        shutil.copy2(root / "mlflow.db", copy)
        os.chmod(copy, 0o444)
        if os.access(copy, os.W_OK):
            pytest.skip("running as a user that can write read-only files")
    else:
        copy.write_bytes(os.urandom(8192))
    return f"sqlite:///{copy}"


@pytest.mark.parametrize("name", list(CASES))
def test_catalogue(project, name, tmp_path):
    case = CASES[name]
    before = state(project)
    saved = {rel: (project / rel).read_bytes() if (project / rel).exists() else None for rel in case.files}
    env = dict(case.env)
    if case.store:
        env["MLFLOW_TRACKING_URI"] = _broken_store(case.store, project, tmp_path)
    for rel, content in case.files.items():
        (project / rel).write_bytes(content)
    started = time.time()
    try:
        result = sh([str(BIN / "reprobook"), *case.args], project, check=False, COLUMNS="200", **env)
    finally:
        for rel, content in saved.items():
            (project / rel).unlink() if content is None else (project / rel).write_bytes(content)
    message = result.stderr.strip()
    assert result.returncode == case.code, f"exit {result.returncode}, expected {case.code}:\n{result.stdout}\n{message}"
    assert "Traceback" not in result.stderr + result.stdout
    assert case.expected in message, message
    if case.code == 1:
        assert len(message.splitlines()) == case.lines and message.startswith("error: "), message
    assert time.time() - started < 60, "found within seconds, not minutes"
    after = state(project)
    assert after.digests == before.digests, "outputs must stay as they were"
    assert after.running == [] and after.runs == before.runs, "no run left RUNNING, none created"
    assert after.champion == before.champion
