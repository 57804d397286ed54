"""Deployment commands: ``deploy shadow|canary|promote|rollback|log`` and the top-level ``rollback``.

Each command maps its arguments to one call of :mod:`reprobook.monitoring.deployment`
and prints the report as Rich tables (``--format json``: one JSON document).
Exit codes: 0 success (gates passed, canary complete, promoted, rolled back),
1 a negative decision (gates failed, canary rolled back, promotion refused,
also for want of --accept-contract-change),
2 usage error (unknown alias or model, a batch missing a model column,
labels matching no row, nothing to roll back to), 3 a canary still in
progress when its batches ran out.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console

if TYPE_CHECKING:
    from rich.table import Table

    from reprobook.monitoring.deployment import CanaryReport, Gate, PromotionReport, ShadowReport

out = Console()
NEGATIVE_EXIT = 1
IN_PROGRESS_EXIT = 3


class Format(str, Enum):
    text = "text"
    json = "json"


FormatOption = Annotated[Format, typer.Option("--format", help="text (tables) or json")]
ChampionOption = Annotated[
    Optional[str], typer.Option("--champion", help="the serving model: NAME@ALIAS or NAME/VERSION [default: @champion]")
]
ChallengerOption = Annotated[
    Optional[str], typer.Option("--challenger", help="the candidate: NAME@ALIAS or NAME/VERSION [default: @challenger]")
]


def _root() -> Path:
    from reprobook.project.paths import project_root

    return project_root()


def _json(document: Any) -> None:
    print(json.dumps(document, indent=2, sort_keys=True, allow_nan=False))


def _figure(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


# --- shadow ------------------------------------------------------------------


def shadow_command(
    batch: Annotated[Path, typer.Argument(help="production batch, CSV or Parquet (the model's feature columns, an id)")],
    labels: Annotated[Optional[Path], typer.Option("--labels", help="labels of the batch: a file of 'id,TARGET' rows")] = None,
    champion: ChampionOption = None,
    challenger: ChallengerOption = None,
    output: FormatOption = Format.text,
) -> None:
    """Shadow: both models score BATCH, only the champion's predictions are served; compare them (and gate, with labels).

    Writes the champion's capture where `reprobook predict` does and the
    challenger's beside it (monitoring/captures/<batch>.shadow-v<N>.parquet).
    Exit 0 when the gates pass (or without labels), 1 when one fails.
    """
    from reprobook.monitoring.deployment import shadow

    report = shadow(_root(), batch, labels, champion, challenger)
    if output is Format.json:
        _json(report.to_dict())
    else:
        _print_shadow(report)
    if not report.passed:
        raise typer.Exit(NEGATIVE_EXIT)


def _print_shadow(report: ShadowReport) -> None:
    from rich.table import Table

    out.print(f"shadow: '{report.model}' version {report.challenger} (challenger) beside version {report.champion} "
              f"(champion, served) on {report.batch}: {report.rows} rows, {report.labelled_rows} labelled",
              soft_wrap=True, highlight=False)
    agreement = Table(title="agreement", title_justify="left")
    agreement.add_column("figure")
    agreement.add_column("value", justify="right")
    agreement.add_row("same prediction", f"{100 * report.agreement:.1f}%")
    agreement.add_row("score correlation", _figure(report.score_correlation))
    if report.mean_abs_difference is not None:
        agreement.add_row("mean absolute difference", _figure(report.mean_abs_difference))
    out.print(agreement)
    if report.metrics:
        metrics = Table(title="metrics on the same labelled rows", title_justify="left")
        for column in ("metric", "champion", "challenger"):
            metrics.add_column(column, justify="left" if column == "metric" else "right")
        for name, value in report.metrics["champion"].items():
            metrics.add_row(name, _figure(value), _figure(report.metrics["challenger"].get(name)))
        out.print(metrics)
    if report.gates:
        out.print(gates_table(report.gates))
    out.print(f"{report.decision}: {report.reason}", soft_wrap=True, highlight=False)
    for role, path in report.captures.items():
        out.print(f"  {role} capture: {path}", soft_wrap=True, highlight=False)


def gates_table(gates: list[Gate]) -> Table:
    from rich.table import Table

    table = Table(title="promotion gates", title_justify="left")
    for column in ("gate", "result", "measured", "threshold", "reason"):
        table.add_column(column, overflow="fold")
    for gate in gates:
        result = {True: "[green]pass[/]", False: "[red]fail[/]", None: "[yellow]not judged[/]"}[gate.passed]
        table.add_row(gate.name, result, _figure(gate.measured), _figure(gate.threshold), gate.reason)
    return table


# --- canary ------------------------------------------------------------------


def canary_command(
    batches: Annotated[list[str], typer.Argument(help="batches in the order they arrive, each BATCH or BATCH:LABELS "
                                                      "(a labels file of 'id,TARGET' rows)")],
    champion: ChampionOption = None,
    challenger: ChallengerOption = None,
    output: FormatOption = Format.text,
) -> None:
    """Canary: the challenger serves a growing share of rows; after each batch ramp up, hold or roll back.

    Shares are deployment.canary_steps; the decision is a paired comparison
    on the challenger's labelled rows (the champion scores them too, unserved).
    Exit 0 when the last step passed (the challenger may be promoted), 1 when
    it rolled back, 3 when the batches ran out first (still in progress).
    """
    from reprobook.monitoring.deployment import canary

    report = canary(_root(), [batch_and_labels(text) for text in batches], champion, challenger)
    if output is Format.json:
        _json(report.to_dict())
    else:
        _print_canary(report)
    if report.outcome == "rolled back":
        raise typer.Exit(NEGATIVE_EXIT)
    if report.outcome != "complete":
        raise typer.Exit(IN_PROGRESS_EXIT)


def batch_and_labels(text: str) -> tuple[Path, Path | None]:
    """``BATCH`` or ``BATCH:LABELS``; a whole argument naming an existing file is a batch, colon or not."""
    if Path(text).is_file() or ":" not in text:
        return Path(text), None
    batch, labels = text.rsplit(":", 1)
    if not batch or not labels:
        from reprobook.errors import UsageError

        raise UsageError(f"{text!r}: expected BATCH or BATCH:LABELS")
    return Path(batch), Path(labels)


def _print_canary(report: CanaryReport) -> None:
    from rich import box
    from rich.table import Table

    table = Table(title=f"canary: '{report.model}' version {report.challenger} (challenger) against version "
                        f"{report.champion} (champion)", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("step", "share", "batch", "challenger rows", "labelled", "better by [interval]", "decision"):
        table.add_column(column, justify="right" if column in ("share", "challenger rows", "labelled") else "left")
    for step in report.steps:
        compared = step.comparison or {}
        better = "–"
        if compared:
            interval = (f" [{compared['low']:+.3f}, {compared['high']:+.3f}]"
                        if compared.get("low") is not None and compared.get("high") is not None else "")
            better = f"{compared['difference']:+.3f}{interval}"
        colour = {"roll back": "red", "hold": "yellow"}.get(step.decision, "green")
        table.add_row(str(step.step), f"{100 * step.share:g}%", Path(step.batch).name,
                      f"{step.challenger_rows}/{step.rows}", str(step.labelled_rows), better,
                      f"[{colour}]{step.decision}[/]")
    out.print(table)
    for step in report.steps:
        out.print(f"  {step.step}. {Path(step.batch).name}: {step.reason}", soft_wrap=True, highlight=False)
    next_step = {"complete": "next: reprobook deploy promote", "rolled back": "the challenger is not promoted",
                 "in progress": "give the next batches to continue (the canary restarts at the first share)"}
    out.print(f"canary {report.outcome}; {next_step[report.outcome]}", soft_wrap=True, highlight=False)
    if report.skipped:
        out.print(f"  not part of the canary (serve them with reprobook predict): {', '.join(report.skipped)}",
                  soft_wrap=True, highlight=False)


# --- blue-green ----------------------------------------------------------------


def promote_command(
    challenger: ChallengerOption = None,
    batch: Annotated[Optional[Path], typer.Option("--batch", help="labelled rows to gate on [default: the test split]")] = None,
    labels: Annotated[Optional[Path], typer.Option("--labels", help="labels of --batch: 'id,TARGET' rows")] = None,
    force: Annotated[bool, typer.Option("--force", help="promote even if a gate fails (recorded as forced)")] = False,
    accept_contract_change: Annotated[
        bool, typer.Option("--accept-contract-change", help="promote a challenger that needs an input column the "
                                                             "champion does not read (callers must send it)")
    ] = False,
    output: FormatOption = Format.text,
) -> None:
    """Blue-green: when the gates pass, @champion moves to the challenger in one step.

    The replaced version keeps @previous (deployment.previous_alias) for
    `reprobook rollback`. The gates run on --batch/--labels, else on the test split.
    A challenger that needs an input column the champion does not read is a
    serving contract change: refused, before any gate runs, unless
    --accept-contract-change is given (--force does not imply it).
    Exit 0 promoted, 1 refused (a gate failed, or the contract change was not
    accepted; the registry's aliases are unchanged).
    """
    from reprobook.monitoring.deployment import promote

    report = promote(_root(), None, challenger, batch, labels, force, accept_contract_change)
    if output is Format.json:
        _json(report.to_dict())
    else:
        _print_promotion(report)
    if not report.promoted:
        raise typer.Exit(NEGATIVE_EXIT)


def _print_promotion(report: PromotionReport) -> None:
    if report.gates:
        out.print(gates_table(report.gates))
    out.print(f"gates run on {report.rows}", soft_wrap=True, highlight=False)
    change = report.contract_change or {}
    if change.get("added") or change.get("removed"):
        from reprobook.tracking.contract import ContractChange

        short = ContractChange(tuple(change.get("added", ())), tuple(change.get("removed", ()))).short()
        out.print(f"serving contract against version {report.champion}: {short}", soft_wrap=True, highlight=False,
                  markup=False)
    if report.promoted:
        replaced = f" (version {report.champion} keeps @previous)" if report.champion else ""
        out.print(f"[green]{report.decision}[/]: '{report.model}' @champion is now version {report.challenger}"
                  f"{replaced}; {report.reason}", soft_wrap=True, highlight=False)
    else:
        out.print(f"[red]refused[/]: @champion stays on version {report.champion}; {report.reason}",
                  soft_wrap=True, highlight=False)


def rollback_command(
    name: Annotated[Optional[str], typer.Argument(help="registered model [default: model.registered_name]")] = None,
    output: FormatOption = Format.text,
) -> None:
    """Roll back: @champion returns to the version at @previous in one step (the version left is tagged so)."""
    from reprobook.monitoring.deployment import rollback

    report = rollback(_root(), name)
    if output is Format.json:
        _json(report.to_dict())
    else:
        out.print(f"[green]rolled back[/] '{report.model}': {report.reason}", soft_wrap=True, highlight=False)


def log_command(
    last: Annotated[int, typer.Option("--last", min=1, help="how many of the latest decisions to show")] = 20,
    output: FormatOption = Format.text,
) -> None:
    """The deployment log (monitoring/deployments.jsonl): every shadow, canary step, promotion and rollback."""
    from rich.table import Table

    from reprobook.monitoring.deployment import read_log

    entries = read_log(_root())[-last:]
    if output is Format.json:
        _json(entries)
        return
    models = sorted({str(entry.get("model", "")) for entry in entries})
    one = len(models) == 1
    title = f"deployment log of '{models[0]}'" if one else "deployment log"
    table = Table(title=f"{title} (monitoring/deployments.jsonl, times UTC)", title_justify="left")
    columns = ("time", "action", "versions", "decision", "reason") if one else \
        ("time", "action", "model", "versions", "decision", "reason")
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column != "reason")
    for entry in entries:
        row = {"time": str(entry.get("time", "")).replace("T", " ")[:16], "action": entry.get("action", ""),
               "model": entry.get("model", ""), "versions": _versions(entry), "decision": entry.get("decision", ""),
               "reason": entry.get("reason", "")}
        table.add_row(*(str(row[column]) for column in columns))
    out.print(table if entries else "no deployment decisions yet")


def _versions(entry: dict[str, Any]) -> str:
    """``v1 → v2``: from the serving version to the one the decision is about."""
    versions = entry.get("versions") or {}
    before = versions.get("champion", versions.get("rolled_back"))
    after = versions.get("challenger", versions.get("restored"))
    return " → ".join(f"v{v}" for v in (before, after) if v is not None)


def register(app: typer.Typer) -> None:
    """``deploy`` (shadow, canary, promote, rollback, log) and the top-level ``rollback``."""
    deploy = typer.Typer(help="Replace the champion safely: shadow, canary, blue-green promotion, rollback.",
                         no_args_is_help=True)
    deploy.command("shadow")(shadow_command)
    deploy.command("canary")(canary_command)
    deploy.command("promote")(promote_command)
    deploy.command("rollback")(rollback_command)
    deploy.command("log")(log_command)
    app.add_typer(deploy, name="deploy")
    app.command("rollback")(rollback_command)
