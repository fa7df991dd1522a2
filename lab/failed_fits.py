"""How many failed fits a command that fits many simulations tolerates.

``pricelab plan``, ``pricelab compare-designs`` and the studies built on their summaries
(:func:`lab.plan.summarise`, :func:`lab.compare.summarise`) fit each estimator to many
simulated experiments. A fit that raises is counted, not fatal; but when more than
:data:`MAX_FAILED_SHARE` of one row's fits fail, the row's type-I error, power, MDE, bias or
coverage would describe only the simulations that happened to fit, so the command refuses
(exit status 2) with one sentence naming the row, the count and the first failure's reason.
"""

from __future__ import annotations

from lab.errors import TooManyFailedFits

#: Largest share of one row's fits that may fail before its figures are refused (5%).
MAX_FAILED_SHARE = 0.05


def check_failed_fits(what: str, failed: int, total: int, first_error: str) -> None:
    """TooManyFailedFits when more than :data:`MAX_FAILED_SHARE` of ``total`` fits of ``what``
    failed; ``first_error`` is the first failure's reason."""
    if total <= 0 or failed <= MAX_FAILED_SHARE * total:
        return
    reason = (first_error.strip().splitlines() or ["(no reason given)"])[0]
    raise TooManyFailedFits(
        f"{failed} of {total} fits of {what} failed, more than the {MAX_FAILED_SHARE:.0%} "
        f"tolerated, so its figures are not shown; the first failed with {reason}"
    )
