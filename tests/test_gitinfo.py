"""Dirty means code or params differ from the commit; pipeline outputs do not count."""

from conftest import sh

from reprobook.tracking.gitinfo import code_version


def test_outputs_do_not_dirty_but_params_do(tmp_path):
    sh(["git", "init", "-q"], tmp_path)
    (tmp_path / "params.yaml").write_text("a: 1\n")
    (tmp_path / "dvc.lock").write_text("v1\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/metrics.json").write_text("{}\n")
    sh(["git", "add", "-A"], tmp_path)
    sh(["git", "commit", "-qm", "init"], tmp_path)
    assert not code_version(tmp_path).dirty
    (tmp_path / "dvc.lock").write_text("v2\n")
    (tmp_path / "reports/metrics.json").write_text('{"x": 1}\n')
    (tmp_path / "data").mkdir()
    (tmp_path / "data/.gitignore").write_text("/train.parquet\n")
    clean = code_version(tmp_path)
    assert not clean.dirty and clean.commit and len(clean.commit) == 40
    (tmp_path / "params.yaml").write_text("a: 2\n")
    dirty = code_version(tmp_path)
    assert dirty.dirty and "+a: 2" in dirty.diff and "dvc.lock" not in dirty.diff


def test_outside_git_has_no_commit(tmp_path):
    version = code_version(tmp_path)
    assert version.commit is None and version.dirty


def test_what_a_stage_declares_it_writes_does_not_dirty_a_fresh_project(project):
    """A new project's first run writes the model and the splits before DVC lists them in a .gitignore."""
    for listed in (project / "models/.gitignore", project / "data/processed/.gitignore"):
        listed.unlink(missing_ok=True)  # as in a project that has never run
    sh(["git", "commit", "-qam", "never run"], project)
    assert not code_version(project).dirty
    (project / "models").mkdir(exist_ok=True)
    (project / "models/model.skops").write_bytes(b"model")
    (project / "data/processed").mkdir(parents=True, exist_ok=True)
    (project / "data/processed/train.parquet").write_bytes(b"rows")
    assert not code_version(project).dirty
    (project / "models/notes.txt").write_text("not declared anywhere\n")
    assert code_version(project).dirty
