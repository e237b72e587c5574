"""'grasp' (Wang et al. 2020) and 'grasp_abs' (the "Missing the Mark" variant).

GraSP keeps the weights whose removal would least reduce the gradient flow
g^T g.  With H the Hessian of the loss and g its gradient (both with
respect to the effective weights of the current mask), the score is

    S(w) = -w * (H g)                         (elementwise)

and the weights with the HIGHEST scores are removed (`prune_highest`).
'grasp_abs' scores |S(w)| and removes the lowest, the variant Frankle et
al. (2021) found to work as well or better.

Hg is a Hessian-vector product by double backprop: g = dL/dw on the batch,
z = sum(stop_gradient(g) * dL/dw), Hg = dz/dw (the temperature divides the
logits in both).

Conventions, following the references where they agree:
* Temperature T = 200: the logits are divided by T for BOTH the gradient g
  and the Hessian pass (Wang et al.'s code and "Missing the Mark" do both).
* 10 examples per class, BatchNorm in training mode (objective.py).
* One batch, g and Hg of its mean loss, as "Missing the Mark" computes
  them per data-loader batch (the whole 100 examples for CIFAR-10).  Wang
  et al. split each sampled batch into two halves, sum the two half-batch
  gradients into g and accumulate H_half g over the halves: without
  BatchNorm that only rescales every score by the same factor (the ranking
  is unchanged); with BatchNorm in training mode the half-batch statistics
  make Wang's scores slightly different.
* Chunks (chunks.py), to bound memory on large batches (10,000 ImageNet
  images): the batch goes through the model in chunks of at most
  `chunk_size` examples.  First g = sum_c (n_c / n) g_c over all chunks
  (exactly as SNIP), then Hg = sum_c (n_c / n) d/dw [stop_gradient(g) .
  dL_c/dw], a second pass over the chunks with the full-batch g: by
  linearity of the Hessian-vector product this is exactly the one-pass Hg
  when no layer mixes examples.  With BatchNorm in training mode each chunk
  is normalised by its own statistics in both passes (g and Hg are those of
  sum_c (n_c / n) L_c), so the scores differ slightly from one pass -- as
  with any reference's per-batch computation.  One chunk (chunk_size >= n
  or None) is the one-pass double backprop, unchanged.
* No renormalisation: Wang divides the scores by |sum of all scores|, which
  does not change the ranking.  Wang also re-initialises Linear layers
  before scoring (reinit=True); neither later reference does, nor do we.
* Masked weights score 0 (w = 0), and g, H are those of the masked network.

Computed in float32 (float64 for a float64 model) on a host copy (host.py);
per-chunk results are summed in float64.
"""
import numpy as np
import tensorflow as tf

from tflottery.scoring import chunks
from tflottery.scoring.host import HOST, check_context, outside_strategy
from tflottery.scoring.objective import check_batch, cross_entropy
from tflottery.scoring.registry import register
from tflottery.scoring.state import ScoringState

TEMPERATURE = 200.0


def _traced_hessian_product(state, temperature: float, given_g: bool):
    """(names, fn) -> [d/dw (v . dL/dw) per kernel] = H v, cached per scoring.

    given_g=False: fn(images, labels), v = this pass's own gradient g (held
    constant), i.e. Hg in one double backprop.  given_g=True: fn(images,
    labels, g) with v = the given g (the full-batch gradient, for chunks).
    """
    copy = state.host_copy()
    key = ("grasp", copy.dtype, float(temperature), given_g)
    if key not in state.cache:
        names = sorted(copy.kernels)
        kernels = [copy.kernels[name] for name in names]
        zero = tf.UnconnectedGradients.ZERO

        def hessian_product(images, labels, *given):
            with tf.GradientTape() as outer:
                with tf.GradientTape() as inner:
                    loss = cross_entropy(copy.model, images, labels, temperature, training=True)
                grads = inner.gradient(loss, kernels, unconnected_gradients=zero)
                vectors = given[0] if given else [tf.stop_gradient(g) for g in grads]
                z = tf.add_n([tf.reduce_sum(v * g) for v, g in zip(vectors, grads)])
            return outer.gradient(z, kernels, unconnected_gradients=zero)

        state.cache[key] = (names, state.function(hessian_product))
    return state.cache[key]


def _hessian_gradient(state, batch, temperature: float):
    """({name: Hg}, {name: masked weight}) as float64 NumPy."""
    copy = state.host_copy()
    if len(chunks.split(len(batch[1]), state.chunk_size)) == 1:
        names, fn = _traced_hessian_product(state, temperature, given_g=False)
        hg = chunks.accumulate(state, batch, fn)
    else:
        grads = chunks.loss_gradient(state, batch, temperature)
        names, fn = _traced_hessian_product(state, temperature, given_g=True)
        with tf.device(HOST):
            g = [tf.constant(grads[name], copy.dtype) for name in names]
        hg = chunks.accumulate(state, batch, fn, g)
    weights = [np.asarray(copy.kernels[name].numpy(), np.float64) for name in names]
    return dict(zip(names, hg)), dict(zip(names, weights))


def hessian_gradient_product(model, batch, temperature: float = TEMPERATURE,
                             chunk_size=chunks.DEFAULT_CHUNK_SIZE):
    """{weight name: H g} for the masked `model` on `batch` (for tests and analysis)."""
    chunk_size = chunks.check_chunk_size(chunk_size)
    check_context()
    state = ScoringState(model, chunk_size=chunk_size)
    batch = check_batch(batch, model)
    return outside_strategy(lambda: _hessian_gradient(state, batch, temperature)[0])


def grasp_scores(state, batch, seed: int, round_index: int):
    hg, weights = _hessian_gradient(state, batch, TEMPERATURE)
    return {name: -weights[name] * hg[name] for name in hg}


def grasp_abs_scores(state, batch, seed: int, round_index: int):
    return {name: np.abs(s) for name, s in grasp_scores(state, batch, seed, round_index).items()}


register("grasp", grasp_scores, needs_batch=True, prune_highest=True)
register("grasp_abs", grasp_abs_scores, needs_batch=True)
