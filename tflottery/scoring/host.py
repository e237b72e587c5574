"""The host side of scoring: context checks, the helper thread, SynFlow's host copy.

Scoring is called eagerly in cross-replica context, between training phases
(check_context).  The data-based scorers then run as programs on the
model's devices (device.py); SynFlow alone runs on a copy on the host CPU,
because it computes in float64, which TPUs lack (synflow.py).

Why outside any strategy scope.  A host copy's variables must be ordinary
single-device variables on '/CPU:0', whatever tf.distribute strategy the
original's were created under (their values are read in cross-replica
context, where a MirroredVariable reads as its first replica's value, which
all replicas share), so that SynFlow's scores do not depend on the strategy.
Strategy scopes are thread-local in TensorFlow, so `outside_strategy` runs
the scoring in a helper thread when the caller is inside
`strategy.scope()`; a device program enters its own model's strategy scope
there (device.py), so it is built and called in the same context whichever
scope the caller was in.
"""
import concurrent.futures
from typing import Callable

import tensorflow as tf

from tflottery.errors import ConfigError
from tflottery.scoring.copies import ModelCopy

HOST = "/CPU:0"


def check_context() -> None:
    """Scoring reads the model's variables eagerly, in cross-replica context."""
    if not tf.executing_eagerly():
        raise ConfigError("scoring must run eagerly, not inside a tf.function")
    if tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context():
        raise ConfigError("scoring must be called in cross-replica context, not inside "
                          "strategy.run(); call it between training phases")


def outside_strategy(fn: Callable):
    """fn() run where no tf.distribute strategy scope is active (see module docstring)."""
    check_context()
    if not tf.distribute.has_strategy():
        return fn()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tflottery-scoring") as pool:
        return pool.submit(fn).result()


def host_copy(model, dtype: str, absolute: bool = False) -> ModelCopy:
    """A copy of `model` on the host CPU (copies.py); call it outside any strategy scope."""
    return ModelCopy(model, dtype, lambda: tf.device(HOST), absolute)
