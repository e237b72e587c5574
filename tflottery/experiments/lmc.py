"""'lmc': instability analysis by linear mode connectivity (thesis Algorithm 3).

For each rewinding step k: take the network's state at k (dense: trained
from W0 to k; 'imp': the IMP subnetwork m_L * W_k of the matching lottery
run), train two copies to the end with different data orders and
augmentation, and evaluate the linear path between them at `num_alphas`
points on the test and the training set.  Instability = the highest error on
the path minus the mean of the two end points' errors; stable when below
SummaryHparams.stability_threshold points.

Layout, under replicate_<r>/k_<k iterations>/ (dense) or
replicate_<r>/level_<L>/k_<k iterations>/ (subnetworks of IMP level L):

    pretrain/            (dense) training from W0 to k
    copy_0/, copy_1/...  the copies' training phases (one per copy seed)
    instability.json     curves, barriers, end accuracies, distances, soup (written last)
    instability_per_epoch.png  with per_epoch: the instability during the copies' training

For 'imp', the lottery run directory sits beside this run in root_dir, named
exactly as `--gin_file=imp.gin` with rewind_step k would name it, so both
experiments share its levels.

'independent' (Entezari et al. 2022; Ainsworth et al. 2022): copy 0 starts
from the run's W0 and copy i > 0 from a fresh initialisation (model seed +
INDEPENDENT_SEED_STRIDE x i), so the copies differ in initialisation as well
as in SGD noise; only k = 0 is defined.  'independent_imp': the same for IMP
subnetworks -- copy i starts from the IMP subnetwork at `level` (rewound to
k) of the lottery run's replicate r + INDEPENDENT_SEED_STRIDE x i, i.e. of a
lottery run from another initialisation, with its own mask.  The copies'
masks then differ even before alignment, and every path is evaluated under
their union (each end's function is unchanged: its pruned weights are 0.0);
"density" reports copy 0's.

With InstabilityHparams.align set, copy 1 is then permuted to match copy 0
(analysis/align.py) and the curves, barriers and distances are measured
again: instability.json holds the raw results at the top level and the
aligned ones under "aligned", side by side, and the summary tables and the
plot show both.  Permuting a subnetwork permutes its mask, so the aligned
path runs between networks with different masks; both ends are evaluated
with the union of the two (each end's pruned weights are 0.0, so its
function is unchanged), and the path's interior uses that union.

Every analysis also reports the uniform soup of all the copies (N =
len(copy_seeds)): the accuracy of their weight average (BatchNorm statistics
treated as along the path), raw and, with align set, after aligning each
copy to copy 0.
"""
import dataclasses
import os
from typing import Optional, Tuple

import gin
import numpy as np
from absl import logging

from tflottery import analysis, masking
from tflottery.analysis import align, align_soup
from tflottery.errors import ConfigError
from tflottery.experiments.base import REGISTRY
from tflottery.experiments.context import (RunContext, build_masked_model, hold_lock,
                                           load_fresh_initialisation, pretrain, train_phase,
                                           training_program)
from tflottery.hparams import Checked, ExperimentHparams, StepText, SummaryHparams
from tflottery.plan import Phase
from tflottery.runs import damage, io, layout
from tflottery.runs.report_spec import ReportSpec
from tflottery.runs.naming import run_name
from tflottery.steps import to_iterations
from tflottery.training import checkpoints
from tflottery.training.loop import finished_result
from tflottery.training.program import assign_values, variable_values


@gin.configurable
@dataclasses.dataclass(frozen=True)
class InstabilityHparams(Checked):
    """Instability analysis (thesis Algorithm 3, chapter 4).

    rewind_steps: the steps k to analyse, e.g. ('0it', '500it', '2ep');
      not hashed, so adding a k extends the same run.
    subnetwork: 'dense'; 'imp' for the IMP subnetworks at `levels` found by
      the lottery run with the same Pruning/LotteryHparams and rewinding to k
      (its masks are reused from that run directory, or made there); or a
      control built from those levels: 'random_reinit' (IMP mask, fresh
      initialisation), 'random_prune_global' or 'random_prune_layerwise'
      (random masks of the same density, rewound weights); or 'independent':
      the copies start from different initialisations (copy i > 0 from model
      seed + 100000 x i; k must be 0), the setting of Entezari et al. and
      Ainsworth et al.; or 'independent_imp': copy i is the IMP subnetwork at
      `levels` of the lottery run's replicate r + 100000 x i (another
      initialisation, its own mask).
    levels: the IMP levels (sparsities) to analyse; not hashed.
    copy_seeds: data-order seeds of the copies (offset by 1000 x replicate):
      two or more; the path is measured between the first two, and the
      uniform average of all of them (a "soup") is evaluated too.
    schedule: 'continue' (train the copies for T - k steps, the LR schedule
      continuing from k) or 'restart' (T steps with the schedule restarted:
      the control of thesis 4.1.2).
    bn_mode: 'recompute' (BatchNorm statistics recomputed for every
      interpolated network; the default) or 'interpolate'.
    num_alphas: points on the linear path, evenly spaced in [0, 1].
    per_epoch: also measure the instability between the copies at every
      epoch of their training (thesis Figure 4-5).
    align: None, or 'weights' / 'activations': also report every curve,
      instability, distance and the soup after permuting copy 2's units to
      match copy 1 (analysis/align.py: weight matching, or correlation of
      activations on training data).
    align_restarts: weight matching from this many visiting orders (seeds
      0, 1, ...), keeping the permutation of the highest objective (a
      different order can end in another local optimum).  With more than
      one, the aligned result also lists every restart's objective and test
      barriers, and their spread.  Only with align = 'weights'.
    """

    rewind_steps: Tuple[StepText, ...] = ("0it",)
    subnetwork: str = "dense"
    levels: Tuple[int, ...] = (0,)
    copy_seeds: Tuple[int, ...] = (1, 2)
    schedule: str = "continue"
    bn_mode: str = "recompute"
    num_alphas: int = 30
    per_epoch: bool = False
    align: Optional[str] = None
    align_restarts: int = 1


SUBNETWORKS = ("dense", "imp", "random_reinit", "random_prune_global", "random_prune_layerwise",
               "independent", "independent_imp")
SCHEDULES = ("continue", "restart")
ALIGN_METHODS = ("weights", "activations")
MAX_ALIGN_RESTARTS = 100      # each restart is a whole weight-matching search
# Copy i > 0 of an 'independent' analysis starts from model seed + this x i
# ('independent_imp': from the lottery run's replicate r + this x i): far
# from the replicate seeds (0, 1, ...) that give the runs' own W0.
INDEPENDENT_SEED_STRIDE = 100000
# Activation matching correlates the units' activations on this many
# training examples (a fixed data order, the same for every k).
ALIGN_EXAMPLES = 1000
ALIGN_DATA_SEED = 0


@REGISTRY.register("lmc")
class InstabilityExperiment:
    name = "lmc"
    # What the report needs to know of its runs (the runner records it: experiment.json).
    REPORT = ReportSpec(name, method="InstabilityHparams.subnetwork",
                        end_of_run="tflottery.reporting.instability.end_of_run")

    def __init__(self):
        self.hp = InstabilityHparams()
        self.summary_hp = SummaryHparams()
        # What the run builds once and every analysis reuses (an experiment
        # object serves one run): {bn_mode: (copies, Interpolator, loops)},
        # the alignment images, and {lottery replicate dir: levels checked}.
        self._analysis_models = {}
        self._alignment_images = None
        self._lottery_levels_run = {}

    @property
    def uses_lottery(self) -> bool:
        """Whether the state at k comes from a lottery run's IMP level."""
        return self.hp.subnetwork not in ("dense", "independent")

    @property
    def independent(self) -> bool:
        """Whether the copies start from different initialisations."""
        return self.hp.subnetwork in ("independent", "independent_imp")

    def hparams(self):
        """rewind_steps and levels are left out: adding a k or a level extends
        the run.  For subnetworks, the pruning/lottery settings that define
        the masks are included."""
        hashed = [dataclasses.replace(self.hp, rewind_steps=InstabilityHparams.rewind_steps,
                                      levels=InstabilityHparams.levels)]
        if self.uses_lottery:
            from tflottery.experiments.lottery import LotteryExperiment
            # Only the pruning settings: lottery_for() fixes mode and rewind step.
            hashed += LotteryExperiment().hparams()[:1]
        return hashed

    # ---- validation ----
    def validate(self, ctx: RunContext) -> None:
        hp = self.hp
        for value, allowed, what in ((hp.subnetwork, SUBNETWORKS, "subnetwork"),
                                     (hp.schedule, SCHEDULES, "schedule"),
                                     (hp.bn_mode, analysis.BN_MODES, "bn_mode")):
            if value not in allowed:
                raise ConfigError(f"unknown instability {what} {value!r}; choose one of: "
                                  f"{', '.join(allowed)}")
        if not 2 <= hp.num_alphas <= analysis.MAX_ALPHAS:
            raise ConfigError(f"InstabilityHparams.num_alphas must be in [2, "
                              f"{analysis.MAX_ALPHAS}], got {hp.num_alphas}")
        if len(hp.copy_seeds) < 2 or len(set(hp.copy_seeds)) != len(hp.copy_seeds):
            raise ConfigError(f"copy_seeds must be two or more different seeds, got "
                              f"{hp.copy_seeds}")
        if hp.align is not None and hp.align not in ALIGN_METHODS:
            raise ConfigError(f"unknown instability align {hp.align!r}; choose None or one of: "
                              f"{', '.join(ALIGN_METHODS)}")
        if not 1 <= hp.align_restarts <= MAX_ALIGN_RESTARTS:
            raise ConfigError(f"InstabilityHparams.align_restarts must be in [1, "
                              f"{MAX_ALIGN_RESTARTS}], got {hp.align_restarts}")
        if hp.align_restarts > 1 and hp.align != "weights":
            raise ConfigError(f"InstabilityHparams.align_restarts = {hp.align_restarts} restarts "
                              f"weight matching, but align is {hp.align!r}; set align = "
                              "'weights' or align_restarts = 1")
        if not hp.rewind_steps:
            raise ConfigError("InstabilityHparams.rewind_steps is empty; give at least one step")
        total = ctx.total_steps()
        for k in self.rewind_iterations(ctx):
            if k >= total:
                raise ConfigError(
                    f"rewind step {k} it is not before the end of training "
                    f"({ctx.training_hp.training_steps} = {total} it); choose smaller steps")
            if k != 0 and hp.subnetwork == "independent":
                raise ConfigError(
                    f"subnetwork 'independent' starts the copies from different "
                    f"initialisations, so only k = 0 is defined, got rewind step {k} it; set "
                    "InstabilityHparams.rewind_steps = ('0it',)")
        if hp.subnetwork == "independent_imp" and ctx.training_hp.model_seed is not None:
            raise ConfigError(
                "subnetwork 'independent_imp' takes each copy's IMP subnetwork from another "
                "replicate of the lottery run, which TrainingHparams.model_seed would give the "
                "same initialisation; leave model_seed unset")
        if not self.uses_lottery and tuple(hp.levels) != InstabilityHparams.levels:
            raise ConfigError(
                f"InstabilityHparams.levels = {tuple(hp.levels)} needs IMP subnetworks, but "
                f"subnetwork {hp.subnetwork!r} has no pruning levels; leave levels at "
                f"{InstabilityHparams.levels} or choose subnetwork 'imp'")
        if self.uses_lottery:
            if not hp.levels:
                raise ConfigError("InstabilityHparams.levels is empty; give at least one level")
            for k_text in hp.rewind_steps:
                lottery, _ = self.lottery_for(ctx, k_text)
                for level in hp.levels:
                    if not 0 <= level < lottery.plan.num_levels:
                        raise ConfigError(
                            f"IMP level {level} is not in the lottery run's levels 0.."
                            f"{lottery.plan.num_levels - 1}; raise PruningHparams.levels")

    def rewind_iterations(self, ctx: RunContext):
        ipe, dil = ctx.dataset.iterations_per_epoch, ctx.training_hp.dilation
        return [to_iterations(k, ipe, dil) for k in self.hp.rewind_steps]

    def analyses(self, ctx: RunContext):
        """(level, k as written, k in iterations) of every analysis, in the order they run
        (level None: the dense network)."""
        levels = list(self.hp.levels) if self.uses_lottery else [None]
        return [(level, k_text, k) for level in levels
                for k_text, k in zip(self.hp.rewind_steps, self.rewind_iterations(ctx))]

    @staticmethod
    def analysis_dir(ctx: RunContext, level, k: int) -> str:
        return layout.analysis_dir(ctx.replicate_dir, level, k)

    @staticmethod
    def analysis_name(level, k: int) -> str:
        """'k=500' or 'level 3 / k=500': what the logs and the plan call an analysis's phases
        ('k=500 / copy 1', 'k=500 / pretrain'), so that the names of a run's phases differ."""
        return f"k={k}" if level is None else f"level {level} / k={k}"

    def copy_start(self, k: int) -> int:
        """The step the copies' training starts from (the LR schedule's offset)."""
        return k if self.hp.schedule == "continue" else 0

    def phases(self, ctx: RunContext):
        """The run's phases in order (for --dry_run and the run's ETA): per analysis the
        training to k (dense: its pretraining; subnetworks: the lottery runs' phases it
        needs, once) and then its copies."""
        total = ctx.total_steps()
        out, seen = [], set()
        for level, k_text, k in self.analyses(ctx):
            directory, name = self.analysis_dir(ctx, level, k), self.analysis_name(level, k)
            if self.uses_lottery:
                needed = [p for p in self.lottery_phases(ctx, level, k_text)
                          if p.directory not in seen]
                seen.update(p.directory for p in needed)
                out += needed
            else:
                out.append(Phase(f"{name} / pretrain", layout.pretrain_dir(directory), 0, k))
            out += [Phase(f"{name} / copy {i}", layout.copy_dir(directory, i),
                          self.copy_start(k), total) for i in range(len(self.hp.copy_seeds))]
        return out

    def lottery_phases(self, ctx: RunContext, level, k_text: str):
        """The phases of the lottery run(s) whose IMP level `level` the copies start from:
        its pretraining and levels 0..level ('independent_imp': of every copy's replicate)."""
        replicates = [ctx.replicate]
        if self.hp.subnetwork == "independent_imp":
            replicates += [ctx.replicate + INDEPENDENT_SEED_STRIDE * i
                           for i in range(1, len(self.hp.copy_seeds))]
        out = []
        for replicate in replicates:
            lottery, lottery_ctx = self.lottery_for(dataclasses.replace(ctx, replicate=replicate),
                                                    k_text)
            # Its plan: the pretraining, then the levels in order (lottery_for sets no branches).
            out += lottery.phases(lottery_ctx)[:level + 2]
        return out

    # ---- where the state at step k comes from ----
    def lottery_for(self, ctx: RunContext, k_text: str):
        """The lottery experiment (and its context) with rewinding to k."""
        from tflottery.experiments.lottery import LotteryExperiment
        lottery = LotteryExperiment()
        lottery.lottery_hp = dataclasses.replace(lottery.lottery_hp, mode="rewind",
                                                 rewind_step=k_text)
        lottery.branch_hp = dataclasses.replace(lottery.branch_hp, names=())
        hps = [ExperimentHparams(name="lottery"), ctx.dataset_hp, ctx.model_hp, ctx.training_hp]
        name = run_name("lottery", hps + lottery.hparams())
        lottery_ctx = dataclasses.replace(ctx, run_dir=layout.run_dir(os.path.dirname(ctx.run_dir),
                                                                    name))
        lottery.validate(lottery_ctx)
        return lottery, lottery_ctx

    def state_at_k(self, ctx: RunContext, level, k_text: str, k: int, out: str):
        """Load the state at k into the run's model; return (its mask, W0 as a vector under it)."""
        from tflottery.experiments import branches
        program = training_program(ctx)
        model = program.model
        if not self.uses_lottery:
            pretrain_dir = layout.pretrain_dir(out)
            pretrain(ctx, pretrain_dir, k, phase_name=f"{self.analysis_name(level, k)} / pretrain")
            w_init = self.initial_weights(model, layout.checkpoints_dir(pretrain_dir))
            checkpoints.restore_weights(model, layout.checkpoints_dir(pretrain_dir), "end")
            return masking.get_mask(model), w_init
        lottery, lottery_ctx = self.lottery_for(ctx, k_text)
        hold_lock(ctx, lottery_ctx.run_dir)
        done = self._lottery_levels_run.setdefault(lottery_ctx.replicate_dir, set())
        for lvl in range(level + 1):
            if lvl not in done:     # each checked once per process, not once per k
                lottery.run_level(lottery_ctx, lvl)
                done.add(lvl)
        mask = lottery.mask_of_level(lottery_ctx, level)
        init_dir = layout.checkpoints_dir(lottery.pretrain_dir(lottery_ctx))
        fresh_seed = None
        if self.hp.subnetwork not in ("imp", "independent_imp"):
            # Made before the state at k is loaded: a mask may need the model
            # for itself (the inverted one reads level L-1's trained weights).
            spec = branches.REGISTRY.get(self.hp.subnetwork)
            seed = branches.branch_seed(ctx.replicate, level, self.hp.subnetwork)
            mask = spec.make_mask(lottery, lottery_ctx, level, mask, seed)
            fresh_seed = seed if spec.fresh_init else None
        if fresh_seed is None:
            w_init = self.initial_weights(model, init_dir, mask)
            lottery.rewind_weights(lottery_ctx, model)
        else:
            # A fresh initialisation is its own W0 (and its own state at k).
            load_fresh_initialisation(ctx, model, fresh_seed)
        masking.set_mask(model, mask)
        if fresh_seed is not None:
            w_init = analysis.weight_vector(model)
        return mask, w_init

    @staticmethod
    def initial_weights(model, init_dir: str, mask=None):
        """W0 from a phase's 'init' checkpoint, as a vector, under `mask` if given.

        Loads it into `model` (the caller loads what it needs afterwards).
        """
        checkpoints.restore_weights(model, init_dir, "init")
        if mask is not None:
            masking.set_mask(model, mask)
        return analysis.weight_vector(model)

    def analysis_models(self, ctx: RunContext):
        """((copy A, copy B), their Interpolator, their PredictionLoops), built once per run.

        The copies are trained one after the other in the training program's
        model and their end weights loaded into A and B; the traced functions
        of the Interpolator (with its third, interpolated network) and of the
        prediction loops then serve every k and level of the run.
        """
        key = self.hp.bn_mode
        if key not in self._analysis_models:
            a, b, mix = (build_masked_model(ctx) for _ in range(3))
            interp = analysis.Interpolator(ctx.strategy, a, b, mix, ctx.dataset,
                                           bn_mode=self.hp.bn_mode)
            loops = tuple(analysis.PredictionLoop(ctx.strategy, m, ctx.dataset) for m in (a, b))
            self._analysis_models[key] = ((a, b), interp, loops)
        return self._analysis_models[key]

    # ---- the run ----
    def run(self, ctx: RunContext) -> dict:
        analyses = self.analyses(ctx)
        results = [self.analyse_k(ctx, *analysis) for analysis in analyses]
        level, _, k = analyses[-1]
        last = results[-1]
        remaining = (f", {100 * last['density']:.2f}% of weights remaining"
                     if self.uses_lottery else "")
        return {"test_accuracy": last["end_accuracy"][0],
                "accuracy_of": f"{self.analysis_name(level, k)} / copy 0 (the last analysis"
                               f"{remaining})"}

    def analyse_k(self, ctx: RunContext, level, k_text: str, k: int) -> dict:
        out = self.analysis_dir(ctx, level, k)
        result_path = layout.file(out, layout.INSTABILITY)
        start = self.copy_start(k)
        ipe = ctx.dataset.iterations_per_epoch
        total = ctx.total_steps()
        epochs = [e * ipe for e in range(1, total // ipe + 1) if start < e * ipe <= total]
        extra = list(epochs) if self.hp.per_epoch else []
        done = damage.read_output(result_path, io.read_json)
        if done is not None and self.copies_intact(out, extra):
            return done
        if done is not None:
            logging.warning("%s: a copy's files are damaged: training it again and measuring "
                            "the analysis again", self.analysis_name(level, k))
        mask, w_init = self.state_at_k(ctx, level, k_text, k, out)
        model = training_program(ctx).model
        state_k = variable_values(model)
        w_k = analysis.weight_vector(model)
        copies, interp, loops = self.analysis_models(ctx)
        for i, seed in enumerate(self.hp.copy_seeds):
            assign_values(model, state_k)
            if self.independent and i > 0:
                self.load_independent_start(ctx, level, k_text, k, out, i)
            data_seed = seed + 1000 * ctx.replicate
            phase = layout.copy_dir(out, i)
            train_phase(ctx, phase, f"{self.analysis_name(level, k)} / copy {i}",
                        start_step=start, data_seed=data_seed, extra_checkpoints=extra)
        self.load_copies(copies, out)
        share_union_mask(copies)
        result = {
            "k": k, "rewind_step": k_text, "subnetwork": self.hp.subnetwork,
            "level": level,
            "density": mask.density, "bn_mode": self.hp.bn_mode, "schedule": self.hp.schedule,
            **self.measure(copies, interp, loops, w_init, w_k),
            "dense_accuracy": self.dense_accuracy(ctx, k_text),
        }
        if self.hp.align:
            permutation = self.align_copies(ctx, copies)
            result["aligned"] = {"method": self.hp.align,
                                 "moved_fraction": permutation.moved_fraction(),
                                 **self.measure(copies, interp, loops, w_init, w_k)}
            if self.hp.align_restarts > 1:
                result["aligned"]["restarts"] = self.restart_barriers(
                    copies, interp, out, permutation, result["aligned"]["curves"]["test"])
        if self.hp.per_epoch:
            result["per_epoch"] = self.per_epoch(ctx, copies, interp, out, epochs)
        result["soup"] = self.soup(ctx, copies, interp, out)
        name = self.analysis_name(level, k)
        logging.info("%s: %s", name, barrier_text(result))
        if self.hp.align:
            logging.info("%s: after %s matching: %s", name, self.hp.align,
                         barrier_text(result["aligned"]))
        if "restarts" in result.get("aligned", {}):
            restarts = result["aligned"]["restarts"]
            barriers = [100 * run["test_barrier"] for run in restarts["runs"]]
            logging.info("%s: %d weight-matching restarts: test instability %.2f to %.2f "
                         "points (spread %.2f); aligned by restart %d, the highest objective",
                         name, len(barriers), min(barriers), max(barriers),
                         100 * restarts["test_barrier_spread"], restarts["chosen"])
        if ctx.writable:
            io.atomic_write_json(result_path, result)
        return result

    def copies_intact(self, out: str, extra) -> bool:
        """Whether every copy of the analysis in `out` is finished with its files whole.

        instability.json is measured from the copies' end (and per-epoch)
        checkpoints, which a later report, alignment or soup reads again; a
        damaged copy file is set aside (runs/damage.py) and the copy redone.
        """
        named = ("init", "end") + tuple(f"step_{step}" for step in extra)
        return all([finished_result(layout.copy_dir(out, i), named) is not None
                    for i in range(len(self.hp.copy_seeds))])

    def load_independent_start(self, ctx: RunContext, level, k_text: str, k: int, out: str,
                               i: int) -> None:
        """Load copy i's start of an independent analysis into the run's model: a fresh
        initialisation, or the IMP subnetwork of lottery replicate r + STRIDE x i.

        That lottery replicate trains in the run's one training program, whose
        W0 (`initial_values`, what a lottery's level 0 starts from) is this
        run's; for the time of the call it holds the other replicate's W0.
        """
        program = training_program(ctx)
        if self.hp.subnetwork == "independent":
            load_fresh_initialisation(ctx, program.model,
                                      ctx.model_seed + INDEPENDENT_SEED_STRIDE * i)
            return
        other = dataclasses.replace(ctx, replicate=ctx.replicate + INDEPENDENT_SEED_STRIDE * i)
        own_w0 = program.initial_values
        load_fresh_initialisation(ctx, program.model, other.model_seed)
        program.initial_values = variable_values(program.model)
        try:
            self.state_at_k(other, level, k_text, k, out)
        finally:
            program.initial_values = own_w0

    @staticmethod
    def load_copies(copies, out: str, indices=(0, 1)) -> None:
        """Load the end weights of copies `indices` of the analysis in `out` into `copies`."""
        for model, i in zip(copies, indices):
            checkpoints.restore_weights(model, layout.checkpoints_dir(layout.copy_dir(out, i)),
                                        "end")

    def measure(self, copies, interp, loops, w_init, w_k) -> dict:
        """Curves, barriers, end accuracies and distances of the path between the two copies."""
        curves = interp.evaluate(analysis.alphas(self.hp.num_alphas), splits=("test", "train"))
        return {"curves": curves,
                "barrier": {s: analysis.error_barrier(curves[s]["error"]) for s in curves},
                "linear_barrier": {s: analysis.linear_barrier(curves[s]["error"],
                                                              curves[s]["alpha"]) for s in curves},
                "end_accuracy": [curves["test"]["accuracy"][0], curves["test"]["accuracy"][-1]],
                "distances": self.distances(copies, loops, w_init, w_k)}

    def alignment_images(self, ctx: RunContext):
        """ALIGN_EXAMPLES training images in a fixed order (activation matching's batch)."""
        if self._alignment_images is None:
            batches, count = [], 0
            for images, _ in ctx.dataset.train_dataset(ALIGN_DATA_SEED):
                batches.append(images.numpy())
                count += len(batches[-1])
                if count >= ALIGN_EXAMPLES:
                    break
            self._alignment_images = np.concatenate(batches)[:ALIGN_EXAMPLES]
        return self._alignment_images

    def align_copies(self, ctx: RunContext, models):
        """Permute models[1] in place to match models[0] by hp.align; then give both the
        union of their masks.  Returns the permutation."""
        images = self.alignment_images(ctx) if self.hp.align == "activations" else None
        permutation = align.align_to(models[0], models[1], self.hp.align, images,
                                     restarts=self.hp.align_restarts)
        share_union_mask(models)
        return permutation

    def restart_barriers(self, copies, interp, out: str, best, best_curve: dict) -> dict:
        """Per weight-matching restart (`best.restarts`, seed order): its objective and
        the test barriers of the path after aligning by it; the barriers' spread, and
        which restart the aligned result uses (the highest objective).  best_curve:
        the test curve already measured after aligning by `best` (not evaluated again)."""
        rows = []
        for seed, permutation in enumerate(best.restarts):
            if permutation is best:
                curve = best_curve
            else:
                self.load_copies(copies, out)
                align.apply(copies[1], permutation, in_place=True)
                share_union_mask(copies)
                curve = interp.evaluate(analysis.alphas(self.hp.num_alphas),
                                        splits=("test",))["test"]
            rows.append({"seed": seed, "objective": permutation.objective,
                         "moved_fraction": permutation.moved_fraction(),
                         "test_barrier": analysis.error_barrier(curve["error"]),
                         "test_linear_barrier": analysis.linear_barrier(curve["error"],
                                                                        curve["alpha"])})
        barriers = [row["test_barrier"] for row in rows]
        return {"runs": rows, "chosen": next(i for i, p in enumerate(best.restarts) if p is best),
                "test_barrier_spread": max(barriers) - min(barriers)}

    def soup(self, ctx: RunContext, copies, interp, out: str) -> dict:
        """Test and train accuracy of the uniform average of all the copies' end weights,
        raw and (with align set) after aligning each copy to copy 0.

        copies[0] holds copy 0 while the others pass through copies[1]; the
        soup is then put into both, so that the Interpolator's point alpha = 0
        is the soup (with BatchNorm statistics recomputed as on the path).
        """
        n = len(self.hp.copy_seeds)
        is_mask = mask_flags(copies[1])
        result = {"n": n}
        variants = [("accuracy", None)]
        if self.hp.align:
            variants.append(("aligned_accuracy", self.hp.align))
        for key, method in variants:

            def members():
                for i in range(n):
                    self.load_copies(copies, out, (0, i))
                    if method and i > 0:
                        self.align_copies(ctx, copies)
                    yield [v.numpy() for v in copies[1].variables]

            averaged = align_soup.uniform_soup(members(), is_mask)
            for model in copies:
                assign_values(model, averaged)
            curves = interp.evaluate([0.0], splits=("test", "train"))
            result[key] = {split: curves[split]["accuracy"][0] for split in curves}
        return result

    def dense_accuracy(self, ctx, k_text):
        """For subnetworks: the dense network's accuracy (lottery level 0), to judge matching."""
        if not self.uses_lottery:
            return None
        lottery, lottery_ctx = self.lottery_for(ctx, k_text)
        final = layout.file(layout.train_dir(lottery.level_dir(lottery_ctx, 0)), layout.FINAL)
        return io.read_json(final)["test_accuracy"]

    def distances(self, copies, loops, w_init, w_k) -> dict:
        """Thesis 4.3: init -> k, k -> end, copy <-> copy (all after masking);
        plus the functional distances between the copies."""
        w_a, w_b = analysis.weight_vector(copies[0]), analysis.weight_vector(copies[1])
        result = {"l2_init_to_k": analysis.l2_distance(w_init, w_k),
                  "l2_k_to_end": analysis.l2_distance(w_k, w_a),
                  "l2_copies": analysis.l2_distance(w_a, w_b),
                  "cosine_copies": analysis.cosine_distance(w_a, w_b)}
        for split in ("test", "train"):
            (pa, la), (pb, lb) = loops[0](split), loops[1](split)
            result[f"disagreement_{split}"] = analysis.disagreement(pa, pb)
            result[f"loss_distance_{split}"] = analysis.loss_distance(la, lb)
        return result

    def per_epoch(self, ctx, copies, interp, out, epochs) -> list:
        """Instability between the copies at each epoch of their training, raw and
        (with align set) aligned (the same Interpolator: its tf.functions are traced once)."""
        rows = []
        for step in epochs:
            for i, model in enumerate(copies):
                checkpoints.restore_weights(
                    model, layout.checkpoints_dir(layout.copy_dir(out, i)), f"step_{step}")
            share_union_mask(copies)
            row = {"step": step, "test_barrier": self.test_barrier(interp)}
            if self.hp.align:
                self.align_copies(ctx, copies)
                row["aligned_test_barrier"] = self.test_barrier(interp)
            rows.append(row)
        return rows

    def test_barrier(self, interp) -> float:
        curves = interp.evaluate(analysis.alphas(self.hp.num_alphas), splits=("test",))
        return analysis.error_barrier(curves["test"]["error"])


def barrier_text(measured: dict) -> str:
    """The log line's barriers: from the end points' mean (the headline) and from the
    straight line between them, in points of error."""
    return ("test instability %.2f points, train %.2f points (above the straight line "
            "between the end points: test %.2f, train %.2f)" % tuple(
                100 * measured[key][split] for key in ("barrier", "linear_barrier")
                for split in ("test", "train")))


def mask_flags(model) -> list:
    """Per variable of `model`: whether it is a mask."""
    ids = {id(w.mask_variable(a)) for w in masking.masked_layers(model) for a in w.prunable_attrs}
    return [id(v) in ids for v in model.variables]


def share_union_mask(models) -> None:
    """Give every model the union of their masks.

    Each model's pruned weights are 0.0, so none of their functions changes;
    it lets the Interpolator, which needs one mask, run between subnetworks
    whose masks an alignment has permuted apart.
    """
    if not masking.masked_layers(models[0]):
        return
    masks = [masking.get_mask(m) for m in models]
    if all(m == masks[0] for m in masks[1:]):
        return
    union = masking.Mask({name: np.logical_or.reduce([m[name] for m in masks])
                          for name in masks[0]})
    for model in models:
        masking.set_mask(model, union)
