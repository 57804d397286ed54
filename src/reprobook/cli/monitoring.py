"""After deployment: ``predict`` (batch scoring with capture) and ``monitor`` (one batch, tracked, with a verdict).

Exit codes of ``monitor``, like ``validate`` and ``drift``: 0 healthy, 1 watch
or retrain, 2 a usage error (a missing file, a batch without the model's
columns, labels matching no row, an unknown alias).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from reprobook.cli.quality import FormatOption, HtmlOption, OutputFormat

ModelOption = Annotated[
    Optional[str],
    typer.Option("--model", help="registered model as NAME@ALIAS or NAME/VERSION (default: model.registered_name "
                                 "at monitoring.alias, the champion)"),
]


def predict_command(
    batch: Annotated[Path, typer.Argument(help="CSV or Parquet batch to score")],
    model: ModelOption = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="capture file to write (Parquet); default "
                                                                     "monitoring/captures/<batch>.parquet")] = None,
) -> None:
    """Score BATCH with a registered model and write the capture: row id, prediction, scores, model version, batch digest."""
    from reprobook.monitoring.capture import predict_batch
    from reprobook.project.params import project_params
    from reprobook.project.paths import project_root

    root = project_root()
    path, scored, serving, _ = predict_batch(root, batch, project_params(root), model, out)
    typer.echo(f"scored {len(scored.predictions)} row(s) of {batch} with {serving.label} in {scored.seconds:.2f} s "
               f"({scored.failed} failed); capture: {path}", err=True)
    typer.echo(str(path))


def monitor_command(
    batch: Annotated[Path, typer.Argument(help="CSV or Parquet production batch")],
    labels: Annotated[Optional[Path], typer.Option("--labels", help="labels that have arrived: a CSV or Parquet "
                                                                     "file with the id column and the target")] = None,
    model: ModelOption = None,
    output_format: FormatOption = OutputFormat.text,
    html: HtmlOption = None,
) -> None:
    """Monitor BATCH against the serving model's training reference; exit 0 healthy, 1 watch or retrain."""
    from reprobook.monitoring.monitor import report_text
    from reprobook.monitoring.stage import monitor
    from reprobook.project.paths import project_root

    root = project_root()
    result = monitor(root, batch, labels, model, progress=sys.stderr.isatty())
    if output_format is OutputFormat.json:
        typer.echo(json.dumps({k: v for k, v in result.report.items() if k not in ("slices",)}, indent=2, sort_keys=True))
    else:
        typer.echo(report_text(result.report))
        typer.echo(f"report: {result.html.relative_to(root)}  summary: {result.summary.relative_to(root)}  "
                   f"MLflow run: {result.run_id}", err=True)
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.html, html)
    sys.exit(0 if result.verdict == "healthy" else 1)


def retrain_command(
    batch: Annotated[Optional[list[int]], typer.Option("--batch", help="only this monitored batch's labelled rows "
                                                                       "(repeatable; default: every batch with labels)")] = None,
) -> None:
    """Add the labelled rows of every monitored batch to the training data (DVC-tracked) and run the pipeline.

    The new model version is the challenger; it becomes champion only through the
    modeling stage's promotion gate. Exit 0 when the pipeline ran, 1 when it failed.
    """
    from rich.console import Console

    from reprobook.monitoring.retrain import retrain
    from reprobook.project.paths import project_root

    root = project_root()
    result = retrain(root, batch or None)
    console = Console()
    console.print(result.pipeline.summary(), soft_wrap=True, highlight=False, markup=False)
    promoted = result.champion_after != result.champion_before
    console.print(
        f"retrained on {result.rows} labelled production row(s) of batch(es) {', '.join(map(str, result.batches))} "
        f"({result.path.relative_to(root)}, DVC-tracked); challenger v{result.challenger}, champion "
        + (f"v{result.champion_before} → v{result.champion_after}" if promoted else f"still v{result.champion_before}"),
        soft_wrap=True, highlight=False)
    if result.pipeline.exit_code:
        sys.exit(result.pipeline.exit_code)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_command)
    app.command("monitor")(monitor_command)
    app.command("retrain")(retrain_command)
