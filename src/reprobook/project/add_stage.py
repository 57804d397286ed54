"""``reprobook add-stage``: declare a notebook as a stage in dvc.yaml (the one declaration).

The entry is what a user would write by hand: ``cmd: reprobook stage NAME``,
``meta.notebook``, a dependency on the stage's code fingerprint plus the data
and params given, and the executed notebook and HTML as outputs. Comments
and layout of dvc.yaml are kept (ruamel round-trip, as DVC itself does).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from reprobook.errors import UsageError
from reprobook.project.paths import DVC_FILE
from reprobook.project.stages import FINGERPRINT_DIR, load_stages, stage_command

NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def has_parameters_cell(notebook: Path) -> bool:
    cells = json.loads(notebook.read_text()).get("cells", [])
    return any("parameters" in (cell.get("metadata", {}).get("tags") or []) for cell in cells)


def add_stage(root: Path, name: str, notebook: str, *, params: list[str], deps: list[str], outs: list[str],
              metrics: list[str]) -> dict:
    """Append the stage to dvc.yaml (and MLproject); return the entry written."""
    from ruamel.yaml import YAML

    if not NAME.match(name):
        raise UsageError(f"stage name '{name}': expected lower-case letters, digits and underscores")
    if name in load_stages(root):
        raise UsageError(f"stage '{name}' is already declared in {DVC_FILE}")
    path = root / notebook
    if path.suffix != ".ipynb" or not path.is_file():
        raise UsageError(f"{notebook}: notebook not found (expected a .ipynb file under {root})")
    if not has_parameters_cell(path):
        raise UsageError(
            f"{notebook}: no cell tagged 'parameters'; add one (papermill injects the stage's params after it: "
            "`params = None` and `project_dir = None`)"
        )
    entry: dict = {
        "cmd": stage_command(name),
        "meta": {"notebook": str(Path(notebook))},
        "deps": [f"{FINGERPRINT_DIR}/{name}.json", *deps],
    }
    if params:
        entry["params"] = list(params)
    entry["outs"] = [*outs, f"reports/{name}/notebook.ipynb", f"reports/{name}/notebook.html"]
    if metrics:
        entry["metrics"] = [{path: {"cache": False}} for path in metrics]
    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    document = yaml.load((root / DVC_FILE).read_text())
    document["stages"][name] = entry
    with (root / DVC_FILE).open("w") as handle:
        yaml.dump(document, handle)
    from reprobook.project import ignores

    # The .gitignore entries DVC writes when the stage first runs, now: committed with dvc.yaml, the run leaves git clean.
    ignores.write_ignores(root, ignores.outs_of(entry))
    mlproject = root / "MLproject"
    if mlproject.is_file() and f"\n  {name}:" not in mlproject.read_text():
        with mlproject.open("a") as handle:
            handle.write(f'  {name}:\n    command: "{stage_command(name)}"\n')
    return entry
