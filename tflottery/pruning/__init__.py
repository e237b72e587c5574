"""Which weights to prune, as pure NumPy functions on `Mask`s.

Typical iterative magnitude pruning level::

    scores = {name: np.abs(trained[name]) for name in mask}   # caller takes |w|
    mask = pruning.prune(scores, mask, fraction=0.2, scope="layerwise",
                         layer_fractions={"output/kernel": 0.1})

One-shot pruning to a density: ``prune(scores, mask,
fraction_for_density(mask.density, 0.1))``.  Controls: ``random_mask`` and
``shuffle_within_layers`` (ablations.py); the inversion ablation is
``prune(..., invert=True)``.  Per-layer density and neuron-collapse
statistics of a mask: ``mask_statistics`` (statistics.py).
"""
from tflottery.pruning.ablations import random_mask, shuffle_within_layers
from tflottery.pruning.select import SCOPES, fraction_for_density, levels_for_sparsity, prune
from tflottery.pruning.statistics import STATISTICS_FILENAME, mask_statistics, save_statistics

__all__ = ["SCOPES", "STATISTICS_FILENAME", "fraction_for_density", "levels_for_sparsity", "mask_statistics", "prune",
           "random_mask", "save_statistics", "shuffle_within_layers"]
