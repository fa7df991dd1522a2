"""``pricelab panel export``: the panel the analysis worker analyses, as CSV or Parquet."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from controller.settings import load_settings
from streams.cli.common import fail

panel_app = typer.Typer(help="The sales panel the analysis worker analyses.")


@panel_app.command("export")
def panel_export(
    experiment: Annotated[str, typer.Argument(help="Experiment id.")],
    out: Annotated[Path, typer.Option("--out", help="File to write: .csv or .parquet.")],
) -> None:
    """Write exactly the panel the analysis worker analyses (completed periods), ready for
    `pricelab analyze`."""
    from streams.client.panel import export_panel

    settings = load_settings()
    if out.suffix.lower() not in (".csv", ".parquet"):
        fail(f"--out must end in .csv or .parquet, not {out.name!r}")
    n, periods, spec = asyncio.run(export_panel(settings, experiment, out))
    typer.echo(f"wrote {n} cells ({periods} completed periods) of {experiment} to {out}")
    # an arms: spec's panel names each cell's arm: every arm against the control's; the
    # probability marks the cells the design randomised (a pre-period runs the control's
    # policy without being the control arm's draw)
    arms = f"--arm arm --control {spec.control_arm.name}" if spec.arms else "--treated treated"
    if spec.adaptive is not None:  # the fixed-allocation methods are biased on it
        typer.echo(
            f"analyse it: pricelab analyze {out} --unit product --time period --spec SPEC "
            "(the experiment's spec file: AIPW on the recorded probabilities, probability_<arm>, "
            "with the design's carryover lag and planned horizon)"
        )
        return
    typer.echo(
        f"analyse it: pricelab analyze {out} --unit product --time period --outcome units "
        f"{arms} --probability probability --blackout blackout --method dm"
    )
    ratios = {a.price_ratio for a in spec.arm_list()} if spec.arms else set()
    if None not in ratios and len(ratios) >= 3:  # a price ladder: its demand curve
        cost = " --profit profit" if spec.costs_all_products() else ""
        typer.echo(
            f"its demand curve: pricelab analyze {out} --unit product --time period {arms} "
            f"--probability probability --blackout blackout --method demand --units units "
            f"--revenue revenue{cost}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(panel_app, name="panel")
