"""'lottery': iterative magnitude pruning with resetting/rewinding, and LRR.

IMP (thesis Algorithms 1 and 4): create W0; train to the rewinding step k
(k = 0: nothing to train, W_k = W0); then level 0 trains the dense m*W_k
from k to the end, and each level L >= 1 prunes the lowest-magnitude
remaining weights of level L-1's trained network, rewinds the survivors to
W_k and trains them from k to the end.

LRR (Algorithm 2): level L starts from level L-1's *trained* weights, pruned,
and replays the whole learning-rate schedule from step 0.

Layout, under replicate_<r>/:

    pretrain/                    training from 0 to k; checkpoints/end = W_k
    level_<L>/mask/              mask.npz + sparsity.json of the level
    level_<L>/train/             the level's training phase (loop.py layout)
    level_<L>/branch_<name>/     ablation branches (see branches.py)

Every piece is skipped when its output exists, so re-running the same
command continues a killed run, and a finished run is not retrained.
"""
import dataclasses
from typing import List, Optional, Tuple

import gin
import numpy as np
from absl import logging

from tflottery import masking, pruning
from tflottery.plan import Phase
from tflottery.errors import ConfigError
from tflottery.experiments.base import REGISTRY
from tflottery.experiments.context import (RunContext, layer_fractions_by_weight,
                                           load_or_make_mask, pretrain, train_phase,
                                           training_program)
from tflottery.hparams import Checked, StepText, SummaryHparams
from tflottery.runs import io, layout
from tflottery.runs.report_spec import ReportSpec
from tflottery.steps import to_iterations
from tflottery.training import checkpoints
from tflottery.training.loop import finished_result


@gin.configurable
@dataclasses.dataclass(frozen=True)
class PruningHparams(Checked):
    """How IMP prunes after each level (thesis Algorithms 1, 2, 4).

    fraction: fraction of the *remaining* weights removed per level (0.2).
    levels: number of pruning levels after the dense level 0.
    target_sparsity: if set, the levels are as many as needed to reach it
      (or, with one_shot, the single level prunes straight to it).  With an
      N:M scope they are counted from the densities it reaches (N/M or less
      after the first level), and a target below 1 - N/M is refused.
    one_shot: prune to target_sparsity in one level instead of iteratively.
    scope: 'global' (one magnitude ranking over all layers; the thesis),
      'layerwise' (each layer loses its own fraction; Frankle & Carbin 2019),
      or an N:M pattern such as '2:4' (layerwise, at most N of every M
      consecutive input weights kept; the first level already goes to <= N/M;
      tflottery/pruning/n_m.py).
    layer_fractions: per-layer rates, keyed by layer name ('output') or
      weight name ('output/kernel'); 0 excludes a layer from pruning.  Only
      exclusions (0) are allowed with scope 'global'.
    """

    fraction: float = 0.2
    levels: int = 10
    target_sparsity: Optional[float] = None
    one_shot: bool = False
    scope: str = "global"
    layer_fractions: dict = dataclasses.field(default_factory=dict)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class LotteryHparams(Checked):
    """What happens between pruning levels.

    mode: 'rewind' (IMP: survivors go back to their values at rewind_step;
      rewind_step '0it' resets to initialisation) or 'lrr' (learning-rate
      rewinding: keep the trained weights and replay the whole LR schedule).
    rewind_step: the step k of weight rewinding, e.g. '0it', '500it', '2ep'.
    """

    mode: str = "rewind"
    rewind_step: StepText = "0it"


@gin.configurable
@dataclasses.dataclass(frozen=True)
class BranchHparams(Checked):
    """Ablation branches trained from IMP levels (not part of the run's hash:
    adding a branch later reuses the finished IMP levels).

    names: registered branch names (see `tflottery.experiments.branches`).
    levels: the levels to branch from; None means every pruned level.
    data_seed: the 'retrain' branch's data order seed (None: the replicate's).
    dilation: the 'retrain' branch's factor on every step quantity (None: 1).
    """

    names: Tuple[str, ...] = ()
    levels: Optional[Tuple[int, ...]] = None
    data_seed: Optional[int] = None
    dilation: Optional[float] = None


MODES = ("rewind", "lrr")
# The most pruning levels a run plans (each is a whole training; 1000 levels
# of 20% leave 1e-97 of the weights).
MAX_LEVELS = 1000


@dataclasses.dataclass(frozen=True)
class LevelPlan:
    """The pruning schedule resolved from PruningHparams: fraction per level."""

    fractions: List[float]   # fractions[L-1] is what level L removes; level 0 removes nothing

    @property
    def num_levels(self) -> int:
        return len(self.fractions) + 1

    @classmethod
    def from_hparams(cls, hp: PruningHparams) -> "LevelPlan":
        if not 0.0 <= hp.fraction < 1.0:
            raise ConfigError(f"pruning fraction must be in [0, 1), got {hp.fraction}")
        pruning.select.check_scope(hp.scope)
        if hp.target_sparsity is not None and not 0.0 <= hp.target_sparsity < 1.0:
            raise ConfigError(f"target_sparsity must be in [0, 1), got {hp.target_sparsity}")
        if hp.target_sparsity is not None:
            pruning.select.check_target_sparsity(hp.scope, hp.target_sparsity,
                                                 "PruningHparams.target_sparsity")
        if hp.one_shot:
            if hp.target_sparsity is None:
                raise ConfigError("one_shot pruning needs PruningHparams.target_sparsity")
            return cls([pruning.fraction_for_density(1.0, 1.0 - hp.target_sparsity)])
        if hp.target_sparsity is not None:
            count = pruning.levels_for_sparsity(hp.fraction, hp.target_sparsity, hp.scope)
        else:
            count = hp.levels
        if count < 0:
            raise ConfigError(f"levels must be >= 0, got {count}")
        if count > MAX_LEVELS:
            raise ConfigError(
                f"PruningHparams asks for {count} pruning levels, beyond the limit of "
                f"{MAX_LEVELS} (each level is a whole training); lower levels or "
                f"target_sparsity, or raise fraction")
        return cls([hp.fraction] * count)

    def check_fits(self, num_weights: int) -> None:
        """ConfigError if the last level would keep less than one of `num_weights`
        prunable weights (the levels after that have nothing left to prune)."""
        density = float(np.prod([1.0 - f for f in self.fractions]))
        if density * num_weights < 1.0:
            raise ConfigError(
                f"the last of {self.num_levels - 1} pruning levels keeps {density:.3g} of the "
                f"{num_weights} prunable weights, less than one weight; lower "
                f"PruningHparams.levels or target_sparsity")


def magnitudes(model) -> dict:
    return {name: np.abs(v.numpy()) for name, v in masking.prunable_variables(model).items()}


@REGISTRY.register("lottery")
class LotteryExperiment:
    name = "lottery"
    # What the report needs to know of its runs (the runner records it: experiment.json).
    REPORT = ReportSpec(name, method="LotteryHparams.mode",
                        method_names={"rewind": "imp", "lrr": "lrr"},
                        rewind_step="LotteryHparams.rewind_step", k="pretrain",
                        end_of_run="tflottery.reporting.summary.end_of_run")

    def __init__(self):
        self.pruning_hp = PruningHparams()
        self.lottery_hp = LotteryHparams()
        self.branch_hp = BranchHparams()
        self.summary_hp = SummaryHparams()
        self.plan = None

    def hparams(self):
        """What names the run.  Level L does not depend on how many levels
        follow it, so the number of levels (and, when iterative, the target
        sparsity that sets it) is left out: asking for more levels later
        extends the same run.  Branch and summary settings are not hashed."""
        hp = self.pruning_hp
        hashed = dataclasses.replace(
            hp, levels=PruningHparams.levels,
            target_sparsity=hp.target_sparsity if hp.one_shot else None)
        return [hashed, self.lottery_hp]

    # ---- validation: everything that can be wrong, before anything is written ----
    def validate(self, ctx: RunContext) -> None:
        from tflottery.experiments import branches
        hp = self.lottery_hp
        if hp.mode not in MODES:
            raise ConfigError(f"unknown lottery mode {hp.mode!r}; choose one of: {', '.join(MODES)}")
        ipe = ctx.dataset.iterations_per_epoch
        total = ctx.total_steps()
        k = to_iterations(hp.rewind_step, ipe, ctx.training_hp.dilation)
        if k >= total:
            raise ConfigError(
                f"rewind_step {hp.rewind_step!r} ({k} it) is not before the end of training "
                f"({ctx.training_hp.training_steps} = {total} it); choose a smaller step")
        if hp.mode == "lrr" and k != 0:
            raise ConfigError("learning-rate rewinding keeps the trained weights; "
                              "leave LotteryHparams.rewind_step at '0it' with mode 'lrr'")
        self.plan = LevelPlan.from_hparams(self.pruning_hp)
        shapes = ctx.state.prunable_shapes     # from the runner's throwaway build of the model
        if shapes is not None:
            self.plan.check_fits(sum(int(np.prod(shape)) for shape in shapes.values()))
        layer_fractions_by_weight(self.pruning_hp, ctx.prunable_names)
        if self.pruning_hp.scope == "global" and any(
                v != 0 for v in dict(self.pruning_hp.layer_fractions).values()):
            raise ConfigError("per-layer rates other than 0 (exclusion) need "
                              "PruningHparams.scope = 'layerwise'")
        if self.branch_hp.dilation is not None and not self.branch_hp.dilation > 0:
            raise ConfigError(f"BranchHparams.dilation must be > 0, got {self.branch_hp.dilation}")
        for name in self.branch_hp.names:
            branches.REGISTRY.get(name)
        for level in self.branch_levels():
            if not 0 <= level < self.plan.num_levels:
                raise ConfigError(
                    f"branch level {level} has not run: this IMP run has levels 0.."
                    f"{self.plan.num_levels - 1}; choose levels in that range")
        if not self.summary_hp.matching_tolerance >= 0:
            raise ConfigError("matching_tolerance must be >= 0 percentage points")

    def branch_levels(self):
        if self.branch_hp.levels is None:
            return list(range(1, self.plan.num_levels)) if self.branch_hp.names else []
        return list(self.branch_hp.levels)

    # ---- the run ----
    def run(self, ctx: RunContext) -> dict:
        from tflottery.experiments import branches
        if self.plan is None:
            self.validate(ctx)
        self.pretrain(ctx)
        for level in range(self.plan.num_levels):
            self.run_level(ctx, level)
        for level in self.branch_levels():
            for name in self.branch_hp.names:
                branches.run_branch(self, ctx, name, level)
        level = self.plan.num_levels - 1
        last = io.read_json(layout.file(layout.train_dir(self.level_dir(ctx, level)),
                                        layout.FINAL))
        density = self.mask_of_level(ctx, level).density
        method = "LRR" if self.lottery_hp.mode == "lrr" else "IMP"
        return {"test_accuracy": last["test_accuracy"],
                "accuracy_of": f"the last {method} level (level {level}, "
                               f"{100 * density:.2f}% of weights remaining)"}

    def phases(self, ctx: RunContext) -> List[Phase]:
        """The run's phases in order (for --dry_run and the run's ETA)."""
        from tflottery.experiments import branches
        if self.plan is None:
            self.validate(ctx)
        end = ctx.total_steps()
        k = self.rewind_iterations(ctx)
        out = [Phase("pretrain", self.pretrain_dir(ctx), 0, k)]
        for level in range(self.plan.num_levels):
            start = 0 if self.lottery_hp.mode == "lrr" and level > 0 else k
            out.append(Phase(f"level {level}", layout.train_dir(self.level_dir(ctx, level)),
                             start, end))
        for level in self.branch_levels():
            for name in self.branch_hp.names:
                out.append(branches.phase(self, ctx, name, level))
        return out

    def level_dir(self, ctx: RunContext, level: int) -> str:
        return layout.level_dir(ctx.replicate_dir, level)

    def rewind_iterations(self, ctx: RunContext, training_hp=None) -> int:
        dilation = (training_hp or ctx.training_hp).dilation
        return to_iterations(self.lottery_hp.rewind_step, ctx.dataset.iterations_per_epoch,
                             dilation)

    def pretrain_dir(self, ctx: RunContext) -> str:
        return layout.pretrain_dir(ctx.replicate_dir)

    def pretrain(self, ctx: RunContext) -> None:
        """Train W0 to the rewinding step k (context.pretrain: once per process)."""
        pretrain(ctx, self.pretrain_dir(ctx), self.rewind_iterations(ctx))

    def rewind_weights(self, ctx: RunContext, model) -> None:
        """Load W_k (the weights at the rewinding step) into `model`."""
        self.pretrain(ctx)
        checkpoints.restore_weights(model, layout.checkpoints_dir(self.pretrain_dir(ctx)),
                                    "end")

    def load_start_weights(self, ctx: RunContext, model, level: int, training_hp=None) -> int:
        """Load the weights level `level` starts from; return the step it starts at.

        IMP: W_k and step k.  LRR: level L-1's trained weights and step 0.
        """
        if self.lottery_hp.mode == "lrr" and level > 0:
            checkpoints.restore_weights(
                model, layout.checkpoints_dir(layout.train_dir(self.level_dir(ctx, level - 1))),
                "end")
            return 0
        self.rewind_weights(ctx, model)
        return self.rewind_iterations(ctx, training_hp)

    def trained_model(self, ctx: RunContext, level: int):
        """The run's model, loaded with level `level`'s trained (end) weights and mask.

        It is the training program's model (no second model is built): the
        caller loads the next phase's starting weights into it afterwards.
        """
        model = training_program(ctx).model
        checkpoints.restore_weights(
            model, layout.checkpoints_dir(layout.train_dir(self.level_dir(ctx, level))), "end")
        return model

    def level_mask(self, ctx: RunContext, level: int, invert: bool = False) -> masking.Mask:
        """Level L's mask: level L-1's trained weights, pruned by magnitude."""
        prev = self.trained_model(ctx, level - 1)
        current = masking.get_mask(prev)
        fractions = layer_fractions_by_weight(self.pruning_hp, list(current.keys()))
        return pruning.prune(magnitudes(prev), current, self.plan.fractions[level - 1],
                             scope=self.pruning_hp.scope, layer_fractions=fractions or None,
                             invert=invert)

    def load_or_make_mask(self, ctx: RunContext, directory: str, make) -> masking.Mask:
        return load_or_make_mask(ctx, directory, make)

    def mask_of_level(self, ctx: RunContext, level: int) -> masking.Mask:
        """Level `level`'s mask, made again if its file is missing or damaged."""
        directory = layout.mask_dir(self.level_dir(ctx, level))
        if level == 0:
            return self.load_or_make_mask(
                ctx, directory, lambda: masking.Mask.ones_like(training_program(ctx).model))
        return self.load_or_make_mask(ctx, directory, lambda: self.level_mask(ctx, level))

    def run_level(self, ctx: RunContext, level: int) -> dict:
        out = layout.train_dir(self.level_dir(ctx, level))
        done = finished_result(out)
        if done is not None:
            logging.info("level %d: finished before; skipped", level)
            self.mask_of_level(ctx, level)    # repaired if damaged: branches and lmc read it
            return done
        model = training_program(ctx).model
        mask = self.mask_of_level(ctx, level)
        start = self.load_start_weights(ctx, model, level)
        masking.set_mask(model, mask)
        logging.info("level %d: density %.2f%%, training from step %d", level,
                     100 * mask.density, start)
        final = train_phase(ctx, out, f"level {level}", start_step=start)
        logging.info("level %d: density %.2f%%, test accuracy %.2f%%", level,
                     100 * mask.density, 100 * final["test_accuracy"])
        return final
