"""Converting between tfmot-pruned models and tflottery-masked ones.

tensorflow-model-optimization (tfmot) and tflottery both mask weights, each
with its own wrapper layer: tfmot's `PruneLowMagnitude` holds a 'mask' per
pruned weight and writes weight*mask into the weight during training;
tflottery's `Masked` multiplies in the forward pass.  The wrappers do not
nest (tfmot refuses a `Masked` layer, and `wrap` would find nothing prunable
inside tfmot's wrappers), so models are converted whole instead:

* `from_tfmot(model)`: a tfmot-pruned model -- still wrapped, or stripped by
  `strip_pruning` with its zeros in the weights -- becomes a tflottery-wrapped
  model with the same masks and weights, ready for IMP, rewinding, scoring.
* `to_tfmot(model)`: a tflottery-wrapped model becomes a tfmot-wrapped one
  with tflottery's masks in tfmot's mask variables, so tfmot's own tools
  apply: `strip_pruning`, the `PruningSummaries` callback, TFLite's sparse
  conversion.  By default its pruning schedule never changes the masks
  (`KeepMasks`); pass a tfmot schedule to continue pruning with tfmot.

Masks are matched by tflottery's stable names (inner layer name/attribute),
which the layer names tfmot keeps under its wrappers give directly.
"""
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from tflottery.errors import ConfigError, first_few
from tflottery.keras_compat import check_tf_keras_model, keras
from tflottery.masking.assign import get_mask, set_mask
from tflottery.masking.mask import Mask
from tflottery.masking.prunable import (PRUNABLE_WEIGHTS, PrunableTable, attribute_holding,
                                        prunable_attrs, stable_name)
from tflottery.masking.tfmot_detect import tfmot_wrappers
from tflottery.masking.walk import prunable_variables, require_masked_layers
from tflottery.masking.wrap import export, wrap


def _tfmot():
    # Imported when used: tfmot takes seconds to import and most runs never need it.
    import tensorflow_model_optimization as tfmot
    return tfmot


def _attr_of(layer, weight) -> str:
    """The attribute of `layer` that holds `weight` (tfmot keeps weights, not names)."""
    attr = attribute_holding(layer, weight)
    if attr is not None:
        return attr
    raise ConfigError(
        f"tfmot prunes a weight of layer {layer.name!r} ({weight.name}) that is not an "
        f"attribute of the layer (e.g. an RNN cell's); from_tfmot supports layers whose "
        f"pruned weights are their own attributes, such as Dense and Conv kernels")


def _tfmot_masks(model):
    """({stable name: bool mask}, {inner layer class: pruned attrs}) of tfmot's wrappers."""
    masks, table = {}, {}
    for wrapper in tfmot_wrappers(model):
        attrs = []
        for weight, mask, _ in wrapper.pruning_vars:
            attr = _attr_of(wrapper.layer, weight)
            attrs.append(attr)
            masks[stable_name(wrapper.layer, attr)] = mask.numpy() != 0
        if attrs:   # tfmot also wraps layers with nothing to prune (Flatten, ReLU)
            table[type(wrapper.layer)] = tuple(attrs)
    return masks, table


def _prunable_names(model, table) -> set:
    return {layer.name for layer in model._flatten_layers(include_self=False, recursive=True)
            if prunable_attrs(layer, table)}


def from_tfmot(model, prunable_weights: Optional[PrunableTable] = None):
    """The tflottery-wrapped twin of a tfmot-pruned `model`, with the same masks.

    A model with tfmot wrappers: every weight tfmot prunes gets a Masked layer
    holding tfmot's mask (layers tfmot left alone stay unmasked, as in tfmot).
    A plain model (e.g. after tfmot's `strip_pruning`): every prunable weight
    (`prunable_weights`, default PRUNABLE_WEIGHTS) is masked where it is
    exactly zero -- so a weight that is zero by chance counts as pruned.

    Pruned entries of the new model's weights are zeroed (tfmot may leave
    values there until its callback next applies the mask).  Call under the
    strategy scope where the result will be used, as for `wrap`.
    """
    check_tf_keras_model(model)
    masks, tfmot_table = _tfmot_masks(model)
    table = dict(PRUNABLE_WEIGHTS if prunable_weights is None else prunable_weights)
    if masks:
        table.update(tfmot_table)
        plain = _tfmot().sparsity.keras.strip_pruning(model)
        pruned_layers = {name.rsplit("/", 1)[0] for name in masks}
        unmasked = sorted(_prunable_names(plain, table) - pruned_layers)
        wrapped = wrap(plain, unmasked_layers=unmasked, prunable_weights=table)
    else:
        wrapped = wrap(model, prunable_weights=table)
        masks = {name: var.numpy() != 0 for name, var in prunable_variables(wrapped).items()}
    set_mask(wrapped, Mask(masks))
    return wrapped


def _keep_masks_class():
    """`KeepMasks`, made on first use because its base class lives in tfmot."""
    tfmot = _tfmot()

    class KeepMasks(tfmot.sparsity.keras.PruningSchedule):
        """A tfmot pruning schedule that never prunes: the masks stay as installed."""

        def __call__(self, step):
            return tf.constant(False), tf.constant(0.0)

        def get_config(self):
            return {"class_name": "KeepMasks", "config": {}}

    return KeepMasks


def _clone_pruned(model, names, schedule):
    """`model` with each layer named in `names` wrapped by tfmot (nested models too)."""
    prune = _tfmot().sparsity.keras.prune_low_magnitude

    def clone_layer(layer):
        if isinstance(layer, keras.Model):
            return _clone_pruned(layer, names, schedule)
        # Returning the layer itself shares it (and its weights) with `model`,
        # which to_tfmot made for this purpose only.
        return prune(layer, pruning_schedule=schedule) if layer.name in names else layer

    return keras.models.clone_model(model, clone_function=clone_layer)


def to_tfmot(model, pruning_schedule=None):
    """A tfmot-wrapped twin of the tflottery-wrapped `model`, holding its masks.

    Every Masked layer becomes tfmot's `PruneLowMagnitude` around the plain
    layer, its weights the masked weights (zeros baked in) and its tfmot mask
    variables tflottery's masks.  `pruning_schedule` (a tfmot schedule)
    decides whether tfmot changes the masks when trained with its
    `UpdatePruningStep` callback; the default, KeepMasks, never does.  Call
    under the strategy scope where the result will be used.
    """
    check_tf_keras_model(model)
    wrappers = require_masked_layers(model)
    mask = get_mask(model)
    schedule = pruning_schedule if pruning_schedule is not None else _keep_masks_class()()
    plain = export(model)
    pruned = _clone_pruned(plain, {w.layer.name for w in wrappers}, schedule)
    installed = _install(pruned, mask)
    missing = sorted(set(mask) - set(installed))
    if missing:
        raise ConfigError(
            f"tfmot cannot hold the masks of {first_few(map(repr, missing))} (tfmot's prune "
            f"registry does not prune those weights, e.g. depthwise kernels); wrap those layers unmasked "
            f"(wrap(model, unmasked_layers=[...])) before to_tfmot, or use export(model)")
    return pruned


def _install(pruned, mask: Mask) -> Dict[str, np.ndarray]:
    """Write `mask` into the tfmot wrappers' mask variables; return what was installed."""
    installed = {}
    for wrapper in tfmot_wrappers(pruned):
        for weight, mask_var, _ in wrapper.pruning_vars:
            name = stable_name(wrapper.layer, _attr_of(wrapper.layer, weight))
            if name in mask:
                mask_var.assign(mask[name].astype(mask_var.dtype.as_numpy_dtype))
                installed[name] = mask[name]
    return installed

