"""The clock of the running stack, as a command that needs "now" reads it (the CLI).

The controller worker records at start which clock it runs on (``{pl}:clock-mode``, written
by streams.worker.app.preflight), so a second shell without ``PRICELAB_CLOCK`` gets the stack's
simulated time instead of the wall's, and the same answers as the first shell.
"""

from __future__ import annotations

from controller.clock import Clock, WallClock
from controller.errors import ConfigurationError, StoreError
from controller.settings import Settings
from controller.store import Store
from controller.store.clock import SharedSimulatedClock, recorded_clock_mode
from controller.store.keys import clock, clock_mode


async def stack_clock(settings: Settings, store: Store) -> Clock:
    """The stack's clock, synced: the one its controller recorded; with no record (no
    controller has started) the one the settings name. An explicit ``PRICELAB_CLOCK`` that
    contradicts the record is refused in one sentence (ConfigurationError): the operator
    believes something of the stack that is not so."""
    recorded = await recorded_clock_mode(store.redis, clock_mode(settings.key_prefix))
    explicit = "clock" in settings.model_fields_set
    if recorded is not None and explicit and settings.clock != recorded:
        raise ConfigurationError(
            f"PRICELAB_CLOCK={settings.clock} contradicts the stack, whose controller runs on "
            f"the {recorded} clock: unset PRICELAB_CLOCK to follow the stack"
        )
    mode = recorded or settings.clock
    if mode != "simulated":
        return WallClock()
    shared = SharedSimulatedClock(store.redis, clock(settings.key_prefix))
    await shared.sync()
    if not shared.ready:
        raise StoreError("the stack's simulated clock has not been set yet by its driver")
    return shared


def describe(clock: Clock) -> str:
    """Which clock, in words: for a sentence that gives a time read on it."""
    return (
        "the stack's simulated clock"
        if isinstance(clock, SharedSimulatedClock)
        else "the wall clock"
    )
