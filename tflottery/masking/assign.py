"""Reading and writing the mask held by a wrapped model."""
import numpy as np
import tensorflow as tf

from tflottery.keras_compat import api_of
from tflottery.masking.mask import Mask
from tflottery.masking.walk import masked_layers, masked_pairs


def get_mask(model) -> Mask:
    """The model's current mask (from its mask variables)."""
    return Mask({name: mask_var.numpy() for name, (_, mask_var) in masked_pairs(model).items()})


def set_mask(model, mask: Mask) -> None:
    """Install `mask` in `model` and zero the pruned entries of the stored weights.

    The forward pass already multiplies by the mask; zeroing the stored values
    too makes checkpoints and exported weights exactly sparse.  Under a plain
    optimizer (e.g. `model.fit`) a pruned weight then stays 0.0: its gradient
    is exactly zero, and a fresh optimizer's state is zero too.  tflottery's
    Trainer skips the forward multiply and re-zeroes pruned entries after
    every update instead (training/masked_updates.py).

    Call between training phases, eagerly, in cross-replica context (i.e. not
    inside strategy.run or a tf.function).
    """
    if not tf.executing_eagerly():
        raise RuntimeError("set_mask must be called eagerly, not inside a tf.function")
    if tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context():
        raise RuntimeError("set_mask must be called in cross-replica context, "
                           "not inside strategy.run()")
    if not isinstance(mask, Mask):
        mask = Mask(mask)
    pairs = masked_pairs(model)
    mask.check_shapes({name: tuple(weight.shape) for name, (weight, _) in pairs.items()})
    for name, (weight, mask_var) in pairs.items():
        keep = mask[name]
        mask_var.assign(keep)
        _zero_where_pruned(weight, keep)
    for wrapper in masked_layers(model):
        wrapper.mask_changed()
    if api_of(model).backend() != "tensorflow":
        # Keras 3 on JAX traced its train step with the host copies of the
        # old masks (keras3_layer.py): the next fit must trace again.
        model.train_function = None


def _zero_where_pruned(weight, keep: np.ndarray) -> None:
    value = weight.numpy()
    # np.where rather than value*keep: gives +0.0 (not -0.0) and drops NaNs.
    weight.assign(np.where(keep, value, np.zeros((), value.dtype)))


def zero_pruned_weights(model) -> None:
    """Re-establish the fast path's premise: pruned entries of the weights are 0.0.

    Eager, cross-replica; cheap (one pass over the prunable weights).
    """
    if not masked_layers(model):
        return   # a plain model: nothing is pruned
    for weight, mask_var in masked_pairs(model).values():
        keep = mask_var.numpy()
        if not keep.all():
            _zero_where_pruned(weight, keep)
