"""Conv-2/4/6/8: the CIFAR-10 VGG-like nets of Frankle & Carbin (2019), thesis ch. 3.

Stage s has two 3x3 'same' ReLU convolutions of width 64 * 2**(s-1) and a
2x2 max-pool; then Dense 256, 256 (ReLU) and the classifier.  No BatchNorm,
no dropout, Glorot-normal kernels, zero biases.

Layers: 'conv_1', 'conv_2', 'pool_1', 'conv_3', ..., 'flatten', 'fc_1',
'fc_2', 'output'.

Kernel weights on 32x32x3 (biases add 650 / 906 / 1,418): Conv-2 4,300,992
(paper's Figure 2: 4.3M), Conv-4 2,425,024 (2.4M), Conv-6 2,261,184.  The
paper gives 1.7M for Conv-6 although its own layer list gives 2.26M
(convolutions 1,144,512 plus FC 4*4*256*256 + 256*256 + 256*10); we follow
the layer list, which gives Conv-2 and Conv-4 exactly.  Conv-8 (thesis only) adds conv 512, 512, pool: 5.28M.
"""
from tflottery.keras_compat import keras
from tflottery.models.layers import LayerFactory, PlainOptions, check_min_size
from tflottery.models.registry import register


def conv_net(input_shape, num_classes, seed, options, *, name, stage_widths, fc_units=(256, 256)):
    check_min_size(name, input_shape, len(stage_widths))
    make = LayerFactory(seed, options)
    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    conv_index = 0
    for stage, width in enumerate(stage_widths, start=1):
        for _ in range(2):
            conv_index += 1
            x = make.conv(f"conv_{conv_index}", width, use_bias=True, activation="relu")(x)
        x = keras.layers.MaxPool2D(2, name=f"pool_{stage}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(fc_units, start=1):
        x = make.dense(f"fc_{i}", units, activation="relu")(x)
    outputs = make.logits(num_classes)(x)
    return keras.Model(inputs, outputs, name=name)


for _stages in range(1, 5):
    register(f"conv_{2 * _stages}", conv_net, PlainOptions,
             stage_widths=tuple(64 * 2 ** i for i in range(_stages)))
