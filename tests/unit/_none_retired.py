"""The store methods a unit test's fake store needs since the controller's readers skip the
retired experiments (controller.retirement), for a fake with none retired."""

from __future__ import annotations

from typing import Any


class NoneRetired:
    """Mix into a fake store whose ``experiments()`` lists its experiments: none is retired,
    so the controller's readers (the flip tick, the sales routing, the trigger routes) see
    them all."""

    async def experiments(self) -> list[Any]:  # the fake's own
        raise NotImplementedError

    async def experiments_unretired(self) -> list[Any]:
        return await self.experiments()

    async def retired_count(self) -> int:
        return 0

    async def retired_products(self, excluding: Any = ()) -> set[str]:
        return set()
