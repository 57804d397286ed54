"""``reprobook reproduce`` and ``reprobook compare``: the command-line face of the run record."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

out = Console()


class Format(str, Enum):
    text = "text"
    json = "json"
    markdown = "markdown"


def reproduce_command(
    run_id: Annotated[str, typer.Argument(help="MLflow run id, or a unique prefix of it (4+ characters), of a stage run "
                                                "(a pipeline run means its last stage)")],
    rtol: Annotated[float, typer.Option(help="relative tolerance on quality metrics (default: exact)")] = 0.0,
    atol: Annotated[float, typer.Option(help="absolute tolerance on quality metrics (default: exact)")] = 0.0,
    full: Annotated[
        bool, typer.Option("--full", help="re-run every stage up to the run's stage; by default only the stage re-runs, "
                                     "on upstream outputs restored from DVC at the recorded hashes")
    ] = False,
    keep: Annotated[
        Optional[Path], typer.Option(help="build the checkout in this (new) directory and keep it")
    ] = None,
    allow_code_changes: Annotated[
        bool, typer.Option("--allow-code-changes", help="apply a recorded diff that changes code, or recorded params "
                                                         "that name code or feed a stage command (they come from the "
                                                         "tracking store: review them first)")
    ] = False,
) -> None:
    """Rebuild a run from its record (commit, diff, data, params), re-run it, and say whether it reproduced.

    What is taken from the record (diff files, params that differ from the
    commit) is listed in the verdict; a recorded diff that changes code, or
    params that name code, are refused unless --allow-code-changes is given.

    Refuses before doing any work, saying why, when the run cannot be reproduced
    (exit 1). Exit code 0 only when it reproduced; 3 when it ran but did not;
    2 when the run id (or prefix) names no run or several.
    From another clone, point MLFLOW_TRACKING_URI at the store holding the run.
    """
    from reprobook.execution.progress import step_printer
    from reprobook.project.paths import project_root
    from reprobook.reproduce.reproduce import (
        NOT_REPRODUCED_EXIT,
        reproduce,
        verdict_table,
    )
    from reprobook.tracking import runids

    runids.parse(run_id)  # a malformed id fails at once, before MLflow loads; reproduce() resolves a prefix
    # Its steps on stderr as they start, on a terminal only; the verdict on stdout either way.
    verdict = reproduce(project_root(), run_id, rtol=rtol, atol=atol, full=full, keep=keep, steps=step_printer(),
                        allow_code_changes=allow_code_changes)
    out.print(verdict_table(verdict))
    if not verdict.reproduced:
        raise typer.Exit(NOT_REPRODUCED_EXIT)


def compare_command(
    run_ids: Annotated[list[str], typer.Argument(help="two or more MLflow run ids or unique prefixes of them "
                                                      "(stage, pipeline or experiment runs)")],
    output: Annotated[Format, typer.Option("--format", help="text (tables), json, or markdown (for a PR comment)")] = Format.text,
) -> None:
    """Side by side: params, data digests, commits and changed files, environment, serving contract (input
    columns added and removed between modeling runs), and metrics with deltas."""
    from reprobook.errors import UsageError
    from reprobook.project.paths import project_root
    from reprobook.reproduce import compare
    from reprobook.tracking import runids, store
    from reprobook.tracking.record import resolve_stage_run

    if len(run_ids) < 2:
        raise UsageError(f"compare needs at least two run ids; got {len(run_ids)}")
    root = project_root()
    full_ids = runids.resolve_all(root, run_ids)  # every id checked before any record is read
    client = store.client(root)
    comparison = compare.compare_records([resolve_stage_run(client, run_id) for run_id in full_ids], root, client)
    if output is Format.json:
        print(compare.to_json(comparison))
    elif output is Format.markdown:
        print(compare.to_markdown(comparison))
    else:
        out.print(compare.to_rich(comparison))


def ci_command(
    base: Annotated[str, typer.Option(help="what the change is compared with: a branch, tag or commit "
                                           "(in a pull request, its base)")],
    report: Annotated[Path, typer.Option(help="write the verdict and the comparison here, as Markdown "
                                              "(for the pull-request comment)")] = Path("reprobook-ci.md"),
    work_dir: Annotated[
        Optional[Path], typer.Option(help="where both sides' tracking stores are kept, and the base's runs by "
                                          "commit for reuse [default: $REPROBOOK_CI_DIR, else the user cache]")
    ] = None,
) -> None:
    """Run the pipeline on the base and on the working tree, compare them, and apply the gates (CI).

    Each side runs every stage into a tracking store of its own (your store and
    registry are not touched). The verdict fails when the proposed model misses
    the scoping threshold or a quality metric of the test split gets worse than
    the base's by more than ci.tolerance (params.yaml). Exit 0 when every gate
    passes, 1 when one fails or a pipeline fails, 2 on a usage error (an unknown
    base).
    """
    from reprobook.errors import ReprobookError
    from reprobook.project.paths import project_root
    from reprobook.reproduce import change

    root = project_root()
    work = (work_dir or change.default_work_dir(root)).resolve()
    try:
        result = change.review(root, base, work)
    except ReprobookError as exc:
        report.write_text(change.failure_markdown(str(exc), base))
        raise
    text = change.to_markdown(result, base)
    report.write_text(text)
    print(text)
    if not result.passed:
        raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    app.command("reproduce")(reproduce_command)
    app.command("compare")(compare_command)
    app.command("ci")(ci_command)
