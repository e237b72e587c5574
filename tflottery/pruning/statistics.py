"""What a pruned network looks like, layer by layer and unit by unit.

Pruning-at-initialisation methods differ less in *which* weights they keep
than in *how many per layer* (thesis 5.5-5.7): SynFlow spreads the density
evenly, SNIP and GraSP starve the large layers, and some methods silence whole
neurons -- a unit whose every incoming weight is pruned is dead however the
rest is trained ("neuron collapse", thesis Figure 5-6).  These statistics are
saved beside every mask (statistics.json) so that the figures can be drawn
from the run directory alone.

Conventions:
* a *unit* of a kernel is one slice of its last axis: an output neuron of a
  Dense kernel [in, out], an output channel of a Conv kernel [kh, kw, in, out];
  its sparsity is the fraction of its incoming weights that are pruned;
* `thresholds` are percentages 0..100; `neuron_collapse[name][i]` is the
  fraction of the layer's units whose sparsity is >= thresholds[i] percent
  (so the curve starts at 1.0 and its value at 100 is the fraction of dead units);
* a layer is *fully pruned* when it keeps no weight at all.
"""
from typing import Dict, List

import numpy as np

from tflottery.masking.mask import Mask
from tflottery.runs import io, layout

STATISTICS_FILENAME = layout.STATISTICS
THRESHOLDS = list(range(0, 101))


def unit_sparsity(kept: np.ndarray) -> np.ndarray:
    """Per-unit fraction of pruned incoming weights (a 1-d kernel is one unit per entry)."""
    kept = np.asarray(kept, bool)
    if kept.ndim == 1:
        return 1.0 - kept.astype(np.float64)
    per_unit = kept.reshape(-1, kept.shape[-1])
    return 1.0 - per_unit.mean(axis=0)


def collapse_curve(sparsities: np.ndarray, thresholds=THRESHOLDS) -> List[float]:
    """Fraction of units with sparsity >= s% for every s in `thresholds`."""
    sparsities = np.asarray(sparsities, np.float64)
    if sparsities.size == 0:
        return [0.0 for _ in thresholds]
    # A tiny tolerance so that a unit with exactly s% pruned (e.g. 3 of 4
    # weights = 75%) counts at s despite binary floating point.
    return [float(np.mean(sparsities >= s / 100.0 - 1e-12)) for s in thresholds]


def mask_statistics(mask: Mask) -> Dict:
    """Per-layer density, neuron collapse curves and fully pruned layers of `mask`."""
    layers, collapse, all_units, dead_layers = {}, {}, [], []
    for name in sorted(mask):
        kept = np.asarray(mask[name], bool)
        count = int(kept.sum())
        layers[name] = {"size": int(kept.size), "kept": count,
                        "density": count / kept.size if kept.size else 1.0}
        units = unit_sparsity(kept)
        all_units.append(units)
        collapse[name] = collapse_curve(units)
        if count == 0:
            dead_layers.append(name)
    return {
        "density": mask.density,
        "layers": layers,
        "thresholds": list(THRESHOLDS),
        "neuron_collapse": collapse,
        "network_neuron_collapse": collapse_curve(
            np.concatenate(all_units) if all_units else np.zeros(0)),
        "fully_pruned_layers": dead_layers,
    }


def save_statistics(mask: Mask, directory: str) -> Dict:
    """Write statistics.json beside the mask; returns the statistics."""
    stats = mask_statistics(mask)
    io.makedirs(directory)
    io.atomic_write_json(layout.file(directory, STATISTICS_FILENAME), stats)
    return stats
