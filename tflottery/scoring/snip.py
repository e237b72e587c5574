"""'snip' (Lee et al. 2019) and 'isnip' (its iterative form).

Score of weight w: |g * w|, g = dL/d(w*m) the gradient of the loss with
respect to the effective (masked) weight, L the mean cross-entropy of the
scoring batch (objective.py: training-mode BatchNorm, as "Missing the Mark"
does), w the masked weight -- so pruned weights score 0 and, for the kept
ones, |g*w| is SNIP's connection sensitivity |dL/dc| at c = 1.  The batch
is 10 examples per class (scoring.class_balanced_batch), all in one
forward pass.  ("Missing the Mark" feeds the examples in batches of the
training batch size and averages per-batch scores weighted by batch size;
with 10 examples per class of CIFAR-10 that is one batch of 100, the same
computation.  On ImageNet, 10,000 examples, it is many batches, whose
per-batch BatchNorm statistics and |.| of per-batch products make it differ
slightly from one big batch.)

'isnip': the same score recomputed for the current mask in each of 100
rounds on the exponential density schedule (schedule.py), so a weight's
sensitivity is judged in the network that is left, not in the dense one.

Computed in float32 (float64 for a float64 model) on a host copy of the
model (host.py), so mixed-precision models and any tf.distribute strategy
give the same scores.
"""
import numpy as np
import tensorflow as tf

from tflottery.scoring.host import HOST
from tflottery.scoring.objective import cross_entropy
from tflottery.scoring.registry import register


def _traced(state):
    """(names, fn): fn(images, labels) -> [|dL/dw * w| per kernel]; cached per scoring."""
    copy = state.host_copy()
    key = ("snip", copy.dtype)
    if key not in state.cache:
        names = sorted(copy.kernels)
        kernels = [copy.kernels[name] for name in names]

        def scores(images, labels):
            with tf.GradientTape() as tape:
                loss = cross_entropy(copy.model, images, labels, training=True)
            grads = tape.gradient(loss, kernels, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return [tf.abs(g * k) for g, k in zip(grads, kernels)]

        state.cache[key] = (names, state.function(scores))
    return copy, state.cache[key]


def snip_scores(state, batch, seed: int, round_index: int):
    copy, (names, fn) = _traced(state)
    images, labels = batch
    with tf.device(HOST):
        out = fn(tf.constant(images, copy.dtype), tf.constant(labels))
    return {name: np.asarray(value, np.float64) for name, value in zip(names, out)}


register("snip", snip_scores, needs_batch=True)
register("isnip", snip_scores, needs_batch=True, iterations=100)
