"""Scoring programs on the model's devices: the gradients of SNIP, iterative SNIP and GraSP.

Why on the device.  On a TPU pod the model's variables live on the TPU
cores and the host is a small CPU: scoring 10 examples per class of
ImageNet through ResNet-50 there would take far longer than training a few
steps.  So the gradient and the Hessian-gradient product run where training
runs: `strategy.run` inside a `tf.function`, under the tf.distribute
strategy the model's variables were created under (`model.distribute_strategy`;
the default strategy, one replica, for a model built outside any scope).

The program.  A DeviceProgram holds a private copy of the model (copies.py),
built under the strategy's scope in float32 (float64 for a float64 model),
and two tf.functions around the per-replica steps below.  It is made once and
reused: `program_for(model)` caches it per (model, dtype) in a
WeakKeyDictionary (dropped with the model), and a caller that scores several
model objects of one architecture (say, rebuilt for every phase) can hold
one program and pass it in.  Every use loads
the weights and installs the mask into the copy's variables; shapes stay the
same, so nothing is traced again -- on a TPU every trace is a whole-program
XLA compile (design.md, "One program per run").  The user's model is only
read: weights, mask and BatchNorm statistics are never written.

Per-replica steps.  `replica_gradient` and `replica_hessian_product` are what
one replica computes on its share of examples: the gradient of
sum_i weight_i * loss_i with respect to the copy's prunable kernels (and
H v for a given v).  With weight_i = 1/n_c for the n_c real examples of a
chunk and 0 for padding, the SUM over replicas is the gradient of the
chunk's mean loss; it is all-reduced in float32 (float64 for a float64
model).  The steps contain nothing that XLA cannot compile (a test wraps
them in tf.function(jit_compile=True)).

Shares.  Replica r takes the r-th contiguous block of a chunk's n_c
examples (chunks.py), the blocks as equal as they can be, and each block is
padded to ceil(n_c / R) examples by repeating its own examples with weight
0, so every replica has the same static shape and at most one padding
example (a chunk of fewer than R examples leaves some replicas nothing but
padding).  One replica never pads.  A program traces once per share size:
once for a scoring batch in equal chunks (100 examples in one chunk, 10,000
in chunks of 250), at most twice when the chunk sizes differ by one (14
examples in chunks of at most 5: 5, 5, 4), and never again for later rounds
or calls with the same batch and chunk_size.  (Padding every chunk to the
largest one's size would make that one trace, but on one replica it would
put padding into BatchNorm's statistics, which chunking alone does not.)

BatchNorm.  In training mode (objective.py) BatchNorm normalises each
replica's share by that share's statistics (the model zoo's BatchNorm is not
synchronised), so with BatchNorm the scores are those of the share-by-share
losses, just as chunking makes them chunk by chunk, and they depend on the
replica count; a padding example enters the statistics of the share that
holds it (never on one replica, where nothing is padded).  Without
BatchNorm (or any layer that mixes examples) the result is the gradient of
the chunk's mean loss whatever the replica count.
"""
import weakref
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf

from tflottery.keras_compat import require_tensorflow_backend
from tflottery.masking.mask import Mask
from tflottery.scoring.copies import ModelCopy, compute_dtype
from tflottery.scoring.objective import weighted_cross_entropy

_ZERO = tf.UnconnectedGradients.ZERO
_SUM = tf.distribute.ReduceOp.SUM


class DeviceProgram:
    """The device copy of `model` and the traced scoring functions, under its strategy.

    `names` is the sorted order of prunable weight names in which every
    function returns its per-kernel results.
    """

    def __init__(self, model, dtype: Optional[str] = None):
        require_tensorflow_backend(model, "this scorer (it differentiates with TensorFlow)")
        self.strategy = model.distribute_strategy
        self.dtype = dtype or compute_dtype(model)
        self.copy = ModelCopy(model, self.dtype, self.strategy.scope)
        self.names: List[str] = sorted(self.copy.kernels)
        self._kernels = [self.copy.kernels[name] for name in self.names]
        self.gradient_function = tf.function(self._distributed(self.replica_gradient))
        self.hessian_function = tf.function(self._distributed(self.replica_hessian_product))

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    def load(self, model) -> None:
        """Take the weights of `model` (this program's architecture) for the next scorings."""
        self.copy.load(model)

    def install(self, mask: Mask) -> None:
        self.copy.install(mask)

    # ---- per replica (jit-compilable) ----
    def replica_gradient(self, images, labels, weights, temperature) -> List[tf.Tensor]:
        """d/dw sum_i weights_i * loss_i(images_i / temperature) per kernel, on this replica."""
        with tf.GradientTape() as tape:
            loss = weighted_cross_entropy(self.copy.model, images, labels, weights, temperature)
        return tape.gradient(loss, self._kernels, unconnected_gradients=_ZERO)

    def replica_hessian_product(self, images, labels, weights, temperature,
                                vectors: Optional[Sequence[tf.Tensor]] = None) -> List[tf.Tensor]:
        """H v by double backprop: d/dw (v . replica_gradient); v = that gradient if not given.

        vectors=None (v = this replica's own gradient, held constant) is
        GraSP's Hg in one double backprop, right only when this replica
        holds the whole batch (one replica, one chunk).
        """
        with tf.GradientTape() as outer:
            grads = self.replica_gradient(images, labels, weights, temperature)
            if vectors is None:
                vectors = [tf.stop_gradient(g) for g in grads]
            z = tf.add_n([tf.reduce_sum(v * g) for v, g in zip(vectors, grads)])
        return outer.gradient(z, self._kernels, unconnected_gradients=_ZERO)

    # ---- across replicas ----
    def _distributed(self, step):
        """shares, *args -> step's results summed over the replicas (replica 0's copy of them)."""
        strategy = self.strategy

        def on_replica(*args):
            return tf.distribute.get_replica_context().all_reduce(_SUM, step(*args))

        def program(shares, *args):
            out = strategy.run(on_replica, args=tuple(shares) + args)
            return [strategy.experimental_local_results(value)[0] for value in out]

        program.__name__ = f"scoring_{step.__name__}"    # the traced function's name
        return program

    def _shares(self, images: np.ndarray, labels: np.ndarray):
        return replica_shares(self.strategy, images, labels, self.dtype)

    def run(self, function, images: np.ndarray, labels: np.ndarray, *args) -> List[np.ndarray]:
        """`function` (gradient_ or hessian_function) for the examples' mean loss, float64 NumPy."""
        with self.strategy.scope():
            out = function(self._shares(images, labels), *args)
        return [np.asarray(value, np.float64) for value in out]

    def temperature(self, value: float) -> tf.Tensor:
        """A tensor argument, so that every temperature shares one trace."""
        return tf.constant(value, self.dtype)


def replica_shares(strategy, images: np.ndarray, labels: np.ndarray, dtype):
    """(images, labels, weights) of a chunk laid out in equal padded shares, one per replica.

    The module docstring's "Shares": weights 1/n for the n real examples, 0
    for padding; the dense-gradient update of dynamic sparse training lays
    its batch out the same way (pruning/dynamic_device.py).
    """
    n, replicas = len(labels), strategy.num_replicas_in_sync
    share = -(-n // replicas)
    blocks = np.array_split(np.arange(n), replicas)
    # An empty block (n < replicas) is all padding: copies of example 0.
    index = np.concatenate([np.resize(b if len(b) else [0], share) for b in blocks])
    real = np.concatenate([np.arange(share) < len(b) for b in blocks])
    arrays = (images[index].astype(dtype), labels[index].astype(np.int32),
              np.where(real, 1.0 / n, 0.0).astype(dtype))

    def on_replica(context):
        part = slice(context.replica_id_in_sync_group * share,
                     (context.replica_id_in_sync_group + 1) * share)
        return tuple(tf.constant(a[part]) for a in arrays)

    return strategy.experimental_distribute_values_from_function(on_replica)


_PROGRAMS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def program_for(model, dtype: Optional[str] = None) -> DeviceProgram:
    """The DeviceProgram of `model` in `dtype` (default: its scoring dtype), made on first use."""
    dtype = dtype or compute_dtype(model)
    programs = _PROGRAMS.setdefault(model, {})
    if dtype not in programs:
        programs[dtype] = DeviceProgram(model, dtype)
    return programs[dtype]
