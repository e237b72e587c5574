"""`for_steps`: a fixed number of steps over an iterator, as one tf.while_loop.

The training loop and every evaluation pass take a known number of batches
from a long-lived iterator inside a tf.function.  Written out as the
tf.while_loop that autograph would make of `for _ in tf.range(n)`, the loop
also serves functions traced without autograph (autograph's transpiling of
the loop and everything it calls was more than half of a first trace:
program.py `train_loop`), and compiles to the same graph either way.
"""
from typing import Callable

import tensorflow as tf


def for_steps(iterator, num_steps, body: Callable, state=()):
    """In a tf.function: `state = body(images, labels, state)` for `num_steps` batches of `iterator`.

    num_steps: a Python int or an integer tensor (its dtype is the counter's).
    """
    dtype = num_steps.dtype if isinstance(num_steps, tf.Tensor) else tf.int32

    def one_step(step, state):
        images, labels = next(iterator)
        return step + 1, body(images, labels, state)
    return tf.while_loop(lambda step, _: step < num_steps, one_step,
                         (tf.constant(0, dtype), state))[1]
