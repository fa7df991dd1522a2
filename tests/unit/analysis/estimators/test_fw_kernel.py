"""The compiled Frank-Wolfe solver against a plain transcription of synthdid's ``fw.step`` loop
and against an independent QP solver."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize

from analysis.estimators.fw_kernel import simplex_fw
from analysis.estimators.synth import simplex_least_squares_batch


def synthdid_loop(
    A: np.ndarray, b: np.ndarray, zeta: float, x: np.ndarray, min_decrease: float, max_iter: int
) -> np.ndarray:
    """synthdid's fw.step iterated, the gradient recomputed from A every step."""
    m = A.shape[0]
    eta = m * zeta**2
    x = x.copy()
    for t in range(max_iter):
        Ax = A @ x
        half_grad = A.T @ (Ax - b) + eta * x
        i = int(np.argmin(half_grad))
        d_x = -x.copy()
        d_x[i] += 1.0
        d_err = A[:, i] - Ax
        step = -(half_grad @ d_x) / (d_err @ d_err + eta * (d_x @ d_x))
        step = min(1.0, max(0.0, step))
        before = zeta**2 * (x @ x) + ((Ax - b) @ (Ax - b)) / m
        x = x + step * d_x
        after = zeta**2 * (x @ x) + ((A @ x - b) @ (A @ x - b)) / m
        if t >= 1 and before - after <= min_decrease**2:
            break
    return x


def problem(seed: int, m: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    A = rng.gamma(1.5, 4.0, n)[None, :] + rng.normal(0.0, 2.0, (m, n))
    b = A[:, : max(1, n // 10)].mean(axis=1) + rng.normal(0.0, 0.5, m)
    return A - A.mean(axis=0), b - b.mean()


@pytest.mark.parametrize(("m", "n", "max_cols"), [(14, 40, 40), (6, 300, 300), (14, 300, 2)])
def test_the_kernel_follows_synthdids_iteration(m: int, n: int, max_cols: int) -> None:
    for seed in range(3):
        A, b = problem(seed, m, n)
        x0 = np.full(n, 1.0 / n)
        want = synthdid_loop(A, b, 0.3, x0, 1e-6, 400)
        got = simplex_fw(A, b, 0.3, x0, 1e-6, 400, max_cols)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_a_column_cap_does_not_change_the_weights() -> None:
    A, b = problem(7, 10, 500)
    x0 = np.full(500, 1.0 / 500)
    whole = simplex_fw(A, b, 0.5, x0, 1e-8, 5000, 500)
    for cap in (1, 17):
        np.testing.assert_array_equal(simplex_fw(A, b, 0.5, x0, 1e-8, 5000, cap), whole)


def test_converged_weights_reach_the_qp_optimum() -> None:
    A, b = problem(3, 12, 30)
    zeta = 0.4
    m, n = A.shape

    def objective(x: np.ndarray) -> float:
        r = A @ x - b
        return float(zeta**2 * (x @ x) + (r @ r) / m)

    qp = minimize(
        objective,
        np.full(n, 1.0 / n),
        method="SLSQP",
        bounds=[(0.0, 1.0)] * n,
        constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1.0}],
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    assert qp.success
    # plain Frank-Wolfe closes its gap like 1/t; a million steps of n = 30 take a few ms
    got = simplex_fw(A, b, zeta, np.full(n, 1.0 / n), 0.0, 1_000_000, n)
    assert got.min() >= 0.0
    assert got.sum() == pytest.approx(1.0, abs=1e-12)
    grad = 2.0 * (A.T @ (A @ got - b) / m + zeta**2 * got)
    gap = float(grad @ got - grad.min())  # Frank-Wolfe's certificate: f(x) - f* <= gap
    assert gap < 2e-5
    assert qp.fun - 1e-12 <= objective(got) <= qp.fun + gap


def test_each_problem_of_a_batch_is_solved_on_its_own() -> None:
    pairs = [problem(s, 8, 60) for s in range(4)]
    A = np.stack([p[0] for p in pairs])
    b = np.stack([p[1] for p in pairs])
    zetas = np.array([0.1, 0.3, 0.5, 1.0])
    batch = simplex_least_squares_batch(
        A, b, zetas, intercept=False, min_decrease=1e-6, max_iter=3000
    )
    for k in range(4):
        alone = synthdid_loop(A[k], b[k], zetas[k], np.full(60, 1.0 / 60), 1e-6, 3000)
        np.testing.assert_allclose(batch[k], alone, rtol=0, atol=1e-9)


def test_past_the_gradient_refresh_the_kernel_still_follows_synthdid() -> None:
    A, b = problem(11, 14, 200)
    x0 = np.full(200, 1.0 / 200)
    want = synthdid_loop(A, b, 0.2, x0, 0.0, 6000)  # three refreshes of the carried gradient
    np.testing.assert_allclose(simplex_fw(A, b, 0.2, x0, 0.0, 6000, 200), want, atol=1e-9)


def test_a_large_common_level_does_not_change_the_weights() -> None:
    # no intercept (sc's unit weights): every cell 1e5 or 1e7 higher, the same residuals
    A, b = problem(5, 14, 2100)
    x0 = np.full(2100, 1.0 / 2100)
    base = simplex_fw(A, b, 0.3, x0, 1e-7, 10_000, 1900)
    for level in (1e5, 1e7):
        shifted = simplex_fw(A + level, b + level, 0.3, x0, 1e-7, 10_000, 1900)
        np.testing.assert_allclose(shifted, base, rtol=0, atol=1e-6)


def test_inputs_of_the_wrong_shape_are_refused() -> None:
    A, b = problem(1, 6, 50)
    with pytest.raises(ValueError, match="x0 50"):
        simplex_fw(A, b, 0.3, np.full(30, 1 / 30), 1e-6, 100, 50)
    with pytest.raises(ValueError, match="b must have 6"):
        simplex_fw(A, b[:4], 0.3, np.full(50, 1 / 50), 1e-6, 100, 50)


def test_warm_leaves_the_solver_compiled_for_the_estimators_inputs() -> None:
    # in a fresh process: warm() compiles, and a placebo SE's read-only starting weights (a
    # broadcast array) reuse that signature instead of compiling another during a look
    code = (
        "import numpy as np\n"
        "from analysis.estimators.fw_kernel import fw_lazy_gram, simplex_fw, warm\n"
        "assert not fw_lazy_gram.signatures\n"
        "warm()\n"
        "A = np.arange(12.0).reshape(3, 4) ** 1.5\n"
        "x0 = np.broadcast_to(np.full(4, 0.25), (2, 4))[0]\n"
        "simplex_fw(A, np.broadcast_to(A[:, 0], (3,)), 0.1, x0, 1e-9, 50, 4)\n"
        "print(len(fw_lazy_gram.signatures))\n"
    )
    root = Path(__file__).resolve().parents[4]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
