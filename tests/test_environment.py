"""Environment capture: exact versions recorded, secrets never."""

from reprobook.tracking import environment
from reprobook.tracking.environment import REDACTED


def test_secret_named_variables_are_redacted():
    captured = environment.relevant_variables(
        {
            "AWS_SECRET_ACCESS_KEY": "abc123",
            "MLFLOW_TRACKING_PASSWORD": "hunter2",
            "MLFLOW_TRACKING_TOKEN": "tok",
            "AZURE_STORAGE_CONNECTION_STRING": "AccountKey=xyz",
            "GOOGLE_APPLICATION_CREDENTIALS": "/keys/sa.json",
            "OMP_NUM_THREADS": "1",
            "HOME": "/root",
        }
    )
    assert captured["OMP_NUM_THREADS"] == "1"
    assert "HOME" not in captured
    for name in ("AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS"):
        assert captured[name] == REDACTED
    assert "hunter2" not in str(captured) and "abc123" not in str(captured)


def test_credentials_inside_urls_are_redacted():
    captured = environment.relevant_variables({"MLFLOW_TRACKING_URI": "postgresql://bob:s3cret@db:5432/mlflow"})
    assert captured["MLFLOW_TRACKING_URI"] == f"postgresql://{REDACTED}@db:5432/mlflow"


def test_packages_have_exact_versions():
    packages = environment.packages()
    assert packages["mlflow"] == "3.17.2"
    assert packages["dvc"] == "3.67.1"


def test_package_differences_lists_changed_added_removed():
    diff = environment.package_differences({"a": "1", "b": "2", "c": "1"}, {"a": "1", "b": "3", "d": "1"})
    assert diff == [
        {"package": "b", "then": "2", "now": "3"},
        {"package": "c", "then": "1", "now": None},
        {"package": "d", "then": None, "now": "1"},
    ]
