"""Step: a training-time quantity written '160ep', '500it' or '2ep10it'.

Papers state some lengths in epochs and some in iterations; a Step keeps the
user's unit and resolves to iterations only when the dataset's iterations per
epoch are known.  `dilate` scales a Step by the training-dilation factor of
thesis section 3.3.6, so every step quantity in a run stretches together.
"""
import dataclasses
import math
import re
from typing import Optional, Union

from tflottery.errors import ConfigError, UnknownSizeError

_STEP_RE = re.compile(r"^\s*(?:(\d+)\s*ep)?\s*(?:(\d+)\s*it)?\s*$")

# The longest training (and any step) a run takes, in iterations: 2**53 - 1,
# the largest integer float64 holds exactly, so the learning-rate schedules
# and step arithmetic stay exact and int64 step counters never overflow.
MAX_STEPS = 2 ** 53 - 1


@dataclasses.dataclass(frozen=True, order=True)
class Step:
    """A point in training: `ep` epochs plus `it` iterations."""

    ep: int = 0
    it: int = 0

    def __post_init__(self):
        if self.ep < 0 or self.it < 0:
            raise ConfigError(f"step {self.ep}ep{self.it}it is negative; steps count up from 0")
        if max(self.ep, self.it) > MAX_STEPS:
            raise ConfigError(f"step {self} is beyond the limit of {MAX_STEPS} "
                              f"(2**53 - 1) steps; choose a shorter step")

    @classmethod
    def parse(cls, value: Union[str, int, "Step"]) -> "Step":
        """Parse '90ep', '500it', '2ep10it', a bare int (iterations) or a Step."""
        if isinstance(value, Step):
            return value
        if isinstance(value, bool):
            raise ConfigError(f"step {value!r} is not a step; write e.g. '90ep', '500it' or '2ep10it'")
        if isinstance(value, int):
            return cls(0, value)
        if isinstance(value, str):
            match = _STEP_RE.match(value)
            if match and (match.group(1) or match.group(2)):
                return cls(int(match.group(1) or 0), int(match.group(2) or 0))
        raise ConfigError(f"cannot read step {value!r}; write e.g. '90ep', '500it' or '2ep10it'")

    def iterations(self, iterations_per_epoch: Optional[int]) -> int:
        """Total iterations this step stands for.

        iterations_per_epoch None means unknown (the dry run of a dataset of
        unknown size): a step in iterations resolves, one in epochs raises
        UnknownSizeError."""
        if iterations_per_epoch is None:
            if self.ep:
                raise UnknownSizeError(f"step {self} is in epochs, and the dataset's size "
                                       f"(its iterations per epoch) is unknown")
            return self.iterations(1)
        if iterations_per_epoch <= 0:
            raise ConfigError(f"iterations per epoch must be positive, got {iterations_per_epoch}")
        total = self.ep * iterations_per_epoch + self.it
        if total > MAX_STEPS:
            raise ConfigError(f"step {self} is {total} iterations, beyond the limit of "
                              f"{MAX_STEPS} (2**53 - 1); choose a shorter step")
        return total

    def dilate(self, factor: float, iterations_per_epoch: int) -> "Step":
        """This step scaled by `factor`, in iterations (rounded to nearest)."""
        if not (factor > 0 and math.isfinite(factor)):
            raise ConfigError(f"dilation factor must be a positive number, got {factor}")
        return Step(0, int(math.floor(self.iterations(iterations_per_epoch) * factor + 0.5)))

    def __str__(self) -> str:
        if self.ep and self.it:
            return f"{self.ep}ep{self.it}it"
        if self.ep:
            return f"{self.ep}ep"
        return f"{self.it}it"


def to_iterations(value, iterations_per_epoch: int, dilation: float = 1.0) -> int:
    """Resolve a step-like value to iterations, applying the dilation factor."""
    step = Step.parse(value)
    if dilation != 1.0:
        step = step.dilate(dilation, iterations_per_epoch)
    return step.iterations(iterations_per_epoch)
