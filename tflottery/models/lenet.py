"""LeNet-300-100: the fully-connected MNIST network of Frankle & Carbin (2019).

Flatten, then Dense 300 and 100 with ReLU, then the classifier 'output'.
Layers: 'flatten', 'fc_1', 'fc_2', 'output'.  Glorot-normal kernels and zero
biases as in the paper's TF code; 266,610 parameters on 28x28x1 inputs.
Flattening first means any image shape works (e.g. 8x8 digits, 32x32x3).
"""
from tflottery.keras_compat import keras
from tflottery.models.layers import LayerFactory, PlainOptions
from tflottery.models.registry import register


def fully_connected(input_shape, num_classes, seed, options, *, name, hidden_units):
    """A ReLU MLP with the given hidden widths (the family of all LeNet-N1-N2... nets)."""
    make = LayerFactory(seed, options)
    inputs = keras.Input(shape=input_shape, name="input")
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate(hidden_units, start=1):
        x = make.dense(f"fc_{i}", units, activation="relu")(x)
    outputs = make.logits(num_classes)(x)
    return keras.Model(inputs, outputs, name=name)


register("lenet_300_100", fully_connected, PlainOptions, hidden_units=(300, 100))
