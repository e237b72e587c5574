"""'train': dense (or fixed-mask) training of one network, one phase.

Output: replicate_<r>/train/ with metrics, checkpoints ('init', 'end', any
TrainingHparams.checkpoint_steps) and final.json.
"""

from absl import logging

from tflottery.experiments.base import REGISTRY
from tflottery.experiments.context import RunContext, train_phase
from tflottery.plan import Phase
from tflottery.runs import layout
from tflottery.runs.report_spec import ReportSpec


@REGISTRY.register("train")
class TrainExperiment:
    name = "train"
    # What the report needs to know of its runs (the runner records it: experiment.json).
    REPORT = ReportSpec(name, method="dense", dense=True)

    def hparams(self):
        return []

    def validate(self, ctx: RunContext) -> None:
        ctx.total_steps()

    def phases(self, ctx: RunContext):
        return [Phase("train", layout.train_dir(ctx.replicate_dir), 0, ctx.total_steps())]

    def run(self, ctx: RunContext) -> dict:
        final = train_phase(ctx, layout.train_dir(ctx.replicate_dir), "train")
        logging.info("train: test accuracy %.2f%%", 100 * final["test_accuracy"])
        return dict(final, accuracy_of="the trained network")
