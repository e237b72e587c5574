"""Masks for Lottery Ticket pruning of tf_keras models.

Typical use::

    with strategy.scope():
        masked = masking.wrap(model)          # same function, all-ones mask
    masking.set_mask(masked, mask)            # between training phases
    masking.get_mask(masked).save(run_dir)
    plain = masking.export(masked)            # zeros baked in, no Masked layers
    masked = masking.from_tfmot(tfmot_model)  # and back: to_tfmot(masked)

Masks multiply the weights in the forward pass, so pruned weights get exactly
zero gradient; see layer.py.  tf_keras and Keras 3 models alike (the
Keras 3 layer is keras3_layer.py; keras_compat.py says what runs where).
"""
from tflottery.masking.assign import get_mask, set_mask, zero_pruned_weights
from tflottery.masking.eval_path import weights_masked_once
from tflottery.masking.fast_path import trusted_zero_pruned_weights
from tflottery.masking.layer import Masked
from tflottery.masking.mask import MASK_FILENAME, REPORT_FILENAME, Mask
from tflottery.masking.prunable import PRUNABLE_WEIGHTS, prunable_attrs, stable_name
from tflottery.masking.walk import masked_layers, prunable_variables
from tflottery.masking.tfmot_interop import from_tfmot, to_tfmot
from tflottery.masking.wrap import export, wrap

__all__ = [
    "Mask", "Masked", "MASK_FILENAME", "REPORT_FILENAME", "PRUNABLE_WEIGHTS",
    "export", "get_mask", "masked_layers", "prunable_attrs", "prunable_variables",
    "set_mask", "stable_name", "trusted_zero_pruned_weights", "weights_masked_once", "wrap",
    "zero_pruned_weights",
    "from_tfmot", "to_tfmot",
]
