"""The live simulation: the embedded broker and Redis, the worker launcher, the driver that
plays the outside world into the pipeline, the demo and ``simulate --live``."""
