"""The price change the simulator models, and where it comes from.

The market's treatment is a relative price change (``MarketConfig.price_change``: -0.05 is a 5%
cut). A command that simulates (``pricelab simulate``, ``compare-designs``) takes it from, in
this order of places, the first that names it:

1. ``--price-change`` on the command line;
2. the spec's ``price_ratio`` (the treatment's price over control's: ``price_change =
   price_ratio - 1``);
3. ``price_change`` written in the market config file.

Two places that name different changes are refused in one sentence, never settled silently.
When none names it, the market's default (a 5% cut) is modelled and the command's first line
says so (:attr:`ModelledPrice.assumption`).

A price ladder (an ``arms:`` list of more than two arms) lists each arm's price in the spec
(:func:`ladder_ratios`); the market then runs those prices and no single change, so a
``--price-change`` or a market config's ``price_change`` beside it is refused in one sentence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from controller.errors import SpecError
from controller.spec import ExperimentSpec
from lab.config import MarketConfig
from lab.errors import LabError

#: two changes closer than this are the same change (a ratio written 1.1 against a change 0.1)
_SAME = 1e-9


def describe(change: float) -> str:
    """``-0.05`` as "5% below control's", ``0.1`` as "10% above control's"."""
    if change == 0:
        return "the same as control's"
    way = "below" if change < 0 else "above"
    return f"{abs(change) * 100:.4g}% {way} control's"


@dataclass(frozen=True)
class ModelledPrice:
    """The market config that carries the modelled price change, and the line to show first
    when nobody named the change (None otherwise)."""

    market: MarketConfig
    assumption: str | None

    @property
    def change(self) -> float:
        return self.market.price_change


#: why the simulator refuses a ladder whose arms list no prices
NO_RATIOS = "the simulator models prices only: give every arm a price_ratio"


def ladder_ratios(spec: ExperimentSpec) -> np.ndarray | None:
    """Each arm's listed price ratio in the spec's arm order when ``spec`` is a price ladder
    (more than two arms), None for two arms (one treatment price: ``price_change``); a
    SpecError naming ``arms`` for a ladder whose arms give no price_ratio."""
    arms = spec.arm_list()
    if len(arms) <= 2:
        return None
    ratios = [a.price_ratio for a in arms]
    if any(r is None for r in ratios):
        raise SpecError("arms", NO_RATIOS)
    return np.array(ratios, dtype=float)


def check_option(change: float | None) -> None:
    """LabError unless ``--price-change`` is a change the market models (above -1, at most 1)."""
    if change is None:
        return
    if not math.isfinite(change) or not -1.0 < change <= 1.0:
        raise LabError(
            f"--price-change must be a relative change above -1 and at most 1 (0.10 for a 10% "
            f"rise, -0.05 for a 5% cut), not {change:g}"
        )


def modelled_price(
    market: MarketConfig,
    *,
    option: float | None = None,
    spec: ExperimentSpec | None = None,
) -> ModelledPrice:
    """The price change to simulate (see the module docstring); LabError when two places name
    different changes, or the change is one the market cannot model."""
    check_option(option)
    if spec is not None and ladder_ratios(spec) is not None:
        return _ladder_price(market, option, spec)
    named: list[tuple[str, float]] = []
    if option is not None:
        named.append((f"--price-change {option:g}", option))
    if spec is not None and spec.price_ratio is not None:
        named.append((f"the spec's price_ratio {spec.price_ratio:g}", spec.price_ratio - 1.0))
    if "price_change" in market.model_fields_set:
        named.append(
            (f"the market config's price_change {market.price_change:g}", market.price_change)
        )
    if not named:
        default = market.price_change
        return ModelledPrice(
            market,
            f"assuming the treatment's price is {describe(default)} (the simulator's default "
            f"price_change {default:g}); give "
            + ("price_ratio in the spec or " if spec is not None else "")
            + "--price-change to model another",
        )
    (first, change), *others = named
    for other, value in others:
        if abs(value - change) > _SAME:
            raise LabError(
                f"{first} (a price {describe(change)}) disagrees with {other} (a price "
                f"{describe(value)}); give the change in one place"
            )
    if not -1.0 < change <= 1.0:
        raise LabError(
            f"{first} is a price {describe(change)}, beyond what the simulator models (a change "
            "above -100% and at most +100%)"
        )
    try:
        cfg = MarketConfig.model_validate(
            market.model_dump(exclude_unset=True) | {"price_change": change}
        )
    except ValueError as exc:  # the config was valid; only the change is new
        raise LabError(f"{first}: {str(exc).splitlines()[0]}") from None
    return ModelledPrice(cfg, None)


def _ladder_price(
    market: MarketConfig, option: float | None, spec: ExperimentSpec
) -> ModelledPrice:
    """A ladder's prices are its arms': refuse a single change named beside them."""
    listed = f"the arms of {spec.id!r} list their own prices (price_ratio)"
    return ModelledPrice(one_price_refused(market, option, listed, "the spec"), None)


def one_price_refused(
    market: MarketConfig, option: float | None, listed: str, where: str
) -> MarketConfig:
    """``market`` unchanged, or a LabError when one treatment price is named (``option``, or the
    market config's ``price_change``) beside a ladder's own prices (``listed`` says where they
    are, ``where`` is the place to give them)."""
    if option is not None:
        raise LabError(
            f"--price-change {option:g} names one treatment price but {listed}; give the "
            f"prices in {where} only"
        )
    if "price_change" in market.model_fields_set:
        raise LabError(
            f"the market config's price_change {market.price_change:g} names one treatment "
            f"price but {listed}; remove price_change from the market config"
        )
    return market


def ladder_market(market: MarketConfig, what: str) -> MarketConfig:
    """The market a price ladder (``what``) runs on: no effect modifiers, since a lift that is
    not a price's means nothing per arm. The default ones are dropped; ones the config sets are
    refused (LabError)."""
    if "effect_modifiers" in market.model_fields_set and any(market.effect_modifiers.values()):
        raise LabError(
            f"the market config's effect_modifiers cannot run with {what}: their lift is not a "
            "price's, so it has no meaning per arm; remove them"
        )
    return MarketConfig.model_validate(
        market.model_dump(exclude_unset=True) | {"effect_modifiers": {}}
    )
