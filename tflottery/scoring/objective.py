"""The loss the data-based scorers differentiate, and the batch they see.

Loss: softmax cross-entropy of the model's outputs (logits) divided by a
temperature, averaged over the batch -- PyTorch's F.cross_entropy as used by
the references.  The model is a scoring copy, which outputs logits even where
the user's model ends in softmax or sigmoid (head.py); a one-unit output z
is a binary classifier, scored as the logits [0, z] (binary cross-entropy).  It is written with log_softmax rather than TensorFlow's
fused sparse_softmax_cross_entropy_with_logits because GraSP needs its
second derivative, which the fused op refuses.

BatchNorm mode: the references put the network in training mode
(`model.train()` in "Missing the Mark"'s snip.py and grasp.py, and GraSP's
own code never calls eval()), so BatchNorm normalises by the statistics of
the scoring batch.  We call the scoring copy with training=True for the same
reason; the moving-average update this causes lands on the copy only.  Other
training-mode layers (Dropout) would run in training mode too, as in the
references; the model zoo has none.
"""
from typing import Tuple

import numpy as np
import tensorflow as tf

from tflottery import models
from tflottery.errors import ConfigError
from tflottery.scoring import head


def weighted_cross_entropy(model, images, labels, weights, temperature):
    """sum over the examples of weights_i * -log softmax(model(images)_i / temperature)[labels_i].

    With weights_i = 1/n it is the mean loss; padding examples get weight 0
    (device.py).  The temperature is a tensor, divided in even when it is 1
    (exact), so that one traced function serves every temperature.
    """
    logits = models.main_logits(model(images, training=True))
    if logits.shape[-1] == 1:   # binary: softmax of [0, z] is [1 - sigmoid(z), sigmoid(z)]
        logits = tf.concat([tf.zeros_like(logits), logits], axis=-1)
    logits = logits / tf.cast(temperature, logits.dtype)
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    picked = tf.gather(log_probs, labels, axis=-1, batch_dims=1)
    return -tf.reduce_sum(tf.cast(weights, picked.dtype) * picked)


def check_batch(batch, model) -> Tuple[np.ndarray, np.ndarray]:
    """(images float32, labels int32) as NumPy, checked against the model's input and output."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise ConfigError("batch must be a pair (images, labels), e.g. from "
                          "scoring.class_balanced_batch(dataset)")
    images = np.asarray(batch[0], np.float32)
    labels = np.asarray(batch[1])
    if labels.ndim != 1 or images.ndim < 2 or len(images) != len(labels) or len(labels) == 0:
        raise ConfigError(
            f"batch must hold n >= 1 images and n labels (got image shape {images.shape} and "
            f"label shape {labels.shape})")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(f"batch labels must be integers (got dtype {labels.dtype})")
    shape = model.input_shape
    if isinstance(shape, tuple):  # a single-input model
        expected = tuple(shape[1:])
        if len(expected) != images.ndim - 1 or any(
                e is not None and e != a for e, a in zip(expected, images.shape[1:])):
            raise ConfigError(
                f"batch images have shape {images.shape[1:]} but the model takes {expected}")
    classes = head.num_classes(model)
    if classes is not None and (labels.min() < 0 or labels.max() >= classes):
        raise ConfigError(f"batch labels must be in [0, {classes}) for this model "
                          f"(got {labels.min()}..{labels.max()})")
    return images, labels.astype(np.int32)
