"""'dynamic_imp': one-shot Dynamic IMP (thesis Algorithm 5, section 6.2.2).

IMP finds its sparse network only after dense training to the end.  Dynamic
IMP asks whether the sparse network can instead be chosen again and again
while training proceeds: training is cut at change points n_1 < ... < n_k
into phases [n_(i-1), n_i] (n_0 = 0, n_(k+1) = the end), and each phase is
one short round of one-shot IMP with rewinding to its own start.

Phase i starts from the hybrid network H_(i-1) at step n_(i-1) (H_0 = W0,
the dense initialisation):

  1. dense:  train H_(i-1) from n_(i-1) to n_i (with its mask: all ones when
             every pruned weight was regrown) -> D_i;
  2. prune:  m_i keeps the (1 - s) largest-magnitude weights of D_i, one-shot;
  3. sparse: train m_i * H_(i-1) from n_(i-1) to n_i -> S_i;
  4. regrow (all phases but the last): H_i is S_i with the weights m_i pruned
             brought back, g_i = the regrown set.  The last phase's S is the
             result.

Variants (DynamicImpHparams), each one the thesis reports on:
  first_mask   'imp' (steps 1-2 of phase 1, Algorithm 5), 'random' (random
               pruning to s) or 'magnitude_init' (|W0|); the latter two skip
               phase 1's dense training.
  regrow_init  regrown weights start as a fresh sample of the layer's
               initializer ('fresh', the default), at zero ('zero'), or at
               the values they had in H_(i-1), the network m_i pruned them
               from ('previous').
  regrow       'all' pruned weights (Algorithm 5), or only as many as m_i
               keeps in each layer (what the next phase keeps), chosen by
               the dense gradient of S_i on the batch at n_i ('gradient',
               RigL's criterion) or at random ('random'); the next phase's
               dense training then runs with mask m_i | g_i.
  min_overlap  f in [0, 1]: every pruning after the first (step 2 of phase
               i >= 2) keeps at least ceil(f * k) of its k weights from
               m_(i-1) (the thesis's "m_1 and m_2 must overlap more").  Per
               pruning group (all non-excluded layers for scope 'global',
               each layer for 'layerwise'): q = min(ceil(f * k), the weights
               of m_(i-1) still allowed) weights are the largest |D_i| inside
               m_(i-1); the other k - q are the largest |D_i| of all the
               remaining allowed weights, inside m_(i-1) or not.  The same
               order (|w| descending, earlier position first) ranks both
               steps, so when plain magnitude pruning already keeps >= q of
               m_(i-1) the mask is exactly the plain one.  0 (the default):
               plain magnitude pruning.
  next_mask    'imp' (the default, Algorithm 5): phase i+1's dense training
               and magnitude pruning choose m_(i+1).  'grow_gradient' /
               'grow_random': growth *instead of* the next IMP phase.  At
               n_i, S_i's `drop_fraction` smallest weights of m_i are
               dropped (by |S_i|, over the pruning group as `scope` says:
               d = round(drop_fraction * |m_i|) globally, or per layer), and
               each layer grows as many weights as it dropped, among its
               weights outside the survivors (just-dropped ones included,
               as RigL's reference), those with the largest dense gradient
               |dL/dw| of S_i on the batch at n_i (RigL's criterion) or the
               largest seeded random score.  m_(i+1) = survivors | g_i, with
               g_i the grown set; phase i+1 has no dense training: its
               sparse training starts at n_i from S_i's survivors with the
               grown weights at their `regrow_init` values, so every phase
               after the first is one sparse training and the density never
               changes.  ('previous' there means the values in H_(i-1), the
               network phase i's sparse training started from, before
               masking: W0 for phase 1.)

What a phase writes answers the thesis's questions: do the masks of
successive phases differ (overlap of m_i and m_(i+1)), and how many of the
regrown weights does the next phase keep (|g_i & m_(i+1)| / |m_(i+1)|)?
With min_overlap, a phase also records the overlap plain magnitude pruning
of D_i would have had (unconstrained_overlap_with_previous), so the report
shows how much the constraint moved the mask.

Layout, under replicate_<r>/:

    phase_<i>/dense/      step 1 (loop.py layout; absent for phase 1 unless first_mask='imp',
                          and for every phase i >= 2 when next_mask is 'grow_*')
    phase_<i>/mask/       m_i (+ sparsity.json, statistics.json: per-layer densities)
    phase_<i>/sparse/     step 3
    phase_<i>/regrown/    g_i as a mask file (True = regrown; with next_mask 'grow_*': grown)
    phase_<i>/kept_regrown/  g_(i-1) & m_i: the regrown weights phase i kept (i >= 2)
    dynamic_imp.json      per phase: steps, accuracies, density, overlaps; the result

Every piece is skipped when its output exists, so re-running the same
command continues a killed run.  H_i is rebuilt from S_i's checkpoint, g_i
and seeded initial values whenever it is needed, so it is never stored.
"""
import dataclasses
import hashlib
import math
import os
from typing import Dict, List, Tuple, Union

import gin
import numpy as np
from absl import logging

from tflottery import masking, pruning
from tflottery.errors import ConfigError
from tflottery.experiments.base import REGISTRY
from tflottery.experiments.context import (RunContext, load_fresh_initialisation,
                                           load_or_make_mask, train_phase, training_program)
from tflottery.hparams import Checked, StepText
from tflottery.masking.mask import Mask
from tflottery.plan import Phase
from tflottery.pruning import dynamic
from tflottery.pruning.names import excluded_weights
from tflottery.pruning.select import check_number, check_scope, round_count
from tflottery.runs import io, layout
from tflottery.runs.report_spec import ReportSpec
from tflottery.scoring.grow import grow_scores, training_batch
from tflottery.steps import to_iterations
from tflottery.training import checkpoints
from tflottery.training.loop import finished_result


@gin.configurable
@dataclasses.dataclass(frozen=True)
class DynamicImpHparams(Checked):
    """One-shot Dynamic IMP (thesis Algorithm 5, section 6.2.2; experiment 'dynamic_imp').

    sparsity: the sparsity s every phase prunes to, one-shot.
    change_points: n_1 < ... < n_k, each a step ('1500it', '2ep') or a
      fraction of training (0.5: half-way, so one config fits every
      network); phase i covers [n_(i-1), n_i] with n_0 = 0 and n_(k+1) the
      end of training.
    first_mask: how m_1 is chosen: 'imp' (the first phase's dense training
      then magnitude pruning; Algorithm 5), 'random' or 'magnitude_init'
      (magnitude of the initial weights).
    regrow_init: how regrown weights start: 'fresh' (a new sample of the
      layer's initializer), 'zero', or 'previous' (the values they had in the
      network they were pruned from).
    regrow: which pruned weights are regrown between phases: 'all'
      (Algorithm 5), or only as many as the phase kept, chosen by
      'gradient' (RigL's criterion) or at 'random'.
    scope: 'global' or 'layerwise' magnitude pruning.
    excluded_layers: layer names never pruned.
    min_overlap: the least fraction of each later phase's mask m_i (i >= 2)
      that must come from m_(i-1): the largest |w| of the dense network inside
      m_(i-1) fill that share first, then the largest of the rest (0: plain
      magnitude pruning; the thesis's overlap experiment).
    next_mask: how each mask after the first is chosen: 'imp' (the next
      phase's dense training and pruning; Algorithm 5), or 'grow_gradient' /
      'grow_random': no further IMP phase, the next mask is m_i's survivors
      (drop_fraction of its smallest weights dropped at the change point)
      plus as many grown by RigL's gradient criterion or at random, trained
      sparse from the change point.
    drop_fraction: with next_mask 'grow_*', the fraction of m_i's weights
      dropped (smallest |w| of the sparse network at the change point) and
      grown again elsewhere.
    """

    sparsity: float = 0.9
    change_points: Tuple[Union[StepText, float], ...] = (0.5,)
    first_mask: str = "imp"
    regrow_init: str = "fresh"
    regrow: str = "all"
    scope: str = "global"
    excluded_layers: Tuple[str, ...] = ()
    min_overlap: float = 0.0
    next_mask: str = "imp"
    drop_fraction: float = 0.8


FIRST_MASKS = ("imp", "random", "magnitude_init")
REGROW_INITS = ("fresh", "zero", "previous")
REGROW = ("all", "gradient", "random")
NEXT_MASKS = ("imp", "grow_gradient", "grow_random")
RESULT_FILENAME = "dynamic_imp.json"


def seed_of(replicate: int, what: str, phase: int) -> int:
    digest = hashlib.sha256(f"dynamic_imp/{what}/{phase}/{replicate}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _groups(names, scope: str) -> List[List[str]]:
    return [names] if scope == "global" else [[n] for n in names]


def magnitude_mask(weights: Dict[str, np.ndarray], current: Mask, sparsity: float, scope: str,
                   excluded=(), previous: Mask = None, min_overlap: float = 0.0) -> Mask:
    """Keep the (1 - sparsity) largest |w| among the non-excluded weights, one-shot.

    Counted over all non-excluded weights (not only `current`'s kept ones),
    so every phase ends at the same density whatever mask it trained with;
    weights `current` prunes are never kept; excluded layers are unchanged.
    With `previous` and min_overlap f > 0, each group's k kept weights
    include at least q = min(ceil(f * k), |previous & current|) of
    `previous` (module docstring): the q largest inside `previous` first,
    then the k - q largest of all the rest.
    """
    excluded = set(excluded)
    names = [n for n in sorted(current) if n not in excluded]
    scores = {n: np.abs(np.asarray(weights[n], np.float64)) for n in current}
    mask = current
    for group in _groups(names, scope):
        keep = round_count((1.0 - sparsity) * sum(current[n].size for n in group))
        keep = min(keep, sum(int(current[n].sum()) for n in group))
        if previous is None or min_overlap <= 0.0:
            mask = pruning.select.prune_to_count(scores, mask, keep, names=group)
            continue
        inside = Mask({n: mask[n] & previous[n] if n in group else mask[n] for n in mask})
        q = min(int(math.ceil(min_overlap * keep - 1e-9)),
                sum(int(inside[n].sum()) for n in group))
        first = pruning.select.prune_to_count(scores, inside, q, names=group)
        rest = Mask({n: mask[n] & ~first[n] if n in group else mask[n] for n in mask})
        rest = pruning.select.prune_to_count(scores, rest, keep - q, names=group)
        mask = Mask({n: first[n] | rest[n] if n in group else mask[n] for n in mask})
    return mask


def survivors(mask: Mask, weights: Dict[str, np.ndarray], drop_fraction: float, scope: str,
              excluded=()) -> Mask:
    """`mask` without its round(drop_fraction * kept) smallest |w| per pruning group.

    Global scope: one count over all non-excluded layers; layerwise: per
    layer; excluded layers are unchanged.  Ties go to the earlier position.
    """
    excluded = set(excluded)
    names = [n for n in sorted(mask) if n not in excluded]
    scores = {n: np.abs(np.asarray(weights[n], np.float64)) for n in mask}
    out = mask
    for group in _groups(names, scope):
        kept = sum(int(mask[n].sum()) for n in group)
        out = pruning.select.prune_to_count(scores, out, kept - round_count(drop_fraction * kept),
                                            names=group)
    return out


def grown_set(mask: Mask, kept: Mask, scores: Dict[str, np.ndarray], excluded=()) -> Mask:
    """g: in each non-excluded layer, as many weights as `kept` dropped from `mask`, those
    outside `kept` with the largest `scores` (ties to the earlier position)."""
    out, excluded = {}, set(excluded)
    for name in mask:
        if name in excluded:
            out[name] = np.zeros_like(mask[name])
            continue
        count = int(mask[name].sum()) - int(kept[name].sum())
        out[name] = dynamic.largest(np.asarray(scores[name], np.float64), ~kept[name], count)
    return Mask(out)


def regrown_set(mask: Mask, how: str, scores=None, excluded=()) -> Mask:
    """g: the weights `mask` prunes that come back (True = regrown).

    'all': every pruned weight.  Otherwise each non-excluded layer regrows as
    many as it keeps (at most as many as it prunes), those with the largest
    `scores` (ties to the earlier position).
    """
    out, excluded = {}, set(excluded)
    for name in mask:
        pruned = ~mask[name]
        if how == "all":
            out[name] = pruned
        elif name in excluded:
            out[name] = np.zeros_like(pruned)
        else:
            count = min(int(mask[name].sum()), int(pruned.sum()))
            out[name] = dynamic.largest(np.asarray(scores[name], np.float64), pruned, count)
    return Mask(out)


@REGISTRY.register("dynamic_imp")
class DynamicImpExperiment:
    name = "dynamic_imp"
    # What the report needs to know of its runs (the runner records it: experiment.json).
    REPORT = ReportSpec(name, family="dynamic", method="dynamic_imp",
                        variant=("DynamicImpHparams.first_mask", "DynamicImpHparams.regrow_init",
                                 "DynamicImpHparams.regrow", "DynamicImpHparams.min_overlap",
                                 "DynamicImpHparams.next_mask",
                                 "DynamicImpHparams.drop_fraction"),
                        target_sparsity="DynamicImpHparams.sparsity",
                        result_file=RESULT_FILENAME)

    def __init__(self):
        self.hp = DynamicImpHparams()

    def hparams(self):
        return [self.hp]

    # ---- validation ----
    def boundaries(self, ctx: RunContext) -> List[int]:
        """[0, n_1, ..., n_k, end] in iterations (a float change point is a fraction of training)."""
        total = ctx.total_steps()
        points = []
        for point in self.hp.change_points:
            if isinstance(point, str):
                points.append(to_iterations(point, ctx.dataset.iterations_per_epoch,
                                            ctx.training_hp.dilation))
            elif 0.0 < point < 1.0:
                points.append(int(round(point * total)))
            else:
                raise ConfigError(f"DynamicImpHparams.change_points: {point!r} is neither a step "
                                  f"('1500it') nor a fraction of training in (0, 1)")
        return [0] + points + [total]

    def validate(self, ctx: RunContext) -> None:
        hp = self.hp
        check_number("DynamicImpHparams.sparsity", hp.sparsity, 0.0, 1.0, high_open=True)
        check_scope(hp.scope)
        for field, value, choices in (("first_mask", hp.first_mask, FIRST_MASKS),
                                      ("regrow_init", hp.regrow_init, REGROW_INITS),
                                      ("regrow", hp.regrow, REGROW),
                                      ("next_mask", hp.next_mask, NEXT_MASKS)):
            if value not in choices:
                raise ConfigError(f"unknown DynamicImpHparams.{field} {value!r}; choose one of: "
                                  f"{', '.join(choices)}")
        check_number("DynamicImpHparams.min_overlap", hp.min_overlap, 0.0, 1.0)
        check_number("DynamicImpHparams.drop_fraction", hp.drop_fraction, 0.0, 1.0)
        if hp.next_mask != "imp":
            if hp.min_overlap > 0.0:
                raise ConfigError(f"DynamicImpHparams.min_overlap applies to the next IMP phase's "
                                  f"pruning; next_mask {hp.next_mask!r} has none")
            if hp.regrow != "all":
                raise ConfigError(f"DynamicImpHparams.regrow {hp.regrow!r} chooses what the next "
                                  f"IMP phase trains; with next_mask {hp.next_mask!r} the growth "
                                  f"criterion is next_mask's")
        elif hp.drop_fraction != DynamicImpHparams.drop_fraction:
            raise ConfigError("DynamicImpHparams.drop_fraction applies to next_mask "
                              "'grow_gradient' or 'grow_random' only")
        if not hp.change_points:
            raise ConfigError("DynamicImpHparams.change_points is empty; give at least one step, "
                              "e.g. ('1500it',)")
        bounds = self.boundaries(ctx)
        if any(b >= c for b, c in zip(bounds, bounds[1:])):
            raise ConfigError(
                f"DynamicImpHparams.change_points {tuple(hp.change_points)} resolve to "
                f"{bounds[1:-1]} it: they must increase strictly, after step 0 and before the "
                f"end of training ({bounds[-1]} it)")
        excluded_weights(hp.excluded_layers, ctx.prunable_names)

    def phases(self, ctx: RunContext):
        """Every training of the run, in order: phase i's dense (if any) and sparse training."""
        bounds, out = self.boundaries(ctx), []
        for i in range(1, len(bounds)):
            for part in ("dense", "sparse"):
                if part == "dense" and not self.has_dense(i):
                    continue
                out.append(Phase(f"phase {i} / {part}",
                                 layout.dynamic_phase_dir(ctx.replicate_dir, i, part),
                                 bounds[i - 1], bounds[i]))
        return out

    def has_dense(self, i: int) -> bool:
        """Whether phase i trains densely (then prunes) to choose its mask."""
        if i == 1:
            return self.hp.first_mask == "imp"
        return self.hp.next_mask == "imp"

    # ---- the run ----
    def run(self, ctx: RunContext) -> dict:
        hp = self.hp
        bounds = self.boundaries(ctx)
        program = training_program(ctx)
        model = program.model
        self.excluded = excluded_weights(hp.excluded_layers, list(masking.prunable_variables(model)))
        phases, previous_mask, regrown = [], None, None
        for i in range(1, len(bounds)):
            record, mask = self.phase(ctx, program, i, bounds[i - 1], bounds[i], previous_mask)
            if previous_mask is not None:
                record["overlap_with_previous"] = dynamic.overlap(previous_mask, mask)
                # g_(i-1) & m_i: the regrown weights this phase kept.
                kept = load_or_make_mask(
                    ctx, layout.dynamic_phase_dir(ctx.replicate_dir, i, "kept_regrown"),
                    lambda: Mask({n: regrown[n] & mask[n] for n in mask}))
                record["regrown_kept"] = kept.num_remaining / max(mask.num_remaining, 1)
            if i < len(bounds) - 1:
                regrown = load_or_make_mask(
                    ctx, layout.dynamic_phase_dir(ctx.replicate_dir, i, "regrown"),
                    lambda: self._regrow(ctx, program, i, mask, bounds[i]))
                record["regrown"] = regrown.num_remaining
            phases.append(record)
            previous_mask = mask
        last = phases[-1]
        result = {"sparsity": hp.sparsity, "change_points": bounds[1:-1],
                  "first_mask": hp.first_mask, "regrow_init": hp.regrow_init,
                  "regrow": hp.regrow, "min_overlap": hp.min_overlap, "next_mask": hp.next_mask,
                  "drop_fraction": hp.drop_fraction if hp.next_mask != "imp" else None,
                  "density": last["density"],
                  "test_accuracy": last["sparse_test_accuracy"], "phases": phases}
        if ctx.writable:
            io.atomic_write_json(layout.file(ctx.replicate_dir, RESULT_FILENAME), result)
        print(self.table(result), flush=True)
        return dict(result, accuracy_of=f"the last phase's sparse network (phase {len(phases)}, "
                                        f"{100 * result['density']:.2f}% of weights)")

    def phase(self, ctx: RunContext, program, i: int, start: int, end: int, previous: Mask):
        """Steps 1-3 of phase i: (its record for dynamic_imp.json, m_i); `previous`: m_(i-1)."""
        hp = self.hp
        model = program.model
        phase_dir = layout.dynamic_phase_dir(ctx.replicate_dir, i)
        record = {"phase": i, "start": start, "end": end, "dense_test_accuracy": None}
        dense_dir = layout.dynamic_phase_dir(ctx.replicate_dir, i, layout.DENSE)
        has_dense = self.has_dense(i)
        if has_dense:
            # Trained now, or the result of an earlier attempt.
            record["dense_test_accuracy"] = self._train(ctx, program, i - 1, dense_dir, start,
                                                        end)["test_accuracy"]

        def make_mask():
            if has_dense:
                checkpoints.restore_weights(model, layout.checkpoints_dir(dense_dir), "end")
                return magnitude_mask(self._kernels(model), masking.get_mask(model),
                                      hp.sparsity, hp.scope, self.excluded,
                                      previous=previous, min_overlap=hp.min_overlap)
            if i > 1:
                # Growth instead of IMP: m_(i-1)'s survivors in S_(i-1), plus g_(i-1).
                checkpoints.restore_weights(model, layout.checkpoints_dir(
                    layout.dynamic_phase_dir(ctx.replicate_dir, i - 1, layout.SPARSE)), "end")
                grown = Mask.load(layout.dynamic_phase_dir(ctx.replicate_dir, i - 1, "regrown"))
                kept = survivors(previous, self._kernels(model), hp.drop_fraction, hp.scope,
                                 self.excluded)
                return Mask({n: kept[n] | grown[n] for n in kept})
            program.load_initial_weights()
            by_magnitude = magnitude_mask(self._kernels(model), masking.get_mask(model),
                                          hp.sparsity, hp.scope, self.excluded)
            if hp.first_mask == "magnitude_init":
                return by_magnitude
            return pruning.random_mask(by_magnitude, seed_of(ctx.replicate, "random", 1),
                                       scope=hp.scope, excluded=self.excluded)
        mask = load_or_make_mask(ctx, layout.mask_dir(phase_dir), make_mask, statistics=True)
        if has_dense and previous is not None and hp.min_overlap > 0.0:
            # What plain magnitude pruning of D_i would have kept: how far the constraint moved m_i.
            checkpoints.restore_weights(model, layout.checkpoints_dir(dense_dir), "end")
            plain = magnitude_mask(self._kernels(model), masking.get_mask(model), hp.sparsity,
                                   hp.scope, self.excluded)
            record["unconstrained_overlap_with_previous"] = dynamic.overlap(previous, plain)
        sparse_dir = layout.dynamic_phase_dir(ctx.replicate_dir, i, layout.SPARSE)
        record["sparse_test_accuracy"] = self._train(ctx, program, i - 1, sparse_dir, start, end,
                                                     mask=mask)["test_accuracy"]
        record["density"] = mask.density
        logging.info("dynamic IMP phase %d (steps %d-%d): density %.2f%%, test accuracy %.2f%%",
                     i, start, end, 100 * mask.density, 100 * record["sparse_test_accuracy"])
        return record, mask

    # ---- the networks of a phase ----
    @staticmethod
    def _kernels(model) -> Dict[str, np.ndarray]:
        return {n: v.numpy() for n, v in masking.prunable_variables(model).items()}

    def _train(self, ctx, program, i: int, out: str, start: int, end: int, mask=None) -> dict:
        """Train H_i (times `mask` if given) from `start` to `end` in `out` (or return its result)."""
        done = finished_result(out)
        if done is not None:
            return done
        self.load_hybrid(ctx, program, i)
        model = program.model
        if mask is not None:
            masking.set_mask(model, mask)
        masking.zero_pruned_weights(model)
        return train_phase(ctx, out, f"phase {i + 1} / {os.path.basename(out)}",
                           start_step=start, end_step=end)

    def load_hybrid(self, ctx, program, i: int) -> None:
        """Put H_i (weights and mask) into the program's model; H_0 = W0 with no mask."""
        model = program.model
        if i == 0:
            program.load_initial_weights()
            masking.set_mask(model, Mask.ones_like(model))
            return
        regrown = Mask.load(layout.dynamic_phase_dir(ctx.replicate_dir, i, "regrown"))
        values = self.regrowth_values(ctx, program, i)
        sparse = layout.dynamic_phase_dir(ctx.replicate_dir, i, layout.SPARSE)
        checkpoints.restore_weights(model, layout.checkpoints_dir(sparse), "end")
        kept = masking.get_mask(model)
        for name, variable in masking.prunable_variables(model).items():
            variable.assign(np.where(regrown[name], values[name], variable.numpy()))
        masking.set_mask(model, Mask({n: kept[n] | regrown[n] for n in kept}))

    def regrowth_values(self, ctx, program, i: int) -> Dict[str, np.ndarray]:
        """The starting values of the weights regrown after phase i (DynamicImpHparams.regrow_init)."""
        model = program.model
        how = self.hp.regrow_init
        if how == "zero":
            return {n: np.zeros(v.shape, v.dtype.as_numpy_dtype)
                    for n, v in masking.prunable_variables(model).items()}
        if how == "fresh":
            load_fresh_initialisation(ctx, model, seed_of(ctx.replicate, "fresh", i))
            return self._kernels(model)
        # 'previous': H_(i-1), the network m_i was applied to.
        if self.hp.next_mask != "imp":
            self.load_hybrid(ctx, program, i - 1)
            return self._kernels(model)
        dense_init = layout.checkpoints_dir(
            layout.dynamic_phase_dir(ctx.replicate_dir, i, layout.DENSE))
        if i == 1 and self.hp.first_mask != "imp":
            program.load_initial_weights()
        else:
            checkpoints.restore_weights(model, dense_init, "init")
        return self._kernels(model)

    def _regrow(self, ctx, program, i: int, mask: Mask, step: int) -> Mask:
        hp = self.hp
        if hp.regrow == "all" and hp.next_mask == "imp":
            return regrown_set(mask, "all")
        model = program.model
        out = layout.checkpoints_dir(
            layout.dynamic_phase_dir(ctx.replicate_dir, i, layout.SPARSE))
        checkpoints.restore_weights(model, out, "end")
        criterion = hp.regrow if hp.next_mask == "imp" else hp.next_mask[len("grow_"):]
        scores = grow_scores(criterion, model,
                             lambda: training_batch(ctx.dataset, ctx.data_seed, step),
                             seed_of(ctx.replicate, "regrow", i))
        if hp.next_mask == "imp":
            return regrown_set(mask, hp.regrow, scores, self.excluded)
        kept = survivors(mask, self._kernels(model), hp.drop_fraction, hp.scope, self.excluded)
        return grown_set(mask, kept, scores, self.excluded)

    @staticmethod
    def table(result: dict) -> str:
        lines = ["| phase | steps | dense acc. | density | sparse acc. | new in mask | regrown kept |",
                 "|---|---|---|---|---|---|---|"]
        for p in result["phases"]:
            dense = p["dense_test_accuracy"]
            new = p.get("overlap_with_previous", {}).get("new_not_in_previous")
            kept = p.get("regrown_kept")
            lines.append(
                f"| {p['phase']} | {p['start']}-{p['end']} | "
                f"{'-' if dense is None else f'{100 * dense:.2f}%'} | {100 * p['density']:.2f}% | "
                f"{100 * p['sparse_test_accuracy']:.2f}% | "
                f"{'-' if new is None else f'{100 * new:.1f}%'} | "
                f"{'-' if kept is None else f'{100 * kept:.1f}%'} |")
        return "\n".join(lines)
