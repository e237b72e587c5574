"""'dst': dynamic sparse training from a sparse start -- RigL and SET.

The baselines of the thesis's closing question (section 6.2.2): a network
that is sparse from the first step and changes *which* weights it keeps
while it trains.  The network starts from its usual initialisation under a
random mask whose per-layer densities follow DstHparams.distribution
('erk' by default; pruning/dynamic.py); layers the user sets apart
(`dense_layers`, `layer_sparsities`) keep their own density and are left
out of the sparsity budget, as in RigL's reference code.  The masks are
updated on the reference's schedule: at `begin_step`, then every
`update_every` steps up to and including the stop step (`stop_fraction` of
training) -- from step 0 by default, so LeNet's 3000 steps at dT 100 have
23 updates (0, 100, ..., 2200).  At each, every layer replaces a fraction
of its active weights: the ones of smallest magnitude are dropped, and as
many inactive connections are grown -- those of largest dense-gradient
magnitude on the current batch (grow='gradient': RigL, Evci et al. 2020) or
at random (grow='random': SET, Mocanu et al. 2018).  The fraction is
annealed from drop_fraction (`drop_fraction_anneal`: cosine to 0 at the
stop step by default; constant; exponential).  Every layer keeps its count
of weights exactly; grown weights start at zero with fresh optimizer state
(a connection dropped and grown back in the same update keeps its value, as
in RigL's reference code).  With `skip_weight_update`, the batch of an
update step only scores the growth, as in RigL's paper (Algorithm 1) and
reference code: no weight update is made on it.

On the device.  A mask update is a hook of the host loop (training/loop.py)
between two calls of the run's one traced training loop.  The hook computes
each layer's drop count from the schedule on the host and calls the run's
one traced update (pruning/dynamic_device.py: under the strategy, as the
training step), which scores the growth (RigL's dense gradient on the step's
batch; SET's seeded random scores), selects what to drop and grow, and
assigns the mask, weight and optimizer-slot variables; only the number of
moved connections per layer comes back, for the update log.  The host
reference of the selection is pruning/dynamic.py's drop_and_grow, which the
tests hold the device to, mask for mask.  Skipping a step's weight update
takes that step's batch from the training iterator on the host.  Nothing is
traced again after the first update.  SET's scores are a counter-based hash
of (seed, step, layer name, position) since the update moved to the device
(#24): before, NumPy's generator drew them, so SET runs made earlier (and
SET runs begun earlier and resumed now) have other masks; RigL's masks are
the same as before.

Resuming.  The loop saves its checkpoint at an update step before the hook
acts and calls the hook again after restoring it; the update depends only on
the weights, the step (the batch of the training stream at that step; SET's
seed) and the replicate, so a killed run continues bit-identically.

Layout, under replicate_<r>/:

    mask_init/                the starting mask (+ sparsity.json, statistics.json)
    train/                    the training phase (loop.py layout)
    train/mask_updates.jsonl  one record per update: step, drop fraction,
                              connections changed, overlap with the mask before
    mask/                     the final mask (+ statistics.json)
    dst.json                  settings, density, test accuracy, and how far the
                              final mask moved from the starting one
"""
import dataclasses
import hashlib
import math
from typing import Tuple

import gin
from absl import logging

from tflottery import masking
from tflottery.errors import ConfigError
from tflottery.experiments.base import REGISTRY
from tflottery.experiments.context import (RunContext, load_or_make_mask,
                                           prunable_weight_shapes, train_phase,
                                           training_program)
from tflottery.hparams import Checked, StepText
from tflottery.plan import Phase
from tflottery.pruning import dynamic
from tflottery.pruning.names import excluded_weights, weights_named_by
from tflottery.pruning.select import check_number
from tflottery.runs import io, layout, step_log
from tflottery.runs.report_spec import ReportSpec
from tflottery.pruning.dynamic_device import DropGrowProgram
from tflottery.scoring.grow import check_criterion, training_batch
from tflottery.steps import to_iterations
from tflottery.training import checkpoints


@gin.configurable
@dataclasses.dataclass(frozen=True)
class DstHparams(Checked):
    """Dynamic sparse training from a sparse start: RigL and SET (experiment 'dst').

    sparsity: fraction of the prunable weights that are zero throughout,
      counted over the layers without a density of their own (dense_layers,
      layer_sparsities) unless custom_in_budget.
    distribution: how the density spreads over layers: 'erk' (Erdős-Rényi-
      Kernel, RigL's default), 'er' or 'uniform' (pruning/dynamic.py).
    grow: 'gradient' (RigL, Evci et al. 2020: the inactive connections with
      the largest dense-gradient magnitude on the current batch) or 'random'
      (SET, Mocanu et al. 2018).
    update_every: steps between mask updates (RigL's dT: 100 iterations).
    drop_fraction: the fraction alpha of each layer's active weights replaced
      at the first update (0.3), then annealed by drop_fraction_anneal.
    stop_fraction: the last update is at or before this fraction of training
      (RigL: 0.75); the stop step is the reference's end_step.
    dense_layers: layer names kept dense (as layer_sparsities of 0).
    begin_step: the first mask update (the reference's begin_step; '0it':
      the first step, before any weight update).
    drop_fraction_anneal: 'cosine' (RigL's: to 0 at the stop step),
      'constant', or 'exponential_<p>' (alpha * (1 - progress) ** p from
      begin to stop; 'exponential' is p = 1), as the reference's flag.
    layer_sparsities: {layer or weight name: its own sparsity in [0, 1)},
      fixed at the start and kept by every update (the reference's
      custom_sparsity_map: e.g. a sparser first layer).
    erk_power_scale: ERK's raw densities are raised to this power: < 1
      softens ERK towards uniform, 0 is uniform (distribution 'erk' only).
    custom_in_budget: False (the reference): layers with a density of their
      own are outside the sparsity budget, so the other layers have
      `sparsity` between them; True: they count, so the whole network has
      `sparsity` and the other layers make up for them (this package's
      behaviour before #24).
    skip_weight_update: at a mask update step, use the step's batch only to
      score the growth and make no weight update on it (RigL's paper,
      Algorithm 1, and reference code; the step counter and the learning
      rate schedule still advance, so the run makes that many fewer weight
      updates).  False by default: every step of the budget trains on its
      batch, so a run is comparable step for step with dense and IMP
      training of the same length, and SET's reference trains at its update
      steps too; the difference is 1 step in every update_every (23 of
      3000 on LeNet's default schedule).
    """

    sparsity: float = 0.9
    distribution: str = "erk"
    grow: str = "gradient"
    update_every: StepText = "100it"
    drop_fraction: float = 0.3
    stop_fraction: float = 0.75
    dense_layers: Tuple[str, ...] = ()
    begin_step: StepText = "0it"
    drop_fraction_anneal: str = "cosine"
    layer_sparsities: dict = dataclasses.field(default_factory=dict)
    erk_power_scale: float = 1.0
    custom_in_budget: bool = False
    skip_weight_update: bool = False


UPDATE_LOG = "mask_updates.jsonl"
RESULT_FILENAME = "dst.json"
METHOD_NAMES = {"gradient": "RigL", "random": "SET"}   # by DstHparams.grow


def seed_of(replicate: int, what: str) -> int:
    """A seed for `what` (the starting mask, SET's growth) of one replicate."""
    digest = hashlib.sha256(f"dst/{what}/{replicate}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class DropGrowHook:
    """A Trainer mask hook: one RigL/SET update of every non-dense layer at each of `steps`.

    program: the run's TrainingProgram (its optimizer's slots are reset for
    grown weights).  batch: step -> (images, labels), used by 'gradient'.
    The drop fraction at step t is dynamic.drop_fraction(t, drop_fraction,
    anneal, begin, stop).  skip_weight_update: the Trainer makes no weight
    update on the batch of a hook step (`skips_training_step`).
    """

    def __init__(self, program, grow: str, drop_fraction: float, steps, stop: int,
                 dense=(), seed: int = 0, batch=None, log_path: str = None,
                 writable: bool = True, begin: int = 0, anneal: str = "cosine",
                 skip_weight_update: bool = False):
        self.program = program
        self.grow = check_criterion("DstHparams.grow", grow)
        self.drop_fraction = drop_fraction
        self.steps = list(steps)
        self.stop = stop
        self.begin = begin
        self.anneal = anneal
        self.dense = set(dense)
        self.seed = seed
        self.batch = batch
        self.log_path = log_path
        self.writable = writable
        self.skips_training_step = bool(skip_weight_update)
        self.device = None       # the DropGrowProgram, made at the first update
        self.active = {}
        self.sizes = {}
        self.size = 0

    # The update zeroes the dropped weights itself, on the device: the
    # Trainer need not read the masks back to do it (training/loop.py).
    zeroes_pruned_weights = True

    def __call__(self, model, step: int) -> None:
        fraction = dynamic.drop_fraction(step, self.drop_fraction, self.anneal, self.begin,
                                         self.stop)
        if self.device is None:
            self._start(model)
        # k = floor(fraction * n) per layer, n its active count (which every
        # update keeps), computed here so that the device gets a Python int.
        drops = {name: int(math.floor(fraction * self.active[name]))
                 for name in self.device.names}
        batch = self.batch(step) if self.grow == "gradient" else None
        moved = self.device(drops, (self.seed, step), batch)
        changed = sum(moved.values())
        kept = sum(self.active.values())
        record = {"step": step, "drop_fraction": fraction, "changed": changed,
                  "density": kept / self.size if self.size else 1.0,
                  # Per layer as many connections leave as arrive (dynamic.overlap).
                  "new_not_in_previous": changed / kept if kept else 0.0,
                  "previous_not_in_new": changed / kept if kept else 0.0}
        logging.info("mask update at step %d: drop fraction %.3f, %d connections moved", step,
                     fraction, changed)
        if self.writable and self.log_path:
            step_log.write(self.log_path, record)

    def _start(self, model) -> None:
        """The device program, and the active count of every layer (read once)."""
        self.device = DropGrowProgram(model, self.program.optimizer, self.grow, skip=self.dense)
        mask = masking.get_mask(model)
        self.active = {name: int(mask[name].sum()) for name in mask}
        self.sizes = {name: int(mask[name].size) for name in mask}
        self.size = mask.num_weights

    @property
    def counts(self):
        """{weight name: (kept, size)}: what the density summary needs, without reading masks."""
        if self.device is None:
            return None
        return {name: (self.active[name], self.sizes[name]) for name in self.active}


@REGISTRY.register("dst")
class DstExperiment:
    name = "dst"
    # What the report needs to know of its runs (the runner records it: experiment.json).
    REPORT = ReportSpec(name, family="dynamic", method="DstHparams.grow",
                        method_names={"gradient": "rigl", "random": "set"},
                        variant=("DstHparams.distribution",),
                        target_sparsity="DstHparams.sparsity", result_file=RESULT_FILENAME)

    def __init__(self):
        self.hp = DstHparams()

    def hparams(self):
        return [self.hp]

    # ---- validation ----
    def update_steps(self, ctx: RunContext):
        """(mask update steps, begin step, stop step) in iterations."""
        total = ctx.total_steps()
        ipe, dilation = ctx.dataset.iterations_per_epoch, ctx.training_hp.dilation
        every = to_iterations(self.hp.update_every, ipe, dilation)
        begin = to_iterations(self.hp.begin_step, ipe, dilation)
        stop = int(round(self.hp.stop_fraction * total))
        if every < 1:
            raise ConfigError(f"DstHparams.update_every ({self.hp.update_every!r}) must be at "
                              f"least 1 it")
        if begin >= stop:
            raise ConfigError(f"DstHparams.begin_step ({self.hp.begin_step!r} = {begin} it) must "
                              f"come before the stop step ({stop} it, stop_fraction of training)")
        return dynamic.update_schedule(begin, stop, every, total), begin, stop

    def validate(self, ctx: RunContext) -> None:
        hp = self.hp
        check_number("DstHparams.sparsity", hp.sparsity, 0.0, 1.0, high_open=True)
        if hp.sparsity == 0:
            raise ConfigError("DstHparams.sparsity = 0.0 leaves nothing to drop or grow (dense "
                              "training); set a sparsity in (0, 1), or use experiment 'train'")
        check_criterion("DstHparams.grow", hp.grow)
        if not 0.0 < hp.drop_fraction < 1.0:
            raise ConfigError(f"DstHparams.drop_fraction must be in (0, 1), got {hp.drop_fraction}")
        if not 0.0 < hp.stop_fraction <= 1.0:
            raise ConfigError(f"DstHparams.stop_fraction must be in (0, 1], got "
                              f"{hp.stop_fraction}")
        try:
            dynamic.parse_anneal(hp.drop_fraction_anneal)
        except ConfigError as e:
            raise ConfigError(f"DstHparams.drop_fraction_anneal: {e}") from None
        self.update_steps(ctx)
        if hp.skip_weight_update and to_iterations(
                hp.update_every, ctx.dataset.iterations_per_epoch, ctx.training_hp.dilation) < 2:
            raise ConfigError("DstHparams.skip_weight_update needs update_every of at least 2 it "
                              "(at 1 it no step would train)")
        if ctx.prunable_names is not None:     # None: no network to take names from (dry run)
            self.layer_densities(ctx)

    def custom_densities(self, weight_names) -> dict:
        """{weight name: density} of dense_layers and layer_sparsities."""
        hp = self.hp
        custom = {name: 1.0 for name in excluded_weights(hp.dense_layers, weight_names)}
        for key, sparsity in hp.layer_sparsities.items():
            what = f"DstHparams.layer_sparsities[{key!r}]"
            check_number(what, sparsity, 0.0, 1.0, high_open=True)
            names = weights_named_by(str(key), weight_names)
            if not names:
                raise ConfigError(f"{what}: {key!r} is not a prunable layer; choose from: "
                                  f"{', '.join(sorted(weight_names))}")
            twice = sorted(set(names) & set(custom))
            if twice:
                raise ConfigError(f"{what}: {', '.join(twice)} already has a density (from "
                                  f"dense_layers or another key); give each layer one")
            custom.update({name: 1.0 - float(sparsity) for name in names})
        return custom

    def layer_densities(self, ctx: RunContext) -> dict:
        if ctx.state.prunable_shapes is None:
            ctx.state.prunable_shapes = prunable_weight_shapes(ctx.model_hp, ctx.dataset.info)
        shapes = ctx.state.prunable_shapes
        custom = self.custom_densities(list(shapes))
        try:
            return dynamic.layer_densities(shapes, 1.0 - self.hp.sparsity, self.hp.distribution,
                                           custom=custom,
                                           erk_power_scale=self.hp.erk_power_scale,
                                           custom_in_budget=self.hp.custom_in_budget)
        except ConfigError as e:
            raise ConfigError(f"DstHparams: {e}") from None

    def phases(self, ctx: RunContext):
        return [Phase(self.phase_name(), layout.train_dir(ctx.replicate_dir), 0,
                      ctx.total_steps())]

    def phase_name(self) -> str:
        return METHOD_NAMES[self.hp.grow]

    # ---- the run ----
    def run(self, ctx: RunContext) -> dict:
        hp = self.hp
        program = training_program(ctx)
        model = program.model
        shapes = {n: tuple(v.shape) for n, v in masking.prunable_variables(model).items()}
        start = load_or_make_mask(
            ctx, layout.join(ctx.replicate_dir, "mask_init"),
            lambda: dynamic.sparse_start_mask(shapes, self.layer_densities(ctx),
                                              seed_of(ctx.replicate, "mask")),
            statistics=True)
        steps, begin, stop = self.update_steps(ctx)
        out = layout.train_dir(ctx.replicate_dir)
        hook = DropGrowHook(
            program, hp.grow, hp.drop_fraction, steps, stop,
            dense=[n for n, d in self.custom_densities(list(shapes)).items() if d == 1.0],
            seed=seed_of(ctx.replicate, "grow"),
            batch=lambda step: training_batch(ctx.dataset, ctx.data_seed, step),
            log_path=layout.file(out, UPDATE_LOG), writable=ctx.writable,
            begin=begin, anneal=hp.drop_fraction_anneal,
            skip_weight_update=hp.skip_weight_update)
        program.load_initial_weights()
        masking.set_mask(model, start)
        masking.zero_pruned_weights(model)
        logging.info("dst (%s growth): density %.2f%%, %d mask updates until step %d",
                     hp.grow, 100 * start.density, len(steps), stop)
        final = train_phase(ctx, out, self.phase_name(), mask_hook=hook)

        def final_mask():
            checkpoints.restore_weights(model, layout.checkpoints_dir(out), "end")
            return masking.get_mask(model)
        mask = load_or_make_mask(ctx, layout.mask_dir(ctx.replicate_dir), final_mask,
                                 statistics=True)
        result = {"grow": hp.grow, "distribution": hp.distribution, "density": mask.density,
                  "test_accuracy": final["test_accuracy"], "updates": len(steps),
                  "stop_step": stop, "final_vs_start": dynamic.overlap(start, mask)}
        if ctx.writable:
            io.atomic_write_json(layout.file(ctx.replicate_dir, RESULT_FILENAME), result)
        print(self.table(result), flush=True)
        return dict(result, accuracy_of=f"the {self.phase_name()} network at the end of training "
                                        f"({100 * mask.density:.2f}% of weights)")

    @staticmethod
    def table(result: dict) -> str:
        moved = result["final_vs_start"]["new_not_in_previous"]
        return "\n".join([
            f"| {METHOD_NAMES[result['grow']]} ({result['distribution']}) | density | test accuracy | final mask not in "
            f"starting mask |", "|---|---|---|---|",
            f"| {result['updates']} updates to step {result['stop_step']} | "
            f"{100 * result['density']:.2f}% | {100 * result['test_accuracy']:.2f}% | "
            f"{100 * moved:.1f}% |"])
