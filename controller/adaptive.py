"""Adaptive price ladders: the spec's ``adaptive:`` block and the rule that turns the latest
look into the next period's arm probabilities (issue #57; docs/adaptive.md).

The rule is pure: from each arm's estimated mean of the decision metric (and its standard
error, or the estimates' covariance), the period index and a seed, it gives the next
period's probability of each arm. Every cell of that period then draws its arm with them, and
they are recorded with the cell before the period starts, so the inference
(:mod:`analysis.adaptive`) can weigh each cell by the probability it was drawn with.

- **Thompson sampling** on the normal approximation: each arm's probability of being the best,
  exact by numerical integration when the arms' estimates are independent, by a seeded Monte
  Carlo (the same seed and period give the same probabilities) under a full covariance.
- **Top-two Thompson** (Russo, "Simple Bayesian algorithms for best-arm identification",
  2016/2020): with probability ``leader`` the Thompson leader, else a challenger drawn from the
  other arms in proportion to their probabilities of being best; in closed form,
  ``psi_a = p_a (leader + (1 - leader) sum_{b != a} p_b / (1 - p_b))``.
- **The MAD mixture** (Liang & Bojinov, "An experimental design for anytime-valid causal
  inference on multi-armed bandits", 2023): ``delta_t * uniform + (1 - delta_t) * bandit`` with
  ``delta_t = start * t ** -decay``. Their confidence sequence stays asymptotically valid and
  shrinks for ``delta_t = omega(t ** -1/4)``, so ``decay`` must be below 1/4.
- **A floor**: every arm keeps at least ``floor``: ``floor + (1 - k floor) * mixed``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

#: the designs whose unit of assignment is a product-period (or a class-period): the ones
#: whose next period's draw can take new probabilities
ADAPTIVE_DESIGNS = frozenset({"random-days", "optimal-switchback", "cluster"})
#: MAD's condition on the uniform share's decay, delta_t = omega(t^-1/4)
MAX_DECAY = 0.25
#: Monte-Carlo draws of the probability of being best under a full covariance
MC_DRAWS = 20_000
#: the fewest expected held draws a period the floor must leave every arm (docs/adaptive.md,
#: "The floor against the products and the carryover"): below one, the lab's sequences miss
#: their truths more often than the 5% target
MIN_HELD_DRAWS = 1.0
#: the expected held draws a period below which an accepted floor gets a warning (not a
#: refusal): between MIN_HELD_DRAWS and this the sequences are valid but wide; the demo sizes
#: its floor for this many (streams/live/adaptive_demo.py's HELD_CELLS is this value)
WIDE_HELD_DRAWS = 4.0


class UniformMix(BaseModel):
    """The decaying share of uniform assignment mixed into the bandit's (MAD)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Share of uniform assignment at the first adaptive period (delta_1).",
    )
    decay: float = Field(
        default=0.2,
        ge=0.0,
        lt=MAX_DECAY,
        description="delta_t = start * t ** -decay (t counts the adaptive periods from 1); "
        "below 1/4, the rate under which MAD's confidence sequence stays valid and shrinks.",
    )


class AdaptiveAllocation(BaseModel):
    """``adaptive:``: the ladder's arm probabilities follow the analysis' latest look."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: Literal["thompson", "top_two"] = Field(
        default="thompson",
        description="'thompson': each arm's share is its probability of being best; "
        "'top_two': half (``leader``) to the leader, the rest to challengers (finds the best "
        "arm faster, gives up more profit).",
    )
    metric: Literal["units", "revenue", "profit"] | None = Field(
        default=None,
        description="The metric whose best arm the allocation seeks; by default the "
        "experiment's decision metric (profit when every product has a unit cost, else revenue).",
    )
    floor: float = Field(
        default=0.05,
        ge=0.0,
        lt=0.5,
        description="Every arm's share never falls below this (below 1 / the number of arms).",
    )
    uniform_mix: UniformMix = Field(
        default_factory=UniformMix,
        description="{start, decay}: the decaying uniform share mixed in, as in Liang & "
        "Bojinov's MAD design.",
    )
    warmup: int = Field(
        default=3,
        ge=1,
        description="Periods run at the arms' allocations before the first adaptive period.",
    )
    every: int = Field(
        default=1,
        ge=1,
        description="Periods between two updates of the probabilities (an optimal "
        "switchback may update at its randomisation points only).",
    )
    leader: float = Field(
        default=0.5,
        gt=0.0,
        lt=1.0,
        description="top_two only: the probability of playing the Thompson leader.",
    )


def prob_best(
    means: Sequence[float] | np.ndarray,
    ses: Sequence[float] | np.ndarray | None = None,
    *,
    cov: np.ndarray | None = None,
    seed: int = 0,
    period: int = 0,
) -> np.ndarray:
    """P(arm a has the largest mean) when the means are normal around ``means``.

    With ``ses`` (independent arms): ``P_a = int phi(z) prod_{b != a} Phi((m_a + s_a z - m_b) /
    s_b) dz``, by adaptive quadrature (deterministic); an arm with SE 0 is a point mass. With
    ``cov``: the share of ``MC_DRAWS`` multivariate normal draws in which each arm is largest,
    the draws seeded by (``seed``, ``period``). Ties split evenly."""
    m = np.asarray(means, dtype=float)
    k = len(m)
    if k < 2 or not np.isfinite(m).all():
        raise ValueError(f"need at least 2 finite means; got {m.tolist()}")
    if cov is not None:
        c = np.asarray(cov, dtype=float)
        if c.shape != (k, k) or not np.isfinite(c).all():
            raise ValueError(f"cov must be a finite {k}x{k} matrix")
        rng = np.random.default_rng([abs(int(seed)), abs(int(period)), 57])
        draws = rng.multivariate_normal(m, c, size=MC_DRAWS, method="eigh")
        top = draws.max(axis=1, keepdims=True)
        hits = (draws == top).astype(float)
        return np.asarray(hits.sum(axis=0) / hits.sum(), dtype=float)
    if ses is None:
        raise ValueError("give ses or cov")
    # scipy here, not at the top: controller.spec imports this module, so every CLI command
    # and every controller worker would pay scipy's import (0.65 s of CPU) for a rule that
    # only the flips of adaptive ladders run
    from scipy import integrate, stats

    s = np.asarray(ses, dtype=float)
    if s.shape != m.shape or not (np.isfinite(s).all() and (s >= 0).all()):
        raise ValueError("ses must be finite, at least 0, one per mean")
    out = np.empty(k)
    for a in range(k):
        others = [b for b in range(k) if b != a]

        def beats(x: float, a: int = a, others: list[int] = others) -> float:
            # P(every other arm below x)
            p = 1.0
            for b in others:
                p *= float(stats.norm.cdf((x - m[b]) / s[b])) if s[b] > 0 else float(x > m[b])
            return p

        if s[a] == 0:
            out[a] = beats(float(m[a]))
        else:
            val, _ = integrate.quad(
                lambda z, a=a: float(stats.norm.pdf(z)) * beats(float(m[a] + s[a] * z)),
                -9.0,
                9.0,
                limit=200,
                points=[0.0],
            )
            out[a] = val
    total = out.sum()
    if not total > 0:
        return np.full(k, 1.0 / k)
    return np.asarray(out / total, dtype=float)


def top_two(p: np.ndarray, leader: float) -> np.ndarray:
    """Top-two probability sampling from the probabilities of being best ``p``: the leader with
    probability ``leader``, else a challenger in proportion to the others' probabilities."""
    p = np.asarray(p, dtype=float)
    k = len(p)
    out = leader * p.copy()
    for i in range(k):
        if p[i] == 0:
            continue
        rest = p.copy()
        rest[i] = 0.0
        total = rest.sum()
        share = rest / total if total > 0 else np.where(np.arange(k) == i, 0.0, 1.0 / (k - 1))
        out += (1.0 - leader) * p[i] * share
    return np.asarray(out / out.sum(), dtype=float)


def uniform_share(settings: AdaptiveAllocation, step: int) -> float:
    """delta_t of the ``step``-th adaptive period (1-based): ``start * step ** -decay``."""
    if step < 1:
        raise ValueError(f"adaptive periods count from 1; got {step}")
    mix = settings.uniform_mix
    return float(mix.start * step ** (-mix.decay))


def next_probabilities(
    settings: AdaptiveAllocation,
    means: Sequence[float] | np.ndarray,
    ses: Sequence[float] | np.ndarray | None = None,
    *,
    cov: np.ndarray | None = None,
    step: int,
    seed: int = 0,
) -> np.ndarray:
    """The arm probabilities of the ``step``-th adaptive period (1-based) from the latest look's
    estimates of each arm's mean of the decision metric (``ses``, or their ``cov``): the rule's
    bandit probabilities, mixed with uniform by ``delta_step``, then floored."""
    m = np.asarray(means, dtype=float)
    k = len(m)
    if settings.floor * k >= 1.0:
        raise ValueError(f"a floor of {settings.floor} leaves nothing to adapt with {k} arms")
    p = prob_best(m, ses, cov=cov, seed=seed, period=step)
    if settings.rule == "top_two":
        p = top_two(p, settings.leader)
    delta = uniform_share(settings, step)
    mixed = delta / k + (1.0 - delta) * p
    out = settings.floor + (1.0 - k * settings.floor) * mixed
    return np.asarray(out / out.sum(), dtype=float)


def update_periods(settings: AdaptiveAllocation, n_periods: int) -> list[int]:
    """The 0-based periods at whose start the probabilities change: after the warmup, every
    ``every`` periods."""
    return list(range(settings.warmup, n_periods, settings.every))


def adaptive_step(settings: AdaptiveAllocation, period: int) -> int:
    """The adaptive step (1-based) in force in 0-based ``period``; 0 during the warmup."""
    if period < settings.warmup:
        return 0
    return (period - settings.warmup) // settings.every + 1


def check_floor(settings: AdaptiveAllocation, k: int) -> str | None:
    """Why ``settings`` cannot run ``k`` arms (one clause), or None."""
    if settings.floor * k >= 1.0:
        return (
            f"floor {settings.floor} times {k} arms is {settings.floor * k:.3g}: the floors "
            "must leave some share to adapt (floor below 1 / the number of arms)"
        )
    return None


def effective_floor(settings: AdaptiveAllocation, k: int, step: int) -> float:
    """The smallest probability any arm can get in adaptive step ``step``."""
    delta = uniform_share(settings, step)
    return settings.floor + (1.0 - k * settings.floor) * delta / k


def window_draws(carryover_order: int) -> int:
    """The most fresh draws a window of ``carryover_order + 1`` periods spans (its path
    probability is the product of their probabilities): 1 without carryover; 2 with it, on the
    optimal switchback (every block is at least m periods long, so m + 1 consecutive periods
    touch at most two blocks), the only adaptive design with a carryover order."""
    if carryover_order < 0:
        raise ValueError(f"the carryover order must be at least 0; got {carryover_order}")
    return 1 if carryover_order == 0 else 2


def held_draws(units: int, lowest: float, draws: int) -> float:
    """The expected draws a period whose window held an arm of probability ``lowest`` in each
    of its ``draws`` fresh draws, among ``units`` independent units: ``units lowest^draws``."""
    return float(units * lowest**draws)


def _lowest_held(
    settings: AdaptiveAllocation, k: int, units: int, draws: int, periods: int
) -> tuple[int, float, float] | None:
    """The last period's adaptive step, the lowest probability the rule can give an arm then
    and the expected held draws a period it leaves (None: the ladder never adapts)."""
    step = adaptive_step(settings, periods - 1)
    if step < 1:
        return None  # the ladder never adapts: its draws are the allocations'
    lowest = effective_floor(settings, k, step)
    return step, lowest, held_draws(units, lowest, draws)


def check_held(
    settings: AdaptiveAllocation,
    k: int,
    units: int,
    unit: tuple[str, str],
    draws: int,
    periods: int,
) -> str | None:
    """Why the floor of ``settings`` leaves some arm fewer than :data:`MIN_HELD_DRAWS`
    expected held draws a period (one clause naming the floor that would do), or None;
    ``unit``: the draws' name, singular and plural.

    The lowest probability the rule can give an arm is the effective floor of the
    experiment's last period (its uniform share decays with the steps); a window held an arm
    with at least that to the power ``draws``, so each period keeps at least ``units lowest^
    draws`` such draws in expectation (docs/adaptive.md)."""
    found = _lowest_held(settings, k, units, draws, periods)
    if found is None or found[2] >= MIN_HELD_DRAWS:
        return None
    step, lowest, held = found
    one, many = unit
    power = f"^{draws}" if draws > 1 else ""
    each = f", once for each of the window's {draws} draws" if draws > 1 else ""
    head = (
        f"floor {settings.floor:g} leaves an arm {held:.3g} expected {many} a period whose "
        f"window held it ({units} {many} x {lowest:.3g}{power}: the lowest probability of "
        f"the last period{each}), fewer than {MIN_HELD_DRAWS:g}: a held {one} would weigh "
        f"more than all {units} together"
    )
    need = floor_for(settings, k, units, draws, step)
    if need is None:
        return f"{head}; no floor below 1/{k} reaches it: use more {many} or fewer arms"
    return f"{head}; use a floor of at least {need:g} or more {many}"


def warn_held(
    settings: AdaptiveAllocation,
    k: int,
    units: int,
    unit: tuple[str, str],
    draws: int,
    periods: int,
) -> str | None:
    """One sentence when the floor of ``settings`` is accepted (:func:`check_held`) but leaves
    some arm fewer than :data:`WIDE_HELD_DRAWS` expected held draws a period: the sequences
    are valid but wide there; it names the floor that keeps :data:`WIDE_HELD_DRAWS`. None
    otherwise (also when the floor is refused: the refusal says it)."""
    found = _lowest_held(settings, k, units, draws, periods)
    if found is None or not MIN_HELD_DRAWS <= found[2] < WIDE_HELD_DRAWS:
        return None
    step, _, held = found
    many = unit[1]
    need = floor_for(settings, k, units, draws, step, target=WIDE_HELD_DRAWS)
    fix = (
        f"a floor of {need:g} keeps {WIDE_HELD_DRAWS:g}"
        if need is not None
        else f"no floor below 1/{k} keeps {WIDE_HELD_DRAWS:g}: use more {many} or fewer arms"
    )
    return (
        f"adaptive.floor {settings.floor:g} leaves an arm {held:.3g} expected {many} a period "
        f"whose window held it, under {WIDE_HELD_DRAWS:g}: valid, but that arm's sequences "
        f'will be wide; {fix} (docs/adaptive.md, "The floor against the products and the '
        'carryover").'
    )


def floor_for(
    settings: AdaptiveAllocation,
    k: int,
    units: int,
    draws: int,
    step: int,
    target: float = MIN_HELD_DRAWS,
) -> float | None:
    """The smallest floor, in hundredths, that keeps ``target`` held draws (default
    :data:`MIN_HELD_DRAWS`) at adaptive step ``step`` (None: none below 1 / ``k``). The
    effective floor is ``f (1 - delta) + delta / k``, so ``f >= ((target / units)^(1 / draws)
    - delta / k) / (1 - delta)``."""
    delta = uniform_share(settings, step)
    need_p = (target / units) ** (1.0 / draws)
    raw = (need_p - delta / k) / (1.0 - delta) if delta < 1.0 else 0.0
    need = max(0.0, math.ceil(raw * 100 - 1e-6) / 100)
    while need * k < 1.0:  # one more hundredth when the rounding of the power falls short
        if held_draws(units, need + (1.0 - k * need) * delta / k, draws) >= target:
            return need
        need = round(need + 0.01, 2)
    return None


__all__ = [
    "ADAPTIVE_DESIGNS",
    "MAX_DECAY",
    "MIN_HELD_DRAWS",
    "WIDE_HELD_DRAWS",
    "AdaptiveAllocation",
    "UniformMix",
    "adaptive_step",
    "check_floor",
    "check_held",
    "effective_floor",
    "floor_for",
    "held_draws",
    "next_probabilities",
    "prob_best",
    "top_two",
    "uniform_share",
    "update_periods",
    "warn_held",
    "window_draws",
]
