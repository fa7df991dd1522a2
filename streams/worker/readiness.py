"""Readiness: is this worker doing its job, beyond being alive?

A worker is ready when Redis answers, its clock is set, and every consumer group it belongs to
holds its assignment. A member that joined and received its partitions (possibly none, when
a group has more members than partitions) holds one; a member that was never assigned, or whose
partitions were revoked, does not. At start the worker is not ready until every group has
assigned it once; after a rebalance it stays ready for ``grace`` seconds and turns unready when
a group is still unassigned by then - a member stuck re-joining (a stale member of the group id,
a broker refusing the join) consumes nothing while its process looks healthy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class GroupMembership:
    """One consumer group of the worker: assigned or not, and since when (monotonic seconds)."""

    group: str
    now: Callable[[], float] = time.monotonic
    assigned: bool = False
    ever_assigned: bool = False
    since: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.since = self.now()

    def on_assigned(self) -> None:
        self.assigned, self.ever_assigned, self.since = True, True, self.now()

    def on_revoked(self) -> None:
        if self.assigned:
            self.assigned, self.since = False, self.now()

    def healthy(self, grace: float) -> bool:
        """Assigned, or only briefly unassigned after having been assigned."""
        if self.assigned:
            return True
        return self.ever_assigned and self.now() - self.since <= grace

    def describe(self) -> dict[str, object]:
        return {
            "assigned": self.assigned,
            "for_seconds": round(self.now() - self.since, 1),
            "ever_assigned": self.ever_assigned,
        }


@dataclass
class Readiness:
    """The worker's consumer groups (see the module docstring)."""

    grace: float = 60.0
    now: Callable[[], float] = time.monotonic
    groups: dict[str, GroupMembership] = field(default_factory=dict)

    def track(self, group: str) -> GroupMembership:
        m = self.groups.get(group)
        if m is None:
            m = self.groups[group] = GroupMembership(group, self.now)
        return m

    def unready_groups(self) -> list[str]:
        return sorted(g for g, m in self.groups.items() if not m.healthy(self.grace))

    def describe(self) -> dict[str, object]:
        return {g: m.describe() for g, m in sorted(self.groups.items())}
