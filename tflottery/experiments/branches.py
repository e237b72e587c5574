"""Ablation branches of an IMP level, registered by name.

Each branch takes a finished level L (its mask m_L, and W_k) and trains a
variant to the end in level_<L>/branch_<name>/ (mask/ and train/ inside):

  random_reinit           m_L applied to a fresh sample of the initializers
  random_prune_global     a random mask with m_L's total density, W_k
  random_prune_layerwise  m_L shuffled within each layer (same per-layer counts), W_k
  inverted                keep the lowest-magnitude weights instead of the highest, W_k
  retrain                 m_L and W_k again, with BranchHparams.data_seed / dilation

"W_k" is whatever the level itself started from: the rewound weights for IMP,
the previous level's trained weights for LRR.

The branch seeds are derived from the replicate and the level, so the
branches of different levels and replicates are independent draws.
"""
import dataclasses
import hashlib
from typing import Callable, NamedTuple

from absl import logging

from tflottery import masking, pruning
from tflottery.errors import ConfigError
from tflottery.experiments.context import (layer_fractions_by_weight, load_fresh_initialisation,
                                           train_phase, training_program)
from tflottery.plan import Phase
from tflottery.registry import Registry
from tflottery.runs import damage, io, layout
from tflottery.training.loop import finished_result


class BranchSpec(NamedTuple):
    make_mask: Callable     # (experiment, ctx, level, level_mask, seed) -> Mask
    fresh_init: bool        # True: fresh initial weights instead of W_k
    description: str


REGISTRY = Registry("branch")


def _excluded(exp, mask):
    fractions = layer_fractions_by_weight(exp.pruning_hp, list(mask.keys()))
    return [name for name, f in fractions.items() if f == 0]


REGISTRY.register("random_reinit", BranchSpec(
    lambda exp, ctx, level, mask, seed: mask, True,
    "same mask, weights freshly sampled from the initializers"))
REGISTRY.register("random_prune_global", BranchSpec(
    lambda exp, ctx, level, mask, seed: pruning.random_mask(
        mask, seed, "global", excluded=_excluded(exp, mask)), False,
    "random mask with the same total density, rewound weights"))
REGISTRY.register("random_prune_layerwise", BranchSpec(
    lambda exp, ctx, level, mask, seed: pruning.shuffle_within_layers(mask, seed), False,
    "the level's mask shuffled within each layer, rewound weights"))
REGISTRY.register("inverted", BranchSpec(
    lambda exp, ctx, level, mask, seed: exp.level_mask(ctx, level, invert=True), False,
    "keep the lowest-magnitude weights instead, rewound weights"))
REGISTRY.register("retrain", BranchSpec(
    lambda exp, ctx, level, mask, seed: mask, False,
    "the same subnetwork retrained with BranchHparams.data_seed / dilation"))


def branch_seed(replicate: int, level: int, name: str) -> int:
    digest = hashlib.sha256(f"{name}/{replicate}/{level}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def branch_dir_name(exp, name: str) -> str:
    out = layout.branch_dir_name(name, exp.branch_hp.data_seed, exp.branch_hp.dilation)
    if out is None:
        raise ConfigError("the 'retrain' branch needs BranchHparams.data_seed and/or dilation")
    return out


def branch_training(exp, ctx, name: str):
    """(TrainingHparams, data seed) of branch `name`: the run's, except for 'retrain'."""
    training_hp, data_seed = ctx.training_hp, ctx.data_seed
    if name == "retrain":
        if exp.branch_hp.dilation is not None:
            training_hp = dataclasses.replace(training_hp, dilation=exp.branch_hp.dilation)
        if exp.branch_hp.data_seed is not None:
            data_seed = exp.branch_hp.data_seed
    return training_hp, data_seed


def phase_name(name: str, level: int) -> str:
    return f"level {level} / {name}"


def phase(exp, ctx, name: str, level: int) -> Phase:
    """The training phase of branch `name` of level `level` (for the run's plan)."""
    training_hp, _ = branch_training(exp, ctx, name)
    end = ctx.total_steps(training_hp)
    start = 0 if exp.lottery_hp.mode == "lrr" and level > 0 else \
        exp.rewind_iterations(ctx, training_hp)
    return Phase(phase_name(name, level),
                 layout.train_dir(layout.branch_dir(exp.level_dir(ctx, level),
                                                    branch_dir_name(exp, name))),
                 start, end)


def read_branch_record(path: str) -> dict:
    """branch.json as written by write_branch_record (ValueError if it is not)."""
    record = io.read_json(path)
    if not isinstance(record, dict) or not {"name", "level"} <= set(record):
        raise ValueError(f"{path} is not a branch record")
    return record


def write_branch_record(exp, name: str, level: int, path: str) -> None:
    """branch.json: what the branch is, for reports (the retrain directory's tag is only a
    hash).  Written once; a damaged one is set aside and written again (runs/damage.py)."""
    if damage.read_output(path, read_branch_record) is not None:
        return
    retrain = name == "retrain"
    io.atomic_write_json(path, {
        "name": name, "level": level,
        "dilation": exp.branch_hp.dilation if retrain else None,
        "data_seed": exp.branch_hp.data_seed if retrain else None})


def run_branch(exp, ctx, name: str, level: int) -> dict:
    """Train branch `name` of IMP level `level` (skipped when already done)."""
    spec = REGISTRY.get(name)
    level_dir = exp.level_dir(ctx, level)
    # The level itself was checked whole by run_level, which every branch follows.
    if not io.exists(layout.file(layout.train_dir(level_dir), layout.FINAL)):
        raise ConfigError(f"branch {name!r} asked of level {level}, which has not run")
    out = layout.branch_dir(level_dir, branch_dir_name(exp, name))
    if ctx.writable:
        write_branch_record(exp, name, level, layout.file(out, layout.BRANCH_RECORD))
    seed = branch_seed(ctx.replicate, level, name)

    def branch_mask():
        # Read (and, if missing or damaged, made again) also when the branch is
        # done: reports read its density from it.
        return exp.load_or_make_mask(ctx, layout.mask_dir(out), lambda: spec.make_mask(
            exp, ctx, level, exp.mask_of_level(ctx, level), seed))

    done = finished_result(layout.train_dir(out))
    if done is not None:
        logging.info("%s: finished before; skipped", phase_name(name, level))
        branch_mask()
        return done
    mask = branch_mask()
    training_hp, data_seed = branch_training(exp, ctx, name)
    model = training_program(ctx, training_hp).model
    start = exp.load_start_weights(ctx, model, level, training_hp)
    if spec.fresh_init:
        load_fresh_initialisation(ctx, model, seed)
    masking.set_mask(model, mask)
    return train_phase(ctx, layout.train_dir(out), phase_name(name, level),
                       start_step=start, training_hp=training_hp, data_seed=data_seed)
