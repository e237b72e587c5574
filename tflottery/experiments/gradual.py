"""'gradual': gradual magnitude pruning during training (Zhu & Gupta 2018).

The "prune during training" baseline of chapter 5: one training run in which
the lowest-magnitude weights are removed every `frequency` steps, the
sparsity rising from initial_sparsity at begin_step to final_sparsity at
end_step along tensorflow-model-optimization's `PolynomialDecay` schedule
(cubic by default).  tfmot supplies the schedule (when to prune and to what
sparsity); the pruning itself uses tflottery's masks, so the result is a
`Mask` like every other experiment's and the training is our own loop under
any tf.distribute strategy.

Layout, under replicate_<r>/:

    train/                  the training phase (loop.py layout)
    train/sparsity.jsonl    one record per pruning step: {step, target_sparsity, sparsity}
    mask/                   the final mask, sparsity.json, statistics.json
"""
from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging

from tflottery import masking, pruning
from tflottery.errors import ConfigError
from tflottery.experiments.base import REGISTRY
from tflottery.experiments.context import (RunContext, excluded_weights, load_or_make_mask,
                                           training_program)
from tflottery.hparams import GradualHparams
from tflottery.plan import Phase
from tflottery.pruning.select import check_number, check_scope
from tflottery.runs import layout, step_log
from tflottery.runs.report_spec import ReportSpec
from tflottery.steps import to_iterations
from tflottery.training import run_log
from tflottery.training.loop import Trainer, validate_training

SPARSITY_LOG = "sparsity.jsonl"
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
            new = pruning.prune(weights, current, fraction, scope=self.scope,
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


@REGISTRY.register("gradual")
class GradualExperiment:
    name = "gradual"
    # What the report needs to know of its runs (the runner records it: experiment.json).
    REPORT = ReportSpec(name, method="gradual",
                        target_sparsity="GradualHparams.final_sparsity")

    def __init__(self):
        self.hp = GradualHparams()

    def hparams(self):
        return [self.hp]

    def resolved_steps(self, ctx: RunContext):
        ipe, dilation = ctx.dataset.iterations_per_epoch, ctx.training_hp.dilation
        return tuple(to_iterations(v, ipe, dilation)
                     for v in (self.hp.begin_step, self.hp.end_step, self.hp.frequency))

    def validate(self, ctx: RunContext) -> None:
        steps = validate_training(ctx.training_hp, ctx.dataset.iterations_per_epoch)
        check_schedule(self.hp, *self.resolved_steps(ctx), total=steps.total)
        excluded_weights(self.hp.excluded_layers, ctx.prunable_names)

    def phases(self, ctx: RunContext):
        total = validate_training(ctx.training_hp, ctx.dataset.iterations_per_epoch).total
        return [Phase("gradual", layout.train_dir(ctx.replicate_dir), 0, total)]

    def run(self, ctx: RunContext) -> dict:
        begin, end, frequency = self.resolved_steps(ctx)
        program = training_program(ctx)
        model = program.model
        out = layout.train_dir(ctx.replicate_dir)
        hook = GradualPruningHook(
            polynomial_decay(self.hp, begin, end, frequency), pruning_steps(begin, end, frequency),
            self.hp.scope,
            excluded_weights(self.hp.excluded_layers, list(masking.prunable_variables(model))),
            layout.file(out, SPARSITY_LOG), ctx.writable)
        final = Trainer(ctx.strategy, model, ctx.dataset, ctx.training_hp, ctx.data_seed, out,
                        writable=ctx.writable, mask_hook=hook, program=program,
                        phase_name="gradual", run_log=run_log.of(ctx)).run()
        def final_mask():
            from tflottery.training import checkpoints
            checkpoints.restore_weights(model, layout.checkpoints_dir(out), "end")
            return masking.get_mask(model)
        mask = load_or_make_mask(ctx, layout.mask_dir(ctx.replicate_dir), final_mask,
                                 statistics=True)
        final = dict(final, density=mask.density,
                     accuracy_of=f"the gradually pruned network ({100 * mask.density:.2f}% of "
                                 f"weights remaining)")
        logging.info("gradual: density %.2f%%, test accuracy %.2f%%", 100 * final["density"],
                     100 * final["test_accuracy"])
        return final
