"""Distances between two trained networks, in weight space and in function space.

Used alongside the interpolation curves (thesis ch. 4) to ask whether two
networks trained from the same state with different SGD noise end up close
(weight-space L2 / cosine distance) and compute similar functions (how many
examples they classify differently, and how far apart their per-example
losses are).
"""
from typing import Dict, Tuple

import numpy as np
import tensorflow as tf

from tflottery import masking, models
from tflottery.errors import ConfigError
from tflottery.training.split_pass import SplitPass


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


class PredictionLoop:
    """Per-example predictions and losses of one model on whole splits, one traced program per split.

        loop = PredictionLoop(strategy, model, dataset)
        preds, losses = loop('test')    # int32 [N], float32 [N], in the split's eval order
        ...                             # change the model's weights (train, interpolate, ...)
        preds, losses = loop('test')    # the same traced function, run again

    Why an object: a TPU compiles each trace as a whole XLA program, so the
    LMC analysis, which asks for the predictions of several networks at
    several points, must reuse one trace per split instead of tracing anew
    (the traces are in `functions`; the model's variables are read when the
    function runs, so new weights need no retrace).  The whole pass over the
    distributed dataset runs inside that function: per-replica outputs of
    each step are concatenated in replica order and appended to
    TensorArrays, the padding (label < 0, see data/pipeline.py) is dropped,
    and the result reaches the host once.  Every batch has the same static
    shape (evaluation datasets are padded), so the per-replica step
    `replica_step` compiles as it is, also with jit_compile=True.

    Order: tf.distribute hands consecutive batches of an input pipeline to
    the replicas it feeds in turn, so with one pipeline per host, the
    per-replica outputs concatenated step by step, in replica order, are
    the split in order.  Single host only (the local replicas are all it
    sees).
    """

    def __init__(self, strategy, model, dataset):
        self.strategy = strategy
        self.model = model
        self.dataset = dataset
        self.functions: Dict[str, tf.types.experimental.GenericFunction] = {}

    def replica_step(self, images, labels) -> Tuple[tf.Tensor, tf.Tensor]:
        """(predicted class int32 [b], cross-entropy float32 [b]) of one replica's batch.

        Padding examples (label < 0) get the loss of class 0; the caller drops them.
        """
        logits = models.eval_logits(self.model, images)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.maximum(tf.cast(labels, tf.int32), 0), logits=logits)
        return tf.argmax(logits, axis=-1, output_type=tf.int32), loss

    def function(self, split: str):
        """The traced pass over `split`: () -> (preds int32 [N], losses float32 [N]), built on first use."""
        if split not in self.functions:
            strategy = self.strategy
            split_pass = SplitPass(strategy, self.dataset, split)

            def local(values):
                return tf.concat(strategy.experimental_local_results(values), axis=0)

            def body(images, labels, arrays):
                pred, loss = strategy.run(self.replica_step, args=(images, labels))
                step = (local(pred), local(loss), local(labels) >= 0)
                return tuple(a.write(a.size(), v) for a, v in zip(arrays, step))

            @tf.function
            def run():
                arrays = tuple(tf.TensorArray(dtype, size=0, dynamic_size=True, element_shape=[None])
                               for dtype in (tf.int32, tf.float32, tf.bool))
                with masking.weights_masked_once(self.model, strategy):
                    arrays = split_pass.for_each_batch(body, arrays)
                preds, losses, real = (a.concat() for a in arrays)
                return tf.boolean_mask(preds, real), tf.boolean_mask(losses, real)
            self.functions[split] = run
        return self.functions[split]

    def __call__(self, split: str) -> Tuple[np.ndarray, np.ndarray]:
        """(predicted class int32 [N], per-example cross-entropy float32 [N]) of the model as it is now."""
        preds, losses = self.function(split)()
        return preds.numpy().astype(np.int32), losses.numpy().astype(np.float32)


def predictions_and_losses(strategy, model, dataset, split: str) -> Tuple[np.ndarray, np.ndarray]:
    """(predicted class int32 [N], per-example cross-entropy float32 [N]) on `split`, in its eval order.

    A one-off PredictionLoop (traced anew at every call); code that asks
    repeatedly should keep one PredictionLoop instead.
    """
    return PredictionLoop(strategy, model, dataset)(split)
