"""'synflow' (Tanaka et al. 2020): iterative synaptic-flow pruning, no data.

Every weight of the network -- kernels, biases, BatchNorm gamma, beta and
moving mean/variance -- is replaced by its absolute value (Tanaka's code
takes abs() of the whole state_dict, buffers included; "Missing the Mark"
only of the parameters, which is the same at initialisation where the
moving mean is 0 and the variance 1).  An all-ones input of the data's shape,
batch 1, goes through the network with BatchNorm in inference mode (both
references call model.eval()), R = sum of the outputs (logits: a softmax or
sigmoid at the end of the model is removed from the copy, head.py, because
the paper sums logits and R through a softmax is 1 for every input), and

    score(w) = |dR/dw * w|        (w the masked |weight|: pruned score 0)

Pruning runs for 100 rounds by default on the exponential schedule
(schedule.py), rescoring the network that is left after each round; that is
what keeps SynFlow from disconnecting a layer ("layer collapse").

Precision.  R is a sum over input-output paths of products of one |weight|
per layer, so in deep networks it overflows or underflows float32 long
before the ranking stops being meaningful; everything is computed in
float64, on a float64 host copy of the model (host.py).  The host copy is
built once per prune_to_density call and reused by every round.

Why on the host when SNIP and GraSP run on the device (device.py): TPUs have
no float64, and SynFlow needs no data -- one example of ones, batch 1 -- so a
round is a single small forward/backward pass that the host CPU does in
milliseconds; moving it would only trade precision for nothing.
"""
import numpy as np
import tensorflow as tf

from tflottery import models
from tflottery.errors import ConfigError
from tflottery.scoring.host import HOST
from tflottery.scoring.registry import register

DTYPE = "float64"


def _input_shape(copy, batch):
    shape = copy.model.input_shape
    if isinstance(shape, list):
        raise ConfigError("synflow needs a model with a single input")
    shape = tuple(shape[1:])
    if any(d is None for d in shape):
        if batch is None:
            raise ConfigError(
                f"the model's input shape {shape} has unknown dimensions; pass a batch so "
                f"synflow can use the shape of its images")
        shape = tuple(np.asarray(batch[0]).shape[1:])
    return (1,) + shape


def _traced(state, batch):
    copy = state.host_copy(DTYPE, absolute=True)
    key = ("synflow", DTYPE)
    if key not in state.cache:
        names = sorted(copy.kernels)
        kernels = [copy.kernels[name] for name in names]
        ones = tf.ones(_input_shape(copy, batch), DTYPE)

        def scores():
            with tf.GradientTape() as tape:
                flow = tf.reduce_sum(models.main_logits(copy.model(ones, training=False)))
            grads = tape.gradient(flow, kernels, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return [tf.abs(g * k) for g, k in zip(grads, kernels)]

        state.cache[key] = (names, state.function(scores))
    return state.cache[key]


def synflow_scores(state, batch, seed: int, round_index: int):
    with tf.device(HOST):
        names, fn = _traced(state, batch)
        out = fn()
    return {name: np.asarray(value, np.float64) for name, value in zip(names, out)}


register("synflow", synflow_scores, iterations=100)
