"""'grasp' (Wang et al. 2020) and 'grasp_abs' (the "Missing the Mark" variant).

GraSP keeps the weights whose removal would least reduce the gradient flow
g^T g.  With H the Hessian of the loss and g its gradient (both with
respect to the effective weights of the current mask), the score is

    S(w) = -w * (H g)                         (elementwise)

and the weights with the HIGHEST scores are removed (`prune_highest`).
'grasp_abs' scores |S(w)| and removes the lowest, the variant Frankle et
al. (2021) found to work as well or better.

Hg is a Hessian-vector product by double backprop: g = dL/dw on the batch,
z = sum(stop_gradient(g) * dL/dw), Hg = dz/dw.

Conventions, following the references where they agree:
* Temperature T = 200: the logits are divided by T for BOTH the gradient g
  and the Hessian pass (Wang et al.'s code and "Missing the Mark" do both).
* 10 examples per class, BatchNorm in training mode (objective.py).
* The batch is not split.  Wang et al. split each sampled batch into two
  halves, sum the two half-batch gradients into g and accumulate H_half g
  over the halves; "Missing the Mark" computes g and Hg per data-loader
  batch (the whole 100 examples for CIFAR-10) and averages the scores.  We
  follow "Missing the Mark": one batch, g and Hg of its mean loss.  Without
  BatchNorm the split only rescales every score by the same factor (the
  ranking is unchanged); with BatchNorm in training mode the half-batch
  statistics make Wang's scores slightly different.
* No renormalisation: Wang divides the scores by |sum of all scores|, which
  does not change the ranking.  Wang also re-initialises Linear layers
  before scoring (reinit=True); neither later reference does, nor do we.
* Masked weights score 0 (w = 0), and g, H are those of the masked network.

Computed in float32 (float64 for a float64 model) on a host copy (host.py).
"""
import numpy as np
import tensorflow as tf

from tflottery.scoring.host import HOST, check_context, outside_strategy
from tflottery.scoring.objective import check_batch, cross_entropy
from tflottery.scoring.registry import register
from tflottery.scoring.state import ScoringState

TEMPERATURE = 200.0


def _traced(state, temperature: float):
    """(names, fn): fn(images, labels) -> ([Hg per kernel], [kernel values]); cached per scoring."""
    copy = state.host_copy()
    key = ("grasp", copy.dtype, float(temperature))
    if key not in state.cache:
        names = sorted(copy.kernels)
        kernels = [copy.kernels[name] for name in names]
        zero = tf.UnconnectedGradients.ZERO

        def hessian_gradient(images, labels):
            with tf.GradientTape() as outer:
                with tf.GradientTape() as inner:
                    loss = cross_entropy(copy.model, images, labels, temperature, training=True)
                grads = inner.gradient(loss, kernels, unconnected_gradients=zero)
                z = tf.add_n([tf.reduce_sum(tf.stop_gradient(g) * g) for g in grads])
            hg = outer.gradient(z, kernels, unconnected_gradients=zero)
            return hg, [tf.convert_to_tensor(k) for k in kernels]

        state.cache[key] = (names, state.function(hessian_gradient))
    return copy, state.cache[key]


def _as_numpy(names, values):
    return {name: np.asarray(value, np.float64) for name, value in zip(names, values)}


def _hessian_gradient(state, batch, temperature: float):
    """({name: Hg}, {name: masked weight}) as float64 NumPy."""
    copy, (names, fn) = _traced(state, temperature)
    images, labels = batch
    with tf.device(HOST):
        hg, weights = fn(tf.constant(images, copy.dtype), tf.constant(labels))
    return _as_numpy(names, hg), _as_numpy(names, weights)


def hessian_gradient_product(model, batch, temperature: float = TEMPERATURE):
    """{weight name: H g} for the masked `model` on `batch` (for tests and analysis)."""
    check_context()
    state = ScoringState(model)
    batch = check_batch(batch, model)
    return outside_strategy(lambda: _hessian_gradient(state, batch, temperature)[0])


def grasp_scores(state, batch, seed: int, round_index: int):
    hg, weights = _hessian_gradient(state, batch, TEMPERATURE)
    return {name: -weights[name] * hg[name] for name in hg}


def grasp_abs_scores(state, batch, seed: int, round_index: int):
    return {name: np.abs(s) for name, s in grasp_scores(state, batch, seed, round_index).items()}


register("grasp", grasp_scores, needs_batch=True, prune_highest=True)
register("grasp_abs", grasp_abs_scores, needs_batch=True)
