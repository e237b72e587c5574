"""'pai': prune at initialisation or early in training, then train (thesis chapter 5).

Train the dense network from 0 to the pruning step k (k = 0: nothing to
train), score its weights with PaiHparams.method (a `tflottery.scoring`
scorer), keep the top (1 - target_sparsity) of them, and train the pruned
network: with the whole learning-rate schedule replayed from step 0 (Renda
et al. 2020; the default) or for the remaining T - k steps.

Ablations (PaiAblationHparams.names) ask what the method really found
(thesis 5.4, "Missing the Mark"): 'shuffle' keeps each layer's density and
moves its kept weights to random positions, 'reinit' keeps the mask and
draws fresh weights, 'invert' keeps the weights the method ranks lowest.
If a method survives shuffling and reinitialisation unharmed, what it
learned is only a per-layer density.

Layout, under replicate_<r>/:

    pretrain/               dense training from 0 to k (k > 0 only)
    mask/                   mask.npz, sparsity.json, statistics.json
    train/                  the pruned network's training (loop.py layout)
    branch_<name>/mask/     the ablation's mask (+ statistics.json)
    branch_<name>/train/    its training
    pai.json                method, density, k and every test accuracy

Each piece is skipped when its output exists, so re-running the same command
resumes a killed run.
"""
import dataclasses
import hashlib
from typing import Optional, Tuple

import gin
from absl import logging

from tflottery import masking, pruning, scoring
from tflottery.errors import ConfigError
from tflottery.experiments.base import REGISTRY
from tflottery.experiments.context import (RunContext, load_fresh_initialisation,
                                           load_or_make_mask, pretrain, train_phase,
                                           training_program)
from tflottery.hparams import Checked, StepText
from tflottery.plan import Phase
from tflottery.pruning.names import excluded_weights
from tflottery.pruning.select import check_number, check_scope
from tflottery.runs import io, layout
from tflottery.runs.report_spec import ReportSpec
from tflottery.steps import to_iterations
from tflottery.training import checkpoints
from tflottery.training.loop import finished_result


@gin.configurable
@dataclasses.dataclass(frozen=True)
class PaiHparams(Checked):
    """Pruning at initialisation or early in training (thesis chapter 5).

    method: a scorer registered in `tflottery.scoring` ('random', 'magnitude',
      'snip', 'grasp', 'grasp_abs', 'synflow', 'isnip',
      'magnitude_unit_variance').
    target_sparsity: fraction of the prunable weights removed, in [0, 1).
    prune_step: the step k at which to score and prune ('0it': at
      initialisation); the network is trained densely from 0 to k first.
    schedule: 'replay' (train the pruned network with the whole learning-rate
      schedule again, from step 0; Renda et al. 2020) or 'continue' (train it
      for the remaining T - k steps; the same thing when k = 0).
    scope: 'global' (one ranking over all layers), 'layerwise' (every
      layer pruned to the target density), or an N:M pattern such as '2:4'
      (layerwise, at most N of every M consecutive input weights kept).
    examples_per_class: the class-balanced batch the data-driven scorers
      (SNIP, GraSP, iterative SNIP) see: examples_per_class x num_classes
      examples (10 x 1000 = 10,000 images on ImageNet).
    chunk_size: the most examples of that batch the data-driven scorers put
      through the model in one forward/backward pass, which bounds their
      memory (None: the whole batch in one pass).  Without BatchNorm the
      scores do not depend on it (up to float rounding); with BatchNorm each
      chunk is normalised by its own statistics (tflottery/scoring/chunks.py).
    iterations: rounds of the iterative scorers (SynFlow, iterative SNIP);
      None keeps their default of 100.
    excluded_layers: layer names never pruned (e.g. ('output',)).
    """

    method: str = "magnitude"
    target_sparsity: float = 0.9
    prune_step: StepText = "0it"
    schedule: str = "replay"
    scope: str = "global"
    examples_per_class: int = 10
    iterations: Optional[int] = None
    excluded_layers: Tuple[str, ...] = ()
    chunk_size: Optional[int] = 256


@gin.configurable
@dataclasses.dataclass(frozen=True)
class PaiAblationHparams(Checked):
    """Ablations of a network pruned early (thesis 5.4), each trained like it.

    Not part of the run's hash: adding an ablation later reuses the pruned
    network.

    names: any of 'shuffle' (each layer's mask shuffled within the layer),
      'reinit' (same mask, weights from a fresh initialisation), and 'invert'
      (prune the weights the method ranks highest instead).
    """

    names: Tuple[str, ...] = ()


SCHEDULES = ("replay", "continue")
ABLATIONS = ("shuffle", "reinit", "invert")
RESULT_FILENAME = "pai.json"


def ablation_seed(replicate: int, name: str) -> int:
    digest = hashlib.sha256(f"pai/{name}/{replicate}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@REGISTRY.register("pai")
class PaiExperiment:
    name = "pai"
    # What the report needs to know of its runs (the runner records it: experiment.json).
    REPORT = ReportSpec(name, method="PaiHparams.method",
                        target_sparsity="PaiHparams.target_sparsity",
                        prune_step="PaiHparams.prune_step", k="prune_step",
                        result_file=RESULT_FILENAME, result_settings=("method", "target_sparsity"))

    def __init__(self):
        self.pai_hp = PaiHparams()
        self.ablation_hp = PaiAblationHparams()

    def hparams(self):
        return [self.pai_hp]

    # ---- validation ----
    def validate(self, ctx: RunContext) -> None:
        hp = self.pai_hp
        scoring.SCORERS.get(hp.method)
        check_number("PaiHparams.target_sparsity", hp.target_sparsity, 0.0, 1.0, high_open=True)
        check_scope(hp.scope)
        if hp.schedule not in SCHEDULES:
            raise ConfigError(f"unknown PaiHparams.schedule {hp.schedule!r}; choose one of: "
                              f"{', '.join(SCHEDULES)}")
        if hp.examples_per_class < 1:
            raise ConfigError(f"PaiHparams.examples_per_class must be >= 1, got "
                              f"{hp.examples_per_class}")
        if scoring.SCORERS.get(hp.method).needs_batch:
            try:
                scoring.check_examples_per_class(ctx.dataset, hp.examples_per_class)
            except ConfigError as e:
                raise ConfigError(f"PaiHparams.examples_per_class: {e}") from e
        if hp.iterations is not None and hp.iterations < 1:
            raise ConfigError(f"PaiHparams.iterations must be >= 1 (or None), got {hp.iterations}")
        if hp.chunk_size is not None and hp.chunk_size < 1:
            raise ConfigError(f"PaiHparams.chunk_size must be >= 1 (or None), got {hp.chunk_size}")
        total = ctx.total_steps()
        k = self.prune_iterations(ctx)
        if k >= total:
            raise ConfigError(
                f"prune_step {hp.prune_step!r} ({k} it) is not before the end of training "
                f"({ctx.training_hp.training_steps} = {total} it); choose a smaller step")
        for name in self.ablation_hp.names:
            if name not in ABLATIONS:
                raise ConfigError(f"unknown ablation {name!r}; choose from: {', '.join(ABLATIONS)}")
        excluded_weights(hp.excluded_layers, ctx.prunable_names)

    def prune_iterations(self, ctx: RunContext) -> int:
        return to_iterations(self.pai_hp.prune_step, ctx.dataset.iterations_per_epoch,
                             ctx.training_hp.dilation)

    # ---- the run ----
    def run(self, ctx: RunContext) -> dict:
        result = {"method": self.pai_hp.method, "target_sparsity": self.pai_hp.target_sparsity,
                  "prune_step": self.prune_iterations(ctx)}
        mask = self.mask(ctx)
        result["density"] = mask.density
        result["test_accuracy"] = self.train(ctx, mask, layout.train_dir(ctx.replicate_dir),
                                             self.pai_hp.method)["test_accuracy"]
        result["branches"] = {}
        for name in self.ablation_hp.names:
            branch_mask = self.ablation_mask(ctx, name, mask)
            final = self.train(ctx, branch_mask,
                               layout.train_dir(layout.branch_dir(ctx.replicate_dir, name)),
                               f"{self.pai_hp.method} / {name}",
                               fresh_seed=ablation_seed(ctx.replicate, name)
                               if name == "reinit" else None)
            result["branches"][name] = {"density": branch_mask.density,
                                        "test_accuracy": final["test_accuracy"]}
        if ctx.writable:
            io.atomic_write_json(layout.file(ctx.replicate_dir, RESULT_FILENAME), result)
        print(self.table(result), flush=True)
        return dict(result, accuracy_of=f"the network pruned by {self.pai_hp.method} "
                                        f"({100 * mask.density:.2f}% of weights remaining)")

    def phases(self, ctx: RunContext):
        """The run's phases in order (for --dry_run and the run's ETA)."""
        end = ctx.total_steps()
        k = self.prune_iterations(ctx)
        start = 0 if self.pai_hp.schedule == "replay" else k
        method, rep = self.pai_hp.method, ctx.replicate_dir
        out = [Phase("pretrain", layout.pretrain_dir(rep), 0, k)] if k else []
        out.append(Phase(method, layout.train_dir(rep), start, end))
        out += [Phase(f"{method} / {name}", layout.train_dir(layout.branch_dir(rep, name)), start,
                      end) for name in self.ablation_hp.names]
        return out

    @staticmethod
    def table(result: dict) -> str:
        rows = [("pruned", result["density"], result["test_accuracy"])]
        rows += [(name, b["density"], b["test_accuracy"]) for name, b in result["branches"].items()]
        lines = [f"| {result['method']} at step {result['prune_step']} | density | test accuracy |",
                 "|---|---|---|"]
        lines += [f"| {name} | {100 * d:.2f}% | {100 * a:.2f}% |" for name, d, a in rows]
        return "\n".join(lines)

    def state_at_k(self, ctx: RunContext):
        """The run's model (all-ones mask) loaded with the weights at the pruning step k."""
        program = training_program(ctx)
        model = program.model
        k = self.prune_iterations(ctx)
        if k == 0:
            program.load_initial_weights()
            return model
        out = layout.pretrain_dir(ctx.replicate_dir)
        pretrain(ctx, out, k)
        checkpoints.restore_weights(model, layout.checkpoints_dir(out), "end")
        return model

    def _prune(self, ctx: RunContext, model, invert: bool = False) -> masking.Mask:
        hp = self.pai_hp
        batch = scoring.class_balanced_batch(ctx.dataset, hp.examples_per_class,
                                             seed=ctx.data_seed)
        excluded = excluded_weights(hp.excluded_layers, list(masking.prunable_variables(model)))
        logging.info("scoring with %s at step %d (target sparsity %.2f%%)", hp.method,
                     self.prune_iterations(ctx), 100 * hp.target_sparsity)
        return scoring.prune_to_density(
            hp.method, model, 1.0 - hp.target_sparsity, batch=batch, scope=hp.scope,
            excluded=excluded, seed=ctx.model_seed, iterations=hp.iterations, invert=invert,
            chunk_size=hp.chunk_size)

    def _load_or_make(self, ctx: RunContext, directory: str, make) -> masking.Mask:
        return load_or_make_mask(ctx, directory, make, statistics=True)

    def mask(self, ctx: RunContext) -> masking.Mask:
        return self._load_or_make(ctx, layout.mask_dir(ctx.replicate_dir),
                                  lambda: self._prune(ctx, self.state_at_k(ctx)))

    def ablation_mask(self, ctx: RunContext, name: str, mask: masking.Mask) -> masking.Mask:
        directory = layout.mask_dir(layout.branch_dir(ctx.replicate_dir, name))
        if name == "shuffle":
            make = lambda: pruning.shuffle_within_layers(mask, ablation_seed(ctx.replicate, name))  # noqa: E731
        elif name == "invert":
            make = lambda: self._prune(ctx, self.state_at_k(ctx), invert=True)  # noqa: E731
        else:
            make = lambda: mask  # noqa: E731
        return self._load_or_make(ctx, directory, make)

    def train(self, ctx: RunContext, mask: masking.Mask, out: str, phase_name: str,
              fresh_seed=None) -> dict:
        """Train `mask` applied to W_k (or to a fresh initialisation) in the phase dir `out`."""
        done = finished_result(out)
        if done is not None:
            logging.info("%s: finished before; skipped", phase_name)
            return done
        if fresh_seed is None:
            model = self.state_at_k(ctx)
        else:
            model = training_program(ctx).model
            load_fresh_initialisation(ctx, model, fresh_seed)
        masking.set_mask(model, mask)
        start = 0 if self.pai_hp.schedule == "replay" else self.prune_iterations(ctx)
        logging.info("%s: density %.2f%% from step %d", phase_name, 100 * mask.density, start)
        final = train_phase(ctx, out, phase_name, start_step=start)
        logging.info("%s: density %.2f%%, test accuracy %.2f%%", phase_name, 100 * mask.density,
                     100 * final["test_accuracy"])
        return final

