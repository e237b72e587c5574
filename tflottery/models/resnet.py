"""Residual networks with basic blocks: CIFAR ResNets, their wide variants, ResNet-18.

One builder, parameterised by the width and number of blocks of each stage:

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

Block (post-activation, He 2016): conv3x3(stride) - BN - ReLU - conv3x3 - BN,
plus the shortcut, then ReLU.  Where the shape changes (first block of stages
2+), the shortcut is a 1x1 strided conv + BN projection (open_lth's choice,
He's "option B"), not zero-padding ("option A"; that would make ResNet-20
270K rather than 272K).  Convolutions have no bias (BN follows); the Dense
classifier has one.  Kaiming-normal kernels, BN gamma 1, beta 0, momentum
0.9, epsilon 1e-5 (see layers.py for why).

Layer names: 'stem_conv', 'stem_bn', 'stem_relu'; per block
'stage{s}_block{b}_conv_a', '..._bn_a', '..._relu_a', '..._conv_b',
'..._bn_b', '..._shortcut_conv', '..._shortcut_bn', '..._add', '..._relu'
(s, b from 1); 'avg_pool', 'output'.
"""
from tflottery.keras_compat import keras
from tflottery.models.layers import BatchNormOptions, LayerFactory, relu
from tflottery.models.registry import register


def _basic_block(make, x, width, strides, prefix):
    y = make.conv(f"{prefix}_conv_a", width, 3, strides)(x)
    y = make.bn(f"{prefix}_bn_a")(y)
    y = relu(f"{prefix}_relu_a")(y)
    y = make.conv(f"{prefix}_conv_b", width, 3)(y)
    y = make.bn(f"{prefix}_bn_b")(y)
    shortcut = x
    if strides != 1 or x.shape[-1] != width:
        shortcut = make.conv(f"{prefix}_shortcut_conv", width, 1, strides)(x)
        shortcut = make.bn(f"{prefix}_shortcut_bn")(shortcut)
    y = keras.layers.Add(name=f"{prefix}_add")([y, shortcut])
    return relu(f"{prefix}_relu")(y)


def resnet(input_shape, num_classes, seed, options, *, name, stage_widths, stage_blocks):
    """Stem of width stage_widths[0]; stage s > 1 halves the resolution in its first block."""
    make = LayerFactory(seed, options)
    inputs = keras.Input(shape=input_shape, name="input")
    x = make.conv("stem_conv", stage_widths[0], 3)(inputs)
    x = make.bn("stem_bn")(x)
    x = relu("stem_relu")(x)
    for s, (width, blocks) in enumerate(zip(stage_widths, stage_blocks), start=1):
        for b in range(1, blocks + 1):
            strides = 2 if (s > 1 and b == 1) else 1
            x = _basic_block(make, x, width, strides, f"stage{s}_block{b}")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = make.logits(num_classes)(x)
    return keras.Model(inputs, outputs, name=name)


def _register_cifar(name, depth, width_multiplier):
    blocks = (depth - 2) // 6
    assert 6 * blocks + 2 == depth, depth
    register(name, resnet, BatchNormOptions,
             stage_widths=tuple(w * width_multiplier for w in (16, 32, 64)),
             stage_blocks=(blocks,) * 3)


for _depth in (20, 56, 110):
    _register_cifar(f"resnet_{_depth}", _depth, 1)
for _depth, _width in ((14, 8), (14, 10), (20, 8), (32, 2)):
    _register_cifar(f"wrn_{_depth}_{_width}", _depth, _width)

register("resnet_18", resnet, BatchNormOptions,
         stage_widths=(64, 128, 256, 512), stage_blocks=(2, 2, 2, 2))
