"""The command line: help everywhere, clear errors, exit codes a script can rely on."""

import subprocess

import pytest
from conftest import BIN, ROOT, tool_env


def reprobook(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "reprobook"), *args], cwd=cwd, env=tool_env(), capture_output=True, text=True)


@pytest.mark.parametrize("command", [[], ["run"], ["stage"], ["runs"], ["reproduce"], ["compare"], ["drift"], ["validate"]])
def test_help_everywhere(command):
    result = reprobook(*command, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout


def test_unknown_stage_is_a_usage_error():
    result = reprobook("stage", "trainig")
    assert result.returncode == 2
    assert "unknown stage 'trainig'" in result.stderr and "Traceback" not in result.stderr


def test_outside_a_project(tmp_path):
    result = reprobook("runs", cwd=tmp_path)
    assert result.returncode == 2 and "no params.yaml found" in result.stderr


def test_failed_pipeline_exits_non_zero(tmp_path):
    (tmp_path / "params.yaml").write_text("data:\n  n_rows: many\n")
    result = reprobook("run", cwd=tmp_path)
    assert result.returncode == 1 and "data.n_rows" in result.stderr
