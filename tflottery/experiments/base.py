"""What an experiment is (`Experiment`), and the registry of experiments by name
(`ExperimentHparams.name` in gin).

The registry lives apart from the package's `__init__`, which imports every
experiment module to register it: an experiment module imports this one, not
the package, so no import goes round in a circle.

Registering checks the class against `Experiment` (every method there, and
`name` equal to the registered name), so a class that lacks one is refused
at import with one line naming what is missing, instead of failing in the
middle of a run or being silently planned as empty.
"""
import inspect
from typing import List, Protocol

from tflottery.errors import ConfigError
from tflottery.plan import Phase
from tflottery.registry import Registry


class Experiment(Protocol):
    """An experiment class; the runner makes one object of it per run (so it may keep
    what the run builds once on itself) and calls, in order:

    name         the registered name; the run directory is <name>_<hash>
    hparams()    the hyperparameter dataclasses that name the run (their non-default
                 fields are hashed; leave out what only extends a run, such as more levels)
    validate(ctx)   raise ConfigError on bad input, before anything is written
    phases(ctx)  the plan.Phase list of every training phase, in order (--dry_run, ETA)
    run(ctx)     train and measure, skipping what is done; returns what it reports: a
                 JSON-ready dict with 'test_accuracy' and 'accuracy_of' (what the
                 accuracy is of), which the command line prints and finished.json keeps

    The dataclasses it reads from gin are its attributes (hparams.json records them).
    """

    name: str

    def hparams(self) -> list: ...

    def validate(self, ctx) -> None: ...

    def phases(self, ctx) -> List[Phase]: ...

    def run(self, ctx) -> dict: ...


METHODS = ("hparams", "validate", "phases", "run")


def check_experiment(name: str, cls) -> None:
    """ConfigError unless `cls` is an Experiment registered under its own name."""
    missing = [m for m in METHODS if not callable(getattr(cls, m, None))]
    where = f"experiment {name!r} ({cls.__module__}.{getattr(cls, '__qualname__', cls)})"
    if not inspect.isclass(cls):
        raise ConfigError(f"{where} is not a class; register an experiment class")
    if missing:
        raise ConfigError(f"{where} lacks {', '.join(m + '()' for m in missing)}; an experiment "
                          f"needs name, hparams(), validate(ctx), phases(ctx) and run(ctx) "
                          f"(tflottery/experiments/base.py)")
    if getattr(cls, "name", None) != name:
        raise ConfigError(f"{where} has name = {getattr(cls, 'name', None)!r}; set the class "
                          f"attribute name = {name!r}, the name it is registered under")


REGISTRY = Registry("experiment", check_experiment)
