"""An adaptive ladder's two records (issue #57; docs/adaptive.md): the analysis worker's latest
look, which the flip of a later period reads, and each period's arm probabilities, recorded
once by the flip before any of the period's assignments is published, which the worker's
IPW/AIPW weighs the cells by."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from controller.store.base import RedisStore
from core.ports import AdaptiveLook

log = logging.getLogger("pricelab.store")


def encode_probabilities(p: Sequence[float]) -> str:
    """A period's probabilities as recorded: a JSON list (floats round-trip exactly)."""
    return json.dumps([float(x) for x in p])


def decode_probabilities(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in json.loads(text))


class AdaptiveStore(RedisStore):
    """``e:look`` (the latest look, ``lua/look_put.lua``) and ``e:alloc`` (period -> the
    probabilities that period was drawn with, JSON, written once)."""

    async def put_adaptive_look(self, look: AdaptiveLook) -> bool:
        """Keep ``look`` unless the stored one used more periods; whether it was kept."""
        got = await self._script("look_put")(
            keys=[f"{self.exp(look.experiment)}:look"],
            args=[int(look.periods), json.dumps(look.to_dict())],
        )
        return bool(got)

    async def adaptive_look(self, exp_id: str) -> AdaptiveLook | None:
        """The latest look, or None (none yet, or one that cannot be read: logged)."""
        text = await self.redis.hget(f"{self.exp(exp_id)}:look", "look")
        if text is None:
            return None
        try:
            return AdaptiveLook.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as e:
            log.error("experiment %s: its adaptive look is not readable: %s", exp_id, e)
            return None

    async def record_allocation(
        self, exp_id: str, period: int, probabilities: Sequence[float]
    ) -> tuple[float, ...]:
        """The probabilities recorded for ``period``, recording ``probabilities`` first when
        there are none: the first writer wins, and every later one (a redone flip, a second
        controller) gets the recorded ones back."""
        name = f"{self.exp(exp_id)}:alloc"
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(name, str(int(period)), encode_probabilities(probabilities))
        pipe.hget(name, str(int(period)))
        _, stored = await pipe.execute()
        return decode_probabilities(stored)

    async def allocations(self, exp_id: str) -> dict[int, tuple[float, ...]]:
        """Every recorded period's probabilities, by period (none: empty)."""
        raw: dict[str, str] = await self.redis.hgetall(f"{self.exp(exp_id)}:alloc")
        return {
            int(k): decode_probabilities(v)
            for k, v in sorted(raw.items(), key=lambda kv: int(kv[0]))
        }
