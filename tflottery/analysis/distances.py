"""Distances between two trained networks, in weight space and in function space.

Used alongside the interpolation curves (thesis ch. 4) to ask whether two
networks trained from the same state with different SGD noise end up close
(weight-space L2 / cosine distance) and compute similar functions (how many
examples they classify differently, and how far apart their per-example
losses are).
"""
from typing import Tuple

import numpy as np
import tensorflow as tf

from tflottery import masking, models
from tflottery.errors import ConfigError


def weight_vector(model, masked: bool = True) -> np.ndarray:
    """All trainable weights of `model`, flattened and concatenated in variable order.

    With masked=True each prunable weight of a Masked layer is multiplied by
    its mask, i.e. the vector holds the weights the network actually uses
    (set_mask already zeroes pruned weights; the product makes that hold
    whatever happened to the stored values).  BN statistics and masks are not
    trainable, hence not included.
    """
    masks = {}
    if masked:
        for wrapper in masking.masked_layers(model):
            for attr in wrapper.prunable_attrs:
                masks[id(getattr(wrapper.layer, attr))] = wrapper.mask_variable(attr)
    parts = []
    for v in model.trainable_variables:
        value = np.asarray(v.numpy(), np.float64)
        if id(v) in masks:
            value = value * masks[id(v)].numpy()
        parts.append(value.ravel())
    if not parts:
        return np.zeros([0])
    return np.concatenate(parts)


def _pair(u, v) -> Tuple[np.ndarray, np.ndarray]:
    u, v = np.asarray(u, np.float64).ravel(), np.asarray(v, np.float64).ravel()
    if u.shape != v.shape:
        raise ConfigError(f"vectors differ in length: {u.size} and {v.size}")
    return u, v


def l2_distance(u, v) -> float:
    """||u - v||_2."""
    u, v = _pair(u, v)
    return float(np.linalg.norm(u - v))


def cosine_distance(u, v) -> float:
    """1 - cos(u, v); undefined (ConfigError) if either vector is zero."""
    u, v = _pair(u, v)
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        raise ConfigError("cosine distance is undefined for a zero vector")
    return float(1.0 - np.dot(u, v) / (nu * nv))


def disagreement(pred_a, pred_b) -> int:
    """Number of examples the two networks classify differently."""
    a, b = np.asarray(pred_a), np.asarray(pred_b)
    if a.shape != b.shape:
        raise ConfigError(f"prediction arrays differ in shape: {a.shape} and {b.shape}")
    return int(np.count_nonzero(a != b))


def loss_distance(loss_a, loss_b) -> float:
    """L2 distance between the per-example loss vectors of two networks."""
    return l2_distance(loss_a, loss_b)


def predictions_and_losses(strategy, model, dataset, split: str) -> Tuple[np.ndarray, np.ndarray]:
    """(predicted class int32 [N], per-example cross-entropy float32 [N]) on `split`, in its eval order.

    Per-replica outputs are concatenated in replica order, step by step: with
    one input pipeline per host, tf.distribute hands consecutive batches of
    the pipeline to the replicas in order, so this restores the split's
    order.  Single host only (the local replicas are all it sees).  Padding
    examples (label < 0, see data/imagenet.py) are left out.
    """
    dist = strategy.distribute_datasets_from_function(lambda ctx: dataset.eval_dataset(split, ctx))

    def replica_fn(images, labels):
        logits = models.eval_logits(model, images, dataset.info.num_classes)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.maximum(tf.cast(labels, tf.int32), 0), logits=logits)
        return tf.argmax(logits, axis=-1, output_type=tf.int32), loss

    # reduce_retracing: the partial last batch has another shape.
    step = tf.function(lambda images, labels: strategy.run(replica_fn, args=(images, labels)),
                       reduce_retracing=True)
    preds, losses, real = [], [], []
    for images, labels in dist:
        pred, loss = step(images, labels)
        preds += [p.numpy() for p in strategy.experimental_local_results(pred)]
        losses += [l.numpy() for l in strategy.experimental_local_results(loss)]
        real += [y.numpy() >= 0 for y in strategy.experimental_local_results(labels)]
    if not preds:
        return np.zeros([0], np.int32), np.zeros([0], np.float32)
    real = np.concatenate(real)
    return np.concatenate(preds)[real].astype(np.int32), np.concatenate(losses)[real].astype(np.float32)
