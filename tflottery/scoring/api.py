"""compute_scores and prune_to_density: running a scorer on a masked model.

Both read the model (weights, current mask) once, then work on NumPy copies
and private copies of the model (state.py), so the model's weights and mask
are never written.  They are called eagerly in cross-replica context; the
gradients of SNIP, iterative SNIP and GraSP run as traced programs under the
model's tf.distribute strategy (device.py), SynFlow on the host CPU
(host.py); called inside a strategy scope they run in a helper thread where
no scope is active (host.outside_strategy).

program: the DeviceProgram the data-based scorers run on.  By default it is
the one cached with the model (device.program_for), so repeated scorings of
one model object trace once (the pai experiment scores its method and its
'invert' ablation on the run's one model).  A caller that scores several
model objects of one architecture (say, rebuilt for every phase) passes one
program, made with scoring.DeviceProgram(model), to all of them; each call
loads its model's weights and mask into it.

chunk_size (the data-based scorers SNIP, iterative SNIP and GraSP): the most
examples of the scoring batch in one forward/backward pass, default 256;
None puts the whole batch through at once; a chunk is split across the
strategy's replicas.  Without BatchNorm the scores depend neither on the
chunk size nor on the replica count (up to float rounding); with BatchNorm
in training mode each chunk, and within it each replica's share, is
normalised by its own statistics (chunks.py, device.py).  It bounds the
scorers' memory: 10 examples per class of ImageNet are 10,000 images.
"""
from typing import Dict, Iterable, Optional

import numpy as np

from tflottery import stop
from tflottery.errors import ConfigError
from tflottery.masking.mask import Mask
from tflottery.pruning.select import prune_to_count
from tflottery.scoring import schedule
from tflottery.scoring.chunks import DEFAULT_CHUNK_SIZE, check_chunk_size
from tflottery.scoring.device import DeviceProgram
from tflottery.scoring.host import check_context, outside_strategy
from tflottery.scoring.objective import check_batch
from tflottery.scoring.registry import SCORERS, Scorer
from tflottery.scoring.state import ScoringState


def _prepare_batch(scorer: Scorer, batch, model):
    if batch is None:
        if scorer.needs_batch:
            raise ConfigError(
                f"scorer {scorer.name!r} needs a batch of training data: pass "
                f"batch=scoring.class_balanced_batch(dataset)")
        return None
    return check_batch(batch, model)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer (got {seed!r})")
    return int(seed)


def _score(scorer: Scorer, state: ScoringState, batch, seed: int, round_index: int,
           needed: Iterable[str]) -> Dict[str, np.ndarray]:
    scores = scorer.fn(state, batch, seed, round_index)
    for name in needed:
        alive = state.mask[name]
        if not np.all(np.isfinite(scores[name][alive])):
            raise ConfigError(
                f"{scorer.name} scores of {name!r} are NaN or infinite at remaining weights "
                f"(round {round_index + 1}); the weights or the batch are probably corrupt"
                + (", or the network is too deep even for float64"
                   if scorer.name == "synflow" else ""))
    return scores


def compute_scores(name: str, model, batch=None, seed: int = 0,
                   chunk_size: Optional[int] = DEFAULT_CHUNK_SIZE,
                   program: Optional[DeviceProgram] = None) -> Dict[str, np.ndarray]:
    """One round of scorer `name`'s scores {weight name: float64 array} for the model's current mask.

    These are the raw scores: for 'grasp' the weights with the HIGHEST
    scores are the ones pruned (SCORERS.get(name).prune_highest).
    """
    scorer = SCORERS.get(name)
    seed = _check_seed(seed)
    chunk_size = check_chunk_size(chunk_size)
    check_context()
    batch = _prepare_batch(scorer, batch, model)
    state = ScoringState(model, chunk_size=chunk_size, program=program)
    return outside_strategy(lambda: scorer.fn(state, batch, seed, 0))


def prune_to_density(name: str, model, target_density: float, batch=None, scope: str = "global",
                     excluded: Iterable[str] = (), seed: int = 0,
                     iterations: Optional[int] = None, invert: bool = False,
                     chunk_size: Optional[int] = DEFAULT_CHUNK_SIZE,
                     program: Optional[DeviceProgram] = None) -> Mask:
    """The mask scorer `name` keeps at `target_density` of all prunable weights of `model`.

    The model's current mask is respected (pruned weights stay pruned) and
    neither its weights nor its mask are changed.  `excluded` weights keep
    their current mask.  scope 'global' ranks all non-excluded weights
    together; 'layerwise' prunes every non-excluded layer to the same
    fraction of its remaining weights; an N:M scope such as '2:4' is
    layerwise with at most N of every M input weights kept (pruning/n_m.py).
    Iterative scorers (and any scorer
    given iterations > 1) rescore the mask of the previous round on the
    exponential schedule; the result keeps exactly
    round(target_density * num_weights) weights (schedule.py).

    invert=True is the inversion ablation: every round removes the weights
    the scorer would keep (its best-ranked ones) instead, in the same numbers.

    chunk_size: examples per forward/backward pass of the data-based scorers;
    program: the device program they run on (module docstring).
    """
    scorer = SCORERS.get(name)
    seed = _check_seed(seed)
    chunk_size = check_chunk_size(chunk_size)
    excluded = tuple(excluded) if not isinstance(excluded, str) else (excluded,)
    rounds_n = scorer.iterations if iterations is None else schedule.check_iterations(iterations)
    check_context()
    batch = _prepare_batch(scorer, batch, model)
    state = ScoringState(model, rounds=rounds_n, chunk_size=chunk_size, program=program)
    rounds = schedule.plan(state.mask, target_density, scope, excluded, rounds_n)

    def run() -> Mask:
        mask = state.mask
        for index, groups in enumerate(rounds):
            stop.check(f"in scoring round {index + 1} of {len(rounds)} ({name})")
            if all(count == sum(int(mask[n].sum()) for n in names) for names, count in groups):
                continue   # nothing to remove this round: the scores would not be used
            state.mask = mask
            needed = [n for names, _ in groups for n in names]
            scores = _score(scorer, state, batch, seed, index, needed)
            for names, count in groups:
                mask = prune_to_count(scores, mask, count, names,
                                      invert=scorer.prune_highest != bool(invert), scope=scope)
        return mask

    return outside_strategy(run)
