"""Shared pieces of every model family: seeded initializers, options, named layers.

Why seeds come from (model seed, layer name): lottery-ticket experiments
compare a network with its own initialisation W0 and with "random
reinitialisation" (a new sample from the same distributions), so W0 must be
a pure function of one integer.  Every initializer therefore gets an explicit
seed derived from the model seed and the layer's name, and building a model
never reads or advances TensorFlow's, NumPy's or Python's global RNG.  Using
the name rather than a running index keeps a layer's W0 unchanged when an
unrelated layer is added elsewhere.

Initializer names (kernels of Conv2D and Dense; biases always start at zero):

* 'glorot_normal' - Keras' Glorot normal: truncated normal, variance
  2/(fan_in+fan_out).  Frankle & Carbin's original TF code used
  `tf.contrib.layers.xavier_initializer(uniform=False)`, which is the same
  truncated normal with the same effective variance.
* 'glorot_uniform' - Keras' Glorot uniform.
* 'kaiming_normal' - PyTorch's `kaiming_normal_` defaults as used by open_lth
  (`model_init='kaiming_normal'`): an *untruncated* normal with std
  sqrt(2/fan_in).  Keras' 'he_normal' differs: it is truncated.
* 'he_normal' - Keras' He normal (truncated normal, variance 2/fan_in).
* 'kaiming_uniform' - U(-b, b), b = sqrt(6/fan_in) (PyTorch kaiming_uniform_,
  identical to Keras' he_uniform).

BatchNorm: gamma 'ones' (default) or 'uniform' = U(0, 1), the latter being
open_lth's default `batchnorm_init='uniform'`; beta always zero.  Momentum
0.9 and epsilon 1e-5 reproduce PyTorch's BatchNorm2d defaults (PyTorch's
momentum 0.1 weights the *new* batch, Keras' 0.9 the *old* running value).
"""
import dataclasses
import zlib

import numpy as np

from tflottery.errors import ConfigError
from tflottery.keras_compat import keras

# name -> (scale, mode, distribution) of keras.initializers.VarianceScaling
_KERNEL_INITIALIZERS = {
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "kaiming_normal": (2.0, "fan_in", "untruncated_normal"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "kaiming_uniform": (2.0, "fan_in", "uniform"),
}
_BN_GAMMA_INITIALIZERS = ("ones", "uniform")

# Every family names its classifier layer this way, so a pruning config can
# exclude it (thesis ch. 3 prunes it at half the rate of the other FC layers).
OUTPUT_LAYER = "output"


def derive_seed(seed: int, layer_name: str, role: str) -> int:
    """A 31-bit seed that depends on the model seed, the layer and the weight's role."""
    entropy = [seed, zlib.crc32(layer_name.encode()), zlib.crc32(role.encode())]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] & 0x7FFFFFFF)


def kernel_initializer(name: str, seed: int):
    scale, mode, distribution = _KERNEL_INITIALIZERS[name]
    return keras.initializers.VarianceScaling(scale, mode, distribution, seed=seed)


@dataclasses.dataclass(frozen=True)
class PlainOptions:
    """Options of the families without BatchNorm (LeNet, Conv-2/4/6/8).

    kernel_initializer: one of the names in this module's docstring.  The
      default 'glorot_normal' is Frankle & Carbin (2019) / thesis ch. 3.
    """

    kernel_initializer: str = "glorot_normal"

    def __post_init__(self):
        if self.kernel_initializer not in _KERNEL_INITIALIZERS:
            raise ConfigError(
                f"unknown kernel_initializer {self.kernel_initializer!r}; choose one of: "
                f"{', '.join(_KERNEL_INITIALIZERS)}")


@dataclasses.dataclass(frozen=True)
class BatchNormOptions(PlainOptions):
    """Options of the BatchNorm families (ResNets, VGG), defaults as open_lth/PyTorch.

    kernel_initializer: default 'kaiming_normal' (open_lth's default model_init).
    bn_momentum: Keras moving-average momentum; 0.9 == PyTorch momentum 0.1.
    bn_epsilon: 1e-5 as PyTorch BatchNorm2d.
    bn_gamma_initializer: 'ones' (standard) or 'uniform' (U(0,1), open_lth's
      batchnorm_init='uniform').
    """

    kernel_initializer: str = "kaiming_normal"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_gamma_initializer: str = "ones"

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.bn_momentum < 1.0:
            raise ConfigError(f"bn_momentum must be in [0, 1), got {self.bn_momentum!r}")
        if not self.bn_epsilon > 0:
            raise ConfigError(f"bn_epsilon must be > 0, got {self.bn_epsilon!r}")
        if self.bn_gamma_initializer not in _BN_GAMMA_INITIALIZERS:
            raise ConfigError(
                f"unknown bn_gamma_initializer {self.bn_gamma_initializer!r}; choose one of: "
                f"{', '.join(_BN_GAMMA_INITIALIZERS)}")


class LayerFactory:
    """Makes named layers whose random initial values are seeded from (seed, name)."""

    def __init__(self, seed: int, options):
        self.seed = seed
        self.options = options

    def _kernel_init(self, name):
        return kernel_initializer(self.options.kernel_initializer,
                                  derive_seed(self.seed, name, "kernel"))

    def conv(self, name, filters, kernel_size=3, strides=1, use_bias=False, activation=None):
        return keras.layers.Conv2D(
            filters, kernel_size, strides=strides, padding="same", use_bias=use_bias,
            activation=activation, kernel_initializer=self._kernel_init(name),
            bias_initializer="zeros", name=name)

    def dense(self, name, units, activation=None, dtype=None):
        return keras.layers.Dense(
            units, activation=activation, kernel_initializer=self._kernel_init(name),
            bias_initializer="zeros", name=name, dtype=dtype)

    def logits(self, units):
        """The classifier: float32 even under a mixed-precision policy (stable softmax/loss)."""
        return self.dense(OUTPUT_LAYER, units, dtype="float32")

    def bn(self, name):
        if self.options.bn_gamma_initializer == "uniform":
            gamma = keras.initializers.RandomUniform(0.0, 1.0, seed=derive_seed(self.seed, name, "gamma"))
        else:
            gamma = "ones"
        return keras.layers.BatchNormalization(
            momentum=self.options.bn_momentum, epsilon=self.options.bn_epsilon,
            gamma_initializer=gamma, beta_initializer="zeros", name=name)


def relu(name):
    return keras.layers.Activation("relu", name=name)


def check_min_size(model_name, input_shape, num_pools):
    """Each 2x2 max-pool halves the image; refuse shapes that would vanish."""
    need = 2 ** num_pools
    if min(input_shape[:2]) < need:
        raise ConfigError(
            f"model {model_name!r} pools {num_pools} times and needs images of at least "
            f"{need}x{need}; got input_shape {input_shape}")
