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
"""
import contextlib
import threading

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
