"""`pricelab simulate --live`: play a spec's simulated market into a running stack.

The workers an operator started (``pricelab worker``, with ``PRICELAB_CLOCK=simulated``) run
the experiment; this process plays the rest of the world through
:class:`streams.live.driver.LiveDriver`, as the demo does with workers of its own: it creates the
experiment through the commands topic, moves the shared simulated clock period by period,
reads the assignments as a pricing system would, sends the market's sales, and prints the
estimates the analysis worker publishes at each period's end (a price ladder's: each arm
against the control, the verdict naming an arm and the recommended price; streams.live.ladder).
It stops after ``periods``
periods with the experiment still running, so that the operator's commands (pause, freeze,
stop ...), ``estimates``, ``panel export`` and ``report`` act on a live experiment.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from controller.errors import ConfigurationError
from controller.periods import n_periods, period_bounds
from controller.settings import Settings
from controller.spec import ExperimentSpec
from controller.store import Store, make_redis
from lab.market import MarketConfig
from lab.price import ladder_ratios
from lab.simulate import market_for_spec
from streams.client.estimates import render_verdict
from streams.errors import ServiceUnavailable, services_answer
from streams.live.driver import (
    DriverConfig,
    LiveDriver,
    LiveRun,
    print_looks,
    scorecard,
    verdict_at,
)
from streams.live.ladder import ladder_summary, print_ladder_looks


@dataclass
class RemoteWorker:
    """A worker this process did not start, watched through its metrics endpoint."""

    metrics_url: str | None = None

    def check_alive(self) -> None:
        return None  # not ours to watch: a dead one shows as a wait that times out

    def metrics(self) -> str:
        if self.metrics_url is None:
            raise OSError("no metrics endpoint given")
        with urllib.request.urlopen(self.metrics_url, timeout=2) as resp:  # noqa: S310 - ours
            return resp.read().decode()  # type: ignore[no-any-return]


async def play(
    settings: Settings,
    spec: ExperimentSpec,
    *,
    seed: int,
    periods: int | None,
    analysis_metrics: str,
    market: MarketConfig | None = None,
    timeout: float = 120.0,
) -> LiveRun:
    """Create ``spec`` through the running controller and play its first ``periods`` periods
    (all, and its end, when None); returns the run with the estimates seen at each look."""
    if settings.clock != "simulated":
        raise ConfigurationError(
            "--live drives simulated time: run the workers and this command with "
            "PRICELAB_CLOCK=simulated"
        )
    ladder = ladder_ratios(spec) is not None  # more than two arms: prices, else a SpecError
    total = n_periods(spec)
    if periods is not None and not 1 <= periods <= total:
        raise ConfigurationError(f"--days must be 1..{total} (the periods of {spec.id!r})")
    run = LiveRun(spec, market_for_spec(spec, market or MarketConfig(), seed), sales_seed=seed + 1)
    redis = make_redis(settings)
    store = Store(redis, settings.key_prefix)
    printed: set[tuple[str, int]] = set()
    analysis = RemoteWorker(analysis_metrics)

    def say(msg: str) -> None:
        print(msg, flush=True)

    async def each_period(d: int) -> None:
        p_start, _ = period_bounds(spec, d)
        treated = int(run.arms[:, d].sum())
        say(
            f"period {d + 1:>3}/{periods or total} {p_start.astimezone(spec.zone):%a %Y-%m-%d %H:%M}: "
            f"{treated} of {len(spec.all_products())} "
            f"{'off the control price' if ladder else 'treated'}, sales sent"
        )
        (print_ladder_looks if ladder else print_looks)(say, run, printed)

    try:
        async with services_answer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            redis_url=settings.redis.url.get_secret_value(),
            settings=settings,
        ):
            driver = LiveDriver(
                settings, store, [RemoteWorker()], analysis, DriverConfig(timeout=timeout)
            )  # type: ignore[list-item, arg-type]
            async with driver:
                say(
                    f"creating {spec.id} ({spec.design}, {len(spec.all_products())} products) "
                    "through the commands topic"
                )
                await driver.create([run])
                await driver.run([run], after_look=each_period, periods=periods)
    except TimeoutError as exc:
        raise ServiceUnavailable(
            f"{exc}; are a controller and an analysis worker running with "
            f"PRICELAB_CLOCK=simulated, the analysis worker's metrics at {analysis_metrics}?"
        ) from None
    except RuntimeError as exc:  # the controller refused the experiment
        raise ConfigurationError(str(exc)) from None
    finally:
        await redis.aclose()
    (print_ladder_looks if ladder else print_looks)(say, run, printed)
    return run


def summary(run: LiveRun, periods: int | None) -> list[str]:
    """The scorecard at the last look (every metric, absolute and relative, the elasticity)
    beside the truth the market knows; a price ladder's, each arm against control with the
    demand curve's recommended price (:func:`streams.live.ladder.ladder_summary`)."""
    done = periods if periods is not None else n_periods(run.spec)
    # the last look: a running experiment's last period played is in force, not complete
    looks = [int(e["_look"]) for e in run.estimates if e.get("_look") is not None]
    last = min(done, max(looks, default=done))
    if ladder_ratios(run.spec) is not None:
        return ladder_summary(run, last)
    verdict = verdict_at(run, last)
    first = (
        render_verdict(verdict).splitlines()
        if verdict is not None
        else [f"no verdict published after {last} periods"]
    )
    return [*first, "", f"scorecard after {last} periods:", *scorecard(run, last)[0]]
