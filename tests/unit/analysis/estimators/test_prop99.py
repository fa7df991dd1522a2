"""California Proposition 99 (Abadie, Diamond & Hainmueller 2010; the R synthdid copy).

Published: Arkhangelsky, Athey, Hirshberg, Imbens & Wager (AER 2021), Table 1, reproduced by the
synthdid vignette "paper-results": estimate (placebo SE) DID -27.3 (17.7), SC -19.6 (9.9),
SDID -15.6 (8.4), DIFP -11.1 (9.5). The published SEs are 200 random placebo draws (R seed
12345); with one treated unit we use each of the 38 controls once, the limit of those draws,
so we ask for agreement within 25% (R-style 200-draw SEs vary by about +-15% across seeds; see
docs/analysis-core.md).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.estimators.registry import make
from analysis.panel import Panel

DATA = Path(__file__).resolve().parents[3] / "data" / "california_prop99.csv"
PUBLISHED = {"did": (-27.3, 17.7), "sc": (-19.6, 9.9), "sdid": (-15.6, 8.4), "difp": (-11.1, 9.5)}


@pytest.fixture(scope="module")
def panel() -> Panel:
    df = pd.read_csv(DATA, sep=";")
    return Panel.from_long(
        df, unit="State", time="Year", outcome="PacksPerCapita", treated="treated"
    )


@pytest.fixture(scope="module")
def results(panel: Panel) -> dict:
    return {m: make(m, se="placebo", seed=12345).fit(panel).result for m in PUBLISHED}


@pytest.mark.parametrize("method", list(PUBLISHED))
def test_point_estimate_matches_table_1(results: dict, method: str) -> None:
    assert round(results[method].effect, 1) == PUBLISHED[method][0]


@pytest.mark.parametrize("method", list(PUBLISHED))
def test_placebo_se_in_line_with_table_1(results: dict, method: str) -> None:
    se = results[method].se
    assert results[method].se_method == "placebo"
    assert abs(se / PUBLISHED[method][1] - 1) < 0.25


def test_panel_shape(panel: Panel) -> None:
    assert panel.shape == (39, 31)
    assert panel.block_structure() == (38, 19)


def test_sdid_invariances_on_prop99(panel: Panel, results: dict) -> None:
    base = results["sdid"]
    trend = panel.with_outcome(panel.Y + 2.0 * np.arange(panel.n_periods))
    scaled = panel.with_outcome(10.0 * panel.Y)
    shifted = panel.with_outcome(panel.Y + 5.0 * panel.W)
    r_trend = make("sdid", se="placebo").fit(trend).result
    r_scaled = make("sdid", se="placebo").fit(scaled).result
    r_shift = make("sdid", se="none").fit(shifted).result
    assert r_trend.effect == pytest.approx(base.effect, abs=1e-6)
    assert r_trend.se == pytest.approx(base.se, abs=1e-6)
    assert r_scaled.effect == pytest.approx(10 * base.effect, rel=1e-6)
    assert r_scaled.se == pytest.approx(10 * base.se, rel=1e-6)
    assert r_shift.effect == pytest.approx(base.effect + 5.0, abs=1e-6)


def test_trop_estimate_is_the_same_for_every_seed(panel: Panel) -> None:
    # issue #27: the placebo units that score TROP's tuning grid were drawn, and over seeds
    # 0-7 the estimate went from -13.1 to -21.0; they are fixed now (a small grid, to be quick)
    grids = {
        "lambda_time_grid": (0.0, 1.0),
        "lambda_unit_grid": (0.0, 0.5),
        "lambda_nn_grid": (math.inf,),
        "se": "none",
    }
    a, b = (make("trop", seed=s, **grids).fit(panel).result for s in (3, 6))
    assert a.details["tuning_trace"] == b.details["tuning_trace"]
    assert a.effect == b.effect
