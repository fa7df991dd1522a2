"""``pricelab health EXPERIMENT``: the experiment's health checks, as the console's Health
section shows them (streams.client.experiment_health; docs/operations.md).

Exit status: 0 when no check is at ``--fail-on`` or worse (default ``problem``), 1 when one
is (:data:`FAILED`), 2 with one sentence for an unknown experiment or a broker or Redis that
does not answer (streams.cli.entry.main)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from controller.settings import load_settings

#: the flags ``--fail-on`` takes (streams.client.health_rules' WARN and PROBLEM; imported
#: there only when the command runs: the rules load the statistics stack, which the CLI's
#: start does without)
WARN, PROBLEM = "warn", "problem"
#: the exit status when a check is at ``--fail-on`` or worse
FAILED = 1
#: the traffic periods the table shows, the latest
TRAFFIC_SHOWN = 7
#: where a terminal goes next from a check that is not ok (the checks' sentences are the
#: console's, which points at its own pages)
NEXT = {
    "dead_letters": "pricelab dead-letters reads the dead letters; --replay with --reason or "
    "--offset sends them back"
}


def failed(flag: str, fail_on: str = PROBLEM) -> bool:
    """Whether the worst flag ``flag`` is at ``fail_on`` or worse (``ok`` < ``warn`` <
    ``problem``)."""
    from streams.client.health_rules import FLAGS

    return FLAGS.index(flag) >= FLAGS.index(fail_on)


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def render_traffic(doc: Mapping[str, Any], shown: int = TRAFFIC_SHOWN) -> list[str]:
    """The units of each arm in the latest ``shown`` completed periods, as a table."""
    traffic = list(doc.get("traffic") or [])
    if not traffic:
        return ["traffic: no completed period yet"]
    arms = list(doc.get("arms") or [])
    rows = traffic[-shown:]
    older = len(traffic) - len(rows)
    head = f"traffic (units by arm, the last {len(rows)} completed period(s)"
    head += f"; {older} older: --json)" if older else ")"
    table = [["period", *arms]] + [
        [str(r["period"]), *(_num(r["arms"].get(a, {}).get("units")) for a in arms)] for r in rows
    ]
    width = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return [head] + [
        "  " + "  ".join(c.rjust(w) for c, w in zip(row, width, strict=True)) for row in table
    ]


def render_health(doc: Mapping[str, Any]) -> str:
    """The health document for a terminal: the worst flag, one line per check (its flag, its
    title, its sentence), where to look next for a check that is not ok (:data:`NEXT`), then
    the traffic of the latest periods."""
    checks = list(doc.get("checks") or [])
    lines = [
        f"{doc['experiment']}: {str(doc['flag']).upper()} (the worst of {len(checks)} checks; "
        f"as of {doc['now']}, the stack's clock)"
    ]
    title = max((len(c["title"]) for c in checks), default=0)
    flag = len(PROBLEM)  # the longest flag
    for c in checks:
        lines.append(f"  {c['flag'].upper():<{flag}}  {c['title']:<{title}}  {c['sentence']}")
    lines.extend(
        f"  next: {NEXT[c['key']]}" for c in checks if c["flag"] != "ok" and c["key"] in NEXT
    )
    lines.extend(render_traffic(doc))
    return "\n".join(lines)


def health(
    experiment: Annotated[str, typer.Argument(help="Experiment id.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="The document as JSON (the console's API's).")
    ] = False,
    fail_on: Annotated[
        str,
        typer.Option(
            "--fail-on",
            help=f"Exit {FAILED} when some check is this flag or worse: {PROBLEM} (the "
            f"default) or {WARN}.",
        ),
    ] = PROBLEM,
    idle: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Seconds of fetch answers without a new message that count as the end of the "
            "estimates and dead-letter topics.",
        ),
    ] = 2.0,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to read the audit trail for.")
    ] = 30.0,
) -> None:
    """EXPERIMENT's health checks, the console's Health section: the sample ratio per arm (an
    adaptive ladder's against the probabilities recorded for each period), sales flowing in,
    dead letters and late sales by reason, flip lateness, the freshness of the last look,
    balance and multiple exposure, each with its flag (ok, warn, problem) and sentence, then
    the traffic of the latest periods. Exit 0 when no check is at --fail-on or worse, 1 when
    one is; an id that names no experiment, or a broker or Redis that does not answer, is one
    sentence and exit 2."""
    from streams.client.experiment_health import experiment_health

    if fail_on not in (WARN, PROBLEM):
        raise typer.BadParameter(f"{fail_on!r} is not {WARN} or {PROBLEM}", param_hint="--fail-on")
    settings = load_settings()
    doc = asyncio.run(experiment_health(settings, experiment, idle=idle, timeout=timeout))
    if as_json:  # as the console's API answers it: JSON has no NaN
        from streams.console.views import finite

        typer.echo(json.dumps(finite(doc), indent=2))
    else:
        typer.echo(render_health(doc))
    if failed(doc["flag"], fail_on):
        raise typer.Exit(FAILED)


def register(app: typer.Typer) -> None:
    app.command()(health)


__all__ = ["FAILED", "failed", "health", "register", "render_health", "render_traffic"]
