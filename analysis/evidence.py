"""A price ladder's recommended price read against its verdict: evidence, not a second decision.

The verdict (analysis.verdict) is the experiment's one decision: it ships a tested arm, keeps
the control, or keeps running. The demand curve's recommended price (analysis.demand) is
where the fitted profit curve peaks: evidence for the decision, and it says so. While the
verdict keeps running nothing here reads as a price to set; a recommended price between the
tested prices is the fitted curve's reading, never a tested arm, so the reading names the arm
the verdict can ship and the price to test next (the recommended ratio to the cent of the
list price: ``x1.022`` -> "test x1.02 next").

Every reader of a demand message (the CLI, the ladder demo, the HTML report, the estimates
topic's ``reading``) says it through :func:`demand_reading`, from the demand message and the
verdict it is read with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: a ratio within this of a tested ratio is that tested price
_SAME = 1e-9


@dataclass(frozen=True)
class DemandReading:
    """How to read a demand message's recommended price beside the verdict.

    ``decided``: the verdict has decided (ship, or keep the control); ``status``: its word,
    None without a verdict; ``ships``: the tested arm the decision keeps or ships (None while
    it keeps running, and without a verdict); ``leading``: the arm the running verdict leads
    with; ``tested``: the recommended ratio is a tested price (the arm listed there);
    ``between``: the two tested arms around an untested recommended ratio; ``test_next``: the
    ratio to test next to learn the curve's peak (None when it is a tested price);
    ``headline``: the label a reader shows in front of the recommended price; ``text``: the
    whole reading, one or two sentences."""

    decided: bool
    status: str | None
    ships: str | None
    leading: str | None
    tested: str | None
    between: tuple[str, str] | None
    test_next: float | None
    headline: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "decided": self.decided,
            "verdict": self.status,
            "ships": self.ships,
            "leading": self.leading,
            "tested": self.tested,
            "between": None if self.between is None else list(self.between),
            "test_next": self.test_next,
            "headline": self.headline,
            "text": self.text,
        }


def _arms(points: Sequence[Mapping[str, Any]]) -> list[tuple[float, str]]:
    return sorted((float(p["price_ratio"]), str(p["arm"])) for p in points)


def _control(arms: list[tuple[float, str]]) -> str | None:
    return next((name for r, name in arms if abs(r - 1.0) <= _SAME), None)


def _ratio_of(arms: list[tuple[float, str]], name: str | None) -> str:
    r = next((r for r, n in arms if n == name), None)
    return "" if r is None else f" (x{r:.3f})"


def demand_reading(
    demand: Mapping[str, Any], verdict: Mapping[str, Any] | None = None
) -> DemandReading:
    """The reading of ``demand`` (a demand message: ``optimal_price_ratio``, ``points``,
    ``price_ratio_low``/``_high``, ``at_range_edge``) beside ``verdict`` (a verdict message:
    ``verdict``, and for k arms ``arm``), None when none is published (or an offline fit)."""
    arms = _arms(demand.get("points") or ())
    control = _control(arms)
    status = None if verdict is None else str(verdict.get("verdict"))
    named = None if verdict is None else verdict.get("arm")
    decided = status is not None and status != "keep_running"
    ships = leading = None
    if status == "ship":
        ships = str(named) if named is not None else None
        decision = f"the verdict ships arm {ships}{_ratio_of(arms, ships)}"
    elif decided:  # do not ship, no difference: the control stays
        ships = control
        decision = f"the verdict keeps the control, {control}{_ratio_of(arms, control)}"
    elif status == "keep_running":
        leading = None if named is None else str(named)
        decision = "the verdict keeps running" + (
            f", leading arm {leading}{_ratio_of(arms, leading)}, not yet shown" if leading else ""
        )
    else:
        decision = "no verdict decides it (only the analysis worker's verdict decides)"
    best = demand.get("optimal_price_ratio")
    if best is None or not math.isfinite(float(best)):
        return DemandReading(
            decided, status, ships, leading, None, None, None,
            headline="no recommended price",
            text=f"No recommended price; {decision}.",
        )  # fmt: skip
    r = float(best)
    tested = next((name for x, name in arms if abs(x - r) <= _SAME), None)
    between = None
    test_next: float | None = None
    if tested is None:
        below = [name for x, name in arms if x < r]
        above = [name for x, name in arms if x > r]
        if below and above:
            between = (below[-1], above[0])
        step = round(r, 2)
        if not any(abs(step - x) <= _SAME for x, _ in arms):
            test_next = step
    if decided:
        headline = "evidence for the decision, not a second decision"
        lead = (
            f"Decided: {decision}. The fitted profit curve peaks at x{r:.3f}: evidence, and "
            "where it and the verdict differ, the verdict decides"
        )
    else:
        headline = "where the evidence points, not yet decided"
        lead = (
            f"Not decided: {decision}. The fitted profit curve peaks at x{r:.3f}: where the "
            "evidence points so far, not a price to set"
        )
    if tested is not None:
        where = f"; it is the tested price of arm {tested}"
    elif between is not None:
        where = (
            f"; it lies between the tested prices of {between[0]} and {between[1]}, a reading "
            "of the fitted curve, not a tested price"
        )
    else:
        where = ""
    if demand.get("at_range_edge"):
        side = "above" if r >= float(demand.get("price_ratio_high") or r) else "below"
        nxt = f" The best price may lie {side} the tested range: test {side} x{r:.3f} next."
    elif test_next is not None:
        nxt = (
            f" The verdict ships tested arms only; to sell at the curve's peak, test "
            f"x{test_next:.2f} next."
        )
    else:
        nxt = ""
    return DemandReading(
        decided, status, ships, leading, tested, between, test_next,
        headline=headline, text=f"{lead}{where}.{nxt}",
    )  # fmt: skip
