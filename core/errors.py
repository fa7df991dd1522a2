"""pricelab's error root. Every error pricelab raises on purpose derives from it.

    PricelabError                        root of every error pricelab raises on purpose
    ├── controller.errors.ConfigurationError   settings that cannot work (controller)
    ├── controller.errors.SpecError (ValueError) an experiment spec breaks a rule; names the field
    ├── controller.errors.CommandRefused (ValueError) a command the experiment's state refuses
    ├── controller.errors.ConflictError  a product is already in a running experiment
    ├── controller.errors.StoreError     Redis state missing or inconsistent
    ├── controller.errors.EmbeddedStackError  the embedded broker or Redis failed to start
    ├── analysis.errors.AnalysisError    root of the analysis library's errors
    │   ├── PanelError (ValueError)      a panel fails validation at the door
    │   ├── InferenceError (ValueError)  a variance method is invalid for the data
    │   ├── ConvergenceError             an iterative solver did not converge
    │   └── analysis.spillover.SpilloverError (ValueError)  inconsistent spillover inputs
    ├── lab.errors.LabError (ValueError) a simulation or comparison cannot run as asked
    │   └── TooManyFailedFits            more of a plan's or comparison's fits failed than tolerated
    ├── pricelab.api.NotPublished        the notebook API found nothing of an experiment on the
    │                                    estimates topic (an unknown id, or no look yet)
    ├── streams.errors.ServiceUnavailable  a broker or Redis that does not answer
    ├── streams.errors.NoCompletedPeriod  a live panel (export, report) with no completed
    │                                    period yet on the stack's clock
    └── streams.errors.DeadLetterChoiceError  `pricelab dead-letters`: no letter of the
                                         reason or at the offset asked for, none to replay

Each package defines its leaves; the CLI catches this root in one place and prints its
sentence with exit status 2. Control-flow signals (not errors) live next to their users and
do not derive from this root.
"""

from __future__ import annotations


class PricelabError(Exception):
    """Root of every error pricelab raises on purpose."""
