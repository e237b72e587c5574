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
  A model ending in softmax (or sigmoid) is scored on its logits, the
  activation stripped from the scoring copy (head.py): T divides the
  logits, never the probabilities, as in the references, whose networks
  output logits (dividing the log-probabilities by T would be the same).
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
  when no layer mixes examples.  Replicas (device.py) are handled the same
  way: each replica's share gives its part of g and then, with the
  all-reduced g, its part of Hg.  With BatchNorm in training mode each chunk
  is normalised by its own statistics in both passes (g and Hg are those of
  sum_c (n_c / n) L_c), and each replica's share by its own under a
  strategy, so the scores differ slightly from one pass -- as with any
  reference's per-batch computation.  One chunk (chunk_size >= n or None)
  on one replica is the one-pass double backprop.
* No renormalisation: Wang divides the scores by |sum of all scores|, which
  does not change the ranking.  Wang also re-initialises Linear layers
  before scoring (reinit=True); neither later reference does, nor do we.
* Masked weights score 0 (w = 0), and g, H are those of the masked network.

Computed in float32 (float64 for a float64 model) by the device program of
the model's strategy (device.py); per-chunk results are summed in float64.
"""
import numpy as np
import tensorflow as tf

from tflottery.scoring import chunks
from tflottery.scoring.host import check_context, outside_strategy
from tflottery.scoring.objective import check_batch
from tflottery.scoring.registry import register
from tflottery.scoring.state import ScoringState

TEMPERATURE = 200.0


def _hessian_gradient(state, batch, temperature: float):
    """{name: Hg} as float64 NumPy, g the gradient of the whole batch's mean loss."""
    program = state.device()
    t = program.temperature(temperature)
    if program.replicas == 1 and len(chunks.split(len(batch[1]), state.chunk_size)) == 1:
        hg = chunks.accumulate(state, batch, program.hessian_function, t)
    else:
        grads = chunks.loss_gradient(state, batch, temperature)
        g = [tf.constant(grads[name], program.dtype) for name in program.names]
        hg = chunks.accumulate(state, batch, program.hessian_function, t, g)
    return dict(zip(program.names, hg))


def hessian_gradient_product(model, batch, temperature: float = TEMPERATURE,
                             chunk_size=chunks.DEFAULT_CHUNK_SIZE, program=None):
    """{weight name: H g} for the masked `model` on `batch` (for tests and analysis).

    program: a DeviceProgram to run on (default: the one cached with `model`).
    """
    chunk_size = chunks.check_chunk_size(chunk_size)
    check_context()
    state = ScoringState(model, chunk_size=chunk_size, program=program)
    batch = check_batch(batch, model)
    return outside_strategy(lambda: _hessian_gradient(state, batch, temperature))


def grasp_scores(state, batch, seed: int, round_index: int):
    hg = _hessian_gradient(state, batch, TEMPERATURE)
    weights = state.masked_weights()
    return {name: -weights[name].astype(np.float64) * hg[name] for name in hg}


def grasp_abs_scores(state, batch, seed: int, round_index: int):
    return {name: np.abs(s) for name, s in grasp_scores(state, batch, seed, round_index).items()}


register("grasp", grasp_scores, needs_batch=True, prune_highest=True)
register("grasp_abs", grasp_abs_scores, needs_batch=True)
