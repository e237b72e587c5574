"""Experiments, registered by name (`ExperimentHparams.name` in gin).

An experiment is a class with `name`, `hparams()` (the dataclasses that
define it and so enter the run hash), `validate(ctx)` (raise on bad input
before anything is written), `phases(ctx)` and `run(ctx)`: the `Experiment`
protocol of base.py, checked when it is registered.  Its hyperparameter
dataclass lives beside it, in its module.
"""
from tflottery.experiments.base import REGISTRY  # noqa: F401
from tflottery.experiments import dst, dynamic_imp, gradual, lmc, lottery, pai, train  # noqa: F401  (registers them)
