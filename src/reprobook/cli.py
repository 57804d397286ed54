"""The ``reprobook`` command line.

Every user-facing failure is a :class:`~reprobook.errors.ReprobookError`
printed as one short message (no traceback unless ``--debug`` or
``REPROBOOK_DEBUG=1``) with a non-zero exit code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich.console import Console

from reprobook.errors import ReprobookError

app = typer.Typer(
    help="Notebooks as a versioned (DVC), parameterized (papermill), tracked (MLflow), reproducible pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help="scoping | data | modeling | error_analysis")],
    progress: Annotated[bool, typer.Option(help="show a progress bar over notebook cells")] = True,
) -> None:
    """Run one stage notebook through papermill and record it in MLflow (what dvc.yaml calls)."""
    from reprobook.paths import project_root
    from reprobook.runner import run_stage

    outcome = run_stage(name, project_root(), progress=progress and sys.stderr.isatty())
    console.print(
        f"[green]stage {outcome.stage} finished[/] in {outcome.seconds:.1f}s: "
        f"{outcome.html.relative_to(project_root())}, MLflow run {outcome.run_id}",
        soft_wrap=True,
    )


@app.command()
def run(
    force: Annotated[bool, typer.Option("--force", "-f", help="rerun every stage, changed or not")] = False,
) -> None:
    """Run the whole pipeline (dvc repro) as one MLflow pipeline run with a child run per stage."""
    from reprobook.paths import project_root
    from reprobook.pipeline import run_pipeline

    root = project_root()
    result = run_pipeline(root, force=force)
    out.print(result.summary())
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def runs(
    limit: Annotated[int, typer.Option(help="how many runs to list")] = 20,
    stage_name: Annotated[Optional[str], typer.Option("--stage", help="only runs of this stage")] = None,
) -> None:
    """Recent runs with their status and key metrics, as a table."""
    from reprobook.history import runs_table
    from reprobook.paths import project_root

    out.print(runs_table(project_root(), limit=limit, stage=stage_name))


def _register_optional_commands() -> None:
    """Commands that live in their own modules (data quality, reproduction)."""
    for module_name in ("reprobook.cli_quality", "reprobook.cli_reproduce"):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(app)


_register_optional_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user errors into a message and an exit code."""
    debug = os.environ.get("REPROBOOK_DEBUG") == "1"
    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:
        args.remove("--debug")
        debug = True
    try:
        # Without standalone mode click returns a command's typer.Exit code instead of exiting.
        code = app(args=args, standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except ReprobookError as exc:
        if debug:
            raise
        console.print(f"error: {exc}", style="red", highlight=False, markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
