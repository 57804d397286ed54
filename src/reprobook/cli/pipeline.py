"""Pipeline commands: ``run`` (the whole pipeline), ``stage`` (one stage), ``runs`` (recent runs)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer
from rich.console import Console

console = Console(stderr=True)
out = Console()

SchedulerOption = Annotated[
    Optional[str],
    typer.Option("--scheduler", metavar="ADDRESS",
                 help="run cross-validation and parameter sweeps on a Dask cluster: tcp://host:8786, or local (one "
                      "worker per core); sets REPROBOOK_SCHEDULER for the stages. The figures do not change"),
]


def use_scheduler(address: str | None) -> None:
    """Pass ``--scheduler`` to the stages through the environment their kernels inherit, not through params:
    where the work runs must not change the results, nor DVC's view of a stage."""
    if address:
        import os

        from reprobook.execution.cluster import SCHEDULER_VARIABLE

        os.environ[SCHEDULER_VARIABLE] = address


def stage_command(
    name: Annotated[str, typer.Argument(help="a stage declared in dvc.yaml")],
    progress: Annotated[
        bool, typer.Option(help="show which cell runs, and for how long, when stderr is a terminal")
    ] = True,
    scheduler: SchedulerOption = None,
) -> None:
    """Run one stage notebook through papermill and record it in MLflow (what dvc.yaml calls)."""
    from reprobook.execution.progress import terminal_stderr
    from reprobook.execution.runner import run_stage
    from reprobook.project.paths import project_root

    use_scheduler(scheduler)
    root = project_root()
    try:
        outcome = run_stage(name, root, progress=progress and terminal_stderr())
    except KeyboardInterrupt as exc:
        # typer turns an interrupt into a silent exit 130: say what happened, in one line.
        reason = str(exc).removeprefix("terminated by signal ") or "Ctrl-C"
        console.print(f"stage {name} interrupted ({reason}): its MLflow run is marked KILLED, its kernel stopped",
                      soft_wrap=True, highlight=False, markup=False)
        raise typer.Exit(130) from None
    # One line, never folded (soft_wrap) and no number colouring (highlight): a path stays whole.
    console.print(
        f"[green]stage {outcome.stage} finished[/] in {outcome.seconds:.1f}s: "
        f"{outcome.html.relative_to(root)}, MLflow run {outcome.run_id}",
        soft_wrap=True,
        highlight=False,
    )


def run_command(
    force: Annotated[bool, typer.Option("--force", "-f", help="rerun every stage, changed or not")] = False,
    set_param: Annotated[
        Optional[list[str]],
        typer.Option("--set-param", "-S", metavar="KEY=VALUE",
                     help="a one-off variant (repeat): run as a DVC experiment in a copy, params.yaml untouched"),
    ] = None,
    scheduler: SchedulerOption = None,
) -> None:
    """Run the whole pipeline (dvc repro) as one MLflow pipeline run with a child run per stage."""
    from reprobook.execution.pipeline import run_pipeline
    from reprobook.project.paths import project_root

    use_scheduler(scheduler)
    result = run_pipeline(project_root(), force=force, overrides=set_param or [])
    out.print(result.summary(), soft_wrap=True, highlight=False, markup=False)  # paths may hold [ ]
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def runs_command(
    limit: Annotated[int, typer.Option(min=1, help="how many runs to list")] = 20,
    stage_name: Annotated[Optional[str], typer.Option("--stage", help="only runs of this stage")] = None,
    output: Annotated[
        Literal["table", "json"], typer.Option("--format", help="table (short ids, fits the terminal) or json (full ids)")
    ] = "table",
) -> None:
    """Recent runs with their status and key metrics: a table, or JSON for scripts."""
    from reprobook.project.paths import project_root
    from reprobook.tracking.history import recent_runs, runs_json, runs_table

    root = project_root()
    runs = recent_runs(root, limit=limit, stage=stage_name)
    if output == "json":
        print(runs_json(runs))
    else:
        out.print(runs_table(root, runs, width=out.width, stage=stage_name))


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("stage")(stage_command)
    app.command("runs")(runs_command)
