"""Choosing which weights to remove: magnitude pruning as pure NumPy on Masks.

Lottery-ticket experiments differ mostly in *how many* weights each pruning
level removes and *where* (one ranking over the whole network, or one per
layer); the selection itself is always "drop the lowest scores among what is
still alive".  Keeping that rule here, free of TensorFlow and of any model,
lets the same function serve iterative and one-shot pruning, the inversion
ablation, and tests that check exact counts by hand.

Conventions shared by every function in this module:

* `fraction` is a fraction of the weights that are *still remaining*, as in
  Frankle & Carbin (2019): pruning 20% per level leaves 0.8**L after L levels.
* Counts are rounded half up (``floor(x + 0.5)``, with a tiny tolerance for
  binary floating point such as 0.35 * 10 = 3.4999999999999996), not Python's
  round-half-to-even, so the number removed never depends on the parity of a
  count and never decreases when the fraction grows.
* Ties are broken by position so results are reproducible: layers are taken in
  sorted name order, entries in flat (C) order, and among equal scores the
  earlier entry is removed first.
* Scopes: 'global', 'layerwise', or an N:M pattern such as '2:4' (at most N
  of every M consecutive input weights kept; n_m.py says how it prunes).
"""
import math
from collections.abc import Mapping
from numbers import Real
from typing import Dict, Optional

import numpy as np

from tflottery.errors import ConfigError, first_few
from tflottery.masking.mask import Mask
from tflottery.pruning import n_m

# Named scopes; any 'N:M' pattern such as '2:4' is a scope too (n_m.py).
SCOPES = ("global", "layerwise")

# Absorbs binary floating-point error in products and powers of user fractions
# (e.g. 1 - 0.8**2 == 0.3599999999999999) without changing any real answer.
_EPS = 1e-9


# -- argument checks ----------------------------------------------------------
def check_number(what: str, value, low: float, high: float, *,
                 low_open: bool = False, high_open: bool = False) -> float:
    """Return `value` as a float if it lies in the interval, else a one-line ConfigError.

    Bools are refused although Python treats them as numbers: `fraction=True`
    is a mistake, not a request to prune everything.
    """
    ok = isinstance(value, Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = (value > low if low_open else value >= low) and \
             (value < high if high_open else value <= high)  # NaN fails both
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{what} must be a number in {interval} (got {value!r})")
    return value


def check_scope(scope) -> str:
    if scope not in SCOPES and n_m.parse(scope) is None:
        raise ConfigError(f"unknown pruning scope {scope!r}; choose one of: {', '.join(SCOPES)} "
                          f"or an N:M pattern such as '2:4'")
    return scope


def check_names(what: str, names, mask: Mask) -> None:
    """Every name the caller mentions must be a weight of the mask (typos fail loudly)."""
    unknown = sorted(str(n) for n in names if n not in mask)
    if unknown:
        raise ConfigError(
            f"{what} names weights that are not in the mask: {first_few(map(repr, unknown))}; "
            f"valid names are: {first_few(sorted(mask))}")


def round_count(x: float) -> int:
    """Round a non-negative expected count half up (see the module docstring)."""
    return int(math.floor(x + 0.5 + _EPS))


def _check_scores(scores: Mapping, current: Mask) -> Dict[str, np.ndarray]:
    """Scores for every mask weight, same shapes, finite where the weight remains.

    Extra score entries are ignored so the caller may pass magnitudes of all
    trainable weights (biases included) and let the mask decide what is prunable.
    """
    missing = sorted(name for name in current if name not in scores)
    if missing:
        raise ConfigError(
            f"scores are missing weights of the mask: {first_few(map(repr, missing))}; "
            f"pass one score array per mask entry")
    out = {}
    for name in current:
        array = np.asarray(scores[name])
        if array.shape != current[name].shape:
            raise ConfigError(
                f"scores for {name!r} have shape {array.shape} but the mask has "
                f"{current[name].shape}; pass scores computed from that weight")
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise ConfigError(f"scores for {name!r} must be real numbers (got dtype {array.dtype})")
        array = array.astype(np.float64)  # exact for float32/float16, so the order is unchanged
        if not np.all(np.isfinite(array[current[name]])):
            raise ConfigError(
                f"scores for {name!r} contain NaN or infinity at remaining weights; "
                f"the trained weights are probably corrupt (did training diverge?)")
        out[name] = array
    return out


def _layer_fractions(fraction: float, scope: str, layer_fractions: Optional[Mapping],
                     current: Mask) -> Dict[str, float]:
    """The fraction to apply to each layer, after validating the overrides."""
    overrides = dict(layer_fractions or {})
    check_names("layer_fractions", overrides, current)
    for name, value in overrides.items():
        check_number(f"layer_fractions[{name!r}]", value, 0.0, 1.0, high_open=True)
    if scope == "global":
        per_layer = sorted(name for name, value in overrides.items() if value != 0)
        if per_layer:
            raise ConfigError(
                f"layer_fractions gives non-zero rates for {first_few(map(repr, per_layer))} "
                f"with scope 'global', which only allows 0 (exclude a layer); "
                f"per-layer rates need scope 'layerwise'")
    return {name: float(overrides.get(name, fraction)) for name in current}


# -- pruning ------------------------------------------------------------------
def _removal_order(scores: np.ndarray, invert: bool, over: Optional[np.ndarray] = None
                   ) -> np.ndarray:
    """Indices into `scores`, first-to-remove first; stable, so ties go by position.

    `over` (N:M scopes): entries beyond their block's quota, all removed before any other.
    """
    keys = -scores if invert else scores
    if over is None:
        return np.argsort(keys, kind="stable")
    return np.lexsort((keys, ~over))   # stable: ties still go by position


def _over_quota(scores: Dict[str, np.ndarray], current: Mask, names, pattern, invert: bool):
    """The pooled over-quota flags of `names` (None outside an N:M scope)."""
    if pattern is None:
        return None
    return np.concatenate(
        [n_m.over_quota(-scores[name] if invert else scores[name], current[name], *pattern)
         for name in names] + [np.zeros(0, np.bool_)])


def _remove(new: Dict[str, np.ndarray], group, alive, removed: np.ndarray) -> None:
    """Clear in `new` the pooled entries flagged in `removed` (pooled = alive of group, in order)."""
    start = 0
    for name, idx in zip(group, alive):
        new[name].reshape(-1)[idx[removed[start:start + idx.size]]] = False  # a view of new[name]
        start += idx.size


def prune(scores: Mapping, current: Mask, fraction: float, scope: str = "global",
          layer_fractions: Optional[Mapping] = None, invert: bool = False) -> Mask:
    """Remove `fraction` of the remaining weights of `current`, the lowest-scoring ones.

    `scores` maps each mask name to an array of the weight's shape.  They are
    ranked as given, without abs(): magnitude pruning passes |w| of the trained
    weights, and other criteria (e.g. |w_final| - |w_init|) can be passed
    unchanged.  Already-pruned entries stay pruned whatever their score, so a
    large weight that was once removed is never revived.

    scope 'global': one ranking over the remaining weights of every layer whose
    fraction is non-zero; round(fraction * their remaining count) are removed,
    so layers with many small weights lose more.  `layer_fractions` may only
    map a layer to 0, which leaves its mask unchanged (e.g. the output layer).

    scope 'layerwise': each layer removes round(f * its remaining count) of its
    own weights, f = layer_fractions.get(name, fraction); this is how Frankle &
    Carbin prune conv layers, FC layers and the output layer at different rates.

    invert=True removes the *highest*-scoring remaining weights instead, in the
    same numbers (the ablation that keeps the smallest weights).

    scope 'N:M' (e.g. '2:4'): layerwise, and every pruned layer's result keeps
    at most N of each block of M input weights, removing more than asked if
    the pattern needs it (n_m.py).
    """
    fraction = check_number("pruning fraction", fraction, 0.0, 1.0, high_open=True)
    check_scope(scope)
    pattern = n_m.parse(scope)
    fractions = _layer_fractions(fraction, scope, layer_fractions, current)
    scores = _check_scores(scores, current)

    new = {name: np.array(current[name]) for name in current}  # writable copies
    names = [name for name in sorted(current) if fractions[name] > 0]
    if scope == "global":
        groups = [(names, fraction)]
    else:
        groups = [([name], fractions[name]) for name in names]

    for group, rate in groups:
        # Flat positions (within each layer) of the remaining weights, and their scores.
        alive = [np.flatnonzero(current[name]) for name in group]
        pooled = np.concatenate([scores[name].ravel()[idx] for name, idx in zip(group, alive)]
                                + [np.zeros(0)])
        over = _over_quota(scores, current, group, pattern, invert)
        count = round_count(rate * pooled.size)
        if over is not None:
            count = max(count, int(over.sum()))
        if count == 0:
            continue
        removed = np.zeros(pooled.size, np.bool_)
        removed[_removal_order(pooled, invert, over)[:count]] = True
        _remove(new, group, alive, removed)
    return Mask({name: new[name] for name in current})


def prune_to_count(scores: Mapping, current: Mask, keep: int, names=None,
                   invert: bool = False, scope: str = "global") -> Mask:
    """Keep exactly `keep` of the remaining weights of the layers `names`, the highest-scoring.

    The exact-count counterpart of prune(), for callers that plan their own
    counts (pruning at initialisation to a density in several rounds must end
    on exactly the requested number of weights, which a fraction of the
    remaining cannot always express after rounding).  The remaining weights of
    `names` (default: every layer of `current`) are ranked together; layers
    not named are unchanged; already-pruned entries stay pruned; ties go by
    position as in prune(); invert=True removes the highest scores instead.

    An N:M `scope` (e.g. '2:4') makes `keep` an upper bound: the result obeys
    the pattern in every named layer, so it may keep fewer (and `keep` may
    exceed what remains); other scopes rank the named layers together.
    """
    check_scope(scope)
    pattern = n_m.parse(scope)
    names = sorted(current) if names is None else sorted(set(names))
    check_names("prune_to_count names", names, current)
    remaining = sum(int(np.count_nonzero(current[name])) for name in names)
    if isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 0 \
            or (keep > remaining and pattern is None):
        raise ConfigError(
            f"keep must be an integer between 0 and the {remaining} remaining weights "
            f"of the named layers (got {keep!r})")
    if pattern is None and keep == remaining:
        return current
    scores = _check_scores({name: scores[name] for name in names if name in scores},
                           Mask({name: current[name] for name in names}))
    over = _over_quota(scores, current, names, pattern, invert)
    count = max(remaining - int(keep), 0 if over is None else int(over.sum()))
    if count == 0:
        return current
    new = {name: np.array(current[name]) for name in current}
    alive = [np.flatnonzero(current[name]) for name in names]
    pooled = np.concatenate([scores[name].ravel()[idx] for name, idx in zip(names, alive)])
    removed = np.zeros(pooled.size, np.bool_)
    removed[_removal_order(pooled, invert, over)[:count]] = True
    _remove(new, names, alive, removed)
    return Mask({name: new[name] for name in current})


# -- schedules ----------------------------------------------------------------
def fraction_for_density(current_density: float, target_density: float) -> float:
    """The fraction of remaining weights to prune to go from one density to another in one step.

    One-shot pruning is a single call of prune() with this fraction: keeping
    target/current of the remaining weights leaves target density overall.
    """
    current_density = check_number("current density", current_density, 0.0, 1.0, low_open=True)
    target_density = check_number("target density", target_density, 0.0, 1.0, low_open=True)
    if target_density > current_density:
        raise ConfigError(
            f"target density {target_density:g} is above the current density "
            f"{current_density:g}; pruning can only remove weights, so choose a target "
            f"at or below the current density")
    return 1.0 - target_density / current_density


def check_target_sparsity(scope, target_sparsity: float,
                          setting: str = "target sparsity") -> None:
    """A ConfigError if an N:M `scope` cannot be as dense as `target_sparsity` asks.

    Every mask that follows the pattern keeps at most N of every M weights, and
    the scope's first pruning already removes the weights over that quota
    (n_m.py): a target below 1 - N/M would be overshot, never reached.
    `setting` names the value the user sets.
    """
    pattern = n_m.parse(check_scope(scope))
    if pattern is None:
        return
    n, m = pattern
    floor = 1.0 - n / m
    if target_sparsity < floor * (1.0 - _EPS):
        raise ConfigError(
            f"{setting} {target_sparsity:g} is below {floor:g}, the sparsity that scope {scope!r} "
            f"reaches at its first pruning (at most {n} of every {m} weights kept); set "
            f"{setting} to at least {floor:g} or use scope 'layerwise'")


def levels_for_sparsity(fraction: float, target_sparsity: float, scope: str = "global") -> int:
    """The fewest levels, each pruning `fraction` of the remaining, that reach target_sparsity.

    That is the smallest L with 1 - (1 - fraction)**L >= target_sparsity.  The
    comparison tolerates floating-point error, so e.g. fraction 0.2 reaches
    sparsity 0.36 in exactly 2 levels although 1 - 0.8**2 == 0.3599999999999999.
    Rounding of weight counts is ignored: this is the nominal schedule.

    An N:M `scope` (e.g. '2:4') counts the densities its pruning reaches: the
    first level also removes every weight over the pattern's quota, so it
    leaves min(1 - fraction, N/M), and each later level removes `fraction` of
    the remaining (n_m.py).  A target below 1 - N/M is refused
    (check_target_sparsity).
    """
    fraction = check_number("pruning fraction", fraction, 0.0, 1.0, low_open=True, high_open=True)
    target_sparsity = check_number("target sparsity", target_sparsity, 0.0, 1.0, high_open=True)
    check_target_sparsity(scope, target_sparsity)
    target_density = 1.0 - target_sparsity
    pattern = n_m.parse(scope)
    if pattern is None:
        return _uniform_levels(fraction, target_density)
    first = min(1.0 - fraction, pattern[0] / pattern[1])
    if first <= target_density * (1.0 + _EPS):
        return 1
    return 1 + _uniform_levels(fraction, target_density / first)


def _uniform_levels(fraction: float, target_density: float) -> int:
    """The smallest L with (1 - fraction)**L <= target_density (within _EPS)."""

    def reaches(levels: int) -> bool:
        return (1.0 - fraction) ** levels <= target_density * (1.0 + _EPS)

    # Logarithms give the answer directly even for tiny fractions; the checks
    # below correct the at-most-one-off error of the float estimate.
    levels = max(0, math.ceil(math.log(target_density) / math.log1p(-fraction)))
    while levels > 0 and reaches(levels - 1):
        levels -= 1
    while not reaches(levels):
        levels += 1
    return levels
