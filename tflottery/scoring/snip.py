"""'snip' (Lee et al. 2019) and 'isnip' (its iterative form).

Score of weight w: |g * w|, g = dL/d(w*m) the gradient of the loss with
respect to the effective (masked) weight, L the mean cross-entropy of the
scoring batch (objective.py: training-mode BatchNorm, as "Missing the Mark"
does), w the masked weight -- so pruned weights score 0 and, for the kept
ones, |g*w| is SNIP's connection sensitivity |dL/dc| at c = 1.  The batch
is 10 examples per class (scoring.class_balanced_batch).

Chunks (chunks.py).  The batch goes through the model in chunks of at most
`chunk_size` examples (default 256) and g = sum_c (n_c / n) g_c is
accumulated over them before the |g * w| is taken: without BatchNorm that
is exactly the one-pass gradient of the whole batch.  With BatchNorm in
training mode every chunk is normalised by its own statistics, so the
scores differ slightly from one pass over the whole batch -- as they do in
"Missing the Mark", which feeds the examples in data-loader batches.  (It
then averages the per-batch |g_c * w| rather than taking |.| of the
averaged gradient; with 10 examples per class of CIFAR-10, one batch of
100, and chunk_size >= 100 the two are the same computation.)

'isnip': the same score recomputed for the current mask in each of 100
rounds on the exponential density schedule (schedule.py), so a weight's
sensitivity is judged in the network that is left, not in the dense one.

The gradients are computed in float32 (also for a mixed-precision model;
float64 for a float64 model) by the device program of the model's
strategy (device.py), the batch split across its replicas; g is summed and
multiplied by w in float64 on the host.  isnip's rounds reuse one trace.
"""
import numpy as np

from tflottery.scoring.chunks import loss_gradient
from tflottery.scoring.registry import register


def snip_scores(state, batch, seed: int, round_index: int):
    grads = loss_gradient(state, batch)
    weights = state.masked_weights()         # pruned entries are 0.0
    return {name: np.abs(g * weights[name].astype(np.float64)) for name, g in grads.items()}


register("snip", snip_scores, needs_batch=True)
register("isnip", snip_scores, needs_batch=True, iterations=100)
