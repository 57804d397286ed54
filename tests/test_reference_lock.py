"""The committed code fingerprints match the committed code (a fast guard for the e2e lock test).

Every edit under src/reprobook that a stage imports changes its fingerprint, hence
`dvc.lock`: after such an edit, `make run` and commit `dvc.lock` and `.reprobook/code`.
"""

import json
from pathlib import Path

import pytest

from reprobook.execution.fingerprint import fingerprint
from reprobook.project.stages import load_stages

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(load_stages(ROOT)))
def test_committed_fingerprint_is_current(name):
    stage = load_stages(ROOT)[name]
    committed = json.loads((ROOT / stage.fingerprint).read_text())
    assert committed == fingerprint(ROOT, stage), (
        f"{stage.fingerprint} is stale: run `make run` and commit dvc.lock and .reprobook/code"
    )
