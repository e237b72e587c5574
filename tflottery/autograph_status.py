"""Autograph switched on for a block, whatever the function being traced says.

Two of tflottery's traced functions are traced without autograph, because
transpiling tflottery's own code (which never branches on tensors) was a
large part of every run's first trace: the training loop (training/program.py)
and the input pipelines' functions (data/pipeline.py).  What they call that a
user wrote -- a model's `call`, a registered dataset's augmentation -- may
branch on tensors, as under a plain tf.function, so it is called inside
`autograph_on()`: tf_keras and tf.data then convert it as they would have.
"""
# The autograph switch tf_keras and tf.data read (not in TensorFlow's public API).
from tensorflow.python.autograph.core import ag_ctx


def autograph_on():
    """A context in which functions called (a tf_keras layer's `call`, a
    tf.map_fn body) are converted with autograph, also inside a function
    traced without it."""
    return ag_ctx.ControlStatusCtx(status=ag_ctx.Status.ENABLED)
