"""``pricelab schedule SPEC``: the planned assignment of every unit and period, without a broker.

Analysts review a design before launch: for each unit (product) and period it prints the
period's bounds (in the experiment's time zone), the arm (its role; for a spec with ``arms:``
also the arm's name and, where the arms give one, its price_ratio), P(not control), the
policy, the window
state, any blackout at the period start (its end and reason) and ``blackout`` (1 when the
blackout covers the whole period, so the cell's data is discarded - the analysis panel's and
``pricelab simulate``'s ``blackout`` column). A readable table by default,
CSV with ``--csv``. ``--trigger PRODUCT=PERIOD|DATE`` supplies hypothetical trigger periods
for a triggered design (without them every product is pending).

Wire it with ``register(app)`` on the main typer app.
"""

from __future__ import annotations

import csv
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated

import typer

from controller.designs import Assignment, DesignContext, assign
from controller.errors import SpecError
from controller.periods import is_empty, n_periods, period_index
from controller.spec import ExperimentSpec, load_spec_file

COLUMNS = (
    "unit",
    "class",
    "period",
    "period_start",
    "period_end",
    "arm",
    "probability",
    "policy",
    "window",
    "blackout_until",
    "blackout_reason",
    "blackout",
)


def _instant(spec: ExperimentSpec, text: str, *, end: bool) -> datetime:
    """A DATE is local midnight in the spec's zone (an --end date is inclusive); a datetime as is."""
    option = "--end" if end else "--start"
    try:
        d = date.fromisoformat(text)
    except ValueError:
        try:
            ts = datetime.fromisoformat(text)
        except ValueError:
            raise typer.BadParameter(
                f"{text!r} is not an ISO 8601 date (2026-12-01) or date-time "
                "(2026-12-01T06:00:00+01:00)",
                param_hint=option,
            ) from None
        return ts if ts.tzinfo else ts.replace(tzinfo=spec.zone)
    if end:
        d += timedelta(days=1)
    return datetime.combine(d, time(0), tzinfo=spec.zone)


def _parse_triggers(spec: ExperimentSpec, items: list[str]) -> dict[str, int]:
    if items and spec.triggered is None:
        raise typer.BadParameter(
            f"--trigger applies to triggered designs; {spec.id!r} is {spec.design}"
        )
    out: dict[str, int] = {}
    last = n_periods(spec) - 1
    for item in items:
        product, sep, when = item.partition("=")
        if not sep or not product or not when:
            raise typer.BadParameter(f"{item!r}: expected PRODUCT=PERIOD or PRODUCT=DATE")
        if product not in spec.units():
            raise typer.BadParameter(f"{product!r} is not a product of experiment {spec.id!r}")
        try:
            k = (
                int(when)
                if when.lstrip("-").isdigit()
                else period_index(spec, _instant(spec, when, end=False))
            )
        except ValueError:
            raise typer.BadParameter(f"{item!r}: {when!r} is neither a period nor a date") from None
        if not 0 <= k <= last:
            raise typer.BadParameter(
                f"{item!r}: period {k} is outside the experiment (periods 0..{last})"
            )
        out[product] = k
    return out


def planned(
    spec: ExperimentSpec,
    start: datetime | None = None,
    end: datetime | None = None,
    context: DesignContext | None = None,
) -> list[Assignment]:
    """Assignments of every unit for the periods overlapping [start, end), unit by unit."""
    last = n_periods(spec) - 1
    k0 = 0 if start is None else max(0, period_index(spec, start))
    k1 = last if end is None else min(last, period_index(spec, end - timedelta(microseconds=1)))
    return [
        assign(spec, product, k, context)
        for product in spec.all_products()
        for k in range(k0, k1 + 1)
        if not is_empty(spec, k)
    ]


def columns(spec: ExperimentSpec) -> tuple[str, ...]:
    """The CSV columns for ``spec``: a two-arm shorthand spec's are :data:`COLUMNS` (its arm
    is named by its role); ``arms:`` adds the arm's name after ``arm``, and its price_ratio
    when the arms give one."""
    if not spec.arms:
        return COLUMNS
    extra = ("arm_name",) if spec.arms[0].price_ratio is None else ("arm_name", "price_ratio")
    at = COLUMNS.index("arm") + 1
    return COLUMNS[:at] + extra + COLUMNS[at:]


def rows(spec: ExperimentSpec, assignments: list[Assignment]) -> list[dict[str, str]]:
    zone = spec.zone
    # policies are unique per arm, so a cell's policy names its arm
    arm_of = {a.policy: a for a in spec.arm_list()}
    out = []
    for a in assignments:
        arm = arm_of[a.design_policy or a.policy]
        out.append(
            {
                "unit": a.product,
                "class": spec.class_of(a.product) or "",
                "period": str(a.period),
                "period_start": a.period_start.astimezone(zone).isoformat(),
                "period_end": a.period_end.astimezone(zone).isoformat(),
                "arm": a.arm.value,
                "arm_name": arm.name,
                "price_ratio": "" if arm.price_ratio is None else f"{arm.price_ratio:g}",
                "probability": f"{a.probability:.6g}",
                "policy": a.policy,
                "window": a.window.value,
                "blackout_until": (
                    a.blackout_until.astimezone(zone).isoformat() if a.blackout_until else ""
                ),
                "blackout_reason": a.blackout_reason or "",
                "blackout": "1" if a.excluded else "0",
            }
        )
    return out


def render_table(spec: ExperimentSpec, table: list[dict[str, str]]) -> str:
    cols = [c for c in columns(spec) if c != "class" or spec.clusters]
    width = {c: max([len(c)] + [len(r[c]) for r in table]) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols).rstrip()]
    lines.append("  ".join("-" * width[c] for c in cols))
    lines += ["  ".join(r[c].ljust(width[c]) for c in cols).rstrip() for r in table]
    return "\n".join(lines)


def schedule_command(
    spec_path: Annotated[
        Path, typer.Argument(metavar="SPEC", help="Experiment spec, YAML or JSON.")
    ],
    start: Annotated[
        str | None,
        typer.Option("--start", help="First DATE (local) or datetime; default: spec start."),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--end", help="Last DATE (inclusive) or datetime; default: spec end."),
    ] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV instead of a table.")] = False,
    trigger: Annotated[
        list[str] | None,
        typer.Option("--trigger", help="PRODUCT=PERIOD or PRODUCT=DATE (triggered designs)."),
    ] = None,
) -> None:
    """Print the planned assignment of every unit and period (no broker needed)."""
    try:
        spec = load_spec_file(spec_path)
    except SpecError as exc:
        typer.echo(f"error: {spec_path}: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        t0 = _instant(spec, start, end=False) if start else None
        t1 = _instant(spec, end, end=True) if end else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if t0 and t1 and t1 <= t0:
        raise typer.BadParameter("--end must not be before --start")
    if (t0 and t0 >= spec.end) or (t1 and t1 <= spec.start):
        raise typer.BadParameter(
            f"the window lies outside experiment {spec.id!r} "
            f"({spec.start.isoformat()} to {spec.end.isoformat()})"
        )
    context = DesignContext(triggers=_parse_triggers(spec, trigger or []))
    table = rows(spec, planned(spec, t0, t1, context))
    if as_csv:
        writer = csv.DictWriter(
            sys.stdout, fieldnames=list(columns(spec)), lineterminator="\n", extrasaction="ignore"
        )
        writer.writeheader()
        writer.writerows(table)
    else:
        typer.echo(render_table(spec, table))
    support = spec.live_support()
    if support is not None:  # on stderr: the CSV stays a table
        typer.echo(f"note: {support}", err=True)
    if spec.adaptive is not None:
        typer.echo(f"note: {adaptive_note(spec)}", err=True)
    wide = spec.held_warning()
    if wide is not None:
        typer.echo(f"warning: {wide}", err=True)


def adaptive_note(spec: ExperimentSpec) -> str:
    """What the table of an adaptive ladder shows: its periods at the arms' allocations,
    where the live flip draws each period after the warmup with the probabilities it
    records (one sentence)."""
    assert spec.adaptive is not None
    return (
        f"an adaptive ladder: this table draws every period at the arms' allocations; live, "
        f"each period from {spec.adaptive.warmup} on is drawn with the probabilities the "
        "controller records from the latest look before it starts (pricelab assignments "
        "PRODUCT and the console's schedule show the recorded ones; docs/adaptive.md)"
    )


def register(app: typer.Typer) -> None:
    """Add ``schedule`` to the pricelab CLI."""
    app.command("schedule")(schedule_command)
