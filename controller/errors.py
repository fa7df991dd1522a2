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
    "UnknownDraft",
    "UnknownExperiment",
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


class UnknownExperiment(CommandRefused):
    """A command or a read names an experiment the store does not know: a typo, or an id
    never created (controller.lifecycle.check_known says the sentence). ``experiments``: the
    ids named that no experiment has (a freeze may name several); ``near``: the known id
    closest to a typo, when one is close (an edge that words the refusal its own way, the
    console, keeps the hint)."""

    def __init__(
        self, experiments: str | tuple[str, ...], message: str, near: str | None = None
    ) -> None:
        self.experiments = (experiments,) if isinstance(experiments, str) else experiments
        self.near = near
        super().__init__(message)


class UnknownDraft(UnknownExperiment):
    """A command or a read names a draft the store does not hold (controller.drafts): nothing
    is kept under the id it names, as for an unknown experiment."""


class ConflictError(PricelabError):
    """A product is already in a running experiment."""


class StoreError(PricelabError):
    """Redis state is missing or inconsistent."""


class EmbeddedStackError(PricelabError):
    """The embedded broker or Redis server failed to start or stop."""
