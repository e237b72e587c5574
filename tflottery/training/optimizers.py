"""Optimizers by name.

Note on SGD momentum: Keras folds the learning rate into the velocity
(v = mu*v - lr*g; w += v) while PyTorch and tf.compat.v1's
MomentumOptimizer (used by Google's reference TPU ResNet) accumulate raw
gradients (v = mu*v + g; w -= lr*v).  The two agree while the LR is constant
and differ only in the few steps after an LR drop.
"""
import numpy as np

from tflottery.errors import ConfigError
from tflottery.keras_compat import keras
from tflottery.registry import Registry
from tflottery.training import masked_updates

# name -> f(hp) -> (tf_keras optimizer class, its arguments besides the LR)
OPTIMIZERS = Registry("optimizer")


@OPTIMIZERS.register("sgd")
def _sgd(hp):
    return keras.optimizers.SGD, dict(momentum=hp.momentum, nesterov=hp.nesterov)


@OPTIMIZERS.register("adam")
def _adam(hp):
    if hp.nesterov:
        raise ConfigError("nesterov=True is only for optimizer 'sgd'")
    return keras.optimizers.Adam, {}


def optimizer_class(hp):
    """(tf_keras optimizer class, its arguments besides the LR) of `hp`, checked.

    Building nothing, so experiments call it (through validate_training)
    before anything is written.
    """
    if not 0.0 <= hp.momentum < 1.0:
        raise ConfigError(f"TrainingHparams.momentum must be in [0, 1), got {hp.momentum}")
    return OPTIMIZERS.get(hp.optimizer)(hp)


def build_optimizer(hp, schedule, model, xla: bool = False):
    """A fresh optimizer for `hp.optimizer` driven by `schedule` to train `model`.

    Its updates keep the model's pruned weights at exactly zero (see
    masked_updates.py); `xla` compiles the updates of large weights with XLA.
    """
    cls, kwargs = optimizer_class(hp)
    optimizer = masked_updates.masked_class(cls)(learning_rate=schedule, **kwargs)
    optimizer.set_update_masks(model)
    # tf_keras turns jit_compile off unless it sees a GPU; it helps on CPUs too.
    optimizer.jit_compile = bool(xla)
    return optimizer


# The per-weight state of the optimizers above, as tf_keras keeps it: one
# list per kind of slot, indexed like the optimizer's variables.
_SLOT_LISTS = ("momentums", "_momentums", "_velocities", "_velocity_hats")


def slot_variables(optimizer, variable) -> list:
    """The optimizer's state variables for `variable` (momentum; Adam's m and v)."""
    index = optimizer._index_dict[optimizer._var_key(variable)]
    return [getattr(optimizer, name)[index] for name in _SLOT_LISTS
            if getattr(optimizer, name, None)]


def reset_slots(optimizer, variable, entries) -> None:
    """Zero the optimizer state of `variable` at the boolean `entries` (others unchanged).

    A connection grown by dynamic sparse training starts afresh (RigL): the
    optimizer saw a (masked-out) gradient there while it was pruned, and its
    momentum must not push the new weight.
    """
    keep = ~np.asarray(entries, bool)
    for slot in slot_variables(optimizer, variable):
        slot.assign(slot.numpy() * keep.astype(slot.dtype.as_numpy_dtype))
