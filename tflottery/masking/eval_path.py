"""The evaluation path: weight*mask computed once for a whole pass, not at every batch.

An evaluation pass calls the model on every batch of a split with the same
weights and masks, and `Masked.call` multiplies each weight by its mask at
every call.  For LeNet-300-100 evaluated on MNIST's 2,000 test images in
batches of 60 on a CPU, a pass took 30.3 ms with them and 21.9 ms without
(an in-process A/B, 2026-12-08).  Entered
in a tf.function around a pass's loop, `weights_masked_once(model, strategy)`
computes every product once, before the loop; the calls traced inside the
loop (its body is a graph nested in the function's) compute with those
tensors.  They are the same products, so the pass's results are the same,
bit for bit.

Only where one product can serve every call:
  * one replica: under MirroredStrategy or on a TPU each replica computes in
    its own device's program, and a product computed outside it would be
    copied into every replica at every batch;
  * a weight read in its stored dtype: a mixed-precision layer reads its
    variables autocast inside its call, so its product is left to the call
    (`Masked.masked_weights`).
Elsewhere the context does nothing and the calls multiply as always.
"""
import contextlib

from tflottery.masking import fast_path
from tflottery.masking.walk import masked_layers
from tflottery.training.strategy import is_tpu


@contextlib.contextmanager
def weights_masked_once(model, strategy):
    """Within a tf.function: Masked layers of `model` traced inside use products computed
    here, once.  The weights and masks must not change inside (an evaluation pass)."""
    values = {}
    if strategy.num_replicas_in_sync == 1 and not is_tpu(strategy):
        values = {id(layer): layer.masked_weights() for layer in masked_layers(model)}
    with fast_path.masked_weights_given(values):
        yield

