"""The reference distribution of a standardised estimate, ``(effect - truth) / se``: Student's
t with ``df`` degrees of freedom, or the standard normal when ``df`` is None or infinite.

scipy's own distributions are called with ``df`` each time, not frozen: ``stats.t(df)`` builds
a new distribution object per call (about 0.5 ms, against 0.04 ms for ``stats.t.ppf(q, df)``),
and that object refers to itself through its vectorised methods, so each one is cyclic
garbage that waits for a full collection. An analysis worker asks for a reference several
times per published estimate, at every look (the soak's census of its cyclic garbage: 326
distribution objects, and 1,304 ``numpy.vectorize`` of theirs, every 30 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scipy import stats


@dataclass(frozen=True)
class Reference:
    """t(``df``), or the standard normal (``df`` None or infinite); ``ppf``, ``sf`` and
    ``cdf`` as scipy's, for scalars and arrays alike."""

    df: float | None = None

    @property
    def normal(self) -> bool:
        return self.df is None or not math.isfinite(self.df)

    def ppf(self, q: Any) -> Any:
        return stats.norm.ppf(q) if self.normal else stats.t.ppf(q, self.df)

    def sf(self, x: Any) -> Any:
        return stats.norm.sf(x) if self.normal else stats.t.sf(x, self.df)

    def cdf(self, x: Any) -> Any:
        return stats.norm.cdf(x) if self.normal else stats.t.cdf(x, self.df)


def reference(df: float | None) -> Reference:
    """The reference distribution for ``df`` (see the module)."""
    return Reference(df)
