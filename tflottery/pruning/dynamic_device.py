"""One RigL/SET mask update of every layer, on the model's devices.

What `dynamic.drop_and_grow` specifies for one layer on host arrays (the
reference: see its docstring and tests), done for all layers at once by a
traced function under the model's strategy, as the training step is:
`strategy.run` of `replica_update`, which

  1. scores the growth: RigL's |dense gradient| of the mean cross-entropy of
     the step's batch (the scoring objective, scoring/objective.py, with the
     per-example weights of scoring/device.py's shares, summed over the
     replicas), or SET's uniform random scores (`random_scores`, a hash of
     (seed, step, layer name, position): reproducible, the same on every
     replica and device, with or without XLA, and on the host in NumPy);
  2. per layer, keeps the n - k active weights of largest |w| and grows the
     k connections of largest score among the inactive ones after the drop
     (just-dropped ones included), both with ties to the lower flat index;
  3. writes the new mask, zeroes the dropped weights (tf.where, +0.0 as
     masking.zero_pruned_weights) and zeroes the optimizer slots of the
     newly active connections (new & ~old: a connection dropped and grown
     back keeps its weight and its slots);
  4. returns per layer the number of connections that became active.

The drop counts k are computed on the host from the schedule and passed as
an int32 vector (one entry per updated layer), the seed as an int64 pair, the
batch as replica shares: every update runs the same trace.  Nothing but the
counts comes back to the host.

The dense gradient.  Traced on the masking fast path (masking/fast_path.py,
entered inside the replica function: its flag is per thread, and
MirroredStrategy traces every replica in a thread of its own), the training
model computes with its stored weights, whose pruned entries
are 0.0: its gradient with respect to a kernel is the dense one, at pruned
positions that of a connection of value 0 -- what the scoring copy computes
with an all-ones mask (kernel * 1.0 is exact), so for a float32 model the
scores are bit for bit those of scoring/grow.py's dense_gradient on a batch
of one chunk.  Differences from that host path: the model is called as it
trains, in its own precision (bfloat16 compute under mixed_bfloat16; the
scoring copy is float32), and the whole replica share is one pass (the
scoring path splits batches over 256 examples into chunks, which BatchNorm
normalises separately).  BatchNorm runs in training mode (batch statistics)
and its moving averages are restored afterwards: scoring leaves the model's
state alone.

Exact top-k with ties.  XLA's sort and top-k give no promise about equal
keys, so the selection never depends on the order of equal scores: the
m-th largest candidate score t is read from an ordered copy of the values
(equal values are interchangeable there), every candidate above t is taken,
and of those equal to t the first m - (number above t) by flat index (a
cumulative count).  This is `dynamic.largest` exactly, for any k.  The
ordered copy is a top-n of the layer, n its active count: the program reads
each layer's n when it is made and relies on every update keeping it (n - k
are kept, k <= n grown), which every call checks (ValueError: the masks
were set by something else since; make a new program).  A top-n is a
partial sort, cheaper than sorting the layer at the densities of sparse
training.
"""
import hashlib
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

from tflottery.keras_compat import keras
from tflottery.masking.fast_path import trusted_zero_pruned_weights
from tflottery.masking.walk import masked_pairs
from tflottery.scoring.device import replica_shares
from tflottery.scoring.objective import weighted_cross_entropy
from tflottery.training.optimizers import slot_variables

_SUM = tf.distribute.ReduceOp.SUM


def largest(scores: tf.Tensor, candidates: tf.Tensor, count: tf.Tensor,
            bound: int = None) -> tf.Tensor:
    """Boolean, flat: the `count` candidates of largest score, ties to the lower index.

    scores: a flat float tensor (no NaN); candidates: flat bool; count: an
    int32 scalar, at most the number of candidates.  bound: a Python int at
    least `count`, if one is known: only the `bound` largest values are
    ordered (top-k, a static size under XLA) instead of all of them.  The
    device twin of `dynamic.largest` (module docstring).
    """
    size = scores.shape[0]
    bound = size if bound is None else min(int(bound), size)
    if bound == 0:
        return tf.zeros_like(candidates)
    keyed = tf.where(candidates, scores, tf.constant(-np.inf, scores.dtype))
    if bound < size:
        ordered = tf.math.top_k(keyed, bound, sorted=True).values
    else:
        ordered = tf.sort(keyed, direction="DESCENDING")
    # Clipped: a count over the bound (masks set outside the program) gives a
    # wrong selection that the caller detects, not an error on some devices only.
    threshold = tf.gather(ordered, tf.clip_by_value(count - 1, 0, bound - 1))
    above = candidates & (keyed > threshold)
    at = candidates & tf.equal(keyed, threshold)
    room = count - tf.reduce_sum(tf.cast(above, tf.int32))
    rank = tf.cumsum(tf.cast(at, tf.int32))
    return (above | (at & (rank <= room))) & (count > 0)


def drop_and_grow(mask: tf.Tensor, weights: tf.Tensor, scores: tf.Tensor, drop: tf.Tensor,
                  active: int = None):
    """(new mask, kept) of one layer, boolean and of the layer's shape; `drop` is k.

    The device form of `dynamic.drop_and_grow` with k given: keep the n - k
    active weights of largest |w|, grow k among the rest by score.  active:
    n as a Python int, if known (every update keeps it): both selections
    then order n values (n - k kept, k <= n grown) rather than the layer's
    size (the mask must have n active weights).
    """
    shape = tf.shape(mask)
    flat = tf.reshape(mask, [-1])
    magnitude = tf.reshape(tf.abs(weights), [-1])
    score = tf.reshape(tf.cast(scores, magnitude.dtype), [-1])
    drop = tf.cast(drop, tf.int32)
    kept = largest(magnitude, flat, tf.reduce_sum(tf.cast(flat, tf.int32)) - drop, active)
    grown = largest(score, ~kept, drop, active)
    return tf.reshape(kept | grown, shape), tf.reshape(kept, shape)


def _fmix32(h):
    """MurmurHash3's 32-bit finaliser (a bijection of uint32), on tensors or NumPy arrays."""
    if isinstance(h, np.ndarray):
        h = h ^ (h >> np.uint32(16))
        h = h * np.uint32(0x85EBCA6B)
        h = h ^ (h >> np.uint32(13))
        h = h * np.uint32(0xC2B2AE35)
        return h ^ (h >> np.uint32(16))
    xor, shift = tf.bitwise.bitwise_xor, tf.bitwise.right_shift
    h = xor(h, shift(h, tf.constant(16, tf.uint32)))
    h = h * tf.constant(0x85EBCA6B, tf.uint32)
    h = xor(h, shift(h, tf.constant(13, tf.uint32)))
    h = h * tf.constant(0xC2B2AE35, tf.uint32)
    return xor(h, shift(h, tf.constant(16, tf.uint32)))


_GOLDEN = 0x9E3779B9


def layer_key(name: str) -> int:
    """The uint32 that tells a layer's SET scores apart from other layers': from its name.

    By name, not by position, so that a layer's scores do not depend on which
    other layers are updated (dense_layers) or on their order.
    """
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def random_scores(seed, key: int, shape):
    """SET's growth scores of one layer: uniform on [0, 1) in steps of 2**-24.

    seed: a pair of ints < 2**32 (the run's grow seed, the step), an int64
    tensor in the traced update or a NumPy array (the tests' host reference).
    key: an int < 2**32 naming the layer (`layer_key` of its weight name).
    A counter-based hash in uint32 arithmetic (MurmurHash3's finaliser):
    exact integer operations, so the scores are the same eagerly, traced, under
    XLA and on any device -- unlike TensorFlow's stateless random ops, whose
    XLA kernels give other numbers than their CPU kernels for the same seed.
    """
    size = int(np.prod(shape))
    salt = (int(key) + _GOLDEN) % 2 ** 32
    if isinstance(seed, np.ndarray):
        seed = seed.astype(np.uint64).astype(np.uint32)
        mixed = _fmix32(seed[:1] ^ _fmix32(seed[1:] ^ _fmix32(np.array([salt], np.uint32))))
        h = _fmix32(_fmix32(np.arange(size, dtype=np.uint32) ^ mixed) + mixed * np.uint32(_GOLDEN))
        return ((h >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24)).reshape(shape)
    seed = tf.cast(seed, tf.uint32)
    xor = tf.bitwise.bitwise_xor
    mixed = _fmix32(xor(seed[:1], _fmix32(xor(seed[1:], _fmix32(
        tf.constant([salt], tf.uint32))))))
    h = _fmix32(_fmix32(xor(tf.cast(tf.range(size), tf.uint32), mixed))
                + mixed * tf.constant(_GOLDEN, tf.uint32))
    top = tf.bitwise.right_shift(h, tf.constant(8, tf.uint32))
    return tf.reshape(tf.cast(top, tf.float32) * (2.0 ** -24), shape)


def _batchnorm_statistics(model) -> List[tf.Variable]:
    out = []
    for module in model.submodules:
        if isinstance(module, keras.layers.BatchNormalization):
            out += [module.moving_mean, module.moving_variance]
    return out


class DropGrowProgram:
    """The traced drop-and-grow update of `model`'s masked weights (module docstring).

    optimizer: the optimizer training `model` (its slots are reset where
    connections grow).  grow: 'gradient' (RigL) or 'random' (SET).
    skip: weight names not updated (dense layers keep their masks).
    """

    def __init__(self, model, optimizer, grow: str, skip: Sequence[str] = ()):
        self.model = model
        self.strategy = model.distribute_strategy
        self.grow = grow
        pairs = masked_pairs(model)
        self.names: List[str] = sorted(n for n in pairs if n not in set(skip))
        self._weights = [pairs[n][0] for n in self.names]
        self._masks = [pairs[n][1] for n in self.names]
        self._slots = [slot_variables(optimizer, w) for w in self._weights]
        self._statistics = _batchnorm_statistics(model)
        self.sizes = {n: int(np.prod(pairs[n][0].shape)) for n in self.names}
        # Each layer's active count n, read once (module docstring).
        self.active = {n: int(np.count_nonzero(m.numpy())) for n, m in zip(self.names,
                                                                          self._masks)}
        strategy = self.strategy

        @tf.function
        def dropgrow_update(drop_counts, seed, *shares):
            out = strategy.run(self.replica_update, args=(drop_counts, seed) + tuple(shares))
            return strategy.experimental_local_results(out)[0]
        self.function = dropgrow_update

    # ---- per replica (jit-compilable) ----
    def replica_scores(self, seed, images=None, labels=None, weights=None) -> List[tf.Tensor]:
        """The growth scores of every updated layer (identical on every replica)."""
        if self.grow == "random":
            return [random_scores(seed, layer_key(n), w.shape)
                    for n, w in zip(self.names, self._weights)]
        saved = [tf.identity(v.read_value()) for v in self._statistics]
        # Entered here, in the replica's own thread (MirroredStrategy traces
        # each replica in a thread of its own; the flag is thread-local).
        with trusted_zero_pruned_weights(), tf.GradientTape() as tape:
            loss = weighted_cross_entropy(self.model, images, labels, weights,
                                          tf.constant(1.0, tf.float32))
        grads = tape.gradient(loss, self._weights,
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        grads = tf.distribute.get_replica_context().all_reduce(_SUM, grads)
        with tf.control_dependencies(grads):
            for variable, value in zip(self._statistics, saved):
                variable.assign(value)
        return [tf.abs(g) for g in grads]

    def replica_update(self, drop_counts, seed, *batch) -> tf.Tensor:
        """One update of every layer; replica_select's counts."""
        return self.replica_select(drop_counts, self.replica_scores(seed, *batch))

    def replica_select(self, drop_counts, scores) -> tf.Tensor:
        """Drop and grow by `scores` (one per updated layer), assign; replica_update's second half.

        Returns int32 [2, layers]: the connections that became active, and
        the active count before the update.
        """
        masks, grown, moved, counts = [], [], [], []
        for i, (name, weight, mask_var) in enumerate(zip(self.names, self._weights,
                                                         self._masks)):
            old = tf.cast(mask_var, tf.bool)
            new, _ = drop_and_grow(old, weight, scores[i], drop_counts[i], self.active[name])
            masks.append(new)
            grown.append(new & ~old)
            moved.append(tf.reduce_sum(tf.cast(new & ~old, tf.int32)))
            counts.append(tf.reduce_sum(tf.cast(old, tf.int32)))
        tf.__internal__.distribute.interim.maybe_merge_call(
            self._assign, self.strategy, masks, grown)
        return tf.stack([tf.stack(moved), tf.stack(counts)])

    def _assign(self, strategy, masks, grown):
        update = strategy.extended.update
        for i, (weight, mask_var) in enumerate(zip(self._weights, self._masks)):
            update(mask_var, _assign_mask, args=(masks[i],), group=False)
            update(weight, _zero_pruned, args=(masks[i],), group=False)
            for slot in self._slots[i]:
                update(slot, _zero_grown, args=(grown[i],), group=False)

    # ---- from the host ----
    def __call__(self, drop_counts: Dict[str, int], seed, batch=None) -> Dict[str, int]:
        """Update the masks; {layer: connections that became active}.

        drop_counts: {updated layer: k}; seed: (int, int) (SET); batch:
        (images, labels) as NumPy arrays (RigL).  Call eagerly in
        cross-replica context with the pruned weights zero (the fast path
        the gradient is traced on relies on it), as between training steps.
        """
        drops = [int(drop_counts[n]) for n in self.names]
        wrong = [n for n, k in zip(self.names, drops) if not 0 <= k <= self.active[n]]
        if wrong:
            raise ValueError(f"drop counts of {', '.join(wrong)} not in [0, active count]")
        counts = tf.constant(drops, tf.int32)
        seed = tf.constant([int(s) for s in seed], tf.int64)
        shares = ()
        if self.grow == "gradient":
            images, labels = batch
            with self.strategy.scope():
                shares = tuple(replica_shares(self.strategy, np.asarray(images), np.asarray(labels),
                                              np.float32))
        moved, before = self.function(counts, seed, *shares).numpy()
        changed = [n for n, c in zip(self.names, before) if c != self.active[n]]
        if changed:
            raise ValueError(f"the active counts of {', '.join(changed)} changed since the "
                             f"update program was made (masks set outside it); its selection "
                             f"relies on them: make a new program")
        return dict(zip(self.names, (int(m) for m in moved)))

    def tracing_count(self) -> int:
        return self.function.experimental_get_tracing_count()


def _assign_mask(variable, new):
    return variable.assign(tf.cast(new, variable.dtype))


def _zero_pruned(variable, new):
    return variable.assign(tf.where(new, variable, tf.zeros((), variable.dtype)))


def _zero_grown(variable, grown):
    return variable.assign(variable * tf.cast(~grown, variable.dtype))
