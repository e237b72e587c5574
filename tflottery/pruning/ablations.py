"""Random-mask controls for lottery-ticket experiments.

The lottery-ticket claim is that the *positions* magnitude pruning keeps
matter, not only how many weights are kept.  The controls therefore keep the
counts of a winning ticket's mask and randomise the positions:

* 'global': the kept weights are spread uniformly over the whole network, so
  every layer ends up near the total density (tests whether the per-layer
  densities magnitude pruning discovered matter);
* 'layerwise': each layer keeps exactly its own count at random positions
  (tests whether the positions within a layer matter).

Both are pure NumPy and deterministic for a seed, so a control run can be
reproduced from its config alone.
"""
from typing import Iterable

import numpy as np

from tflottery.masking.mask import Mask
from tflottery.pruning.select import check_names, check_scope


def random_mask(template: Mask, seed: int, scope: str = "global",
                excluded: Iterable[str] = ()) -> Mask:
    """A random mask keeping as many weights as `template` over the non-excluded layers.

    Excluded layers are copied from the template unchanged (e.g. an output
    layer that the experiment never prunes).  Layers are visited in sorted name
    order so the result depends only on the seed and the mask's contents, not
    on the order its entries were inserted.
    """
    check_scope(scope)
    excluded = set(excluded)
    check_names("excluded", excluded, template)
    rng = np.random.default_rng(seed)
    out = {name: np.array(template[name]) for name in template}
    names = [name for name in sorted(template) if name not in excluded]
    if scope == "layerwise":
        for name in names:
            # Permuting the values of a layer keeps its count and makes every
            # arrangement of that many kept weights equally likely.
            out[name] = rng.permutation(template[name].ravel()).reshape(template[name].shape)
    elif names:
        pooled = rng.permutation(np.concatenate([template[name].ravel() for name in names]))
        start = 0
        for name in names:
            size = template[name].size
            out[name] = pooled[start:start + size].reshape(template[name].shape)
            start += size
    return Mask({name: out[name] for name in template})


def shuffle_within_layers(mask: Mask, seed: int) -> Mask:
    """Each layer's kept weights moved to random positions in that layer (counts kept)."""
    return random_mask(mask, seed, scope="layerwise")
