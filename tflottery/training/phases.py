"""The step quantities of a training phase, resolved and checked before anything runs.

Every step setting (training length, evaluation interval, named checkpoints,
LR milestones, warmup) is a Step string resolved with the dataset's
iterations per epoch and the dilation factor.  These functions build
nothing, so experiments call them to validate a whole run up front.
"""
import dataclasses
from typing import Dict, Iterable

from tflottery.errors import ConfigError
from tflottery.steps import to_iterations
from tflottery.training.optimizers import optimizer_class
from tflottery.training.schedules import LotterySchedule


# The most evaluations one training makes: the trainer holds its evaluation
# steps in memory (and each evaluation passes over the test set), so
# training_steps / eval_every is bounded (a million: about 100 MB of steps).
MAX_EVALUATIONS = 10 ** 6


@dataclasses.dataclass(frozen=True)
class PhaseSteps:
    """All step quantities of a phase, resolved to iterations."""

    total: int          # length of the LR schedule / of full training
    start: int          # first step of this phase (k for rewinding)
    end: int            # last step of this phase
    eval_every: int
    named: Dict[str, int]   # named checkpoints: name -> step

    @classmethod
    def resolve(cls, hp, iterations_per_epoch: int, start_step=0, end_step=None,
                extra_checkpoints: Iterable = ()):
        """Step strings ('2ep') are resolved and dilated; plain ints are taken as
        iterations already resolved (and dilated) by the caller."""
        ipe, dil = iterations_per_epoch, hp.dilation

        def iters(value):
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            return to_iterations(value, ipe, dil)

        total = to_iterations(hp.training_steps, ipe, dil)
        if total <= 0:
            raise ConfigError(f"training_steps must be positive, got {hp.training_steps!r}")
        start = iters(start_step)
        end = total if end_step is None else iters(end_step)
        if not 0 <= start <= end <= total:
            raise ConfigError(
                f"phase from step {start} to {end} does not fit in training of {total} steps "
                f"({hp.training_steps}); choose steps at most {hp.training_steps}")
        eval_every = to_iterations(hp.eval_every, ipe, dil)
        if eval_every <= 0:
            raise ConfigError(f"eval_every must be positive, got {hp.eval_every!r}")
        if eval_every > total:
            raise ConfigError(
                f"eval_every {hp.eval_every!r} ({eval_every} it) is past the end of training "
                f"({hp.training_steps} = {total} it); make it at most training_steps")
        if total // eval_every > MAX_EVALUATIONS:
            raise ConfigError(
                f"eval_every {hp.eval_every!r} ({eval_every} it) evaluates {total // eval_every} "
                f"times in {total} it of training, beyond the limit of {MAX_EVALUATIONS}; "
                f"raise eval_every or shorten training_steps")
        named = {"init": start, "end": end}
        for value in tuple(hp.checkpoint_steps) + tuple(extra_checkpoints):
            step = iters(value)
            if step > total:
                raise ConfigError(
                    f"checkpoint step {value!r} ({step} iterations) is past the end of training "
                    f"({hp.training_steps} = {total} iterations)")
            if start <= step <= end:
                named[f"step_{step}"] = step
        return cls(total, start, end, eval_every, named)


def build_schedule(hp, total_steps: int, iterations_per_epoch: int,
                   offset=0) -> LotterySchedule:
    """The LR schedule of `hp`; `offset` (an int, or an integer variable that a
    training program sets per phase) is the schedule step of the phase's first
    iteration."""
    milestones = []
    for m in hp.milestones:
        step = to_iterations(m, iterations_per_epoch, hp.dilation)
        if step > total_steps:
            raise ConfigError(f"LR milestone {m!r} ({step} it) is past the end of training "
                              f"({total_steps} it)")
        milestones.append(step)
    warmup = to_iterations(hp.warmup, iterations_per_epoch, hp.dilation)
    if warmup > total_steps:
        raise ConfigError(f"warmup {hp.warmup!r} is longer than training ({total_steps} it)")
    return LotterySchedule(hp.lr, hp.schedule, total_steps, milestones, hp.gamma,
                           hp.final_lr, warmup, offset=offset)


def validate_training(hp, iterations_per_epoch: int, start_step=0, end_step=None,
                      extra_checkpoints: Iterable = ()) -> PhaseSteps:
    """Check every training setting without building anything; return the steps."""
    steps = PhaseSteps.resolve(hp, iterations_per_epoch, start_step, end_step, extra_checkpoints)
    if hp.steps_per_loop < 1:
        raise ConfigError(f"steps_per_loop must be >= 1, got {hp.steps_per_loop}")
    if hp.weight_decay < 0 or not 0 <= hp.label_smoothing < 1:
        raise ConfigError("weight_decay must be >= 0 and label_smoothing in [0, 1)")
    if hp.aux_loss_weight < 0:
        raise ConfigError(f"aux_loss_weight must be >= 0, got {hp.aux_loss_weight}")
    optimizer_class(hp)
    build_schedule(hp, steps.total, iterations_per_epoch)
    return steps
