"""Inception-v3 (Szegedy et al. 2016) as in Google's reference TPU code.

The reference (tensorflow/tpu models/experimental/inception) trains TF-slim's
`inception_v3` on 299x299 images in [-1, 1]; this is the same network as a
functional tf_keras model, so that its convolutions can be masked:

* stem: conv 3x3/2 (32, valid), 3x3 (32, valid), 3x3 (64, same), max-pool
  3x3/2, conv 1x1 (80), 3x3 (192, valid), max-pool 3x3/2;
* 3 x block A (Mixed_5b/c/d, 35x35 at 299), reduction A (Mixed_6a),
  4 x block B with factorised 1x7 / 7x1 convolutions (Mixed_6b-e, 17x17),
  reduction B (Mixed_7a), 2 x block C (Mixed_7b/c, 8x8, 2048 channels);
* global average pooling, dropout (rate 0.2: slim's keep_prob 0.8), and the
  classifier 'output'.

Every convolution is conv (no bias) + BatchNorm + ReLU.  As in slim's
defaults the BatchNorm has no gamma (scale=False: the ReLU that follows makes
a per-channel scale redundant), kernels use slim's variance-scaling
initializer ('slim_variance_scaling', see layers.py), and the reference sets
BN decay 0.996 and epsilon 1e-3.  Parameters with 1000 classes and no
auxiliary head: 23,817,352 trainable plus 34,432 BN moving statistics,
23,851,784 in all, the count Keras' InceptionV3 application reports
(tests/test_imagenet_models.py derives it by hand).

Auxiliary head (`aux_head`, default True because the reference always
trains with it): from Mixed_6e, average-pool 5x5/3 (valid), conv 1x1 (128),
conv 5x5 (768, valid, truncated N(0, 0.01)), and a classifier 'aux_output'
(truncated N(0, 0.001)).  The reference adds its cross-entropy to the loss
with weight 0.4 (TrainingHparams.aux_loss_weight).  With it the model has two
outputs, [logits, aux_logits], both float32; use `models.main_logits` to
take the first.  It adds 3,327,592 parameters (3,325,800 trainable) with
1000 classes.  As in slim, the 5x5 conv shrinks to the pooled map when that
is smaller (images below 299x299, which therefore have fewer parameters);
its output is averaged to 1x1 when larger (images above 346 pixels, where
slim itself fails).

Smallest images: 75x75 (the last reduction needs a 3x3 map), or 107x107 with
the auxiliary head (its 5x5 pooling needs a 5x5 Mixed_6e map).  Smaller
inputs raise ConfigError.

Layer names: stem units 'conv_1a', 'conv_2a', 'conv_2b', 'conv_3b',
'conv_4a' and pools 'pool_3a', 'pool_5a'; block units
'mixed_{5b..7c}_branch{i}_{j}' (i from 0 as slim's Branch_i, j from 1 along
the branch) and 'mixed_X_branch3_pool', 'mixed_X_concat'; a unit U is the
layers 'U_conv', 'U_bn', 'U_relu'.  Heads: 'avg_pool', 'dropout', 'output';
'aux_pool', 'aux_1', 'aux_2', 'aux_avg_pool', 'aux_output'.
"""
import dataclasses

from tflottery.errors import ConfigError
from tflottery.keras_compat import keras
from tflottery.models.layers import BatchNormOptions, LayerFactory, derive_seed, relu
from tflottery.models.registry import register


@dataclasses.dataclass(frozen=True)
class InceptionOptions(BatchNormOptions):
    """BatchNormOptions with the reference's values as defaults, plus:

    bn_scale: give BatchNorm a gamma (slim's and Keras' InceptionV3: no);
      bn_gamma_initializer matters only then.
    aux_head: add the auxiliary classifier (a second output).
    dropout_rate: dropout before the classifier (slim: keep_prob 0.8).
    """

    kernel_initializer: str = "slim_variance_scaling"
    bn_momentum: float = 0.996
    bn_epsilon: float = 1e-3
    bn_scale: bool = False
    aux_head: bool = True
    dropout_rate: float = 0.2

    def __post_init__(self):
        super().__post_init__()
        for field in ("bn_scale", "aux_head"):
            if not isinstance(getattr(self, field), bool):
                raise ConfigError(f"{field} must be True or False, got {getattr(self, field)!r}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ConfigError(f"dropout_rate must be in [0, 1), got {self.dropout_rate!r}")


# ---- Sizes ---------------------------------------------------------------------------

def _valid(n, kernel, stride):
    return (n - kernel) // stride + 1


def _mixed_6e_size(n):
    """Side of the 17x17 grid (at 299) for an input side n: stem plus reduction A."""
    n = _valid(_valid(n, 3, 2), 3, 1)        # conv_1a, conv_2a (conv_2b keeps it)
    n = _valid(_valid(n, 3, 2), 3, 1)        # pool_3a, conv_4a (conv_3b is 1x1)
    return _valid(_valid(n, 3, 2), 3, 2)     # pool_5a, mixed_6a


def _fits(n, aux_head):
    grid = _mixed_6e_size(n)
    return grid >= (5 if aux_head else 3)   # aux: 5x5 pool; mixed_7a: 3x3 valid


def _smallest(aux_head):
    return next(n for n in range(1, 1000) if _fits(n, aux_head))


MIN_SIZE = _smallest(False)            # 75
MIN_SIZE_AUX_HEAD = _smallest(True)    # 107


# ---- Building blocks -----------------------------------------------------------------

class _Units:
    """conv + BN + ReLU units named 'U_conv', 'U_bn', 'U_relu'."""

    def __init__(self, make, scale):
        self.make = make
        self.scale = scale

    def __call__(self, x, name, filters, kernel, strides=1, padding="same", **init):
        x = self.make.conv(f"{name}_conv", filters, kernel, strides, padding=padding, **init)(x)
        x = self.make.bn(f"{name}_bn", scale=self.scale)(x)
        return relu(f"{name}_relu")(x)


def _avg_pool_branch(unit, x, name, filters):
    y = keras.layers.AveragePooling2D(3, 1, padding="same", name=f"{name}_branch3_pool")(x)
    return unit(y, f"{name}_branch3_1", filters, 1)


def _concat(name, branches):
    return keras.layers.Concatenate(name=name)(branches)


def _block_a(unit, x, name, pool_filters):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg-pool-1x1."""
    b0 = unit(x, f"{name}_branch0_1", 64, 1)
    b1 = unit(unit(x, f"{name}_branch1_1", 48, 1), f"{name}_branch1_2", 64, 5)
    b2 = unit(x, f"{name}_branch2_1", 64, 1)
    b2 = unit(unit(b2, f"{name}_branch2_2", 96, 3), f"{name}_branch2_3", 96, 3)
    return _concat(f"{name}_concat", [b0, b1, b2, _avg_pool_branch(unit, x, name, pool_filters)])


def _reduction_a(unit, x, name):
    """35 -> 17: 3x3/2 | 1x1-3x3-3x3/2 | max-pool/2, all 'valid'."""
    b0 = unit(x, f"{name}_branch0_1", 384, 3, 2, "valid")
    b1 = unit(unit(x, f"{name}_branch1_1", 64, 1), f"{name}_branch1_2", 96, 3)
    b1 = unit(b1, f"{name}_branch1_3", 96, 3, 2, "valid")
    b2 = keras.layers.MaxPool2D(3, 2, name=f"{name}_branch2_pool")(x)
    return _concat(f"{name}_concat", [b0, b1, b2])


def _block_b(unit, x, name, mid):
    """17x17 block with 7x7 convolutions factorised into 1x7 and 7x1."""
    b0 = unit(x, f"{name}_branch0_1", 192, 1)
    b1 = x
    for j, (filters, kernel) in enumerate([(mid, 1), (mid, (1, 7)), (192, (7, 1))], start=1):
        b1 = unit(b1, f"{name}_branch1_{j}", filters, kernel)
    b2 = x
    plan = [(mid, 1), (mid, (7, 1)), (mid, (1, 7)), (mid, (7, 1)), (192, (1, 7))]
    for j, (filters, kernel) in enumerate(plan, start=1):
        b2 = unit(b2, f"{name}_branch2_{j}", filters, kernel)
    return _concat(f"{name}_concat", [b0, b1, b2, _avg_pool_branch(unit, x, name, 192)])


def _reduction_b(unit, x, name):
    """17 -> 8: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max-pool/2."""
    b0 = unit(x, f"{name}_branch0_1", 192, 1)
    b0 = unit(b0, f"{name}_branch0_2", 320, 3, 2, "valid")
    b1 = x
    for j, kernel in enumerate([1, (1, 7), (7, 1)], start=1):
        b1 = unit(b1, f"{name}_branch1_{j}", 192, kernel)
    b1 = unit(b1, f"{name}_branch1_4", 192, 3, 2, "valid")
    b2 = keras.layers.MaxPool2D(3, 2, name=f"{name}_branch2_pool")(x)
    return _concat(f"{name}_concat", [b0, b1, b2])


def _split_1x3_3x1(unit, x, prefix, j):
    a = unit(x, f"{prefix}_{j}", 384, (1, 3))
    b = unit(x, f"{prefix}_{j + 1}", 384, (3, 1))
    return _concat(f"{prefix}_concat", [a, b])


def _block_c(unit, x, name):
    """8x8 block whose 3x3 convolutions end in parallel 1x3 and 3x1 ones."""
    b0 = unit(x, f"{name}_branch0_1", 320, 1)
    b1 = _split_1x3_3x1(unit, unit(x, f"{name}_branch1_1", 384, 1), f"{name}_branch1", 2)
    b2 = unit(unit(x, f"{name}_branch2_1", 448, 1), f"{name}_branch2_2", 384, 3)
    b2 = _split_1x3_3x1(unit, b2, f"{name}_branch2", 3)
    return _concat(f"{name}_concat", [b0, b1, b2, _avg_pool_branch(unit, x, name, 192)])


def _aux_head(make, unit, x, num_classes):
    x = keras.layers.AveragePooling2D(5, 3, padding="valid", name="aux_pool")(x)
    x = unit(x, "aux_1", 128, 1)
    kernel = (min(5, x.shape[1]), min(5, x.shape[2]))
    x = unit(x, "aux_2", 768, kernel, padding="valid", kernel_stddev=0.01, truncated=True)
    x = keras.layers.GlobalAveragePooling2D(name="aux_avg_pool")(x)
    return make.logits(num_classes, name="aux_output", kernel_stddev=0.001, truncated=True)(x)


# ---- The network ---------------------------------------------------------------------

def inception_v3(input_shape, num_classes, seed, options, *, name):
    if not all(_fits(n, options.aux_head) for n in input_shape[:2]):
        raise ConfigError(
            f"model {name!r} needs images of at least {MIN_SIZE}x{MIN_SIZE} "
            f"({MIN_SIZE_AUX_HEAD}x{MIN_SIZE_AUX_HEAD} with aux_head=True); got input_shape "
            f"{input_shape}")
    make = LayerFactory(seed, options)
    unit = _Units(make, options.bn_scale)
    inputs = keras.Input(shape=input_shape, name="input")
    x = unit(inputs, "conv_1a", 32, 3, 2, "valid")
    x = unit(x, "conv_2a", 32, 3, padding="valid")
    x = unit(x, "conv_2b", 64, 3)
    x = keras.layers.MaxPool2D(3, 2, name="pool_3a")(x)
    x = unit(x, "conv_3b", 80, 1, padding="valid")
    x = unit(x, "conv_4a", 192, 3, padding="valid")
    x = keras.layers.MaxPool2D(3, 2, name="pool_5a")(x)
    for block, pool_filters in (("5b", 32), ("5c", 64), ("5d", 64)):
        x = _block_a(unit, x, f"mixed_{block}", pool_filters)
    x = _reduction_a(unit, x, "mixed_6a")
    for block, mid in (("6b", 128), ("6c", 160), ("6d", 160), ("6e", 192)):
        x = _block_b(unit, x, f"mixed_{block}", mid)
    aux_logits = _aux_head(make, unit, x, num_classes) if options.aux_head else None
    x = _reduction_b(unit, x, "mixed_7a")
    for block in ("7b", "7c"):
        x = _block_c(unit, x, f"mixed_{block}")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dropout(options.dropout_rate, seed=derive_seed(seed, "dropout", "dropout"),
                             name="dropout")(x)
    logits = make.logits(num_classes)(x)
    outputs = [logits, aux_logits] if options.aux_head else logits
    return keras.Model(inputs, outputs, name=name)


register("inception_v3", inception_v3, InceptionOptions)
