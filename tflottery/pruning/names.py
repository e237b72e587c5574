"""Which mask weights a user's layer names mean.

Hyperparameters name layers ('output') or single weights ('output/kernel');
masks are keyed by weight name.  Experiments and the `fit` callbacks resolve
them here alike, so a name that is not a prunable layer fails with the same
one-line error everywhere.
"""
from tflottery.errors import ConfigError


def weights_named_by(key: str, weight_names) -> list:
    """The weight names a user's key means: itself ('output/kernel') or all of a layer's ('output')."""
    return [w for w in weight_names if w == key or w.split("/")[0] == key]


def excluded_weights(layer_names, weight_names):
    """Weight names ('output/kernel') of the excluded layer names ('output'); none, unchecked,
    when `weight_names` is None (the network's names are not known: a dry run without data)."""
    if weight_names is None:
        return []
    out = []
    for layer in layer_names:
        matches = weights_named_by(layer, weight_names)
        if not matches:
            raise ConfigError(f"excluded layer {layer!r} is not a prunable layer; choose from: "
                              f"{', '.join(sorted(weight_names))}")
        out.extend(matches)
    return out
