"""'train': dense (or fixed-mask) training of one network, one phase.

Output: replicate_<r>/train/ with metrics, checkpoints ('init', 'end', any
TrainingHparams.checkpoint_steps) and final.json.
"""
import os

from absl import logging

from tflottery.experiments.base import REGISTRY
from tflottery.experiments.context import RunContext, train_phase
from tflottery.plan import Phase


@REGISTRY.register("train")
class TrainExperiment:
    name = "train"

    def hparams(self):
        return []

    def validate(self, ctx: RunContext) -> None:
        ctx.total_steps()

    def phases(self, ctx: RunContext):
        return [Phase("train", os.path.join(ctx.replicate_dir, "train"), 0, ctx.total_steps())]

    def run(self, ctx: RunContext) -> dict:
        final = train_phase(ctx, os.path.join(ctx.replicate_dir, "train"), "train")
        logging.info("train: test accuracy %.2f%%", 100 * final["test_accuracy"])
        return dict(final, accuracy_of="the trained network")
