"""A machine without a git identity: `make setup` gives the repository one; `run -S` says what is missing."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import BIN, ROOT, copy_project, tool_env


def no_identity_env(home: Path) -> dict[str, str]:
    """The environment of a machine where git knows no user: no GIT_* identity, an empty home."""
    env = {k: v for k, v in tool_env().items() if not k.startswith(("GIT_AUTHOR", "GIT_COMMITTER"))}
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), GIT_CONFIG_NOSYSTEM="1", EMAIL="")
    return env


def git_config(root: Path, key: str, env: dict[str, str]) -> str:
    return subprocess.run(["git", "config", "--local", key], cwd=root, env=env, capture_output=True, text=True).stdout.strip()


def test_make_setup_sets_a_repository_local_identity(tmp_path):
    repo = tmp_path / "clone"
    repo.mkdir()
    env = no_identity_env(tmp_path / "home")
    subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)
    result = subprocess.run(["make", "-s", "-f", str(ROOT / "Makefile"), "git-identity"], cwd=repo, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "repository-local identity" in result.stdout
    assert git_config(repo, "user.email", env).endswith("@localhost")
    # A second call finds the identity and says nothing.
    again = subprocess.run(["make", "-s", "-f", str(ROOT / "Makefile"), "git-identity"], cwd=repo, env=env,
                           capture_output=True, text=True)
    assert again.stdout == ""


def test_a_variant_without_git_identity_is_a_clear_error(tmp_path):
    root = copy_project(tmp_path / "project")
    env = no_identity_env(tmp_path / "home")
    result = subprocess.run([str(BIN / "reprobook"), "run", "-S", "model.seed=7"], cwd=root, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "git has no user name/email" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (root / "mlflow.db").exists(), "nothing should have run"
