"""Experiments, registered by name (`ExperimentHparams.name` in gin).

An experiment is a class with `name`, `hparams()` (the dataclasses that
define it and so enter the run hash), `validate()` (raise on bad input before
anything is written) and `run(ctx)`.
"""
from tflottery.experiments.base import REGISTRY  # noqa: F401
from tflottery.experiments import dst, dynamic_imp, gradual, lmc, lottery, pai, train  # noqa: F401  (registers them)
