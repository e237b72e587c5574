"""Model zoo: plain (unmasked) functional tf_keras models, looked up by name.

    from tflottery import models
    model = models.build('resnet_20', (32, 32, 3), 10, seed=0, bn_momentum=0.9)

`build` returns a built functional model whose output is float32 logits (no
softmax), even under a 'mixed_bfloat16' policy.  Its initial weights are a
pure function of `seed` (see models/layers.py) and every layer has a fixed,
unique name, because masks are keyed by layer name.  The classifier layer is
always named `OUTPUT_LAYER` ('output').  A model with an auxiliary classifier
(Inception-v3 with aux_head=True) returns [logits, aux_logits]; code that
wants the logits takes `main_logits(model(x))`.

Registered names: lenet_300_100; conv_2, conv_4, conv_6, conv_8; resnet_20,
resnet_56, resnet_110, wrn_14_8, wrn_14_10, wrn_20_8, wrn_32_2, resnet_18;
resnet_50, resnet_101, resnet_152 (ImageNet, v1.5); inception_v3; vgg_11,
vgg_13, vgg_16, vgg_19.  Options per family: PlainOptions (lenet, conv),
ResNetOptions (CIFAR resnets, wrn, resnet_18), ImageNetResNetOptions
(resnet_50/101/152), InceptionOptions (inception_v3), VGGOptions (vgg).
"""
from typing import Optional

import tensorflow as tf

from tflottery.models.registry import REGISTRY, ModelSpec, build_spec, register  # noqa: F401
from tflottery.models.layers import (  # noqa: F401
    OUTPUT_LAYER, BatchNormOptions, PlainOptions)
from tflottery.models import conv, inception, lenet, resnet, vgg  # noqa: F401  (they register themselves)
from tflottery.models.inception import InceptionOptions  # noqa: F401
from tflottery.models.resnet import ImageNetResNetOptions, ResNetOptions  # noqa: F401
from tflottery.models.vgg import VGGOptions  # noqa: F401


def build(name: str, input_shape, num_classes: int, seed: int = 0, **options):
    """Build the registered model `name` for images of `input_shape` (H, W, C).

    Raises ConfigError for an unknown name, an unknown option (the message
    lists the family's options) or a bad option value.
    """
    return build_spec(REGISTRY.get(name), input_shape, num_classes, seed, **options)


def names():
    return REGISTRY.names()


def options_of(name: str):
    """The option names `build(name, ...)` accepts, with their defaults."""
    spec = REGISTRY.get(name)
    return dict(vars(spec.options_cls()))


def main_logits(outputs):
    """The main classifier's logits among a model's outputs.

    A model with an auxiliary head returns [logits, aux_logits]; every other
    model returns the logits alone.  Call sites that only need the logits
    (evaluation, analysis) go through this so they work with both.
    """
    if isinstance(outputs, (list, tuple)):
        return outputs[0]
    return outputs


def eval_logits(model, images, num_classes: Optional[int] = None):
    """float32 main-classifier logits of `model` in inference mode, [batch, classes].

    For use inside `strategy.run` during evaluation, by the trainer and the
    analysis code alike, so that they all evaluate the same function.  There
    is no guard against an empty batch: evaluation datasets pad every
    replica's batch to full size (data/pipeline.py pad_to_full_batches), and
    a cond on the batch size would be data dependent, which a TPU cannot
    compile as one static program.  num_classes shaped the logits of that
    empty case; it is no longer used and accepted for existing callers.
    """
    del num_classes
    return tf.cast(main_logits(model(images, training=False)), tf.float32)
