"""Time the core panel estimators on 1,000 units x 100 periods, against a reference if installed.

Panel: the factor-model DGP of analysis.pricing_dgp.factor_panel with 1,000 units (20 treated) and 100
periods (80 pre), seed 0. Timed: the point estimate (``se="none"``) of did, sc, difp and sdid
through the public estimator API (panel validation and sorting included), and, in the same
process, the same computation on the sorted outcome matrix (``fit_block``, no panel checks),
and the matching functions of the PyPI package ``synthdid-py`` (a port of the R reference
``synthdid``; install it into .venv with ``pip install --no-deps synthdid-py==0.1.0``; it is not a
project dependency) on the same matrix. Each timing is repeated ``--repeat`` times (default 3) and
the median is printed with the ratio reference/ours and the difference of the estimates. Each
timed fit of ours solves its weights afresh (the remembered solves are forgotten before it),
after one untimed fit that loads the compiled solver.
``--placebo`` also times a 200-draw placebo SE for sdid once (ours only: the reference would
take about 200 times its point-estimate time).

``--subdaily`` instead times what the time-bound design's sub-daily `sdid` costs the analysis
worker: on the simulated market's time-bound experiment at PT4H over 14 days (84 periods, half
of each category treated from the middle; ``--products`` of them), `sdid` with the variance it
publishes there (``se="auto_bootstrap"``: 200 bootstrap replicates, each re-estimating the
weights) against the daily default (the jackknife, weights held fixed), interleaved in one
process (after a warm-up, alternating the order, the remembered weight solves forgotten before
each fit, as on a look at new data), medians and their ratio.

    .venv/bin/python benchmarks/bench_estimators_core.py [--repeat 3] [--placebo]
    .venv/bin/python benchmarks/bench_estimators_core.py --subdaily [--products 200,1000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.estimators.did import block_did  # noqa: E402
from analysis.estimators.registry import make  # noqa: E402
from analysis.estimators.synth import (  # noqa: E402
    SyntheticControl,
    SyntheticControlIntercept,
    SyntheticDID,
    fit_block,
)
from analysis.pricing_dgp import factor_panel  # noqa: E402
from benchmarks._common import median_time  # noqa: E402

N, T, N1, T0 = 1000, 100, 20, 80


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--placebo", action="store_true")
    ap.add_argument("--placebo-repeat", type=int, default=1)
    ap.add_argument("--subdaily", action="store_true", help="time sdid's sub-daily variance")
    ap.add_argument("--products", default="200,1000", help="market sizes for --subdaily")
    args = ap.parse_args()
    if args.subdaily:
        subdaily(args.repeat, [int(n) for n in args.products.split(",")])
        return

    panel = factor_panel(0, n_units=N, n_periods=T, n_treated=N1, n_pre=T0, tau=1.0)
    Y = panel.sorted_for_block().Y
    try:
        import synthdid as ref  # synthdid-py

        reference: dict[str, Callable[[], float]] = {
            "did": lambda: float(ref.did_estimate(Y, N - N1, T0)),
            "sc": lambda: float(ref.sc_estimate(Y, N - N1, T0)),
            "difp": lambda: float(
                ref.synthdid_estimate(
                    Y, N - N1, T0, weights={"lambda": np.full(T0, 1.0 / T0)}, eta_omega=1e-6
                )
            ),
            "sdid": lambda: float(ref.synthdid_estimate(Y, N - N1, T0)),
        }
    except ImportError:
        reference = {}

    print(
        f"panel {N} units x {T} periods, {N1} treated, {T0} pre-periods; "
        f"median of {args.repeat} runs"
    )
    core: dict[str, Callable[[], float]] = {
        "did": lambda: block_did(Y, N - N1, T0),
        "sc": lambda: fit_block(Y, N - N1, T0, SyntheticControl.spec).tau,
        "difp": lambda: fit_block(Y, N - N1, T0, SyntheticControlIntercept.spec).tau,
        "sdid": lambda: fit_block(Y, N - N1, T0, SyntheticDID.spec).tau,
    }
    print(
        "| method | ours, API (s) | ours, core on matrix (s) | synthdid-py (s) "
        "| ratio ref/ours-core | estimate | |diff| |"
    )
    print("|---|---|---|---|---|---|---|")
    from analysis.estimators import synth as synth_module

    def afresh(fn: Callable[[], float]) -> Callable[[], float]:
        """``fn`` with the remembered weight solves forgotten first: each timed fit solves."""

        def run() -> float:
            synth_module._SOLVED.clear()
            return fn()

        return run

    core["sdid"]()  # warm-up, not timed: the compiled solver's load (or compilation)
    for name in ("did", "sc", "difp", "sdid"):
        ours_t, ours_v = median_time(
            afresh(lambda name=name: make(name, se="none").fit(panel).result.effect), args.repeat
        )
        core_t, _ = median_time(afresh(core[name]), args.repeat)
        if name in reference:
            ref_t, ref_v = median_time(reference[name], args.repeat)
            print(
                f"| {name} | {ours_t:.4f} | {core_t:.4f} | {ref_t:.4f} | "
                f"{ref_t / core_t:.1f} | {ours_v:.4f} | {abs(ours_v - ref_v):.1e} |"
            )
        else:
            print(f"| {name} | {ours_t:.4f} | {core_t:.4f} | - | - | {ours_v:.4f} | - |")
    if args.placebo:
        t, v = median_time(
            lambda: make("sdid", se="placebo", seed=1).fit(panel).result.se, args.placebo_repeat
        )
        print(f"sdid with 200-draw placebo SE: {t:.2f} s (se {v:.4f})")


def subdaily(repeat: int, sizes: list[int]) -> None:
    """sdid at PT4H: the bootstrap the time-bound design publishes against the jackknife."""
    from datetime import timedelta

    from analysis.estimators import synth as synth_module
    from analysis.worker import panel_from_cells
    from lab.compare import make_spec
    from lab.config import MarketConfig
    from lab.market import Market
    from lab.simulate import run_spec

    print(f"time-bound at PT4H, 14 days (84 periods); medians of {repeat}, interleaved")
    print("| products | jackknife (s) | auto_bootstrap (s) | ratio | SE jackknife | SE bootstrap |")
    print("|---|---|---|---|---|---|")
    for n in sizes:
        market = Market(MarketConfig(n_products=n), seed=0, demand_seed=1)
        spec = make_spec("time-bound", market, days=14, seed=2, period=timedelta(hours=4))
        p = panel_from_cells(run_spec(spec, market).panel, "units")
        times: dict[str, list[float]] = {"jackknife": [], "auto_bootstrap": []}
        ses: dict[str, float] = {}
        expect = {"jackknife": "jackknife", "auto_bootstrap": "bootstrap"}
        for se in times:  # warm-up (imports, first-call costs), not timed
            method = make("sdid", se=se, seed=0).fit(p).result.se_method
            if method != expect[se]:
                raise SystemExit(f"{se} ran {method!r} on this panel, not {expect[se]!r}")
        for i in range(repeat):
            for se in list(times)[:: 1 if i % 2 == 0 else -1]:  # alternate the order
                # a look on new data solves its weights afresh: forget the remembered solves
                synth_module._SOLVED.clear()
                t = time.perf_counter()
                ses[se] = make("sdid", se=se, seed=0).fit(p).result.se
                times[se].append(time.perf_counter() - t)
        jk, bs = (statistics.median(times[k]) for k in ("jackknife", "auto_bootstrap"))
        print(
            f"| {n} | {jk:.2f} | {bs:.2f} | {bs / jk:.0f} | {ses['jackknife']:.4f} "
            f"| {ses['auto_bootstrap']:.4f} |"
        )


if __name__ == "__main__":
    main()
