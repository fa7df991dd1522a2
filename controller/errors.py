"""The controller's errors: leaves of :class:`core.errors.PricelabError` (the tree is drawn there)."""

from __future__ import annotations

from core.errors import PricelabError

__all__ = [
    "CommandRefused",
    "ConfigurationError",
    "ConflictError",
    "EmbeddedStackError",
    "PricelabError",
    "SpecError",
    "StoreError",
]


class ConfigurationError(PricelabError):
    """Settings that cannot work together."""


class SpecError(PricelabError, ValueError):
    """An experiment spec breaks a rule. The message names the field and the rule."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")


class CommandRefused(PricelabError, ValueError):
    """A command that does not apply to the experiment's state (controller.lifecycle), or
    names an experiment that does not exist. The message is one sentence saying why."""


class ConflictError(PricelabError):
    """A product is already in a running experiment."""


class StoreError(PricelabError):
    """Redis state is missing or inconsistent."""


class EmbeddedStackError(PricelabError):
    """The embedded broker or Redis server failed to start or stop."""
