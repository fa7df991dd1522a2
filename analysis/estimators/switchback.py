"""Switchback experiments: the Horvitz-Thompson lag-p estimator of Bojinov, Simchi-Levi & Zhao,
"Design and analysis of switchback experiments", Management Science 69(7), 2023.

Setting: each unit (product) is a time series whose assignment switches at randomisation
points; between two points the assignment stays as drawn. Assumption: no carryover beyond m
periods - the outcome at t depends only on the assignments at t-m..t - and no interference
between units.

Estimand (lag p): the average over periods t = p..T-1 (0-based) and units of
Y_it(p+1 consecutive treated) - Y_it(p+1 consecutive control). When p = m it is the effect of
keeping the treatment on versus off. Estimator: a period contributes Y_it / pi1_it when its
last p+1 assignments are all treated and -Y_it / pi0_it when all are control, with pi the
design probability of that event (a product of the coins of the randomisation blocks the
window spans). Unbiased for p >= m under the design; biased when p < m because the window
misses assignments that still move the outcome (shown by `python -m lab.studies advanced`).

Inference, both design-based (the outcomes are fixed, the assignment is random):

- conservative variance: the exact variance of the HT sum is a sum over pairs of periods whose
  windows share a randomisation block; the terms that involve Y(1) and Y(0) of the same pair are
  never observed together and are bounded with 2ab <= a^2 + b^2 (Aronow & Samii 2017), the rest
  are estimated unbiasedly by HT. Units are independent, so the unit bounds add up. This plays
  the role of the paper's block-sum upper bound and is valid for any randomisation points.
- exact randomisation test of the sharp null of no effect: redraw assignment paths from the
  design, recompute the estimate with the observed outcomes, two-sided Fisher p-value.

The randomisation points are the design's (``controller.designs.optimal_switchback`` builds the
paper's minimax-optimal points; the analysis worker receives them with the design's estimators).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from analysis.errors import AnalysisError, InferenceError, PanelError
from analysis.estimators.base import PanelEstimator
from analysis.estimators.sums import (
    ArmSums,
    MeansPartial,
    SumPartial,
    partials_sharing,
    same_cells,
)
from analysis.panel import Panel
from analysis.results import EstimateResult
from analysis.seeding import seeded_rng
from core.errors import kept

#: cells per chunk of units in the fit (a chunk's ~20 N x T temporaries: ~160 MB at most)
_CHUNK_CELLS = 1 << 20


def _blocks(points: np.ndarray) -> np.ndarray:
    """Block index of each period from a boolean N x T matrix of randomisation points."""
    return np.cumsum(points, axis=1) - 1


def _window_probs(
    block: np.ndarray, q: np.ndarray, p: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For t >= p: first/last block of the window [t-p, t] and cumulative log-probabilities.

    Returns lo, hi (N x T-p), C1, C0 (N x n_blocks+1 cumulative sums of log q and log 1-q) and
    pi1, pi0 of each window.
    """
    N, T = block.shape
    lo = block[:, : T - p]
    hi = block[:, p:]
    with np.errstate(divide="ignore"):
        l1, l0 = np.log(q), np.log1p(-q)
    C1 = np.concatenate([np.zeros((N, 1)), np.cumsum(l1, axis=1)], axis=1)
    C0 = np.concatenate([np.zeros((N, 1)), np.cumsum(l0, axis=1)], axis=1)
    pi1 = np.exp(_along(C1, hi + 1) - _along(C1, lo))
    pi0 = np.exp(_along(C0, hi + 1) - _along(C0, lo))
    return lo, hi, C1, C0, pi1, pi0


def _along(C: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``np.take_along_axis(C, idx, 1)`` as one flat take: the same values, without the 2-D
    fancy index (about 3x faster on an N x T index)."""
    rows = np.arange(C.shape[0], dtype=np.intp)[:, None] * C.shape[1]
    return np.take(C.ravel(), idx + rows)


def _all_equal_windows(W: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """(all treated, all control) over [t-p, t] for t >= p."""
    c = np.concatenate([np.zeros((W.shape[0], 1)), np.cumsum(W, axis=1)], axis=1)
    s = c[:, p + 1 :] - c[:, : W.shape[1] - p]
    return s == p + 1, s == 0


def _ht_contributions(
    Y: np.ndarray, W: np.ndarray, pi1: np.ndarray, pi0: np.ndarray, p: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    A1, A0 = _all_equal_windows(W, p)
    Yt = Y[:, p:]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(A1, Yt / pi1, 0.0) - np.where(A0, Yt / pi0, 0.0)
    return x, A1, A0


@dataclass(frozen=True)
class _HTCells:
    """What the HT sum's partial over cells (lag 0, a draw every period) makes of a part before
    its outcome: the usable cells, each arm's cells, each cell's arm probability, the counts."""

    keep: np.ndarray
    W: np.ndarray
    not_w: np.ndarray
    pi: np.ndarray
    n: int
    n1: int


class SwitchbackHTEstimator(PanelEstimator):
    """Horvitz-Thompson lag-p switchback estimator (Bojinov, Simchi-Levi & Zhao 2023).

    Parameters
    ----------
    p : lag order; set it to the carryover order m you are willing to assume.
    randomization_points : where the design drew assignments. ``None``: every period (random
        days); a sequence of 0-based period indices shared by all units; or an N x T boolean
        matrix (per unit). Period 0 is always a randomisation point.
    point_periods : the sequence names periods by the panel's period labels, as a design's
        schedule does (the live worker's plans): periods that hold no usable cell at all (an
        hour the spring-forward night skips) are left out, a point on a period the panel does
        not have starts its block at the next one it has, and points after the panel's last
        period are for later looks (a running estimate sees the first periods only).
    probability : P(W = 1) of every coin when the panel carries no ``probability`` matrix.
    n_draws : assignment redraws for the randomisation test (``se='randomization'``).
    se : ``None`` or "clt" (conservative variance bound), "randomization" (bound as SE plus the
        exact Fisher p-value), "none".
    """

    name = "ht"

    def __init__(
        self,
        p: int = 0,
        *,
        randomization_points: Sequence[int] | np.ndarray | None = None,
        point_periods: bool = False,
        probability: float | None = None,
        n_draws: int = 1000,
        se: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.p = p
        self.randomization_points = randomization_points
        self.point_periods = point_periods
        self.probability = probability
        self.n_draws = n_draws
        self.se = se
        self.seed = seed

    # ------------------------------------------------------------------ design
    def _by_period(
        self, panel: Panel, periods: np.ndarray | None = None
    ) -> tuple[Panel, np.ndarray | None]:
        """With ``point_periods``: the panel without its periods that hold no usable cell (or,
        given ``periods``, without those not in it: a part of the panel keeps the periods the
        whole keeps), and the points as positions in it (see the class docstring)."""
        rp = self.randomization_points
        if not self.point_periods or rp is None:
            return panel, None if rp is None else np.asarray(rp)
        labels = np.asarray(rp)
        if labels.ndim != 1:
            raise PanelError("point_periods needs randomization_points as a list of periods.")
        keep = panel.usable.any(axis=0) if periods is None else np.isin(panel.times, periods)
        times = np.asarray(panel.times)[keep]
        try:
            pos = np.searchsorted(times, labels, side="left")
        except TypeError:
            raise PanelError(
                "point_periods needs the panel's periods to be ordered like the points."
            ) from None
        kept = replace(
            panel,
            Y=panel.Y[:, keep],
            W=panel.W[:, keep],
            times=times,
            blackout=panel.blackout[:, keep],
            probability=None if panel.probability is None else panel.probability[:, keep],
        )
        return kept, np.unique(pos[pos < len(times)])

    def _design(self, panel: Panel, rp: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(points N x T bool, coin probability per block N x n_blocks)."""
        N, T = panel.shape
        if rp is None:  # a draw every period
            points = np.broadcast_to(np.True_, (N, T))
        else:
            arr = np.asarray(rp)
            if arr.ndim == 2:
                if arr.shape != (N, T):
                    raise PanelError(f"randomization_points must be {N}x{T}; got {arr.shape}.")
                points = arr.astype(bool).copy()
            else:
                idx = arr.astype(int)
                if idx.size and (idx.min() < 0 or idx.max() >= T):
                    raise PanelError(f"randomization_points must lie in 0..{T - 1}.")
                points = np.zeros((N, T), dtype=bool)
                points[:, idx] = True
            points[:, 0] = True
        if panel.probability is not None:
            P = panel.probability
        elif self.probability is not None:
            if not 0.0 < self.probability < 1.0:
                raise PanelError("probability must be strictly between 0 and 1.")
            P = np.full((N, T), float(self.probability))
        else:
            raise PanelError(
                "The HT switchback estimator needs the design's assignment probabilities: "
                "give the panel a probability column, or one probability for every cell "
                "(pricelab analyze --probability 0.5; probability=0.5 in Python)."
            )
        if rp is None:  # a draw every period: each period is its own block, its coin P
            return points, self._coins(panel, P, None)
        block = _blocks(points)
        n_blocks = int(block.max()) + 1
        q = np.full((N, n_blocks), 0.5)
        # probability of each block's coin, read at the block's first period
        rows, cols = np.nonzero(points)
        coin = self._coins(panel, P, points)[rows, cols]
        q[rows, block[rows, cols]] = coin
        # units with fewer blocks: pad with 0.5 (never used by their windows)
        W = panel.W
        # the assignment must stay constant between points
        inconsistent = (~points[:, 1:] & (W[:, 1:] != W[:, :-1])).any(axis=1)
        if inconsistent.any():
            i = int(np.argmax(inconsistent))
            raise PanelError(
                f"Unit {panel.units[i]!r} switches treatment between randomisation points; "
                "the randomization_points do not match the assignment."
            )
        return points, q

    @staticmethod
    def _coins(panel: Panel, P: np.ndarray, points: np.ndarray | None) -> np.ndarray:
        """``P``, refused where a randomisation point's coin (every cell's, without
        ``points``) is not strictly between 0 and 1 (the first such cell in row-major order is
        named)."""
        bad = (P <= 0.0) | (P >= 1.0)
        if points is not None:
            bad &= points
        if bad.any():
            i, t = np.argwhere(bad)[0]
            raise PanelError(
                f"Unit {panel.units[i]!r} has assignment probability {P[i, t]} at "
                f"randomisation period {panel.times[t]!r}; the HT estimator needs "
                "0 < P(W=1) < 1 at every randomisation point (drop deterministic units)."
            )
        return P

    # ------------------------------------------------------------------ fit
    _SE: tuple[str, ...] = ("clt", "randomization", "none")

    def _prepare(
        self, panel: Panel, periods: np.ndarray | None = None
    ) -> tuple[Panel, int, np.ndarray, np.ndarray]:
        """The checks and the design both forms share: (panel by period, p, points, q)."""
        if self.se not in (None, *self._SE):
            names = ", ".join(f"se={m!r}" for m in self._SE)
            raise InferenceError(
                f"The {self.name} switchback estimator supports {names}, not {self.se!r}."
            )
        panel, rp = self._by_period(panel, periods)
        T = panel.shape[1]
        p = int(self.p)
        if p < 0 or p >= T:
            raise PanelError(f"The lag p must be in 0..{T - 1}; got {p}.")
        points, q = self._design(panel, rp)
        return panel, p, points, q

    # ------------------------------------------------------------------ in parts
    def period_additive(self) -> bool:
        """Whether parts split by periods add up: lag 0 and a draw every period (random days),
        where every cell is its own window and block."""
        return int(self.p) == 0 and self.randomization_points is None

    def chunkable(self) -> str | None:
        """None when the estimate can be fitted from chunks of products (units are independent:
        their sums and variance bounds add up); else why not."""
        if self.se == "randomization":
            return "its randomisation test redraws the whole panel's assignments"
        rp = self.randomization_points
        if rp is not None and np.asarray(rp).ndim == 2:
            return "its randomisation points are given per unit"
        return None

    def _settings(self) -> tuple[object, ...]:
        rp = self.randomization_points
        points = None if rp is None else tuple(np.asarray(rp).ravel().tolist())
        return (self.name, int(self.p), points, self.point_periods, self.probability, self.se)

    def partial(self, panel: Panel, periods: np.ndarray | None = None) -> SumPartial:
        """The sufficient statistics of some of the panel's units (or, where
        :meth:`period_additive`, some of its periods): the contributions' and the variance
        bound's sums. ``periods``: the periods the whole panel keeps (``point_periods``)."""
        return self._partial(*self._prepare(panel, periods))

    def _partial(self, panel: Panel, p: int, points: np.ndarray, q: np.ndarray) -> SumPartial:
        if p == 0 and self.randomization_points is None:
            return self._partial_cells(panel, q)
        N, T = panel.shape
        # units are independent (their contributions and their variance bounds add up), so
        # the sums run over chunks of units: the N x T temporaries stay small (a 100,000 x 90
        # panel peaked at 1.25 GB unchunked) and in cache
        x_sum, bound, n, n1, n0 = 0.0, 0.0, 0, 0, 0
        rows = max(1, _CHUNK_CELLS // T)
        for a in range(0, N, rows):
            s = slice(a, a + rows)
            lo, hi, C1, C0, pi1, pi0 = _window_probs(_blocks(points[s]), q[s], p)
            usable = panel.usable[s]
            keep = usable[:, p:]
            Y = np.where(usable, panel.Y[s], 0.0)
            x, A1, A0 = _ht_contributions(Y, panel.W[s], pi1, pi0, p)
            x_sum += float(x[keep].sum())
            bound += self._variance_bound(Y[:, p:], keep, A1, A0, lo, hi, C1, C0, pi1, pi0)
            n += int(keep.sum())
            n1 += int((A1 & keep).sum())
            n0 += int((A0 & keep).sum())
        return SumPartial(
            x_sum, bound, n, n1, n0, N, np.asarray(panel.times), self._settings(),
            self.period_additive(),
        )  # fmt: skip

    def partials(self, panels: Mapping[str, Panel]) -> dict[str, SumPartial | Exception]:
        """:meth:`partial` of each of one part's metrics (``panels``); with lag 0 and a draw
        every period, each cell's arm probability and the counts made once
        (``analysis.estimators.sums.partials_sharing``)."""
        if not self.period_additive():  # the windows' sums: each metric's own
            return partials_sharing(
                lambda panel: None, lambda _, panel: self.partial(panel), panels
            )
        return partials_sharing(self._cells_of, self._cells_partial, panels)

    def _cells_of(self, panel: Panel) -> _HTCells:
        panel, _, _, q = self._prepare(panel)
        return self._cells(panel, q)

    @staticmethod
    def _cells(panel: Panel, q: np.ndarray) -> _HTCells:
        keep, W = panel.usable, panel.W
        not_w = ~W
        pi = np.subtract(1.0, q, where=not_w, out=np.array(q, dtype=float))  # each cell's arm's
        return _HTCells(keep, W, not_w, pi, int(keep.sum()), int((keep & W).sum()))

    def _partial_cells(self, panel: Panel, q: np.ndarray) -> SumPartial:
        """Lag 0 and a draw every period (random days): every cell is its own window and
        block, so its contribution is ``+-Y / pi`` of its arm's probability, and the bound's
        terms of a cell, ``(Y / pi)^2 (1 - pi)`` for itself and ``Y^2 / pi`` for its half-square
        cross terms, add up to ``(Y / pi)^2``: what the windows' general sums give, without
        their N x T temporaries (equal to 1e-12: tests/unit/analysis/estimators/test_sums.py)."""
        return self._cells_partial(self._cells(panel, q), panel)

    def _cells_partial(self, cells: _HTCells, panel: Panel) -> SumPartial:
        N, T = panel.shape
        z = np.zeros(panel.shape)
        np.divide(panel.Y, cells.pi, out=z, where=cells.keep)
        x_sum = float(np.sum(z, where=cells.W)) - float(np.sum(z, where=cells.not_w))
        n, n1 = cells.n, cells.n1
        return SumPartial(
            x_sum, float(np.einsum("ij,ij->", z, z)), n, n1, n - n1,
            N, np.asarray(panel.times), self._settings(), self.period_additive(),
        )  # fmt: skip

    def finish(self, part: SumPartial) -> EstimateResult:
        """The estimate from the merged partials of the whole panel."""
        p = int(self.p)
        if part.n == 0:
            raise PanelError("No usable period after the first p periods.")
        # a path with no all-treated (or all-control) window still gives the HT value (its
        # missing side contributes 0); refusing it would break unbiasedness over the design
        tau = part.x_sum / part.n
        var = part.bound / part.n**2
        method = self.se or "clt"
        se = float(np.sqrt(max(var, 0.0))) if method != "none" else float("nan")
        return EstimateResult(
            method=self.name,
            effect=tau,
            se=se,
            n_units=part.all_units,
            n_periods=len(part.seen) - p,
            se_method=method,
            n_cells=part.n,
            details={
                "p": p,
                "n_all_treated_windows": part.n1,
                "n_all_control_windows": part.n0,
                "randomization_null_sd": None,
                "n_draws": 0,
            },
        )

    def _fit(self, panel: Panel) -> EstimateResult:
        panel, p, points, q = self._prepare(panel)
        result = self.finish(self._partial(panel, p, points, q))
        if (self.se or "clt") != "randomization":
            return result
        n = int(result.n_cells or 0)
        usable = panel.usable
        Y = np.where(usable, panel.Y, 0.0)
        keep = usable[:, p:]
        draws = self._null_draws(panel, points, q, Y, keep, n, p)
        # the observed statistic summed as the draws are (whole panel, not by chunks), so
        # a draw of the observed path ties with it exactly
        _, _, _, _, pi1, pi0 = _window_probs(_blocks(points), q, p)
        observed = float(_ht_contributions(Y, panel.W, pi1, pi0, p)[0][keep].sum() / n)
        pval = float((1 + np.sum(np.abs(draws) >= abs(observed) - 1e-12)) / (1 + len(draws)))
        details = dict(result.details) | {
            "randomization_null_sd": float(np.std(draws, ddof=1)),
            "n_draws": self.n_draws,
        }
        return replace(result, pvalue_randomization=pval, details=details)

    @staticmethod
    def _variance_bound(
        Yt: np.ndarray,
        keep: np.ndarray,
        A1: np.ndarray,
        A0: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        C1: np.ndarray,
        C0: np.ndarray,
        pi1: np.ndarray,
        pi0: np.ndarray,
    ) -> float:
        """Sum over units of the conservative bound on Var(sum_t contribution_t).

        Windows t <= u overlap when they share a block: blocks never decrease over time, so
        that is ``lo_u <= hi_t``, and the windows at distance d = u - t overlap less as d
        grows. The bound is therefore summed over the band of distances at which some window
        pair overlaps (one N x T slice per distance), not over all T x T pairs: a design that
        redraws every period (random days, p = 0) has a band of one.
        """
        with np.errstate(divide="ignore", invalid="ignore"):
            g = Yt**2 * (np.where(A1, 1.0 / pi1, 0.0) + np.where(A0, 1.0 / pi0, 0.0))
            y1 = np.where(A1 & keep, Yt / pi1, 0.0)
            y0 = np.where(A0 & keep, Yt / pi0, 0.0)
        g = np.where(keep, g, 0.0)
        m = lo.shape[1]
        deg = np.zeros(g.shape)  # overlapping usable windows of each window
        total = 0.0
        for d in range(m):
            if d == 0:  # a window with itself: the shared stretch is the window, cap = pi
                ov = np.ones(lo.shape, dtype=bool)
                w1, w0 = 1.0 - pi1, 1.0 - pi0
            else:
                ov = lo[:, d:] <= hi[:, : m - d]  # windows t and t + d share a block
                if not ov.any():
                    break
                # the shared stretch runs from the later window's first block to the earlier's
                # last; pairs that share no block get indices (0, 0): exp(0), not an overflow
                ilo, ihi = np.where(ov, lo[:, d:], 0), np.where(ov, hi[:, : m - d], 0)
                cap1 = np.exp(_along(C1, ihi + 1) - _along(C1, ilo))
                cap0 = np.exp(_along(C0, ihi + 1) - _along(C0, ilo))
                w1, w0 = np.where(ov, 1.0 - cap1, 0.0), np.where(ov, 1.0 - cap0, 0.0)
            # both windows all treated: E-unbiased estimate of Y1 Y1' (1/pi1_cap - 1)
            t1 = float((y1[:, : m - d] * w1 * y1[:, d:]).sum())
            t0 = float((y0[:, : m - d] * w0 * y0[:, d:]).sum())
            total += (t1 + t0) * (1.0 if d == 0 else 2.0)  # (t, u) and (u, t)
            deg[:, : m - d] += ov & keep[:, d:]
            if d:
                deg[:, d:] += ov & keep[:, : m - d]
        # cross terms bounded by half-squares: each period counted once per overlapping window
        return total + float((g * deg).sum())

    def _null_draws(
        self,
        panel: Panel,
        points: np.ndarray,
        q: np.ndarray,
        Y: np.ndarray,
        keep: np.ndarray,
        n: int,
        p: int,
    ) -> np.ndarray:
        rng = seeded_rng(self.seed)
        block = _blocks(points)
        _, _, _, _, pi1, pi0 = _window_probs(block, q, p)
        out = np.empty(self.n_draws)
        rows = np.arange(q.shape[0])[:, None]
        for d in range(self.n_draws):
            coins = rng.random(q.shape) < q
            Wd = coins[rows, block]
            x, _, _ = _ht_contributions(Y, Wd, pi1, pi0, p)
            out[d] = x[keep].sum() / n
        return out


class SwitchbackHajekEstimator(SwitchbackHTEstimator):
    """Hajek (self-normalised) lag-p switchback estimator, clustered by unit.

    The same windows and window probabilities as :class:`SwitchbackHTEstimator`: a cell at t
    counts for the treated (control) arm when its unit was treated (in control) over all of
    ``[t-p, t]``, weighted by one over the probability of that path. Each arm's weighted sums are
    divided by the arm's total weight instead of the cell count, so the estimate is
    ``mean1 - mean0`` of two weighted means: it does not move when every outcome is shifted by a
    constant, and it does not carry the units' levels into its variance as the HT sum does.

    Under carryover of order at most p it estimates the lag-p effect (always treated against
    never treated), as HT does, with the ratio's usual O(1/n) bias; a plain difference in means
    compares the current arm only and mixes in the other arm's carryover (measured in
    docs/validation.md: with a two-period carryover it covered 9% of runs).

    Variance: units draw their coins independently, so the linearised ratio is clustered by
    unit (CR1 with ``G / (G - 1)``) and referred to t with G - 1 degrees of freedom. The arms'
    means and their covariance are in ``details`` (the relative form).
    """

    name = "hajek"
    _SE: tuple[str, ...] = ("cluster", "none")

    def partial(self, panel: Panel, periods: np.ndarray | None = None) -> MeansPartial:  # type: ignore[override]
        """Per unit: the weight and weighted outcome of each arm's windows (one pass, in
        chunks of units), as :class:`~analysis.estimators.sums.ArmSums` keyed by unit."""
        prepared = self._prepare(panel, periods)
        return self._weighted(prepared, [prepared[0].Y])[0]

    def partials(self, panels: Mapping[str, Panel]) -> dict[str, MeansPartial | Exception]:  # type: ignore[override]
        """:meth:`partial` of each of one part's metrics (``panels``), the windows and their
        weights made once (every period kept: without ``randomization_points``)."""
        first = next(iter(panels.values()), None)
        if first is None or self.randomization_points is not None or not same_cells(panels):
            return partials_sharing(lambda _: None, lambda _, panel: self.partial(panel), panels)
        try:
            prepared = self._prepare(first)
        except (AnalysisError, ValueError) as exc:
            return dict.fromkeys(panels, kept(exc))
        got = self._weighted(prepared, [p.Y for p in panels.values()])
        return dict(zip(panels, got, strict=True))

    def _weighted(
        self, prepared: tuple[Panel, int, np.ndarray, np.ndarray], outcomes: Sequence[np.ndarray]
    ) -> list[MeansPartial]:
        """Each outcome's partial on the prepared panel's windows (the weights made once)."""
        panel, p, points, q = prepared
        N, T = panel.shape
        b1, b0 = np.zeros(N), np.zeros(N)
        a1 = [np.zeros(N) for _ in outcomes]
        a0 = [np.zeros(N) for _ in outcomes]
        n = 0
        rows = max(1, _CHUNK_CELLS // T)
        for a in range(0, N, rows):
            s = slice(a, a + rows)
            _, _, _, _, pi1, pi0 = _window_probs(_blocks(points[s]), q[s], p)
            usable = panel.usable[s]
            keep = usable[:, p:]
            A1, A0 = _all_equal_windows(panel.W[s], p)
            with np.errstate(divide="ignore", invalid="ignore"):
                w1 = np.where(A1 & keep, 1.0 / pi1, 0.0)
                w0 = np.where(A0 & keep, 1.0 / pi0, 0.0)
            b1[s], b0[s] = w1.sum(axis=1), w0.sum(axis=1)
            for Yall, s1, s0 in zip(outcomes, a1, a0, strict=True):
                Y = np.where(usable, Yall[s], 0.0)[:, p:]
                s1[s], s0[s] = (w1 * Y).sum(axis=1), (w0 * Y).sum(axis=1)
            n += int(((A1 | A0) & keep).sum())
        times = np.asarray(panel.times)
        return [
            MeansPartial(
                ArmSums.of(np.asarray(panel.units), b1, b0, s1, s0),
                units=None,
                periods=times,
                cells=n,
                settings=self._settings(),
                period_additive=self.period_additive(),
                all_units=N,
                seen=times,
            )
            for s1, s0 in zip(a1, a0, strict=True)
        ]

    def finish(self, part: MeansPartial) -> EstimateResult:  # type: ignore[override]
        """The weighted means' difference from the merged partials, clustered by unit."""
        p = int(self.p)
        sums = part.sums
        S1, S0 = sums.totals
        if S1 <= 0.0 or S0 <= 0.0:
            raise PanelError(
                f"No unit was {'treated' if S1 <= 0.0 else 'in control'} over a whole window of "
                f"{p + 1} period(s) yet; the Hajek estimate needs both arms."
            )
        m1, m0 = sums.means()
        G = sums.G
        se, df = float("nan"), None
        cov = (float("nan"),) * 3
        if G >= 2 and self.se != "none":
            cov, df = sums.cr1()
            v11, v00, v10 = cov
            se = float(np.sqrt(max(v11 + v00 - 2.0 * v10, 0.0)))
        details: dict[str, object] = {
            "p": p,
            "clusters": G,
            "mean_treated": m1,
            "mean_control": m0,
        }
        if df is not None:
            details["mean_covariance"] = cov
        assert part.seen is not None
        return EstimateResult(
            method=self.name,
            effect=m1 - m0,
            se=se,
            n_units=part.all_units,
            n_periods=len(part.seen) - p,
            se_method="none" if self.se == "none" else "cluster",
            n_cells=part.cells,
            df=df,
            details=details,
        )

    def _fit(self, panel: Panel) -> EstimateResult:
        return self.finish(self.partial(panel))
