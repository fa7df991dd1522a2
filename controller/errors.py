"""pricelab's error tree.

    PricelabError                      root of every error pricelab raises on purpose
    ├── ConfigurationError             settings that cannot work (controller)
    ├── SpecError (ValueError)         an experiment spec breaks a rule; names the field
    ├── ConflictError                  a product is already in a running experiment
    ├── StoreError                     Redis state missing or inconsistent
    ├── EmbeddedStackError             the embedded broker or Redis failed to start
    └── analysis.errors.AnalysisError  (see analysis/errors.py)
        ├── PanelError (ValueError)    a panel fails validation at the door
        └── InferenceError (ValueError) a variance method is invalid for the data

Control-flow signals (not errors) live next to their users and do not derive from this root.
"""

from __future__ import annotations


class PricelabError(Exception):
    """Root of every error pricelab raises on purpose."""


class ConfigurationError(PricelabError):
    """Settings that cannot work together."""


class SpecError(PricelabError, ValueError):
    """An experiment spec breaks a rule. The message names the field and the rule."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")


class ConflictError(PricelabError):
    """A product is already in a running experiment."""


class StoreError(PricelabError):
    """Redis state is missing or inconsistent."""


class EmbeddedStackError(PricelabError):
    """The embedded broker or Redis server failed to start or stop."""
