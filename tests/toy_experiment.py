"""The README's worked example of "Adding an experiment": 'toy', defined outside the package.

Training split into ToyHparams.parts equal phases, one directory each
(replicate_<r>/part_<i>/), each starting from the previous one's end.  A gin
file makes it runnable with `import toy_experiment` (this directory on
PYTHONPATH); tests/test_adding_an_experiment.py runs it through the command
line.  It is a module of its own, not the test's, so that pytest's process
never registers 'toy' beside the package's experiments (test_cli compares
its registries with a fresh `--list`).
"""
import dataclasses

import gin

from tflottery.errors import ConfigError
from tflottery.experiments.base import REGISTRY
from tflottery.experiments.context import RunContext, train_phase, training_program
from tflottery.hparams import Checked
from tflottery.plan import Phase
from tflottery.runs import layout
from tflottery.runs.report_spec import ReportSpec
from tflottery.training import checkpoints


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ToyHparams(Checked):
    """parts: how many equal phases training is split into."""

    parts: int = 2


@REGISTRY.register("toy")
class ToyExperiment:
    """Training in ToyHparams.parts equal phases (the README's worked example)."""

    name = "toy"
    # How reports read its runs (recorded in experiment.json): drawn with 'train' runs.
    REPORT = ReportSpec(name, family="train", method="toy parts", dense=True)

    def __init__(self):
        self.hp = ToyHparams()          # read from gin; hparams.json records it

    def hparams(self):
        return [self.hp]                # its non-default fields name the run

    def validate(self, ctx: RunContext) -> None:
        if not 1 <= self.hp.parts <= ctx.total_steps():
            raise ConfigError(f"ToyHparams.parts = {self.hp.parts} is not between 1 and the "
                              f"{ctx.total_steps()} training steps; choose fewer parts")

    def phases(self, ctx: RunContext):
        total, n = ctx.total_steps(), self.hp.parts
        bounds = [total * i // n for i in range(n + 1)]
        return [Phase(f"part {i}", layout.join(ctx.replicate_dir, f"part_{i}"),
                      bounds[i], bounds[i + 1]) for i in range(n)]

    def run(self, ctx: RunContext) -> dict:
        model = training_program(ctx).model
        for i, phase in enumerate(self.phases(ctx)):
            if i == 0:
                training_program(ctx).load_initial_weights()
            else:   # the previous part's end, also when this process did not train it
                previous = self.phases(ctx)[i - 1].directory
                checkpoints.restore_weights(model, layout.checkpoints_dir(previous), "end")
            final = train_phase(ctx, phase.directory, phase.name, start_step=phase.start,
                                end_step=phase.end)
        return dict(final, accuracy_of=f"the network after {self.hp.parts} parts")
