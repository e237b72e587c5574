"""VGG-11/13/16/19 for CIFAR, as open_lth's `cifar_vgg` (thesis ch. 4-5).

Each number in the plan is a 3x3 'same' convolution (with bias, as PyTorch's
default in open_lth) + BatchNorm + ReLU; 'M' is a 2x2 max-pool.  There is no
pool after the last group and no hidden FC layers: open_lth average-pools the
remaining 2x2 map to 1x1 and applies one Dense(num_classes).  We use global
average pooling, which is the same on 32x32 inputs and also works on larger
ones.  Kaiming-normal kernels, BN momentum 0.9 / epsilon 1e-5 (see layers.py).

Layers: 'conv_i', 'bn_i', 'relu_i' (i = 1..depth-3), 'pool_j', 'avg_pool',
'output'.  Trainable parameters with 10 classes (open_lth's tests):
VGG-11 9,231,114; VGG-13 9,416,010; VGG-16 14,728,266; VGG-19 20,040,522.
"""
import dataclasses

from tflottery.keras_compat import keras
from tflottery.models.layers import BatchNormOptions, LayerFactory, check_min_size, relu
from tflottery.models.registry import register

PLANS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512),
}


@dataclasses.dataclass(frozen=True)
class VGGOptions(BatchNormOptions):
    """BatchNormOptions plus conv_bias: keep the (BN-redundant) conv biases of open_lth."""

    conv_bias: bool = True


def vgg(input_shape, num_classes, seed, options, *, name, plan):
    check_min_size(name, input_shape, plan.count("M"))
    make = LayerFactory(seed, options)
    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    conv_index = pool_index = 0
    for spec in plan:
        if spec == "M":
            pool_index += 1
            x = keras.layers.MaxPool2D(2, name=f"pool_{pool_index}")(x)
            continue
        conv_index += 1
        x = make.conv(f"conv_{conv_index}", spec, use_bias=options.conv_bias)(x)
        x = make.bn(f"bn_{conv_index}")(x)
        x = relu(f"relu_{conv_index}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = make.logits(num_classes)(x)
    return keras.Model(inputs, outputs, name=name)


for _depth, _plan in PLANS.items():
    register(f"vgg_{_depth}", vgg, VGGOptions, plan=_plan)
