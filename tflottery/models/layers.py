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
* 'lecun_normal' - truncated normal, variance 1/fan_in (Keras' lecun_normal).
  This is `tf.compat.v1.variance_scaling_initializer()` with its defaults
  (scale 1, fan_in, truncated), which Google's reference TPU ResNet uses for
  every convolution.
* 'slim_variance_scaling' - `tf.contrib.layers.variance_scaling_initializer()`
  with its defaults, used by the TF-slim Inception-v3 of Google's reference
  TPU code: a normal truncated at 2 std whose std parameter is
  sqrt(1.3 * 2 / fan_in) (slim's 1.3 approximately undoes the truncation;
  Keras' VarianceScaling divides by the exact 0.8796 instead, so the scale
  below is chosen to give slim's std parameter exactly).

Some layers of the ImageNet networks start from a fixed normal instead (the
ResNet head N(0, 0.01), Inception's auxiliary head); `LayerFactory` takes a
`kernel_stddev` for those, seeded the same way.

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

# Keras' VarianceScaling divides a truncated normal's std by this (the std of
# a unit normal truncated at +-2), so that the *sampled* variance is scale/fan.
_TRUNCATED_STD = 0.87962566103423978

# name -> (scale, mode, distribution) of keras.initializers.VarianceScaling
_KERNEL_INITIALIZERS = {
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "kaiming_normal": (2.0, "fan_in", "untruncated_normal"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "kaiming_uniform": (2.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
    "slim_variance_scaling": (2.6 * _TRUNCATED_STD ** 2, "fan_in", "truncated_normal"),
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


def fixed_normal(stddev: float, truncated: bool, seed: int):
    """N(0, stddev^2), or truncated at 2 std as TF's truncated_normal_initializer."""
    cls = keras.initializers.TruncatedNormal if truncated else keras.initializers.RandomNormal
    return cls(0.0, stddev, seed=seed)


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

    def _kernel_init(self, name, stddev=None, truncated=False):
        seed = derive_seed(self.seed, name, "kernel")
        if stddev is not None:
            return fixed_normal(stddev, truncated, seed)
        return kernel_initializer(self.options.kernel_initializer, seed)

    def conv(self, name, filters, kernel_size=3, strides=1, use_bias=False, activation=None,
             padding="same", kernel_stddev=None, truncated=False):
        """A Conv2D; kernel_stddev replaces the family initializer by a fixed normal."""
        return keras.layers.Conv2D(
            filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias,
            activation=activation, kernel_initializer=self._kernel_init(name, kernel_stddev, truncated),
            bias_initializer="zeros", name=name)

    def dense(self, name, units, activation=None, dtype=None, kernel_stddev=None, truncated=False):
        return keras.layers.Dense(
            units, activation=activation,
            kernel_initializer=self._kernel_init(name, kernel_stddev, truncated),
            bias_initializer="zeros", name=name, dtype=dtype)

    def logits(self, units, name=OUTPUT_LAYER, kernel_stddev=None, truncated=False):
        """A classifier: float32 even under a mixed-precision policy (stable softmax/loss)."""
        return self.dense(name, units, dtype="float32", kernel_stddev=kernel_stddev,
                          truncated=truncated)

    def bn(self, name, zero_gamma=False, scale=True):
        """BatchNorm with the family's settings.

        zero_gamma: start gamma at 0 (the last BN of a residual block in
          Goyal et al. 2017 / the TPU reference), whatever bn_gamma_initializer says.
        scale: False drops gamma altogether (TF-slim's default, as in Inception-v3).
        """
        if zero_gamma:
            gamma = "zeros"
        elif self.options.bn_gamma_initializer == "uniform":
            gamma = keras.initializers.RandomUniform(0.0, 1.0, seed=derive_seed(self.seed, name, "gamma"))
        else:
            gamma = "ones"
        return keras.layers.BatchNormalization(
            momentum=self.options.bn_momentum, epsilon=self.options.bn_epsilon, scale=scale,
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
