"""When an experiment is over for the controller (retired): nothing a controller does can
involve it any more, so its workers stop reading, parsing and keeping it.

An experiment is retired once

- it is final (stopped or ended: no command or tick changes it again),
- every message of its decision in force is out (``seq <= published``: no tick redoes it, and
  ``lua/holds.lua`` no longer counts its claims), and
- the sales window of its last period has closed: the end of its last period, plus
  ``allowed_lateness`` (a sale that old is refused as ``late`` before it is routed:
  ``SalesIngestor._route``), plus ``dedupe_margin``, the margin the dedupe markers already
  keep past that close for clocks that differ (another worker's clock, or a sales batch
  routed with the clock of a sync a script ago, may still be that much behind this one).

After that no sale can be routed into its period grid, so dropping it from the routing table
changes no verdict but ``unknown_product``, which the table keeps by remembering the retired
experiments' products (``RoutingTable.refresh``). The controller records it once
(``ExperimentStore.retire``) and its readers (the flip tick, the sales routing, the trigger
routes) read the experiments through ``ExperimentStore.experiments_unretired``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from controller.lifecycle import State
from controller.periods import PeriodGrid, n_periods, period_start


class Retirable(Protocol):
    """What the rule reads of an experiment (``ExperimentState`` has it)."""

    @property
    def spec(self) -> PeriodGrid: ...
    @property
    def lifecycle(self) -> State: ...
    @property
    def seq(self) -> int: ...
    @property
    def published(self) -> int: ...


def sales_close(spec: PeriodGrid, allowed_lateness: timedelta, margin: timedelta) -> datetime:
    """When the last of the experiment's sales can no longer be routed: the end of its last
    period (the routing table's last bound) plus the lateness and the margin."""
    return period_start(spec, n_periods(spec)) + allowed_lateness + margin


def is_retired(
    state: Retirable, now: datetime, allowed_lateness: timedelta, margin: timedelta
) -> bool:
    """The experiment is over for the controller at ``now`` (see the module docstring)."""
    return (
        state.lifecycle.final
        and state.seq <= state.published
        and now >= sales_close(state.spec, allowed_lateness, margin)
    )
