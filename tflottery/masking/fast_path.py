"""The training-step fast path: skip the forward multiply, keep the gradient mask.

`Masked.call` computes with `weight * mask`, which is always right, whatever
was written into the weights.  Inside a training phase we know more: the
trainer has just zeroed every pruned entry (`assign.zero_pruned_weights`) and
nothing but the training steps writes the weights until the phase ends.  The
gradient of a pruned entry is masked to exactly zero, so with fresh optimizer
state it stays 0.0 -- hence `weight * mask == weight` bit for bit, and the
forward multiply is pure cost (about 5% of a LeNet-300-100 step on a CPU,
where elementwise passes over the weights rival the small matmuls).

Layers traced while `trusted_zero_pruned_weights()` is active use the
identity in the forward pass and multiply the gradient by the mask in the
backward pass.  The flag is read when a tf.function is traced, so only the
training-step function traced inside the context takes the fast path;
evaluation and user code keep the multiply.
"""
import contextlib
import threading

import tensorflow as tf

_state = threading.local()


def active() -> bool:
    return getattr(_state, "depth", 0) > 0


@contextlib.contextmanager
def trusted_zero_pruned_weights():
    """Trace Masked layers on the fast path (see the module docstring)."""
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1


def gradient_masked(value, mask):
    """Identity in the forward pass; the gradient is multiplied by `mask`."""

    @tf.custom_gradient
    def identity(x):
        def grad(upstream):
            return upstream * tf.cast(mask, upstream.dtype)
        return tf.identity(x), grad

    return identity(value)
