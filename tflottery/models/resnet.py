"""Residual networks: CIFAR ResNets, their wide variants, ResNet-18, ResNet-50/101/152.

One builder, parameterised by the width and number of blocks of each stage,
the block type ('basic' or 'bottleneck') and the stem ('cifar' or 'imagenet'):

* 'resnet_D' (D = 20, 56, 110): He et al. (2016) CIFAR ResNet, as open_lth's
  `cifar_resnet_D`: a 3x3 stem conv, 3 stages of (D-2)/6 blocks of widths
  16/32/64, global average pooling, Dense.  ResNet-20 has 272,474 trainable
  parameters, ResNet-110 1,730,714 (open_lth's tests; derived by hand in
  tests/test_models.py).
* 'wrn_D_W': the same network with every width multiplied by W, i.e. open_lth's
  `cifar_resnet_D_{16W}` (stage widths 16W/32W/64W, stem 16W).  This is what
  the "Missing the Mark" replication networks WRN-14-8, WRN-14-10, WRN-20-8 and
  WRN-32-2 mean: their depths are 6n+2 (He's post-activation CIFAR ResNet),
  not the 6n+4 of Zagoruyko & Komodakis' pre-activation WRN-d-k, which no
  network of depth 14, 20 or 32 could be.  WRN-14-8 == cifar_resnet_14_128:
  11,093,130 parameters.
* 'resnet_18': ResNet-18 for small images (TinyImageNet 64x64, CIFAR 32x32),
  as in "Missing the Mark": 3x3 stride-1 stem, no max-pool, [2, 2, 2, 2] blocks
  of widths 64/128/256/512.  11,173,962 parameters with 10 classes.
* 'resnet_50', 'resnet_101', 'resnet_152': ImageNet ResNet v1.5 as in Google's
  reference TPU code (tensorflow/tpu models/official/resnet): 7x7 stride-2
  stem conv + BN + ReLU + 3x3 stride-2 max-pool, bottleneck blocks [3, 4, 6, 3]
  / [3, 4, 23, 3] / [3, 8, 36, 3] of widths 64/128/256/512 (outputs 4x
  wider).  ResNet-50 with 1000 classes: 25,557,032 trainable parameters
  (tests/test_imagenet_models.py derives it by hand).

Basic block (post-activation, He 2016): conv3x3(stride) - BN - ReLU - conv3x3 -
BN, plus the shortcut, then ReLU.  Bottleneck block, v1.5: conv1x1 - BN - ReLU
- conv3x3(stride) - BN - ReLU - conv1x1 (4x width) - BN, plus the shortcut,
then ReLU; "v1.5" means the stride sits on the 3x3 conv, not on the first 1x1
as in He's original v1 (better accuracy, same parameters).  Where the shape
changes, the shortcut is a 1x1 strided conv + BN projection (open_lth's and
the TPU reference's choice, He's "option B"), not zero-padding ("option A";
that would make ResNet-20 270K rather than 272K).  Convolutions have no bias
(BN follows); the Dense classifier has one.

The ImageNet networks pad strided convolutions as the TPU reference does
(`fixed_padding`): (k-1)//2 before and the rest after, whatever the image
size, instead of TensorFlow's 'same' padding, which for even sizes pads less
at the start and so shifts the sampling grid by one pixel.

Options (see `ResNetOptions`): the CIFAR networks default to open_lth's
Kaiming-normal kernels, BN gamma 1, beta 0, momentum 0.9, epsilon 1e-5 (see
layers.py for why).  The ImageNet ones default to the TPU reference
(`ImageNetResNetOptions`): 'lecun_normal' kernels (fan-in truncated normal,
scale 1), BN momentum 0.9 / epsilon 1e-5, the last BN gamma of every block
initialised to 0 (each block starts as the identity; Goyal et al. 2017), and
the classifier drawn from N(0, 0.01).

Layer names: 'stem_conv', 'stem_bn', 'stem_relu' (ImageNet stem also
'stem_conv_pad', 'stem_pool'); per block 'stage{s}_block{b}_conv_a', '..._bn_a',
'..._relu_a', '..._conv_b', '..._bn_b' (bottleneck: '..._relu_b',
'..._conv_c', '..._bn_c'; a padded strided conv X has 'X_pad' before it),
'..._shortcut_conv', '..._shortcut_bn', '..._add', '..._relu' (s, b from 1);
'avg_pool', 'output'.
"""
import dataclasses
from typing import Optional

from tflottery.errors import ConfigError
from tflottery.keras_compat import keras
from tflottery.models.layers import BatchNormOptions, LayerFactory, relu
from tflottery.models.registry import register


@dataclasses.dataclass(frozen=True)
class ResNetOptions(BatchNormOptions):
    """BatchNormOptions plus two ResNet-specific initialisations (defaults: off).

    zero_init_last_bn_gamma: start the gamma of each block's last BN at 0
      (projection-shortcut BNs keep bn_gamma_initializer).
    head_stddev: draw the classifier kernel from N(0, head_stddev^2) instead
      of kernel_initializer; None keeps kernel_initializer.
    """

    zero_init_last_bn_gamma: bool = False
    head_stddev: Optional[float] = None

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.zero_init_last_bn_gamma, bool):
            raise ConfigError(
                f"zero_init_last_bn_gamma must be True or False, got {self.zero_init_last_bn_gamma!r}")
        stddev = self.head_stddev
        if stddev is not None and (isinstance(stddev, bool) or not isinstance(stddev, (int, float))
                                   or not stddev > 0):
            raise ConfigError(f"head_stddev must be None or > 0, got {self.head_stddev!r}")


@dataclasses.dataclass(frozen=True)
class ImageNetResNetOptions(ResNetOptions):
    """ResNetOptions with the TPU reference ResNet-50's initialisation as defaults."""

    kernel_initializer: str = "lecun_normal"
    zero_init_last_bn_gamma: bool = True
    head_stddev: Optional[float] = 0.01


class _Units:
    """Conv and conv+BN units of one network: 'same' padding, or the reference's fixed padding."""

    def __init__(self, make, fixed_padding):
        self.make = make
        self.fixed_padding = fixed_padding

    def conv(self, x, name, filters, kernel_size, strides=1):
        padding = "same"
        if self.fixed_padding and strides > 1:
            padding = "valid"
            if kernel_size > 1:
                before = (kernel_size - 1) // 2
                after = kernel_size - 1 - before
                x = keras.layers.ZeroPadding2D(((before, after), (before, after)),
                                               name=f"{name}_pad")(x)
        return self.make.conv(name, filters, kernel_size, strides, padding=padding)(x)

    def conv_bn(self, x, conv_name, bn_name, filters, kernel_size, strides=1, zero_gamma=False):
        x = self.conv(x, conv_name, filters, kernel_size, strides)
        return self.make.bn(bn_name, zero_gamma=zero_gamma)(x)


def _residual(units, x, y, strides, prefix):
    """Add the shortcut of block input x to the residual branch y, then ReLU."""
    out_width = y.shape[-1]
    shortcut = x
    if strides != 1 or x.shape[-1] != out_width:
        shortcut = units.conv_bn(x, f"{prefix}_shortcut_conv", f"{prefix}_shortcut_bn",
                                 out_width, 1, strides)
    y = keras.layers.Add(name=f"{prefix}_add")([y, shortcut])
    return relu(f"{prefix}_relu")(y)


def _basic_block(units, x, width, strides, prefix, zero_gamma):
    y = units.conv_bn(x, f"{prefix}_conv_a", f"{prefix}_bn_a", width, 3, strides)
    y = relu(f"{prefix}_relu_a")(y)
    y = units.conv_bn(y, f"{prefix}_conv_b", f"{prefix}_bn_b", width, 3, zero_gamma=zero_gamma)
    return _residual(units, x, y, strides, prefix)


def _bottleneck_block(units, x, width, strides, prefix, zero_gamma):
    """v1.5: the stride is on the 3x3 conv; the output is 4 * width wide."""
    y = units.conv_bn(x, f"{prefix}_conv_a", f"{prefix}_bn_a", width, 1)
    y = relu(f"{prefix}_relu_a")(y)
    y = units.conv_bn(y, f"{prefix}_conv_b", f"{prefix}_bn_b", width, 3, strides)
    y = relu(f"{prefix}_relu_b")(y)
    y = units.conv_bn(y, f"{prefix}_conv_c", f"{prefix}_bn_c", 4 * width, 1,
                      zero_gamma=zero_gamma)
    return _residual(units, x, y, strides, prefix)


_BLOCKS = {"basic": _basic_block, "bottleneck": _bottleneck_block}


def resnet(input_shape, num_classes, seed, options, *, name, stage_widths, stage_blocks,
           block="basic", stem="cifar"):
    """Stem of width stage_widths[0]; stage s > 1 halves the resolution in its first block.

    stem 'cifar': 3x3 stride-1 conv + BN + ReLU, 'same' padding everywhere.
    stem 'imagenet': 7x7 stride-2 conv + BN + ReLU + 3x3 stride-2 max-pool,
    strided convolutions with the TPU reference's fixed padding.
    """
    make = LayerFactory(seed, options)
    units = _Units(make, fixed_padding=(stem == "imagenet"))
    block_fn = _BLOCKS[block]
    inputs = keras.Input(shape=input_shape, name="input")
    if stem == "imagenet":
        x = units.conv_bn(inputs, "stem_conv", "stem_bn", stage_widths[0], 7, 2)
        x = relu("stem_relu")(x)
        x = keras.layers.MaxPool2D(3, 2, padding="same", name="stem_pool")(x)
    else:
        x = units.conv_bn(inputs, "stem_conv", "stem_bn", stage_widths[0], 3)
        x = relu("stem_relu")(x)
    for s, (width, blocks) in enumerate(zip(stage_widths, stage_blocks), start=1):
        for b in range(1, blocks + 1):
            strides = 2 if (s > 1 and b == 1) else 1
            x = block_fn(units, x, width, strides, f"stage{s}_block{b}",
                         options.zero_init_last_bn_gamma)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = make.logits(num_classes, kernel_stddev=options.head_stddev)(x)
    return keras.Model(inputs, outputs, name=name)


def _register_cifar(name, depth, width_multiplier):
    blocks = (depth - 2) // 6
    assert 6 * blocks + 2 == depth, depth
    register(name, resnet, ResNetOptions,
             stage_widths=tuple(w * width_multiplier for w in (16, 32, 64)),
             stage_blocks=(blocks,) * 3)


for _depth in (20, 56, 110):
    _register_cifar(f"resnet_{_depth}", _depth, 1)
for _depth, _width in ((14, 8), (14, 10), (20, 8), (32, 2)):
    _register_cifar(f"wrn_{_depth}_{_width}", _depth, _width)

register("resnet_18", resnet, ResNetOptions,
         stage_widths=(64, 128, 256, 512), stage_blocks=(2, 2, 2, 2))

for _depth, _blocks in ((50, (3, 4, 6, 3)), (101, (3, 4, 23, 3)), (152, (3, 8, 36, 3))):
    register(f"resnet_{_depth}", resnet, ImageNetResNetOptions,
             stage_widths=(64, 128, 256, 512), stage_blocks=_blocks,
             block="bottleneck", stem="imagenet")
