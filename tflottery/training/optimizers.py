"""Optimizers by name.

Note on SGD momentum: Keras folds the learning rate into the velocity
(v = mu*v - lr*g; w += v) while PyTorch and tf.compat.v1's
MomentumOptimizer (used by Google's reference TPU ResNet) accumulate raw
gradients (v = mu*v + g; w -= lr*v).  The two agree while the LR is constant
and differ only in the few steps after an LR drop.
"""
from tflottery.errors import ConfigError
from tflottery.keras_compat import keras
from tflottery.registry import Registry

OPTIMIZERS = Registry("optimizer")


@OPTIMIZERS.register("sgd")
def _sgd(schedule, hp):
    return keras.optimizers.SGD(learning_rate=schedule, momentum=hp.momentum,
                                nesterov=hp.nesterov)


@OPTIMIZERS.register("adam")
def _adam(schedule, hp):
    if hp.nesterov:
        raise ConfigError("nesterov=True is only for optimizer 'sgd'")
    return keras.optimizers.Adam(learning_rate=schedule)


def build_optimizer(hp, schedule):
    """A fresh optimizer for `hp.optimizer` driven by `schedule`."""
    if not 0.0 <= hp.momentum < 1.0:
        raise ConfigError(f"momentum must be in [0, 1), got {hp.momentum}")
    return OPTIMIZERS.get(hp.optimizer)(schedule, hp)
