"""The live simulation: the embedded broker and Redis, the worker launcher, the driver that
plays the outside world into the pipeline, the demo, ``simulate --live`` and the live coverage
study (docs/validation.md)."""
