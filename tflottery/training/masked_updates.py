"""Optimizer updates that keep pruned weights at zero, fused per weight by XLA.

The training step computes with the stored weights directly (the masking fast
path, `masking/fast_path.py`), so something else must guarantee that a pruned
entry stays exactly 0.0.  That is done here: after the optimizer's rule has
updated a masked weight, its pruned entries are set back to 0.0.  This is what
open_lth's PrunedModel does (it re-applies the mask to the weights before every
forward pass).  The gradient itself is not masked, so momentum and Adam's
moments do fill in at pruned entries; they never reach the weights, and every
unpruned entry follows exactly the rule it would follow with a masked gradient
(the rules are elementwise).  Re-zeroing the weight also covers a mask that
changes mid-phase (gradual pruning), where the optimizer state of the newly
pruned entries is non-zero however the gradient is treated.

Why in the optimizer rather than by multiplying in the forward pass (whose
backward pass then masks the gradient): on a CPU a LeNet-300-100 training step is short
(about 1.4 ms), so every elementwise pass over its 784x300 kernel -- the
forward multiply, the backward multiply that comes with it -- costs 2-3% of a
step.  tf_keras can compile each weight's update with XLA (its `jit_compile`,
which it switches on only when it sees a GPU); there the re-zeroing fuses with
the dozen elementwise ops of the Adam or momentum rule and costs about 2% of
the update, and the rule itself runs almost twice as fast, for masked and
unmasked models alike (benchmarks/masked_overhead.py).  Masking the gradient
inside the same fused update costs eight times more (24 against 3 us on the
784x300 kernel, measured; XLA seems to split that update into several loops).

`TrainingHparams.xla_update=False` keeps the plain TensorFlow ops; the two
agree to float rounding.  On TPUs the whole step is compiled by XLA anyway.
"""
import functools

import tensorflow as tf

from tflottery.masking.walk import masked_layers, masked_pairs
from tflottery.training.strategy import is_tpu


# Weights with fewer entries than this are updated with plain ops even when
# XLA is on: their elementwise passes are cheap, while XLA compilation is not
# (under a strategy with replicas, one per weight and device, tens of
# milliseconds each) -- biases and BatchNorm parameters would otherwise
# triple the compile time of a ResNet.
XLA_MIN_ENTRIES = 4096


class _MaskedUpdates:
    """Mixin for a tf_keras optimizer class: re-zero pruned weights after each update."""

    def _distributed_apply_gradients_fn(self, distribution, grads_and_vars, **kwargs):
        # tf_keras compiles each large weight's update on its own: one XLA
        # compilation a weight, 12 of them (0.55 s) in ResNet-20's first step on
        # a CPU.  Where one device holds every weight (the default strategy),
        # the large weights' updates are one XLA program instead, compiled once.
        # The updates are independent (each reads the iteration count, which
        # moves on after all of them), so their order does not matter.
        if not (self.jit_compile and not self.use_ema and not tf.distribute.has_strategy()
                and distribution is tf.distribute.get_strategy()):
            return super()._distributed_apply_gradients_fn(distribution, grads_and_vars, **kwargs)
        large = []
        for gradient, variable in grads_and_vars:
            if variable.shape.num_elements() < XLA_MIN_ENTRIES:
                self._update_step(gradient, variable)
            else:
                large.append((gradient, variable))
        if large:
            gradients, variables = zip(*large)
            self._fused_update_steps(list(gradients), list(variables),
                                     tuple(id(self._var_key(v)) for v in variables))
        return self.iterations.assign_add(1)

    @tf.function(jit_compile=True, autograph=False)
    def _fused_update_steps(self, gradients, variables, key):
        # `key` (the weights' ids): a trace for every set of weights, as below.
        for gradient, variable in zip(gradients, variables):
            self._update_step(gradient, variable)

    def _update_step_xla(self, gradient, variable, key):
        # tf_keras calls this for each weight when `jit_compile` is on, under a
        # strategy with replicas (see _distributed_apply_gradients_fn).
        if variable.shape.num_elements() < XLA_MIN_ENTRIES:
            return self._update_step(gradient, variable)
        return self._fused_update_step(gradient, variable, key)

    @tf.function(jit_compile=True, autograph=False)
    def _fused_update_step(self, gradient, variable, key):
        # `key` (the weight's id) gives every weight its own trace, as in
        # tf_keras: a trace reads the optimizer state of the weight it saw.
        # Without autograph: the update rules of tf_keras's SGD and Adam (the
        # only ones build_optimizer makes) branch on Python values only, and
        # converting them was 10 ms a weight in every run's first trace.
        return self._update_step(gradient, variable)

    @tf.__internal__.tracking.no_automatic_dependency_tracking
    def set_update_masks(self, model) -> None:
        """Use the mask variables of `model` (a wrapped tf_keras model, or a plain one).

        Not tracked by the optimizer's checkpoint: the masks belong to the model.
        """
        pairs = masked_pairs(model).values() if masked_layers(model) else ()
        self._update_masks = {self._var_key(weight): mask for weight, mask in pairs}

    def update_step(self, gradient, variable):
        result = super().update_step(gradient, variable)
        mask = getattr(self, "_update_masks", {}).get(self._var_key(variable))
        if mask is None:
            return result
        # Read inside the per-device update, so under a MirroredStrategy each
        # device uses its own copy of the (mirrored) mask.  A product rather
        # than tf.where: a third of the cost with plain ops (XLA makes either
        # a select); a pruned entry may then be -0.0, which equals 0.0.
        return variable.assign(variable * tf.cast(mask, variable.dtype))


@functools.lru_cache(maxsize=None)
def masked_class(optimizer_class):
    """`optimizer_class` with mask-respecting updates (one subclass per class)."""
    return type(f"Masked{optimizer_class.__name__}", (_MaskedUpdates, optimizer_class), {})


def xla_available(strategy) -> bool:
    """Whether to compile the per-weight updates with XLA under `strategy`.

    Not on TPUs (their step is compiled whole) and not where tf_keras says XLA
    is unavailable (e.g. Apple-silicon Macs).
    """
    if is_tpu(strategy):
        return False
    try:
        from tf_keras.src.utils import tf_utils
        return bool(tf_utils.can_jit_compile(warn=False))
    except (ImportError, AttributeError):
        return True
