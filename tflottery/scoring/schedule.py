"""How many weights each round of pruning-at-initialisation keeps.

Conventions (all counts are exact integers, rounded as in pruning.select:
half up):

* The target is a density of ALL prunable weights: keep
  K = round(target_density * num_weights) weights in total.  Excluded layers
  keep their current mask, so the other layers keep K - E together (E = the
  excluded layers' remaining count).  A target above the current density,
  or below what the excluded layers alone keep, is a ConfigError.
* Iterative scorers prune on the exponential schedule of SynFlow (Tanaka et
  al. 2020) and "Missing the Mark" (Frankle et al. 2021): after round n of N
  the density is  d0 * (target / d0) ** (n / N),  d0 the starting density,
  so every round removes the same fraction of the remaining weights.  The
  last round lands exactly on K; intermediate rounds are rounded half up.
* scope 'global': one ranking over all non-excluded layers; the schedule
  above applies to the total count.
* scope 'layerwise': every non-excluded layer keeps the same fraction
  (K - E) / R of its remaining weights (R = their remaining total), so a
  dense start ends with every layer at the same density.  Per-layer counts
  are apportioned by largest remainder (ties to the earlier layer in sorted
  name order) so they add up to exactly K - E; each layer then follows the
  exponential schedule from its own starting count to its own final count.

A round is a list of (layer names, count to keep among them) groups.
"""
import math
from numbers import Integral
from typing import Dict, Iterable, List, Sequence, Tuple

from tflottery.errors import ConfigError
from tflottery.masking.mask import Mask
from tflottery.pruning.select import check_names, check_number, check_scope, round_count

Round = List[Tuple[Tuple[str, ...], int]]


def check_iterations(iterations) -> int:
    if isinstance(iterations, bool) or not isinstance(iterations, Integral) or iterations < 1:
        raise ConfigError(f"iterations must be a positive integer (got {iterations!r})")
    return int(iterations)


def _remaining(mask: Mask, names: Iterable[str]) -> int:
    return sum(int(mask[name].sum()) for name in names)


def target_count(current: Mask, target_density) -> int:
    """K = round(target_density * all prunable weights), checked against the current mask."""
    target_density = check_number("target density", target_density, 0.0, 1.0, low_open=True)
    keep = round_count(target_density * current.num_weights)
    if keep == 0:
        raise ConfigError(
            f"target density {target_density:g} of {current.num_weights} weights rounds to "
            f"keeping none; choose a target of at least {0.5 / current.num_weights:.3g}")
    if keep > current.num_remaining:
        raise ConfigError(
            f"target density {target_density:g} keeps {keep} weights but only "
            f"{current.num_remaining} remain (current density {current.density:g}); pruning "
            f"can only remove weights, so choose a target at or below the current density")
    return keep


def _geometric(start: int, end: int, n: int, iterations: int) -> int:
    """start * (end/start) ** (n/N), rounded half up; exactly `end` at n == N."""
    if n == iterations or start == 0:
        return end
    if end == 0:
        # The exponential schedule cannot reach zero; go there in the last round.
        return start
    return round_count(start * math.exp(n / iterations * math.log(end / start)))


def _apportion(total: int, sizes: Dict[str, int]) -> Dict[str, int]:
    """Split `total` over names in proportion to `sizes`, exactly (largest remainder)."""
    whole = sum(sizes.values())
    if whole == 0:
        return {name: 0 for name in sizes}
    quotas = {name: total * size / whole for name, size in sizes.items()}
    counts = {name: int(math.floor(q)) for name, q in quotas.items()}
    short = total - sum(counts.values())
    # Stable sort: equal remainders go to the earlier name (sizes is in sorted order).
    for name in sorted(quotas, key=lambda k: counts[k] - quotas[k])[:short]:
        counts[name] += 1
    return counts


def plan(current: Mask, target_density, scope: str = "global", excluded: Sequence[str] = (),
         iterations: int = 1) -> List[Round]:
    """The rounds that take `current` to `target_density` (see the module docstring)."""
    check_scope(scope)
    iterations = check_iterations(iterations)
    excluded = set(excluded)
    check_names("excluded", excluded, current)
    keep_all = target_count(current, target_density)
    names = [name for name in sorted(current) if name not in excluded]
    kept_excluded = _remaining(current, excluded)
    keep = keep_all - kept_excluded
    if keep < 0:
        raise ConfigError(
            f"the excluded weights alone keep {kept_excluded} weights, more than the "
            f"{keep_all} that target density {float(target_density):g} allows; choose a "
            f"higher target or exclude fewer layers")

    if scope == "global":
        start_all = current.num_remaining
        return [[(tuple(names), _geometric(start_all, keep_all, n, iterations) - kept_excluded)]
                for n in range(1, iterations + 1)]
    start = {name: _remaining(current, [name]) for name in names}
    final = _apportion(keep, start)
    return [[((name,), _geometric(start[name], final[name], n, iterations)) for name in names]
            for n in range(1, iterations + 1)]
