"""The reference distribution of a standardised estimate (analysis.reference): Student's t
or the normal, as printed tables give them, and no cyclic garbage per call (a frozen scipy
distribution is a reference cycle, which an analysis worker made several of per estimate)."""

from __future__ import annotations

import gc
import math

import numpy as np
import pytest

from analysis.reference import reference


@pytest.mark.parametrize(
    ("df", "q975"),
    [(1.0, 12.7062047), (10.0, 2.2281389), (30.0, 2.0422725), (None, 1.9599640),
     (math.inf, 1.9599640)],
)  # fmt: skip
def test_the_quantiles_of_a_printed_table(df: float | None, q975: float) -> None:
    ref = reference(df)
    assert float(ref.ppf(0.975)) == pytest.approx(q975, abs=5e-7)
    # the tail and the cdf at that quantile: 2.5% and 97.5%
    assert float(ref.sf(q975)) == pytest.approx(0.025, abs=1e-7)
    assert float(ref.cdf(q975)) == pytest.approx(0.975, abs=1e-7)
    assert np.allclose(ref.ppf(np.array([0.025, 0.975])), [-q975, q975], atol=5e-7)


def test_no_cyclic_garbage_per_call() -> None:
    gc.collect()
    gc.disable()
    try:
        for df in (3.5, 7.3, None):
            ref = reference(df)
            ref.ppf(0.975), ref.sf(2.0), ref.cdf(-1.0)
        assert gc.collect() == 0
    finally:
        gc.enable()
