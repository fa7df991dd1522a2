"""pricelab's error root. Every error pricelab raises on purpose derives from it.

    PricelabError                        root of every error pricelab raises on purpose
    ├── controller.errors.ConfigurationError   settings that cannot work (controller)
    ├── controller.errors.SpecError (ValueError) an experiment spec breaks a rule; names the field
    ├── controller.errors.CommandRefused (ValueError) a command the experiment's state refuses
    │   └── UnknownExperiment            a command or a read names an experiment the store does
    │       │                            not know (pricelab.UnknownExperiment)
    │       └── UnknownDraft             ... or a draft it does not hold (controller.drafts)
    ├── controller.errors.ConflictError  a product is already in a running experiment
    ├── controller.errors.StoreError     Redis state missing or inconsistent
    ├── controller.errors.EmbeddedStackError  the embedded broker or Redis failed to start
    ├── analysis.errors.AnalysisError    root of the analysis library's errors
    │   ├── PanelError (ValueError)      a panel fails validation at the door
    │   │   └── TableError               an analyst's table the one reader cannot read as cells
    │   ├── InferenceError (ValueError)  a variance method is invalid for the data
    │   ├── ConvergenceError             an iterative solver did not converge
    │   ├── NotEstimable                 an estimator that does not estimate this metric
    │   ├── analysis.spillover.SpilloverError (ValueError)  inconsistent spillover inputs
    │   ├── analysis.graph.GraphError (ValueError)  a history that cannot become a graph
    │   ├── analysis.shard_codec.BadPartial  a stored partial this version did not write
    │   └── analysis.estimators.sums.PartsMismatch  partials that cannot be merged
    ├── lab.errors.LabError (ValueError) a simulation or comparison cannot run as asked
    │   └── TooManyFailedFits            more of a plan's or comparison's fits failed than tolerated
    ├── pricelab.api.NotPublished        the notebook API found no estimate of a known experiment
    │                                    on the estimates topic (no look yet)
    ├── streams.errors.ServiceUnavailable  a broker or Redis that does not answer
    ├── streams.errors.PermissionDenied  Redis refused a role's user a command or key (NOPERM)
    ├── streams.errors.TlsFailure        a TLS handshake failed; names the setting to fix
    ├── streams.errors.NoCompletedPeriod  a live panel (export, report) with no completed
    │                                    period yet on the stack's clock
    └── streams.errors.DeadLetterChoiceError  `pricelab dead-letters`: no letter of the
                                         reason or at the offset asked for, none to replay

Each package defines its leaves; the CLI catches this root in one place and prints its
sentence with exit status 2. Control-flow signals (not errors) live next to their users and
do not derive from this root.
"""

from __future__ import annotations

from typing import TypeVar


class PricelabError(Exception):
    """Root of every error pricelab raises on purpose."""


E = TypeVar("E", bound=BaseException)


def kept(exc: E) -> E:
    """``exc``, made fit to keep as a result (in a dict of estimates, a list of dead letters):
    without its traceback, and without the exceptions it was raised from or during. A kept
    exception's traceback holds the frame that caught it, that frame's callers (``f_back``)
    and their locals: a consumer's batch, an analysis chunk's grid and panels, for as long
    as the result is kept; and when the frame also holds the result (``out[key] = exc``), a
    reference cycle that only a full collection frees (analysis workers keep a look's sums
    until the next). Its message (``str``) and type are what the result is read for."""
    exc.__traceback__ = None
    exc.__context__ = None
    exc.__cause__ = None
    return exc
