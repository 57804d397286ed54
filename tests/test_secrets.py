"""Secrets never reach a record: a catalogue of real secret shapes, ordinary values left alone.

Each entry of the catalogue is a text as it appears in the wild (an
environment variable, a URL, a connection string, a params value) and the
secret inside it: after redaction the secret is gone, the text around it is
kept. The negatives are what reprobook records all the time (run ids,
digests, commits, paths, estimator names, params, notebook images) and must
come out byte for byte. One end-to-end test puts several secrets in the
environment and one in params.yaml, runs the scoping stage, and searches
every file of the project for them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import BIN, ROOT, copy_project, set_params, sh

from reprobook.project.params import Params, flatten
from reprobook.tracking import environment, secrets
from reprobook.tracking.secrets import (
    REDACTED,
    find_secret,
    redact_env,
    redact_params,
    redact_text,
    redact_tree,
)

# Fake secrets of real shapes. The prefixed ones are built from pieces, so that secret scanners
# (push protection) do not take this file for a leak.
AZURE_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURE_SAS_SIG = "r4nD0mS1gnaTure%2BAbCdEf%3D"
GITHUB_TOKEN = "ghp_" + "R8zq1XkLm0Pa7VtYc3Nw9BdE2fGhJs4KuT6o"
GITHUB_PAT = "github_pat_" + "11ABCDEFG0a1b2c3d4e5f6_" + "Zyxwvutsrqponmlkjihgfedcba9876543210ZYXWVUTSRQPONM"
SLACK_BOT = "xoxb-" + "2480917263-5512839402816-Qf7hLw2nZp9xTk3RbVy8sMcE"
AWS_KEY_ID = "AKIA" + "Q3EGRT6JUMYWX7PZ"
OPENAI_KEY = "sk-" + "T3BlbkFJ" + "a9Fq2LxW7mVz0RkYc4NpHs8DgUe1JtBo5Ki"
OPENAI_PROJECT_KEY = "sk-proj-" + "Xq7_Lm2vRt9-Wz4KpYc8Nd1Hs6Fg3Bj0Ve5Ua2Mo7Ci4Tk9Ez1Ry"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM_BODY = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
GITLAB_TOKEN = "glpat-" + "x9Yk2LmQ7vRt4WzPc8Nd"
SLACK_WEBHOOK_PATH = "T024BE7LD/B01AB2CD3EF/" + "qW8eRt5yUi0oPa3sDf6gHj9k"
POSTGRES_PASSWORD = "p/ss-W0rd"
ODBC_PASSWORD = "Tr0ub4dor&3"

CATALOGUE = [
    # (what, text, the secret that must vanish)
    ("Azure connection string AccountKey",
     f"DefaultEndpointsProtocol=https;AccountName=loansdata;AccountKey={AZURE_ACCOUNT_KEY};EndpointSuffix=core.windows.net",
     AZURE_ACCOUNT_KEY),
    ("Azure connection string SharedAccessSignature",
     (f"BlobEndpoint=https://loansdata.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=b&srt=co&sp=rl"
      f"&se=2030-01-01T00:00:00Z&sig={AZURE_SAS_SIG}"),
     AZURE_SAS_SIG),
    ("SAS URL sig=",
     f"https://loansdata.blob.core.windows.net/raw/loans.csv?sv=2022-11-02&sr=b&sp=r&se=2030-01-01&sig={AZURE_SAS_SIG}",
     AZURE_SAS_SIG),
    ("postgres URL, '/' in the password", f"postgresql://bob:{POSTGRES_PASSWORD}@db.internal:5432/mlflow", POSTGRES_PASSWORD),
    ("postgres URL, '@' and ':' in the password", "postgresql://bob:p@ss:w0rd@db:5432/mlflow", "p@ss:w0rd"),
    ("https user:pass@host", "https://alice:Hunter2-Hunter2@artifacts.example.com/repo/simple", "Hunter2-Hunter2"),
    ("redis URL with a password only", "redis://:Sup3rRedisPw@cache:6379/0", "Sup3rRedisPw"),
    ("token as the URL user", "https://x-access-token:Qm9vTmV3VG9rZW4x@github.com/org/repo.git", "Qm9vTmV3VG9rZW4x"),
    ("?token= in a query string", "https://api.example.com/v1/export?format=csv&token=f00dCafe1234BeefToken", "f00dCafe1234BeefToken"),
    ("&access_token= in a query string", "https://graph.example.com/me?fields=id&access_token=EAAGm0PX4ZCpsBAKZC8", "EAAGm0PX4ZCpsBAKZC8"),
    ("X-Amz-Signature in a presigned URL",
     ("https://bucket.s3.amazonaws.com/data.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600"
      "&X-Amz-Signature=9b2f7c1e5a8d3f6b0c4e7a1d2f5b8c0e3a6d9f2b5c8e1a4d7f0b3c6e9a2d5f8b"),
     "9b2f7c1e5a8d3f6b0c4e7a1d2f5b8c0e3a6d9f2b5c8e1a4d7f0b3c6e9a2d5f8b"),
    ("GitHub classic token ghp_", f"GITHUB_TOKEN={GITHUB_TOKEN}", GITHUB_TOKEN),
    ("GitHub fine-grained token github_pat_", f"token: {GITHUB_PAT}", GITHUB_PAT),
    ("Slack bot token xoxb-", f"slack_client = WebClient('{SLACK_BOT}')", SLACK_BOT),
    ("AWS access key id AKIA", f"aws_access_key_id = {AWS_KEY_ID}", AWS_KEY_ID),
    ("OpenAI key sk-", f"OPENAI_API_KEY={OPENAI_KEY}", OPENAI_KEY),
    ("OpenAI project key sk-proj-", f"client = OpenAI(api_key={OPENAI_PROJECT_KEY!r})", OPENAI_PROJECT_KEY),
    ("JWT eyJ...", f"Authorization header was {JWT} (expired)", JWT),
    ("bearer token in a header", f"Authorization: Bearer {JWT}", JWT),
    ("private key PEM block",
     f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}-----END RSA PRIVATE KEY-----\n", PEM_BODY.splitlines()[0]),
    ("OpenSSH private key, JSON-escaped",
     json.dumps({"key": f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}-----END OPENSSH PRIVATE KEY-----"}),
     PEM_BODY.splitlines()[1]),
    ("GitLab token glpat-", f"CI_JOB_TOKEN used: {GITLAB_TOKEN}", GITLAB_TOKEN),
    ("Slack webhook", f"https://hooks.slack.com/services/{SLACK_WEBHOOK_PATH}", SLACK_WEBHOOK_PATH),
    ("Password= in an ODBC string",
     (f"Driver={{ODBC Driver 18 for SQL Server}};Server=tcp:db.database.windows.net,1433;Database=loans;"
      f"Uid=bob;Password={ODBC_PASSWORD};Encrypt=yes"), ODBC_PASSWORD),
    ("Pwd={...} in an ODBC string", "Driver={PostgreSQL};Server=db;Uid=bob;Pwd={Tr0ub;4dor};", "Tr0ub;4dor"),
    ("quoted api_key assignment in code", 'api_key = "b1946ac92492d2347c6235b4d2611184"', "b1946ac92492d2347c6235b4d2611184"),
    ("password: line of YAML in a diff", "+  password: correcthorsebattery\n", "correcthorsebattery"),
]


@pytest.fixture(autouse=True)
def _fresh_process_state(monkeypatch):
    """Each test starts as a new process would: no key warned about, no value known yet."""
    monkeypatch.setattr(secrets, "_warned", set())
    monkeypatch.setattr(secrets, "_known", set())


@pytest.mark.parametrize("what, text, secret", CATALOGUE, ids=[entry[0] for entry in CATALOGUE])
def test_catalogue_secret_is_redacted(what, text, secret):
    redacted = redact_text(text)
    assert secret not in redacted, redacted
    assert REDACTED in redacted
    assert find_secret(text), f"{what}: not recognised as a secret"
    assert redact_text(redacted) == redacted, "redaction is idempotent"


def test_redaction_keeps_the_text_around_the_secret():
    assert redact_text(f"postgresql://bob:{POSTGRES_PASSWORD}@db:5432/mlflow") == f"postgresql://{REDACTED}@db:5432/mlflow"
    azure = redact_text(f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={AZURE_ACCOUNT_KEY};EndpointSuffix=x")
    assert azure == f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={REDACTED};EndpointSuffix=x"
    assert redact_text("https://h/f.csv?sv=1&sig=abc%3D&sp=r") == f"https://h/f.csv?sv=1&sig={REDACTED}&sp=r"
    assert redact_text(f"model {GITHUB_TOKEN} failed") == f"model {REDACTED} failed"


@pytest.mark.parametrize("what, text, secret", CATALOGUE[:12], ids=[entry[0] for entry in CATALOGUE[:12]])
def test_catalogue_in_the_environment_record(what, text, secret):
    captured = environment.relevant_variables({"AZURE_STORAGE_CONNECTION_STRING": text, "DVC_SOME_URL": text})
    assert secret not in json.dumps(captured)


def test_environment_names_and_shapes():
    assert redact_env("MLFLOW_TRACKING_PASSWORD", "hunter2") == REDACTED
    assert redact_env("AZURE_STORAGE_CONNECTION_STRING", f"AccountName=a;AccountKey={AZURE_ACCOUNT_KEY}") == (
        f"AccountName=a;AccountKey={REDACTED}"
    )
    assert redact_env("OMP_NUM_THREADS", "4") == "4"
    assert redact_env("PWD", "/work/project") == "/work/project"


def test_git_author_and_committer_are_treated_the_same():
    captured = environment.relevant_variables({
        "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.com",
        "GIT_DIR": "/repo/.git",
    })
    assert captured == {"GIT_DIR": "/repo/.git"}


def test_values_of_secret_named_variables_are_redacted_anywhere(monkeypatch):
    monkeypatch.setenv("LOANS_DB_PASSWORD", "plain-words-no-shape")
    assert redact_text("could not connect as bob/plain-words-no-shape") == f"could not connect as bob/{REDACTED}"
    monkeypatch.setenv("SHORT_TOKEN", "abc")  # too short to search for everywhere
    monkeypatch.setenv("PIP_KEYRING_PROVIDER", "subprocess")  # a setting, not a secret
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/ssh-agent.sock")  # a path
    text = "abc: subprocess.run failed; agent at /tmp/ssh-agent.sock"
    assert redact_text(text) == text


def test_secret_in_params_is_named_once_and_redacted(capsys):
    tree = {"model": {"registered_name": GITHUB_TOKEN, "estimator": "sklearn.ensemble.RandomForestClassifier"},
            "data": {"source": f"csv:https://bob:{POSTGRES_PASSWORD}@files.example.com/loans.csv"},
            "features": {"api_token": "just-words-here"}}
    redacted = redact_params(tree)
    assert redacted["model"] == {"registered_name": REDACTED, "estimator": "sklearn.ensemble.RandomForestClassifier"}
    assert redacted["data"]["source"] == f"csv:https://{REDACTED}@files.example.com/loans.csv"
    assert redacted["features"]["api_token"] == REDACTED
    redact_params(tree)
    redact_params(flatten(tree))
    err = capsys.readouterr().err
    assert (f"params.yaml: model.registered_name looks like a secret (GitHub token); it is recorded as {REDACTED}"
            in err)
    assert err.count("model.registered_name") == 1 and err.count("data.source") == 1
    assert "features.api_token looks like a secret (its key names a credential)" in err
    # A value found by its key is then redacted wherever it is printed (a notebook output, an error).
    assert redact_text("calling with just-words-here") == f"calling with {REDACTED}"


def test_identifiers_that_look_like_secrets_are_refused():
    from reprobook.errors import ReprobookError

    params = Params.model_validate({"model": {"registered_name": GITHUB_TOKEN}})
    secrets.check_names(params, registers_model=False)  # recorded as [REDACTED] by a stage that only reads it
    with pytest.raises(ReprobookError, match="model.registered_name looks like a secret .GitHub token."):
        secrets.check_names(params, registers_model=True)
    with pytest.raises(ReprobookError, match="tracking.experiment"):
        secrets.check_names(Params.model_validate({"tracking": {"experiment": OPENAI_KEY}}), registers_model=False)


# ---------------------------------------------------------------- false positives

ORDINARY = [
    "run 3f2a9c0e1b7d4e6fa8c5d2b1e0f9a7c3 finished",  # MLflow run id
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "commit 447b4fe0c1a2b3d4e5f60718293a4b5c6d7e8f90 (HEAD -> main)",
    "md5: 0cc175b9c0f1b6a831c399e269772661.dir",
    "/home/ada/projects/loans/data/raw/loans.csv",
    "C:\\Users\\ada\\loans\\data\\raw\\loans.csv",
    "~/.cache/reprobook/dvc-storage",
    "s3://bucket/reprobook/dvc-storage",
    "sklearn.ensemble.HistGradientBoostingClassifier",
    "estimator: sklearn.linear_model.LogisticRegression",
    "mlflow ui --backend-store-uri sqlite:////tmp/project/mlflow.db",
    "http://127.0.0.1:5000/#/experiments/1/runs/3f2a9c0e1b7d4e6fa8c5d2b1e0f9a7c3",
    "https://medium.com/@author/post-title-123",
    "https://github.com/org/repo/blob/main/src/reprobook/tracking/secrets.py#L10",
    "git@github.com:org/repo.git",
    "user@example.com wrote: see https://example.com/docs?page=2&sort=asc",
    "tokenizer = AutoTokenizer.from_pretrained('bert-base-uncased')",
    "token = tokens[0]; key = sorted(items, key=lambda x: x[1])",
    "password = getpass.getpass()",
    "api_key = os.environ['OPENAI_API_KEY']",
    "api_key = API_KEY",
    "conn = connect(host, password=password)",
    "max_tokens: 512",
    "risk-adjusted-performance-metric-2024-final",
    "task-sk-learn-pipeline-v2",
    "the baseline scores 0.5000 (dummy (prior))",
    "registered_name: reprobook-loans",
    "AccountName=loansdata;EndpointSuffix=core.windows.net",
    "UseDevelopmentStorage=true",
    "token: null\npassword: ~\nsecret: true",
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_values_are_untouched(text):
    assert redact_text(text) == text
    assert find_secret(text) is None


def test_ids_digests_and_commits_are_untouched():
    text = "\n".join(
        [uuid.uuid4().hex for _ in range(2000)]
        + [hashlib.sha256(str(i).encode()).hexdigest() for i in range(2000)]
        + [hashlib.sha1(str(i).encode()).hexdigest() for i in range(2000)]
        + [hashlib.md5(str(i).encode()).hexdigest().upper() for i in range(2000)]
    )
    assert redact_text(text) == text


def _png_base64() -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4, 3))
    axes.plot(range(50), [i * i % 17 for i in range(50)])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def test_notebook_images_and_base64_are_untouched():
    png = _png_base64()
    assert redact_text(png) == png
    random_base64 = base64.b64encode(hashlib.sha512(b"seed").digest() * 20000).decode()
    assert redact_text(random_base64) == random_base64
    outputs = [{"output_type": "display_data", "data": {"image/png": png, "text/plain": f"<Figure> {GITHUB_TOKEN}"},
                "metadata": {}}]
    redacted = redact_tree(outputs)
    assert redacted[0]["data"]["image/png"] is png
    assert redacted[0]["data"]["text/plain"] == f"<Figure> {REDACTED}"


def test_binary_patches_in_a_diff_are_kept_for_git_apply():
    diff = (
        "diff --git a/params.yaml b/params.yaml\n--- a/params.yaml\n+++ b/params.yaml\n@@ -1 +1 @@\n"
        f"-  registered_name: reprobook-loans\n+  registered_name: {GITHUB_TOKEN}\n"
        "diff --git a/x.bin b/x.bin\nGIT binary patch\nliteral 24\n"
        "zcmV;h0Z;yJNk&Fe0RRAAMM6+kP&iCj0RR91AONpanO;AKIAQ3EGRT6JUMYWX7PZ\n\nliteral 0\nHcmV?d00001\n\n"
    )
    redacted = redact_text(diff)
    assert GITHUB_TOKEN not in redacted
    assert diff[diff.index("GIT binary patch"):] in redacted


def test_normal_params_are_untouched(capsys):
    dumped = Params().model_dump(mode="json")
    assert redact_params(dumped) == dumped
    assert redact_params(flatten(dumped)) == flatten(dumped)
    assert capsys.readouterr().err == ""


def test_executed_notebook_is_redacted_where_params_and_outputs_show_secrets(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    from reprobook.execution.notebook import normalize

    injected = {"params": {"data": {"source": f"csv:https://bob:{POSTGRES_PASSWORD}@files.example.com/loans.csv"},
                           "features": {"api_token": "plain-words-by-name"}}, "project_dir": "."}
    png = _png_base64()
    notebook = new_notebook(
        metadata={"papermill": {"parameters": injected}},
        cells=[
            new_markdown_cell(f"Data from `https://bob:{POSTGRES_PASSWORD}@files.example.com`"),
            new_code_cell(f"params = {injected!r}", metadata={"tags": ["injected-parameters"]}),
            new_code_cell("print(ctx.params)", outputs=[
                new_output("stream", name="stdout", text=f"token {GITHUB_TOKEN}, api_token plain-words-by-name\n"),
                new_output("display_data", data={"image/png": png, "text/plain": "<Figure size 400x300>"}),
                new_output("error", ename="HTTPError", evalue=f"403 for https://h/f.csv?sig={AZURE_SAS_SIG}",
                           traceback=[f"HTTPError: 403 for https://h/f.csv?sig={AZURE_SAS_SIG}"]),
            ]),
        ],
    )
    text = nbformat.writes(normalize(notebook, tmp_path))
    for secret in (POSTGRES_PASSWORD, "plain-words-by-name", GITHUB_TOKEN, AZURE_SAS_SIG):
        assert secret not in text
    assert png in text


def test_notebook_file_of_an_interactive_run_is_redacted():
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    png = _png_base64()
    notebook = new_notebook(cells=[new_code_cell(f"OPENAI_KEY = '{OPENAI_KEY}'", outputs=[
        new_output("display_data", data={"image/png": png, "text/plain": f"uploaded with {GITLAB_TOKEN}"}),
    ])])
    redacted = secrets.redact_notebook(nbformat.writes(notebook))
    assert OPENAI_KEY not in redacted and GITLAB_TOKEN not in redacted and png in redacted


def _project_texts() -> list[Path]:
    """The project's own sources: code, notebooks, params and pipeline files (the secrets module excepted)."""
    listed = subprocess.run(["git", "ls-files", "src", "notebooks", "dvc.yaml", "dvc.lock", "params.yaml", "schemas"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / f for f in listed if (ROOT / f).is_file() and not f.endswith("tracking/secrets.py")]


def test_project_sources_are_untouched():
    changed = []
    for path in _project_texts():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        if redact_text(text) != text:
            changed.append(str(path.relative_to(ROOT)))
    assert changed == []


# ---------------------------------------------------------------- end to end

ENVIRONMENT_SECRETS = {
    "AZURE_STORAGE_CONNECTION_STRING": (
        (f"DefaultEndpointsProtocol=https;AccountName=loansdata;AccountKey={AZURE_ACCOUNT_KEY};"
         "EndpointSuffix=core.windows.net"), AZURE_ACCOUNT_KEY),
    "AZURE_STORAGE_SAS_URL": (
        f"https://loansdata.blob.core.windows.net/raw?sv=2022-11-02&sp=rl&sig={AZURE_SAS_SIG}", AZURE_SAS_SIG),
    "AZURE_SQL_CONNECTION": (f"Server=tcp:db;Database=loans;User Id=bob;Password={ODBC_PASSWORD};", ODBC_PASSWORD),
    "GOOGLE_CLOUD_SQL_URL": (f"postgresql://bob:{POSTGRES_PASSWORD}@10.0.0.5:5432/mlflow", POSTGRES_PASSWORD),
    "GIT_REMOTE_URL": (f"https://x-access-token:{GITHUB_PAT}@github.com/org/loans.git", GITHUB_PAT),
    "AWS_ACCESS_KEY_ID": (AWS_KEY_ID, AWS_KEY_ID),
    "REPROBOOK_NOTIFY_WEBHOOK": (f"https://hooks.slack.com/services/{SLACK_WEBHOOK_PATH}", SLACK_WEBHOOK_PATH),
    "OPENAI_API_KEY": (OPENAI_PROJECT_KEY, OPENAI_PROJECT_KEY),
}


@pytest.mark.e2e
def test_no_secret_reaches_the_store_the_reports_or_the_cache(tmp_path):
    root = copy_project(tmp_path / "project")
    set_params(root, **{"model.registered_name": GITHUB_TOKEN})
    environ = {name: value for name, (value, _) in ENVIRONMENT_SECRETS.items()}
    run = sh([str(BIN / "reprobook"), "stage", "scoping"], root, **environ)
    sh([str(BIN / "dvc"), "commit", "--force", "--quiet", "scoping"], root)  # the stage's outputs into the DVC cache
    assert (f"params.yaml: model.registered_name looks like a secret (GitHub token); it is recorded as {REDACTED}"
            in run.stderr)

    # Everything but git's own folder and the two files that hold the secrets as the user wrote them
    # (params.yaml; this test file, copied with the project's sources).
    searched = [p for p in root.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts
                and p.relative_to(root) not in (Path("params.yaml"), Path("tests/test_secrets.py"))]
    where = {p.relative_to(root).parts[0] for p in searched}
    assert {"mlflow.db", "reports", ".dvc"} <= where and any((root / ".dvc" / "cache").rglob("*"))
    environment_json = [p for p in searched if p.name == "environment.json"]
    assert environment_json, "the stage run recorded no environment"
    recorded = json.loads(environment_json[0].read_text())["variables"]
    assert recorded["AZURE_STORAGE_CONNECTION_STRING"].endswith(f"AccountKey={REDACTED};EndpointSuffix=core.windows.net")
    assert [p for p in searched if p.name == "git.diff"], "the dirty params.yaml was not recorded as a diff"

    secrets_ = [GITHUB_TOKEN] + [secret for _, secret in ENVIRONMENT_SECRETS.values()]
    hits = [(str(path.relative_to(root)), secret[:12]) for path in searched for secret in secrets_
            if secret.encode() in path.read_bytes()]
    logs = [secret[:12] for secret in secrets_ if secret in run.stdout + run.stderr]
    assert hits == [] and logs == []
