"""'train': dense (or fixed-mask) training of one network, one phase.

Output: replicate_<r>/train/ with metrics, checkpoints ('init', 'end', any
TrainingHparams.checkpoint_steps) and final.json.
"""

from absl import logging

from tflottery.experiments.base import REGISTRY
from tflottery.experiments.context import RunContext, training_program
from tflottery.plan import Phase
from tflottery.training import run_log
from tflottery.training.loop import Trainer, validate_training
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
        validate_training(ctx.training_hp, ctx.dataset.iterations_per_epoch)

    def phases(self, ctx: RunContext):
        end = validate_training(ctx.training_hp, ctx.dataset.iterations_per_epoch).total
        return [Phase("train", layout.train_dir(ctx.replicate_dir), 0, end)]

    def run(self, ctx: RunContext) -> dict:
        program = training_program(ctx)
        trainer = Trainer(ctx.strategy, program.model, ctx.dataset, ctx.training_hp, ctx.data_seed,
                          layout.train_dir(ctx.replicate_dir), writable=ctx.writable,
                          program=program, phase_name="train", run_log=run_log.of(ctx))
        final = trainer.run()
        logging.info("train: test accuracy %.2f%%", 100 * final["test_accuracy"])
        return dict(final, accuracy_of="the trained network")
