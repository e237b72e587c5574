"""'random': uniform random scores, the control every other scorer is compared with.

Scores are U[0, 1) from NumPy's PCG64 seeded with (seed, round), drawn layer
by layer in sorted name order, so they depend only on the seed and the
weight shapes -- not on the weights, the strategy or the order of the mask's
entries.  Keeping the highest of them keeps a uniformly random subset of the
remaining weights (globally: every layer near the same density; with scope
'layerwise': exactly the same density per layer).
"""
import numpy as np

from tflottery.scoring.registry import register


def random_scores(state, batch, seed: int, round_index: int):
    rng = np.random.default_rng([int(seed), int(round_index)])
    return {name: rng.random(state.weights[name].shape) for name in sorted(state.weights)}


register("random", random_scores)
