"""Gradual magnitude pruning during training (Zhu & Gupta 2018): the schedule and the step.

Library code shared by the 'gradual' experiment (experiments/gradual.py,
which trains with tflottery's loop) and by callbacks.GradualPruning (which
prunes inside a user's `model.fit`): both resolve GradualHparams to
iterations, check them with `check_schedule`, take the sparsity at a step
from tensorflow-model-optimization's PolynomialDecay (`polynomial_decay`)
and prune with `GradualPruningHook`.  Living here, not in the experiment,
keeps callbacks.py free of experiment code.  Not imported by
`tflottery.pruning` itself, which stays NumPy only.
"""
import dataclasses
from typing import Optional, Tuple

import gin
import numpy as np
import tensorflow as tf
from absl import logging

from tflottery import masking
from tflottery.errors import ConfigError
from tflottery.hparams import Checked, StepText
from tflottery.pruning.select import check_number, check_scope, prune
from tflottery.runs import step_log


@gin.configurable
@dataclasses.dataclass(frozen=True)
class GradualHparams(Checked):
    """Gradual magnitude pruning during training (Zhu & Gupta 2018).

    The sparsity at step t follows tensorflow-model-optimization's
    PolynomialDecay: s_t = final + (initial - final) * (1 - (t - begin) /
    (end - begin))^power between begin_step and end_step, applied every
    `frequency` steps by pruning the lowest-magnitude weights.

    initial_sparsity: the sparsity at begin_step.
    final_sparsity: the sparsity reached at end_step and kept after it.
    begin_step / end_step: where the schedule starts and ends ('0it', '1ep').
    power: the exponent of the polynomial (3 as in Zhu & Gupta; 1 is linear).
    frequency: steps between two prunings.
    scope: 'layerwise' (every layer at s_t, as tfmot's own pruning does),
      'global', or an N:M pattern such as '2:4' (pruning/n_m.py).
    excluded_layers: layer names never pruned.
    """

    initial_sparsity: float = 0.0
    final_sparsity: float = 0.9
    begin_step: StepText = "0it"
    end_step: StepText = "1ep"
    power: int = 3
    frequency: StepText = "100it"
    scope: str = "layerwise"
    excluded_layers: Tuple[str, ...] = ()


# The largest exponent of the polynomial schedule: (1 - t)^power in float32
# is 0 after the first step beyond this anyway.
MAX_POWER = 100


def check_schedule(hp: GradualHparams, begin: int, end: int, frequency: int,
                   total: Optional[int] = None) -> None:
    """The checks of GradualHparams with its steps resolved to iterations.

    Shared by the experiment (total: the end of training, which end_step
    must precede so the network trains at the final sparsity) and by
    callbacks.GradualPruning under `fit` (total None: no known end).
    """
    check_number("GradualHparams.initial_sparsity", hp.initial_sparsity, 0.0, 1.0,
                 high_open=True)
    check_number("GradualHparams.final_sparsity", hp.final_sparsity, 0.0, 1.0, high_open=True)
    if hp.final_sparsity < hp.initial_sparsity:
        raise ConfigError("GradualHparams.final_sparsity must be >= initial_sparsity")
    check_scope(hp.scope)
    if not 1 <= hp.power <= MAX_POWER:
        raise ConfigError(f"GradualHparams.power must be in [1, {MAX_POWER}] (the exponent of "
                          f"the sparsity schedule; 3 in Zhu & Gupta), got {hp.power}")
    if frequency < 1:
        raise ConfigError("GradualHparams.frequency must be at least one step")
    if total is None and not begin < end:
        raise ConfigError(f"gradual pruning needs begin_step < end_step; got {begin} it and "
                          f"{end} it; fix GradualHparams")
    if total is not None and not begin < end < total:
        raise ConfigError(
            f"gradual pruning needs begin_step < end_step < the end of training (so the "
            f"network trains at the final sparsity); got {begin} it, {end} it and "
            f"{total} it; fix GradualHparams")


def pruning_steps(begin: int, end: int, frequency: int) -> list:
    """begin, every `frequency` steps after it, and end (so final_sparsity is reached at
    end_step even when it is off the frequency grid)."""
    return sorted(set(range(begin, end + 1, frequency)) | {end})


def polynomial_decay(hp: GradualHparams, begin: int, end: int, frequency: int):
    """tfmot's PolynomialDecay for these (already resolved) step counts."""
    import tensorflow_model_optimization as tfmot
    return tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=hp.initial_sparsity, final_sparsity=hp.final_sparsity,
        begin_step=begin, end_step=end, power=hp.power, frequency=frequency)


class GradualPruningHook:
    """Called by the Trainer at each pruning step: prune to the schedule's sparsity.

    Removes the lowest-magnitude remaining weights until the prunable,
    non-excluded weights reach the target sparsity; pruned weights stay
    pruned (the sparsity only rises).
    """

    def __init__(self, schedule, steps, scope: str, excluded, log_path: str, writable: bool):
        self.schedule = schedule
        self.steps = list(steps)
        self.scope = scope
        self.excluded = list(excluded)
        self.log_path = log_path
        self.writable = writable

    def target(self, step: int) -> float:
        _, sparsity = self.schedule(tf.constant(step, tf.int64))
        return float(sparsity)

    def __call__(self, model, step: int) -> None:
        current = masking.get_mask(model)
        names = [n for n in current if n not in self.excluded]
        total = sum(current[n].size for n in names)
        kept = sum(int(current[n].sum()) for n in names)
        target = self.target(step)
        goal_kept = int(np.floor((1.0 - target) * total + 0.5))
        if kept > goal_kept and kept > 0:
            weights = {n: np.abs(v.numpy()) for n, v in masking.prunable_variables(model).items()}
            fraction = min(1.0 - 1e-12, (kept - goal_kept) / kept)
            if self.scope == "layerwise":
                fraction = 1.0 - (1.0 - target) / max(kept / total, 1e-12)
                fraction = min(max(fraction, 0.0), 1.0 - 1e-12)
            new = prune(weights, current, fraction, scope=self.scope,
                                layer_fractions={n: 0.0 for n in self.excluded} or None)
            masking.set_mask(model, new)
            current = new
        achieved = 1.0 - sum(int(current[n].sum()) for n in names) / total
        logging.info("gradual pruning at step %d: target sparsity %.2f%%, now %.2f%%", step,
                     100 * target, 100 * achieved)
        self._log(step, target, achieved)

    def _log(self, step, target, achieved):
        if self.writable:
            step_log.write(self.log_path, {"step": step, "target_sparsity": target,
                                           "sparsity": achieved})
