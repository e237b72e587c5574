"""The uniform average of N networks' variables (a "model soup", Wortsman et al. 2022).

Why here: averaging is the N-network version of the midpoint of the linear
path, and like the path it only makes sense once the networks' units
correspond -- the same state trained with different SGD noise, or networks
aligned to the first by `align` (Ainsworth et al. 2022 average N aligned
networks the same way).

Masks are not averaged: the soup's mask is the union of the members' masks
(a weight pruned in one member is 0.0 there, so its average is the mean over
the members that keep it, weighted 1/N), which leaves each member's own
function intact when they are evaluated with it.
"""
from typing import Iterable, List, Sequence

import numpy as np

from tflottery.errors import ConfigError


def uniform_soup(members: Iterable[Sequence[np.ndarray]],
                 is_mask: Sequence[bool]) -> List[np.ndarray]:
    """Mean of every variable over `members` (each a list of arrays, one per variable);
    variables flagged in `is_mask` get the elementwise maximum (the union) instead.
    Each result has its variable's dtype (the sum is taken in float64).

    Accumulates one member at a time, so N large networks need not be held at once.
    """
    totals, dtypes, count = None, None, 0
    for values in members:
        values = [np.asarray(v) for v in values]
        if totals is None:
            totals = [v.astype(np.float64) for v in values]
            dtypes = [v.dtype for v in values]
        else:
            if len(values) != len(totals):
                raise ConfigError(f"soup members differ: {len(values)} and {len(totals)} variables")
            totals = [np.maximum(t, v) if m else t + v
                      for t, v, m in zip(totals, values, is_mask)]
        count += 1
    if not count:
        raise ConfigError("a soup needs at least one network")
    return [(t if m else t / count).astype(d)
            for t, m, d in zip(totals, is_mask, dtypes)]
