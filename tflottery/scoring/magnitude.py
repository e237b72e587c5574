"""'magnitude' and 'magnitude_unit_variance': scores from the weights alone.

'magnitude': |w| of the masked weights (pruned entries score 0).  At
initialisation this prunes the tails of each layer's initial distribution;
after training it is the lottery-ticket criterion.

'magnitude_unit_variance' (thesis 5.7.1 ablation): |w| / std_l, std_l the
standard deviation (population, ddof=0) of layer l's whole kernel under the
current mask (pruned entries count as the zeros they are; for the intended
use, pruning at step 0 from a dense mask, it is the plain std of the
initial kernel).  Why this is magnitude pruning of a variance-1
initialisation: the usual initialisers (Kaiming, Glorot, He, LeCun; normal,
truncated or uniform) differ between layers only by a per-layer scale,
W_l = sigma_l * Z_l with Z_l drawn from one fixed distribution.  Dividing a
whole layer by a positive number does not change the order of its
magnitudes, so within a layer the ranking is that of Z_l; across layers,
std(W_l) = sigma_l * std(Z_l), so W_l / std(W_l) = Z_l / std(Z_l), which is
the variance-1 network's weights up to the factor 1/std(Z_l) -> 1 (its
sampling error is O(1/sqrt(layer size))).  Global magnitude pruning of
these scores therefore prunes as if every layer had been initialised at
variance 1, removing the per-layer scale that makes plain global magnitude
pruning at init favour small-fan-in layers.  A layer whose kernel is all
zero scores 0.
"""
import numpy as np

from tflottery.scoring.registry import register


def magnitude_scores(state, batch, seed: int, round_index: int):
    return {name: np.abs(w).astype(np.float64) for name, w in state.masked_weights().items()}


def unit_variance_scores(state, batch, seed: int, round_index: int):
    out = {}
    for name, w in state.masked_weights().items():
        w = w.astype(np.float64)
        std = float(np.std(w))
        out[name] = np.abs(w) / std if std > 0 else np.abs(w)
    return out


register("magnitude", magnitude_scores)
register("magnitude_unit_variance", unit_variance_scores)
