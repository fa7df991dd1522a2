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

Run again with the same spec (and seed), it continues the experiment from the period after the
last one played (:meth:`LiveDriver.resume` replays the periods before without sending
anything), for ``periods`` more periods or to the end; an experiment that is final, whose spec
differs, or that an interrupted run left inside a period is refused, in one sentence that says
what to do.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from datetime import timedelta

from controller.errors import ConfigurationError
from controller.periods import n_periods, period_bounds
from controller.settings import Settings
from controller.spec import ExperimentSpec, load_spec
from controller.store import Store, make_redis
from controller.store.clock import SharedSimulatedClock
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
    run = LiveRun(spec, market_for_spec(spec, market or MarketConfig(), seed), sales_seed=seed + 1)
    redis = make_redis(settings)
    store = Store(redis, settings.key_prefix)
    printed: set[tuple[str, int]] = set()
    analysis = RemoteWorker(analysis_metrics)

    def say(msg: str) -> None:
        print(msg, flush=True)

    first = 0  # the period to play first: after the last one played, for a continued run

    async def each_period(d: int) -> None:
        p_start, _ = period_bounds(spec, d)
        treated = int(run.arms[:, d].sum())
        upto = total if periods is None else first + periods
        say(
            f"period {d + 1:>3}/{upto} {p_start.astimezone(spec.zone):%a %Y-%m-%d %H:%M}: "
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
            resumed = await played(store, driver.clock, spec)
            first = resumed or 0
            left = total - first
            if periods is not None and not 1 <= periods <= left:
                raise ConfigurationError(
                    f"--days must be 1..{left} (the periods of {spec.id!r} left to play)"
                    if left
                    else f"--days: every period of {spec.id!r} has been played; leave --days "
                    "out to play its end"
                )
            async with driver:
                if resumed is None:
                    say(
                        f"creating {spec.id} ({spec.design}, {len(spec.all_products())} "
                        "products) through the commands topic"
                    )
                    await driver.create([run])
                else:
                    say(
                        f"continuing {spec.id} from period {first + 1}/{total}"
                        + (
                            f" (periods 1..{first} were played by an earlier run; replayed "
                            "here without sending anything)"
                            if first
                            else " (created by an earlier run)"
                        )
                    )
                    await driver.resume(run, first)
                    # the earlier run said its looks: this one says its own
                    (print_ladder_looks if ladder else print_looks)(lambda _: None, run, printed)
                await driver.run([run], after_look=each_period, periods=periods, first=first)
    except TimeoutError as exc:
        raise ServiceUnavailable(
            f"{exc}; are a controller and an analysis worker running with "
            f"PRICELAB_CLOCK=simulated, the analysis worker's metrics at {analysis_metrics}?"
        ) from None
    except (RuntimeError, ValueError) as exc:  # the controller refused it; another seed
        raise ConfigurationError(str(exc)) from None
    finally:
        await redis.aclose()
    (print_ladder_looks if ladder else print_looks)(say, run, printed)
    return run


async def played(store: Store, clock: SharedSimulatedClock, spec: ExperimentSpec) -> int | None:
    """How many of ``spec``'s periods an earlier ``simulate --live`` played (the next one to
    play), or None when no experiment has its id (a new run creates it). Refused (one
    sentence that says what to do) when the experiment is final, was created with another
    spec, or stands inside a period (an interrupted run's sales cannot be told apart)."""
    if spec.id not in await store.experiment_ids():
        return None
    state = await store.get_experiment(spec.id)
    new_id = "ids are not reused: play the spec under a new id"
    if state.spec.to_json() != load_spec(spec.model_dump(mode="json")).to_json():
        raise ConfigurationError(
            f"experiment {spec.id!r} exists with another spec: --live continues an "
            f"experiment only with the spec it was created with; {new_id}"
        )
    if state.lifecycle.final:
        raise ConfigurationError(
            f"experiment {spec.id!r} is {state.phase}: there is nothing left to play; {new_id}"
        )
    k = state.flipped_period
    if k < 0:  # created, no period in force yet: nothing was played
        return 0
    look = period_bounds(spec, k)[1] - timedelta(milliseconds=1)
    await clock.sync()
    now = clock.now()
    if now < look:
        raise ConfigurationError(
            f"experiment {spec.id!r} stands inside period {k + 1} (the stack's clock at "
            f"{now.isoformat()}, before that period's look at {look.isoformat()}): an "
            "interrupted run's sales of it cannot be told from a new one's; stop it "
            f"(pricelab experiment stop {spec.id} --reason ...) and {new_id}"
        )
    return k + 1


def summary(run: LiveRun, periods: int | None = None) -> list[str]:
    """The scorecard at the last look (every metric, absolute and relative, the elasticity)
    beside the truth the market knows; a price ladder's, each arm against control with the
    demand curve's recommended price (:func:`streams.live.ladder.ladder_summary`)."""
    # every period played, this run's and those of the runs it continued
    done = run.played if periods is not None else n_periods(run.spec)
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
