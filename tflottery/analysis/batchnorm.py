"""Recomputing BatchNormalization moving statistics for an interpolated network.

Why: the moving mean/variance of a BN layer describe the activations of the
network they were accumulated in.  At a point (1-a)*thetaA + a*thetaB in
between, the activations have different statistics, and interpolated moving
statistics make the midpoint look worse than it is (Frankle et al. 2020, and
Jordan et al. 2022 "REPAIR").  So, after setting the weights, we measure the
statistics again on training data, as the LMC paper does.

What is computed.  `num_batches` global batches of
`dataset.train_dataset(seed)` (so every alpha sees the same examples) are run
through a probe model that outputs the *input* of every BN layer, in training
mode, so each BN layer normalises by batch statistics, as during training.
For BN layer l with input x_l (channel axis = l.axis) and global batch t:

    m_t = mean of x_l over the batch (and spatial positions), per channel
    v_t = mean of (x_l - m_t)^2 over the same elements  (biased variance)
    moving_mean     = mean_t m_t
    moving_variance = mean_t v_t       (average of per-batch biased variances,
                                        not the pooled variance of all examples)

The per-batch variance is the one BN divides by in training mode, so the
average of it is what the layer "saw" on average.  m_t and v_t are statistics
of the *global* batch: replicas' sums are all-reduced (in two passes, first
the mean, then squared deviations from it, to avoid cancellation), so a BN
layer whose input does not depend on an earlier BN layer gets the same
statistics under any number of replicas.  Earlier BN layers, however,
normalise by their own replica's batch (exactly as in non-synchronised
training), so for deeper BN layers the result does depend on the replica
count, as training itself does.

Limitations (ConfigError): every BN layer must be a top-level layer of a
functional model, called once (the probe is built from `layer.input`);
`virtual_batch_size` and `renorm` are not supported (they define other
statistics).  Layers such as Dropout also run in training mode in the probe,
as they do during training; tflottery's model zoo has none.
"""
from typing import List

import tensorflow as tf

from tflottery.errors import ConfigError
from tflottery.keras_compat import keras

_BN_CLASSES = (keras.layers.BatchNormalization,)


def _is_bn(layer) -> bool:
    return isinstance(layer, _BN_CLASSES)


def batchnorm_layers(model) -> List[keras.layers.Layer]:
    """The BatchNormalization layers of `model`, in `model.layers` order.

    Raises ConfigError if any BN layer is nested (inside a sub-model or a
    custom layer) or the model is not functional, since the probe that reads
    their inputs needs them as nodes of `model`'s own graph.
    """
    everywhere = [l for l in model._flatten_layers(include_self=False, recursive=True) if _is_bn(l)]
    if not everywhere:
        return []
    if not getattr(model, "_is_graph_network", False):
        raise ConfigError(
            f"bn_mode='recompute' needs a functional (or Sequential) model to read the inputs "
            f"of its BatchNormalization layers; {model.name!r} is subclassed: use "
            "bn_mode='interpolate' or build the model functionally")
    top = [l for l in model.layers if _is_bn(l)]
    top_ids = {id(l) for l in top}
    nested = [l.name for l in everywhere if id(l) not in top_ids]
    if nested:
        raise ConfigError(
            f"bn_mode='recompute' supports BatchNormalization layers only at the top level of a "
            f"functional model; these are nested in sub-models or layers: {nested}. "
            "Use bn_mode='interpolate' or flatten the model")
    for layer in top:
        if getattr(layer, "virtual_batch_size", None) or getattr(layer, "renorm", False):
            raise ConfigError(
                f"BatchNormalization layer {layer.name!r} uses virtual_batch_size or renorm, "
                "which bn_mode='recompute' does not support; use bn_mode='interpolate'")
        if len(layer._inbound_nodes) != 1:
            raise ConfigError(
                f"BatchNormalization layer {layer.name!r} is called {len(layer._inbound_nodes)} "
                "times in the model; bn_mode='recompute' needs each BN layer called once")
    return top


class BatchNormRecomputer:
    """Resets the moving statistics of `model`'s BN layers from training batches.

    Build once, call `recompute()` after every change of the weights: one
    tf.function trace serves every call (see module docstring for the maths).
    With no BN layers, `recompute()` does nothing.
    """

    def __init__(self, strategy, model, dataset, num_batches: int = 10, seed: int = 0):
        if int(num_batches) < 1:
            raise ConfigError(f"bn_batches must be >= 1, got {num_batches}")
        self.strategy = strategy
        self.layers = batchnorm_layers(model)
        self.num_batches = int(num_batches)
        self.fn = None
        if not self.layers:
            return
        with strategy.scope():
            # Shares every layer (and variable) with `model`; creates none.
            self._probe = keras.Model(model.inputs, [l.input for l in self.layers])
        self._axes = []
        for layer in self.layers:
            rank = len(layer.input.shape)
            channel = [a % rank for a in layer.axis]
            self._axes.append([a for a in range(rank) if a not in channel])

        def per_pipeline(ctx):
            # A global batch is num_replicas_in_sync per-replica batches,
            # spread over the input pipelines.
            per_global = ctx.num_replicas_in_sync // ctx.num_input_pipelines
            return dataset.train_dataset(seed, ctx).take(self.num_batches * per_global)

        self._dist = strategy.distribute_datasets_from_function(per_pipeline)
        self.fn = tf.function(self._accumulate)

    def _replica_stats(self, images):
        """Per-channel (mean, biased variance) of every BN input over the global batch."""
        ctx = tf.distribute.get_replica_context()
        inputs = self._probe(images, training=True)
        if not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        inputs = [tf.cast(x, tf.float32) for x in inputs]
        sums = [tf.reduce_sum(x, axis=axes) for x, axes in zip(inputs, self._axes)]
        counts = [tf.cast(tf.size(x), tf.float32) / tf.cast(tf.size(s), tf.float32)
                  for x, s in zip(inputs, sums)]
        sums, counts = ctx.all_reduce(tf.distribute.ReduceOp.SUM, (sums, counts))
        means = [s / n for s, n in zip(sums, counts)]
        squares = [tf.reduce_sum(tf.square(x - tf.reshape(m, self._broadcast_shape(x, axes))), axis=axes)
                   for x, m, axes in zip(inputs, means, self._axes)]
        squares = ctx.all_reduce(tf.distribute.ReduceOp.SUM, squares)
        variances = [q / n for q, n in zip(squares, counts)]
        return means, variances

    @staticmethod
    def _broadcast_shape(x, reduced_axes):
        return [1 if a in reduced_axes else -1 for a in range(len(x.shape))]

    def _accumulate(self):
        """Sum over the batches of per-batch means and variances (cross-replica)."""
        strategy = self.strategy
        # Tuples, not lists: the loop state goes through tf.data's reduce,
        # which would pack a list into one tensor.
        total_m = tuple(tf.zeros(l.moving_mean.shape, tf.float32) for l in self.layers)
        total_v = tuple(tf.zeros(l.moving_variance.shape, tf.float32) for l in self.layers)
        batches = tf.constant(0.0)
        for images, _ in self._dist:
            means, variances = strategy.run(self._replica_stats, args=(images,))
            # Every replica holds the same all-reduced value: take the first.
            total_m = tuple(t + strategy.experimental_local_results(m)[0] for t, m in zip(total_m, means))
            total_v = tuple(t + strategy.experimental_local_results(v)[0] for t, v in zip(total_v, variances))
            batches += 1.0
        return [t / batches for t in total_m], [t / batches for t in total_v]

    def recompute(self) -> None:
        """Measure the statistics with the current weights and assign them."""
        if not self.layers:
            return
        means, variances = self.fn()
        for layer, m, v in zip(self.layers, means, variances):
            layer.moving_mean.assign(tf.cast(m, layer.moving_mean.dtype))
            layer.moving_variance.assign(tf.cast(v, layer.moving_variance.dtype))
