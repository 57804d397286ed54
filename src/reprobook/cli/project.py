"""Project commands: ``new`` (start a project), ``add-stage`` (a notebook becomes a stage), ``check`` (the stage
contract), ``fingerprint``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.console import Console

from reprobook.project.paths import DEFAULT_REMOTE_URL

out = Console()


class Task(str, Enum):
    classification = "classification"
    regression = "regression"


def new_command(
    path: Annotated[Path, typer.Argument(help="folder to create (new or empty); its name names the project")],
    data: Annotated[Optional[Path], typer.Option(help="a CSV or Parquet file to build the project on")] = None,
    target: Annotated[Optional[str], typer.Option(help="the label column of --data")] = None,
    task: Annotated[Optional[Task], typer.Option(help="inferred from the target when not given")] = None,
    remote: Annotated[str, typer.Option(help="default DVC remote (a folder or a URL)")] = DEFAULT_REMOTE_URL,
) -> None:
    """Create a ready project: the four stage notebooks, params.yaml filled in for the data, git and DVC, a first commit.

    Without --data it is the built-in loan project. Then: cd PATH && reprobook run.
    """
    from reprobook.project.scaffold import new_project

    root, spec = new_project(path, data=data, target=target, task=task.value if task else None, remote=remote)
    out.print(f"[green]created[/] {root} (git and DVC initialised, first commit made)", soft_wrap=True)
    for note in spec.notes:
        out.print(f"  {note}", soft_wrap=True, highlight=False)
    if spec.columns:
        from reprobook.ml.roles import Inferred, table

        out.print("  column roles (data.columns in params.yaml; id, text and ignored are not features):", highlight=False,
                  soft_wrap=True)
        shown = {name: Inferred(role, why) for name, role, why in spec.columns}
        out.print(table(shown), soft_wrap=True, highlight=False, markup=False)
    out.print(f"  model registered as '{spec.registered_name}', MLflow experiment '{spec.experiment}'", highlight=False)
    out.print(f"next: cd {path} && reprobook run      (or make run: sets up .venv first)", highlight=False)


def add_stage_command(
    name: Annotated[str, typer.Argument(help="stage name (lower case, digits, underscores)")],
    notebook: Annotated[str, typer.Argument(help="the notebook, relative to the project root")],
    params: Annotated[Optional[list[str]], typer.Option("--params", "-p", help="params key it reads (repeat)")] = None,
    deps: Annotated[Optional[list[str]], typer.Option("--deps", "-d", help="file or folder it reads (repeat)")] = None,
    outs: Annotated[Optional[list[str]], typer.Option("--outs", "-o", help="file or folder it writes (repeat)")] = None,
    metrics: Annotated[Optional[list[str]], typer.Option("--metrics", "-m", help="metrics JSON it writes (repeat)")] = None,
) -> None:
    """Declare NOTEBOOK as stage NAME in dvc.yaml: reprobook run, reproduce and compare then treat it like the built-in ones."""
    from reprobook.project.add_stage import add_stage
    from reprobook.project.paths import project_root

    entry = add_stage(project_root(), name, notebook, params=params or [], deps=deps or [], outs=outs or [],
                      metrics=metrics or [])
    out.print(f"[green]stage {name}[/] declared in dvc.yaml: {entry['cmd']} (runs {notebook})", soft_wrap=True)


def check_command(
    stage: Annotated[Optional[str], typer.Option("--stage", help="check only this stage (its upstream stages run too)")] = None,
    quick: Annotated[bool, typer.Option("--quick", "--static", help="files only, no tiny run (the pre-commit hook)")] = False,
    output: Annotated[Literal["text", "json"], typer.Option("--format", help="text (a line per stage) or json")] = "text",
) -> None:
    """Check every stage against the contract: its notebook exists, has a parameters cell, is stored without outputs,
    names the project's kernel, its params exist, and it writes its declared outs on tiny params (check.params).

    The tiny run happens in a scratch copy of the project: your outputs, params.yaml and MLflow store are untouched.
    Exit 0 when every check passes, 1 when one fails.
    """
    import json

    from reprobook.execution.progress import shown
    from reprobook.project.check import RunProgress, check_project, report_text
    from reprobook.project.paths import project_root

    root = project_root()
    with shown(RunProgress(), enabled=not quick) as progress:
        report = check_project(root, stage=stage, quick=quick, on_stage=progress)
    if output == "json":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report_text(report):
            out.print(line, soft_wrap=True, highlight=False, markup=False)
    if not report.ok:
        raise typer.Exit(1)


def fingerprint_command() -> None:
    """Write each stage's code fingerprint under .reprobook/code (dvc.yaml's code_fingerprints stage runs this)."""
    from reprobook.execution.fingerprint import write_fingerprints
    from reprobook.project.paths import project_root

    write_fingerprints(project_root())


def register(app: typer.Typer) -> None:
    app.command("new")(new_command)
    app.command("add-stage")(add_stage_command)
    app.command("check")(check_command)
    app.command("fingerprint")(fingerprint_command)
