"""'gradual': gradual magnitude pruning during training (Zhu & Gupta 2018).

The "prune during training" baseline of chapter 5: one training run in which
the lowest-magnitude weights are removed every `frequency` steps, the
sparsity rising from initial_sparsity at begin_step to final_sparsity at
end_step along tensorflow-model-optimization's `PolynomialDecay` schedule
(cubic by default).  tfmot supplies the schedule (when to prune and to what
sparsity); the pruning itself uses tflottery's masks, so the result is a
`Mask` like every other experiment's and the training is our own loop under
any tf.distribute strategy.  GradualHparams, the schedule and the pruning
step live in pruning/gradual.py, which callbacks.GradualPruning shares.

Layout, under replicate_<r>/:

    train/                  the training phase (loop.py layout)
    train/sparsity.jsonl    one record per pruning step: {step, target_sparsity, sparsity}
    mask/                   the final mask, sparsity.json, statistics.json
"""

from absl import logging

from tflottery import masking
from tflottery.experiments.base import REGISTRY
from tflottery.experiments.context import (RunContext, load_or_make_mask, train_phase,
                                           training_program)
from tflottery.plan import Phase
from tflottery.pruning.gradual import (GradualHparams, GradualPruningHook, check_schedule,
                                       polynomial_decay, pruning_steps)
from tflottery.pruning.names import excluded_weights
from tflottery.runs import layout
from tflottery.runs.report_spec import ReportSpec
from tflottery.steps import to_iterations

SPARSITY_LOG = "sparsity.jsonl"


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
        check_schedule(self.hp, *self.resolved_steps(ctx), total=ctx.total_steps())
        excluded_weights(self.hp.excluded_layers, ctx.prunable_names)

    def phases(self, ctx: RunContext):
        return [Phase("gradual", layout.train_dir(ctx.replicate_dir), 0, ctx.total_steps())]

    def run(self, ctx: RunContext) -> dict:
        begin, end, frequency = self.resolved_steps(ctx)
        model = training_program(ctx).model
        out = layout.train_dir(ctx.replicate_dir)
        hook = GradualPruningHook(
            polynomial_decay(self.hp, begin, end, frequency), pruning_steps(begin, end, frequency),
            self.hp.scope,
            excluded_weights(self.hp.excluded_layers, list(masking.prunable_variables(model))),
            layout.file(out, SPARSITY_LOG), ctx.writable)
        final = train_phase(ctx, out, "gradual", mask_hook=hook)
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
