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
