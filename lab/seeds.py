"""The seed of each Monte-Carlo run, one formula for the comparison, the planner and every study."""

from __future__ import annotations


def run_seed(seed: int, run: int) -> int:
    """Run ``run``'s seed in a study seeded ``seed``: distinct per run, the same in every
    process. The comparison draws a run's demand path with ``run_seed(seed, run)`` and its
    design with ``run_seed(seed + 1, run)``."""
    return (seed * 1_000_003 + 7919 * (run + 1)) % (2**31 - 1)
