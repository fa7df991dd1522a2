"""Frank-Wolfe on the simplex for many columns, compiled (numba).

The synthetic family's unit weights solve ``min zeta^2 ||x||^2 + ||A x - b||^2 / m`` over the
simplex with A m x n: few pre-periods (m) and many control units (n). Each of synthdid's up to
10,000 iterations needs the whole gradient. In numpy an iteration costs a dozen calls on
n-vectors, ~20 us at n = 2,500 whatever the arithmetic, and ``pricelab plan`` spent half of a
time-bound simulation there (issue #42 item 4). Compiled, an iteration is a few passes over n
floats.

The gradient is carried along the chosen vertex (as the numpy loops it replaced carried it
through a whole Gram matrix), but the Gram columns it needs are computed when a vertex is first
chosen and kept (at most ``max_cols`` of them; a vertex chosen beyond that is recomputed each
time): the n x n Gram matrix is never formed. The same iteration, line search and stopping
rule as synthdid's ``fw.step``; the gradient is refreshed from A every 2,048 iterations
against rounding drift. Each row of A and b is centred first: the residuals Ax - b are the
same for weights that sum to 1, and the line search's Gram identities do not cancel on data
with a large common level.

Imported only where a solve needs it. numba's import and the first compilation cost about a
second, and the process ~110 MB more RSS, of which ~75 MB are LLVM's library pages (shared
between processes) and ~33 MB private (~53 MB where it compiles). The compiled code is kept in
numba's cache: ``__pycache__`` beside this file where writable, else ``~/.cache/numba`` or
``NUMBA_CACHE_DIR`` (the Docker image sets one); with none writable, each process compiles.
The analysis worker loads it at its start (``analysis.worker.load_solvers``), so neither the
second nor the memory step falls on a look.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit
from numba.core.errors import NumbaWarning


def _fw_lazy_gram(
    At: np.ndarray,
    b: np.ndarray,
    eta: float,
    x0: np.ndarray,
    threshold: float,
    max_iter: int,
    max_cols: int,
) -> np.ndarray:  # pragma: no cover - compiled; tested through simplex_least_squares
    n, m = At.shape
    atb = np.zeros(n)
    for j in range(n):
        s = 0.0
        for k in range(m):
            s += At[j, k] * b[k]
        atb[j] = s
    x = x0  # simplex_fw passes a fresh copy
    slot = np.full(n, -1, dtype=np.int64)
    store = np.empty((max(max_cols, 1), n))
    used = 0
    spare = np.empty(n)
    g = np.empty(n)
    ax = np.zeros(m)
    xx = 0.0
    xatb = 0.0
    for it in range(max_iter):
        if it % 2048 == 0:  # the gradient A'(Ax - b) + eta x, afresh
            ax[:] = 0.0
            for j in range(n):
                for k in range(m):
                    ax[k] += At[j, k] * x[j]
            xx = 0.0
            xatb = 0.0
            for j in range(n):
                s = 0.0
                for k in range(m):
                    s += At[j, k] * ax[k]
                g[j] = s + eta * x[j] - atb[j]
                xx += x[j] * x[j]
                xatb += x[j] * atb[j]
        i = 0
        gi = np.inf
        gx = 0.0
        for j in range(n):
            gx += g[j] * x[j]
            if g[j] < gi:
                gi = g[j]
                i = j
        gd = gi - gx  # g . (e_i - x)
        xi = x[i]
        if slot[i] >= 0:
            col = store[slot[i]]
        else:  # the gradient at vertex e_i: A'A_i + eta e_i - A'b
            if used < max_cols:
                col = store[used]
                slot[i] = used
                used += 1
            else:
                col = spare
            for j in range(n):
                s = 0.0
                for k in range(m):
                    s += At[j, k] * At[i, k]
                col[j] = s - atb[j]
            col[i] += eta
        gii = col[i] - eta + atb[i]  # G_ii
        # ||A_i - A x||^2 = G_ii - 2 (Gx)_i + x'Gx, from the carried quantities
        derr2 = max(gii - 2.0 * (gi - eta * xi + atb[i]) + (gx - eta * xx + xatb), 0.0)
        dd = 1.0 - 2.0 * xi + xx  # ||e_i - x||^2
        denom = derr2 + eta * dd
        step = 0.0
        if denom > 0.0:
            step = min(1.0, max(0.0, -gd / denom))
        keep = 1.0 - step
        if step > 0.0:
            for j in range(n):
                x[j] *= keep
                g[j] = keep * g[j] + step * col[j]
            x[i] += step
            xx = keep * keep * xx + 2.0 * step * keep * xi + step * step
            xatb = keep * xatb + step * atb[i]
        if it >= 1 and -(2.0 * step * gd + step * step * denom) / m <= threshold:
            break
    return x


def _compile(f: Callable[..., Any]) -> Callable[..., Any]:
    """Compiled with an on-disk cache where one can be kept, else compiled per process."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", NumbaWarning)
            return njit(cache=True, nogil=True)(f)  # type: ignore[no-any-return]
    except (RuntimeError, NumbaWarning):  # no writable cache locator (a read-only install)
        return njit(nogil=True)(f)  # type: ignore[no-any-return]


fw_lazy_gram = _compile(_fw_lazy_gram)


def simplex_fw(
    A: np.ndarray, b: np.ndarray, zeta: float, x0: np.ndarray, min_decrease: float, max_iter: int,
    max_cols: int,
) -> np.ndarray:  # fmt: skip
    """Frank-Wolfe for ``min zeta^2 ||x||^2 + ||A x - b||^2 / m`` on the simplex from ``x0``;
    stops when a step lowers the objective by at most ``min_decrease**2``, or after
    ``max_iter`` steps. Keeps at most ``max_cols`` Gram columns (n floats each)."""
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2:
        raise ValueError(f"A must be m x n, not of shape {A.shape}.")
    m, n = A.shape
    b = np.asarray(b, dtype=np.float64)  # centred below: a fresh, writable C array
    x0 = np.array(x0, dtype=np.float64, order="C")  # fresh, writable: one compiled signature
    if b.shape != (m,) or x0.shape != (n,):
        raise ValueError(
            f"b must have {m} entries and x0 {n} (A is {m} x {n}); got {b.shape} and {x0.shape}."
        )
    # the objective's residuals Ax - b do not change when a constant per row is taken from A
    # and b (the weights sum to 1); centred, the Gram identities of the line search do not
    # cancel on data with a large common level
    level = A.mean(axis=1)
    At = np.array((A - level[:, None]).T, order="C")
    return fw_lazy_gram(  # type: ignore[no-any-return]
        At, b - level, float(m * zeta**2), x0, float(min_decrease**2), int(max_iter), int(max_cols)
    )


def warm() -> None:
    """Load (or compile) the solver now: one solve of a two-column problem."""
    simplex_fw(np.eye(2), np.array([1.0, 0.0]), 0.1, np.full(2, 0.5), 0.0, 2, 2)
