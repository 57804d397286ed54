"""The .gitignore entries DVC writes for its cached outs, written ahead of it, and the commit line of a run.

Real git (and, once, DVC's own ignore code) in temporary repositories; no pipeline runs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import BIN, ROOT, tool_env

from reprobook.execution.pipeline import commit_command
from reprobook.project import ignores
from reprobook.tracking import gitinfo

OWN_STAGES = """\
stages:
  mine:
    cmd: reprobook stage mine
    outs:
      - out/table [v1].csv
      - summary.json:
          cache: false
      - models/already.bin
    metrics:
      - reports/mine/metrics.json:
          cache: false
      - reports/mine/cached_metrics.json
    plots:
      - reports/mine/plots
  per_item:
    foreach: [a, b]
    do:
      cmd: echo ${item}
      outs:
        - items/${item}.txt
"""


def git(root: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, env=tool_env(), capture_output=True, text=True, check=True,
                          **kwargs)


def repo(root: Path, dvc_yaml: str, gitignore: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dvc.yaml").write_text(dvc_yaml)
    (root / ".gitignore").write_text(gitignore)
    git(root, "init", "-q")
    return root


def reference_folder_ignores() -> dict[str, str]:
    """The reference project's committed .gitignore files beside DVC's outs (DVC wrote them on its runs)."""
    listed = git(ROOT, "ls-files", "--", "*.gitignore").stdout.split()
    return {path: (ROOT / path).read_text() for path in listed
            if path not in (".gitignore", ".dvc/.gitignore") and not path.startswith("src/")}


def test_reference_project_gets_the_entries_dvc_wrote(tmp_path):
    root = repo(tmp_path / "p", (ROOT / "dvc.yaml").read_text(), (ROOT / ".gitignore").read_text())
    changed = ignores.write_ignores(root)
    expected = reference_folder_ignores()
    assert sorted(changed) == sorted(expected)
    assert {path: (root / path).read_text() for path in changed} == expected
    assert "data/processed/.gitignore" in changed and "models/.gitignore" in changed
    assert ignores.write_ignores(root) == []  # a second call changes nothing


def test_dvc_finds_the_entries_and_writes_nothing(tmp_path):
    """DVC's own ignore step (scmrepo's Git.ignore, which `dvc repro` calls per cached out) leaves the bytes alone."""
    root = repo(tmp_path / "p", (ROOT / "dvc.yaml").read_text(), (ROOT / ".gitignore").read_text())
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=root, env=tool_env(), check=True)
    ignores.write_ignores(root)
    before = {path: path.read_bytes() for path in root.rglob(".gitignore")}
    from dvc.repo import Repo

    with Repo(str(root)) as dvc_repo:
        outs = list(dvc_repo.index.outs)
        declared = {out.path: out.cached for out in ignores.declared_outs(root)}
        assert declared == {str(out.def_path): out.use_scm_ignore for out in outs}  # same outs, same cache verdict
        written = [dvc_repo.scm.ignore(out.fspath) for out in outs if out.use_scm_ignore]
        assert written == [None] * sum(declared.values())  # None: the path is ignored already, nothing written
    assert {path: path.read_bytes() for path in root.rglob(".gitignore")} == before


def test_cache_false_already_ignored_escaped_and_foreach(tmp_path):
    root = repo(tmp_path / "p", OWN_STAGES, "models/already.bin\n")
    (root / "reports/mine").mkdir(parents=True)
    (root / "reports/mine/.gitignore").write_text("/kept")  # a user's line, no newline at the end
    changed = ignores.write_ignores(root)
    assert changed == ["out/.gitignore", "reports/mine/.gitignore"]
    assert (root / "out/.gitignore").read_text() == "/table \\[v1\\].csv\n"  # as pathspec escapes it for DVC
    assert (root / "reports/mine/.gitignore").read_text() == "/kept\n/cached_metrics.json\n/plots\n"
    assert not (root / "models/.gitignore").exists()  # ignored by the root .gitignore: DVC writes nothing either
    assert ".gitignore" not in changed and not (root / "items").exists()  # summary.json is git's; foreach is DVC's
    assert git(root, "check-ignore", "out/table [v1].csv").stdout.strip() == "out/table [v1].csv"


def test_outside_git_nothing_is_written(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    (root / "dvc.yaml").write_text(OWN_STAGES)
    if subprocess.run(["git", "rev-parse"], cwd=root, capture_output=True).returncode == 0:
        pytest.skip("the temporary folder is inside a git repository")
    assert ignores.write_ignores(root) == [] and not (root / "out").exists()


def test_commit_line_names_what_the_run_changed_and_leaves_git_clean(tmp_path):
    root = repo(tmp_path / "p", OWN_STAGES)
    (root / "notes.txt").write_text("a user's own file, not a result\n")
    git(root, "add", "dvc.yaml", ".gitignore")
    git(root, "commit", "-qm", "project")
    # What a first run leaves (without the entries made ahead): DVC's .gitignore files, the lock, git's outs.
    for path, text in {"dvc.lock": "schema: '2.0'\n", "summary.json": "{}\n",
                       "out/.gitignore": "/table \\[v1\\].csv\n", "out/table [v1].csv": "x\n",
                       "models/.gitignore": "/already.bin\n", "models/already.bin": "m",
                       "reports/mine/metrics.json": "{}\n", "reports/mine/.gitignore": "/plots\n",
                       "reports/mine/plots/p.csv": "a\n", ".reprobook/code/mine.json": "{}\n"}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    found = gitinfo.uncommitted_results(root)
    assert found == ["dvc.lock", ".reprobook/code/mine.json", "models/.gitignore", "out/.gitignore",
                     "reports/mine/.gitignore", "reports/mine/metrics.json", "summary.json"]
    subprocess.run(commit_command(found), shell=True, cwd=root, env=tool_env(), check=True, capture_output=True)
    assert git(root, "status", "--porcelain", "--untracked-files=all").stdout == "?? notes.txt\n"
    assert gitinfo.uncommitted_results(root) == []
    (root / "summary.json").unlink()  # a result gone is a change to commit too
    git(root, "mv", "reports/mine/metrics.json", "reports/mine/moved.json")
    found = gitinfo.uncommitted_results(root)
    assert found == ["reports/mine/moved.json", "summary.json"]
    subprocess.run(commit_command(found), shell=True, cwd=root, env=tool_env(), check=True, capture_output=True)
    assert git(root, "status", "--porcelain").stdout == "?? notes.txt\n"
