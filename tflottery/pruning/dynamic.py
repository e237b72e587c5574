"""The mask arithmetic of dynamic sparse training (RigL, SET), on host arrays.

Three pieces, each a pure function so that it can be checked by hand and
reused by any experiment that changes masks during training:

* `layer_densities`: how a total density is spread over the layers.
  'uniform' gives every layer the same density; 'erk' is the
  Erdős-Rényi-Kernel rule of Evci et al. (2020, after Mocanu et al. 2018):
  layer l gets density  eps * (sum of its kernel dimensions) / (product of
  them),  with one eps for all layers chosen so that the kept weights add up
  to the total; a layer whose density would exceed 1 stays dense and eps is
  solved again over the others.  ('er' uses only the last two dimensions,
  fan-in and fan-out, as the original Erdős-Rényi rule for dense layers.)
* `cosine_drop_fraction`: RigL's drop fraction  alpha/2 * (1 + cos(pi t / T))
  at update step t of a schedule that stops updating at T.
* `drop_and_grow`: one update of one layer.  Of its n active weights,
  k = floor(fraction * n) with the smallest |w| are dropped; then k weights
  are grown among the connections inactive after the drop (just-dropped ones
  included, as in RigL's reference code), those with the largest grow score
  (|dense gradient| for RigL, a random score for SET).  The layer keeps
  exactly n weights.  Grown weights start at zero (the caller zeroes them,
  and their optimizer slots).

Ties are broken by position (the earlier flat index wins), so every result
is a deterministic function of its inputs.
"""
import math
from typing import Dict, Iterable, Tuple

import numpy as np

from tflottery.errors import ConfigError
from tflottery.masking.mask import Mask
from tflottery.pruning.ablations import random_mask
from tflottery.pruning.select import round_count

DISTRIBUTIONS = ("uniform", "erk", "er")


def _raw_score(shape, distribution: str) -> float:
    dims = list(shape) if distribution == "erk" else list(shape[-2:])
    return sum(dims) / float(np.prod(dims))


def layer_densities(shapes: Dict[str, Tuple[int, ...]], density: float,
                    distribution: str = "erk", dense: Iterable[str] = ()) -> Dict[str, float]:
    """{layer name: density} with sum(density_l * size_l) = density * sum(size_l).

    `dense` names layers kept at density 1 (they count towards the total).
    """
    if distribution not in DISTRIBUTIONS:
        raise ConfigError(f"unknown density distribution {distribution!r}; choose one of: "
                          f"{', '.join(DISTRIBUTIONS)}")
    if not 0.0 < density <= 1.0:
        raise ConfigError(f"density must be in (0, 1], got {density}")
    sizes = {name: int(np.prod(shape)) for name, shape in shapes.items()}
    total = sum(sizes.values())
    fixed = {name: 1.0 for name in dense}
    unknown = set(fixed) - set(shapes)
    if unknown:
        raise ConfigError(f"dense layers {sorted(unknown)} are not among {sorted(shapes)}")
    if distribution == "uniform":
        rest = [n for n in shapes if n not in fixed]
        budget = density * total - sum(sizes[n] for n in fixed)
        share = budget / sum(sizes[n] for n in rest) if rest else 0.0
        if rest and not 0.0 <= share <= 1.0:
            raise ConfigError(f"density {density} cannot be reached with layers "
                              f"{sorted(fixed)} dense")
        return {**fixed, **{n: share for n in rest}}
    while True:
        rest = [n for n in shapes if n not in fixed]
        budget = density * total - sum(sizes[n] for n in fixed)
        if budget < 0:
            raise ConfigError(f"density {density} cannot be reached with layers "
                              f"{sorted(fixed)} dense")
        if not rest:
            return fixed
        raw = {n: _raw_score(shapes[n], distribution) for n in rest}
        eps = budget / sum(raw[n] * sizes[n] for n in rest)
        over = [n for n in rest if eps * raw[n] > 1.0]
        if not over:
            return {**fixed, **{n: eps * raw[n] for n in rest}}
        fixed.update({n: 1.0 for n in over})


def cosine_drop_fraction(step: int, alpha: float, end_step: int) -> float:
    """alpha/2 * (1 + cos(pi * step / end_step)); 0 at and after end_step."""
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"drop fraction must be in (0, 1), got {alpha}")
    if end_step <= 0:
        raise ConfigError(f"the update schedule must end after step 0, got {end_step}")
    if step >= end_step:
        return 0.0
    return alpha / 2.0 * (1.0 + math.cos(math.pi * step / end_step))


def largest(scores: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Boolean array: the k candidates with the largest scores (earlier index on ties)."""
    flat_scores, flat_cand = scores.ravel(), candidates.ravel()
    index = np.flatnonzero(flat_cand)
    order = index[np.lexsort((index, -flat_scores[index]))]
    chosen = np.zeros(flat_cand.shape, bool)
    chosen[order[:k]] = True
    return chosen.reshape(candidates.shape)


def drop_and_grow(mask: np.ndarray, weights: np.ndarray, grow_scores: np.ndarray,
                  fraction: float) -> Tuple[np.ndarray, np.ndarray]:
    """(new mask, grown) of one layer after one RigL/SET update (module docstring)."""
    mask = np.asarray(mask, bool)
    if not (mask.shape == np.shape(weights) == np.shape(grow_scores)):
        raise ConfigError(f"mask {mask.shape}, weights {np.shape(weights)} and scores "
                          f"{np.shape(grow_scores)} differ in shape")
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"drop fraction must be in [0, 1), got {fraction}")
    active = int(mask.sum())
    k = int(math.floor(fraction * active))
    if k == 0:
        return mask.copy(), np.zeros_like(mask)
    magnitude = np.abs(np.asarray(weights, np.float64))
    kept = largest(magnitude, mask, active - k)
    grown = largest(np.asarray(grow_scores, np.float64), ~kept, k)
    return kept | grown, grown


def sparse_start_mask(shapes: Dict[str, Tuple[int, ...]], densities: Dict[str, float],
                      seed: int) -> Mask:
    """A random mask keeping round(density_l * size_l) weights of each layer l.

    Dynamic sparse training starts from such a mask (RigL, SET): the
    per-layer counts come from `layer_densities`, the positions are uniform
    within each layer (pruning/ablations.py's layerwise shuffle), so the
    result depends only on the seed.
    """
    template = {}
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        flat = np.zeros(size, bool)
        flat[:round_count(densities[name] * size)] = True
        template[name] = flat.reshape(shape)
    return random_mask(Mask(template), seed, scope="layerwise")


def overlap(previous: Mask, new: Mask) -> Dict[str, float]:
    """How much two masks of one network differ (the thesis's Dynamic IMP question).

    new_not_in_previous: the fraction of `new`'s kept weights that `previous`
    had pruned; previous_not_in_new: the fraction of `previous`'s kept
    weights that `new` prunes.  0 and 0 for equal masks.
    """
    names = sorted(previous)
    kept_prev = sum(int(previous[n].sum()) for n in names)
    kept_new = sum(int(new[n].sum()) for n in names)
    added = sum(int((new[n] & ~previous[n]).sum()) for n in names)
    removed = sum(int((previous[n] & ~new[n]).sum()) for n in names)
    return {"new_not_in_previous": added / kept_new if kept_new else 0.0,
            "previous_not_in_new": removed / kept_prev if kept_prev else 0.0}
