"""The training-step fast path: compute with the stored weights, no mask multiply.

`Masked.call` computes with `weight * mask`, which is always right, whatever
was written into the weights.  Inside a training phase the trainer knows more:
it has just zeroed every pruned entry (`assign.zero_pruned_weights`), its
optimizer sets the pruned entries back to zero after every update
(`training/masked_updates.py`), and it zeroes again whenever it changes a mask
mid-phase.  So `weight * mask == weight` bit for bit in every forward pass, and
the forward multiply -- and the backward multiply that comes with it -- are
pure cost: on a CPU an elementwise pass over LeNet-300-100's 784x300 kernel is
2-3% of a training step, while the re-zeroing fused into the optimizer's
update costs about a tenth of that.

Layers traced while `trusted_zero_pruned_weights()` is active use the stored
weights as they are.  The flag is read when a tf.function is traced, so only
the training-step function traced inside the context takes the fast path;
evaluation, scoring and user code keep the multiply.  Whoever enters the
context promises the invariant above, with an optimizer that keeps it.

The state of the evaluation path (eval_path.py) lives here too: products
weight*mask computed once, before a pass's loop, that layers traced inside
that function use instead of multiplying again.
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


@contextlib.contextmanager
def masked_weights_given(values: dict):
    """Layers traced inside compute with `values` ({id(layer): {holder: weight*mask}}),
    tensors of the graph being traced now (eval_path.weights_masked_once builds them)."""
    previous = getattr(_state, "given", None)
    _state.given = (tf.compat.v1.get_default_graph(), values)
    try:
        yield
    finally:
        _state.given = previous


def given(layer) -> dict:
    """{holder: weight*mask} given for `layer` in the graph being traced, or {}.

    Only in the graph the products were computed in or one nested in it (a
    loop's body, a branch): any other graph could not use them.
    """
    graph, values = getattr(_state, "given", None) or (None, {})
    if id(layer) not in values:
        return {}
    current = tf.compat.v1.get_default_graph()
    while current is not None and current is not graph:
        current = getattr(current, "outer_graph", None)
    return values[id(layer)] if current is not None else {}
