"""Data-quality commands: ``infer-schema``, ``validate``, ``drift`` and ``profile``.

``validate``, ``drift`` and ``profile`` also take a partitioned Parquet data
set (a directory, or a glob) and run partition by partition, on the Dask
scheduler of ``--scheduler`` (or ``REPROBOOK_SCHEDULER``; ``local`` starts a
cluster on this machine) or, without one, in this process
(:mod:`reprobook.quality.cluster`).

Exit codes: 0 clean, 1 anomalies of error severity or drift found, 2 usage
error (missing or unreadable file, malformed schema, unknown column) with a
one-line message naming the file or column. :func:`register` mounts the
commands on any Typer app (the main ``reprobook`` CLI calls it).
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from reprobook.errors import ReprobookError


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


FormatOption = Annotated[OutputFormat, typer.Option("--format", help="report on stdout as text or JSON")]
HtmlOption = Annotated[Optional[Path], typer.Option("--html", help="also write a self-contained HTML report here")]
SchedulerOption = Annotated[Optional[str], typer.Option(
    "--scheduler", help="Dask scheduler address (tcp://host:8786) or 'local' for partitioned data; "
    "default: REPROBOOK_SCHEDULER, else this process")]
ProfileOption = Annotated[Optional[Path], typer.Option(
    "--profile", help="folder of the saved (reference) profile; default: DIR/.reprobook-profile for a directory")]


def _partitioned(*paths: Path, scheduler: str | None) -> bool:
    """Whether to run partition by partition: a directory or glob given, or Parquet files and a scheduler."""
    from reprobook.quality.io import PARQUET_SUFFIXES

    if any(path.is_dir() or any(ch in str(path) for ch in "*?[") for path in paths):
        return True
    return scheduler is not None and all(path.name.lower().endswith(PARQUET_SUFFIXES) for path in paths)


def _guarded(work: Callable[[], int]) -> None:
    """Run a command body; user errors become a message on stderr and exit code 2, findings exit 1.

    ``sys.exit`` rather than ``typer.Exit``: a host app run with
    ``standalone_mode=False`` swallows ``typer.Exit`` codes, a SystemExit is kept.
    """
    try:
        code = work()
    except ReprobookError as exc:
        typer.echo(f"error: {exc}", err=True)
        code = 2
    if code:
        sys.exit(code)


def _emit(report: Any, output_format: OutputFormat) -> None:
    if output_format is OutputFormat.json:
        typer.echo(json.dumps(report.to_dict(), sort_keys=True, indent=2))
    else:
        typer.echo(report.to_text())


def infer_schema_command(
    data: Annotated[Path, typer.Argument(help="CSV or Parquet file to describe")],
    output: Annotated[Path, typer.Option("--output", "-o", help="schema file to write (YAML)")],
    label: Annotated[Optional[str], typer.Option(help="label column: expected in TRAINING, not SERVING")] = None,
    max_domain_size: Annotated[int, typer.Option(help="largest categorical domain written out")] = 50,
) -> None:
    """Infer a schema from DATA and write it as an editable YAML file."""
    from reprobook.quality import infer_schema
    from reprobook.quality.io import read_table

    def work() -> int:
        schema = infer_schema(read_table(data), label=label, max_domain_size=max_domain_size)
        schema.to_yaml(output)
        typer.echo(f"wrote schema of {len(schema.columns)} column(s) to {output}", err=True)
        return 0

    _guarded(work)


def validate_command(
    data: Annotated[Path, typer.Argument(help="CSV or Parquet file to check")],
    schema: Annotated[Path, typer.Option("--schema", help="schema file (YAML) to check against")],
    environment: Annotated[str, typer.Option(help="TRAINING or SERVING (or an environment of the schema)")] = "TRAINING",
    output_format: FormatOption = OutputFormat.text,
    html: HtmlOption = None,
    scheduler: SchedulerOption = None,
) -> None:
    """Check DATA (a file, or a directory of Parquet files) against a schema; exit 1 on error-severity anomalies."""
    from reprobook.execution.cluster import scheduler_address
    from reprobook.quality import Schema, validate
    from reprobook.quality.io import read_table

    def work() -> int:
        parsed = Schema.from_yaml(schema)
        address = scheduler_address(scheduler)
        if _partitioned(data, scheduler=address):
            from reprobook.quality.partition_validation import validate_partitions
            from reprobook.quality.runner import runner_for

            with runner_for(address) as runner:
                report = validate_partitions(data, parsed, environment=environment, runner=runner)
        else:
            report = validate(read_table(data), parsed, environment=environment)
        _emit(report, output_format)
        if html is not None:
            report.to_html(html)
        return 1 if report.has_errors else 0

    _guarded(work)


def drift_command(
    reference: Annotated[Path, typer.Argument(help="reference data (e.g. training set), CSV or Parquet")],
    current: Annotated[Path, typer.Argument(help="current data (e.g. test set or a new batch), CSV or Parquet")],
    output_format: FormatOption = OutputFormat.text,
    html: HtmlOption = None,
    plots: Annotated[Optional[Path], typer.Option(help="folder for PNG plots")] = None,
    alpha: Annotated[float, typer.Option(help="batch false-alarm rate")] = 0.05,
    correction: Annotated[str, typer.Option(help="bonferroni | bh | none")] = "bonferroni",
    column: Annotated[Optional[list[str]], typer.Option("--column", help="compare only this column (repeatable)")] = None,
    scheduler: SchedulerOption = None,
    profile: ProfileOption = None,
) -> None:
    """Compare CURRENT with REFERENCE column by column; exit 1 if drift is found.

    Either may be a directory of Parquet files: then both are summarised partition by partition, and the
    reference profile is saved and reused.
    """
    from pydantic import ValidationError

    from reprobook.execution.cluster import scheduler_address

    from reprobook.quality import DriftConfig, detect_drift
    from reprobook.quality.io import read_table

    def work() -> int:
        try:
            config = DriftConfig(alpha=alpha, correction=correction)
        except ValidationError as exc:
            error = exc.errors()[0]
            raise ReprobookError(f"--{error['loc'][0]}: {error['msg']}; found {error['input']!r}") from None
        address = scheduler_address(scheduler)
        if _partitioned(reference, current, scheduler=address):
            from reprobook.quality.cluster import drift
            from reprobook.quality.profile_store import default_location
            from reprobook.quality.runner import runner_for

            with runner_for(address) as runner:
                report, ref, cur = drift(reference, current, runner=runner, config=config, columns=column or None,
                                         reference_profile=profile or default_location(reference))
            typer.echo(f"reference: {ref.describe()}", err=True)
            typer.echo(f"current: {cur.describe()}", err=True)
        else:
            report = detect_drift(read_table(reference), read_table(current), config=config, columns=column or None)
        _emit(report, output_format)
        if html is not None:
            report.to_html(html)
        if plots is not None:
            report.plot(plots)
        return 1 if report.drifted else 0

    _guarded(work)


def profile_command(
    data: Annotated[Path, typer.Argument(help="Parquet data set: a directory of Parquet files, a file or a glob")],
    output_format: FormatOption = OutputFormat.text,
    html: HtmlOption = None,
    scheduler: SchedulerOption = None,
    profile: ProfileOption = None,
    no_save: Annotated[bool, typer.Option("--no-save", help="compute without saving or reusing a profile")] = False,
) -> None:
    """Statistics of a partitioned Parquet data set, computed partition by partition and saved for reuse."""
    from reprobook.execution.cluster import scheduler_address
    from reprobook.quality.cluster import profile_dataset
    from reprobook.quality.profile_report import ProfileReport
    from reprobook.quality.profile_store import default_location
    from reprobook.quality.runner import runner_for

    def work() -> int:
        folder = None if no_save else (profile or default_location(data))
        with runner_for(scheduler_address(scheduler)) as runner:
            result = profile_dataset(data, runner=runner, folder=folder)
        typer.echo(result.describe(), err=True)
        report = ProfileReport(result.summary)
        _emit(report, output_format)
        if html is not None:
            report.to_html(html)
        return 0

    _guarded(work)


def register(app: typer.Typer) -> None:
    """Add ``infer-schema``, ``validate``, ``drift`` and ``profile`` to ``app`` as top-level commands."""
    app.command("infer-schema")(infer_schema_command)
    app.command("validate")(validate_command)
    app.command("drift")(drift_command)
    app.command("profile")(profile_command)


def build_app() -> typer.Typer:
    """A stand-alone app with only the quality commands (``python -m reprobook.cli.quality``)."""
    app = typer.Typer(help="Data quality: schema, validation, drift.", no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False)
    register(app)
    return app


if __name__ == "__main__":
    build_app()(prog_name="reprobook-quality")
