"""``reprobook simulate``: write production batches of the built-in loan data on a drift schedule.

Exit codes: 0 written, 2 usage error (unknown scenario, malformed schedule,
bad number) with a one-line message. :func:`register` mounts the command on
any Typer app (the main ``reprobook`` CLI calls it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from reprobook.errors import ReprobookError

def simulate_command(
    out_dir: Annotated[Path, typer.Argument(help="folder for batch-NNN.parquet, labels-NNN.csv and schedule.json")],
    schedule: Annotated[Optional[str], typer.Option(
        help="SCENARIO:BATCHES,... in order [default: 3 healthy batches, then every scenario]")] = None,
    rows: Annotated[int, typer.Option("--rows", min=1, help="rows per batch")] = 1000,
    seed: Annotated[int, typer.Option(min=0, help="seed of the run; batch i is the same for any batch count")] = 0,
    shift_sd: Annotated[float, typer.Option(min=0.0, help="covariate shift (training SDs), concept drift size")] = 0.5,
    labels_every: Annotated[int, typer.Option(min=0, help="write labels for every k-th batch (0: none)")] = 1,
    labels_delay: Annotated[int, typer.Option(min=0, help="the last N batches get no labels yet")] = 0,
) -> None:
    """Write seeded batches of loan applications (healthy, drifting, broken) and their labels to OUT_DIR."""
    from reprobook.monitoring.simulate import DEFAULT_SCHEDULE, SCENARIOS, simulate

    try:
        batches = simulate(out_dir, schedule or DEFAULT_SCHEDULE, n_rows=rows, seed=seed, shift_sd=shift_sd,
                           labels_every=labels_every, labels_delay=labels_delay)
    except ReprobookError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)  # not typer.Exit: a host app run with standalone_mode=False would swallow its code
    width = max(len(name) for name in SCENARIOS)
    for batch in batches:
        labels = "yes" if batch.labels else "no"
        typer.echo(f"batch {batch.index:03d}  {batch.scenario:<{width}}  {rows} rows  labels: {labels}", err=True)
    typer.echo(f"wrote {len(batches)} batch(es) to {out_dir}", err=True)


def register(app: typer.Typer) -> None:
    """Add ``simulate`` to ``app`` as a top-level command."""
    app.command("simulate")(simulate_command)
