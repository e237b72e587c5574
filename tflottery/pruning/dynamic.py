"""The mask arithmetic of dynamic sparse training (RigL, SET), on host arrays.

Four pieces, each a pure function so that it can be checked by hand and
reused by any experiment that changes masks during training.  Facts and
numbers follow RigL's reference code (google-research/rigl,
sparse_utils.py and sparse_optimizers_base.py):

* `layer_densities`: how a total density is spread over the layers.
  'uniform' gives every layer the same density; 'erk' is the
  Erdős-Rényi-Kernel rule of Evci et al. (2020, after Mocanu et al. 2018):
  layer l gets density  eps * ((sum of its kernel dimensions) / (product of
  them)) ** erk_power_scale,  with one eps for all layers chosen so that the
  kept weights add up to the total; a layer whose density would exceed 1
  stays dense (it counts towards the total) and eps is solved again over
  the others.  ('er' uses only the last two dimensions, fan-in and fan-out,
  as the original Erdős-Rényi rule for dense layers; erk_power_scale < 1
  softens ERK towards uniform, 0 is uniform.)  Layers given their own
  density by the user (`custom`: a dense output layer, a sparser first
  layer) are left out: the total density is that of the other layers, as
  in the reference; `custom_in_budget=True` counts them instead, so that
  the whole network has the total density and the others make up for them.
* `update_schedule` and `drop_fraction`: the reference's schedule.  Masks
  are updated at begin, begin + every, ... up to and including the end
  step (begin 1, end 4, every 2: steps 1 and 3).  The fraction of active
  weights replaced is annealed from alpha: 'constant'; 'cosine' (RigL's
  f_decay)  alpha/2 * (1 + cos(pi * min(t, end - begin) / (end - begin)))
  -- with t counted from step 0, not from begin, exactly as the reference's
  tf.train.cosine_decay on the global step (for begin 0, the paper's
  formula; for begin > 0 it reaches 0 at step end - begin); or
  'exponential_<p>'  alpha * (1 - (t - begin) / (end - begin)) ** p  (p 1
  when omitted: 'exponential' decays linearly).
* `drop_and_grow`: one update of one layer -- the specification, on host
  arrays, that runs do not call: they update every layer at once on the
  device (pruning/dynamic_device.py), and the tests hold that update to
  this function mask for mask.  Of its n active weights,
  k = floor(fraction * n) with the smallest |w| are dropped; then k weights
  are grown among the connections inactive after the drop (just-dropped ones
  included, as in RigL's reference code), those with the largest grow score
  (|dense gradient| for RigL, a random score for SET).  The layer keeps
  exactly n weights.  Grown weights start at zero (the caller zeroes them,
  and their optimizer slots).

Ties are broken by position (the earlier flat index wins), so every result
is a deterministic function of its inputs.  (The reference breaks ties with
noise of std 1e-5 added to the magnitudes, and rounds per-layer counts down
where `sparse_start_mask` rounds half up: counts may differ by one.)
"""
import math
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np

from tflottery.errors import ConfigError
from tflottery.masking.mask import Mask
from tflottery.pruning.ablations import random_mask
from tflottery.pruning.select import round_count

DISTRIBUTIONS = ("uniform", "erk", "er")


def _raw_score(shape, distribution: str, power: float) -> float:
    dims = list(shape) if distribution == "erk" else list(shape[-2:])
    return (sum(dims) / float(np.prod(dims))) ** power


def layer_densities(shapes: Dict[str, Tuple[int, ...]], density: float,
                    distribution: str = "erk", dense: Iterable[str] = (),
                    custom: Optional[Mapping[str, float]] = None,
                    erk_power_scale: float = 1.0,
                    custom_in_budget: bool = False) -> Dict[str, float]:
    """{layer name: density} (module docstring).

    custom: {layer name: its own density}; `dense` names layers of custom
    density 1.  Without custom_in_budget, sum(density_l * size_l) over the
    other layers is density * (their size); with it, over all layers,
    density * (the network's size).
    """
    if distribution not in DISTRIBUTIONS:
        raise ConfigError(f"unknown density distribution {distribution!r}; choose one of: "
                          f"{', '.join(DISTRIBUTIONS)}")
    if not 0.0 < density <= 1.0:
        raise ConfigError(f"density must be in (0, 1], got {density}")
    if erk_power_scale != 1.0 and distribution != "erk":
        raise ConfigError(f"erk_power_scale {erk_power_scale} applies to distribution 'erk' "
                          f"only, not {distribution!r}")
    sizes = {name: int(np.prod(shape)) for name, shape in shapes.items()}
    fixed = {**{name: 1.0 for name in dense}, **dict(custom or {})}
    unknown = set(fixed) - set(shapes)
    if unknown:
        raise ConfigError(f"layers {sorted(unknown)} with their own density are not among "
                          f"{sorted(shapes)}")
    rest = [n for n in shapes if n not in fixed]
    if custom_in_budget:
        budget = density * sum(sizes.values()) - sum(fixed[n] * sizes[n] for n in fixed)
    else:
        budget = density * sum(sizes[n] for n in rest)
    if budget < -1e-9 * sum(sizes.values()):
        raise ConfigError(f"density {density} cannot be reached with layers {sorted(fixed)} "
                          f"at their own densities")
    if not rest:
        return fixed
    if distribution == "uniform":
        share = budget / sum(sizes[n] for n in rest)
        if share > 1.0:
            raise ConfigError(f"density {density} cannot be reached with layers "
                              f"{sorted(fixed)} at their own densities")
        return {**fixed, **{n: max(share, 0.0) for n in rest}}
    forced = []      # layers whose density would exceed 1: dense, inside the budget
    while True:
        others = [n for n in rest if n not in forced]
        left = budget - sum(sizes[n] for n in forced)
        if not others:
            if left < -1e-9 * sum(sizes.values()):
                raise ConfigError(f"density {density} cannot be reached")
            return {**fixed, **{n: 1.0 for n in forced}}
        raw = {n: _raw_score(shapes[n], distribution, erk_power_scale) for n in others}
        eps = left / sum(raw[n] * sizes[n] for n in others)
        over = [n for n in others if eps * raw[n] > 1.0]
        if not over:
            return {**fixed, **{n: 1.0 for n in forced}, **{n: eps * raw[n] for n in others}}
        forced.extend(over)


ANNEALS = ("constant", "cosine", "exponential")


def parse_anneal(anneal: str) -> Tuple[str, float]:
    """('constant' | 'cosine' | 'exponential', power) of a drop-fraction anneal name.

    'exponential_<p>' (the reference's spelling, e.g. 'exponential_3') gives
    power p > 0; plain 'exponential' gives 1.
    """
    if anneal in ("constant", "cosine", "exponential"):
        return anneal, 1.0
    if isinstance(anneal, str) and anneal.startswith("exponential_"):
        try:
            power = float(anneal[len("exponential_"):])
        except ValueError:
            power = float("nan")
        if math.isfinite(power) and power > 0:
            return "exponential", power
    raise ConfigError(f"unknown drop fraction anneal {anneal!r}; choose one of: "
                      f"{', '.join(ANNEALS)}, or 'exponential_<p>' with a power p > 0")


def update_schedule(begin: int, end: int, every: int, total: int) -> List[int]:
    """The mask update steps: begin, begin + every, ... <= end, and before `total`."""
    if every < 1:
        raise ConfigError(f"mask updates must be at least 1 step apart, got {every}")
    return list(range(begin, min(end, total - 1) + 1, every))


def drop_fraction(step: int, alpha: float, anneal: str, begin: int, end: int) -> float:
    """The fraction of active weights replaced at update step `step` (module docstring)."""
    kind, power = parse_anneal(anneal)
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"drop fraction must be in (0, 1), got {alpha}")
    if not 0 <= begin < end:
        raise ConfigError(f"the update schedule must end after it begins, got begin {begin}, "
                          f"end {end}")
    if kind == "constant":
        return alpha
    if kind == "cosine":
        return cosine_drop_fraction(step, alpha, end - begin)
    progress = min(max((step - begin) / (end - begin), 0.0), 1.0)
    return alpha * (1.0 - progress) ** power


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
    """(new mask, grown) of one layer after one RigL/SET update (module docstring).

    The host reference of dynamic_device.drop_and_grow, which runs use.
    """
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
