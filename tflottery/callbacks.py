"""Keras callbacks for training tflottery-masked models with `model.fit`.

tflottery's experiments train with their own loop; researchers with their
own `fit` code get the same guarantees from these callbacks:

* `KeepPrunedZero`: pruned weights stay exactly 0.0 in the stored weights.
  `Masked` already multiplies by the mask in the forward pass, so pruned
  weights get zero gradient and outputs are right; but an optimizer whose
  state predates a mask change (SGD momentum, Adam moments) keeps moving
  them, so checkpoints and exported models would drift from exact sparsity.
* `GradualPruning`: Zhu & Gupta's gradual magnitude pruning on tfmot's
  PolynomialDecay schedule, the same schedule and pruning step as the
  'gradual' experiment (both from pruning/gradual.py), in global training steps
  (`optimizer.iterations`, so it continues across `fit` calls).
* `SparsitySummaries`: TensorBoard scalars `density/total` and
  `density/<weight name>`, written as tflottery's own training writes them
  (training/summaries.py).

Typical use::

    model = masking.wrap(model)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), loss)
    model.fit(x, y, epochs=10, callbacks=[
        callbacks.GradualPruning(final_sparsity=0.9, end_step="8ep", frequency="50it"),
        callbacks.SparsitySummaries("logs/run1")])
"""
import dataclasses
import os
from typing import Optional

import tensorflow as tf

from tflottery import masking
from tflottery.errors import ConfigError
from tflottery.keras_compat import keras
from tflottery.masking.walk import masked_pairs
from tflottery.pruning.gradual import (GradualHparams, GradualPruningHook, check_schedule,
                                       polynomial_decay, pruning_steps)
from tflottery.pruning.names import excluded_weights
from tflottery.steps import Step, to_iterations
from tflottery.training import summaries


def _zeroing_function(model):
    """A tf.function setting every pruned entry of the model's weights to 0.0.

    masking.zero_pruned_weights does the same eagerly through NumPy, which
    is fine between phases; after every batch a traced pass is much cheaper.
    tf.where (not weight * mask) gives +0.0 and drops NaN/inf in pruned entries.
    """
    pairs = [pair for _, pair in sorted(masked_pairs(model).items())]

    @tf.function
    def zero():
        for weight, mask in pairs:
            weight.assign(tf.where(tf.cast(mask, tf.bool), weight, tf.zeros_like(weight)))

    return zero


class KeepPrunedZero(keras.callbacks.Callback):
    """After every training batch, pruned entries of the stored weights are exactly 0.0."""

    def __init__(self):
        super().__init__()
        self._zero = None

    def on_train_begin(self, logs=None):
        self._zero = _zeroing_function(self.model)
        self._zero()

    def on_train_batch_end(self, batch, logs=None):
        self._zero()


class GradualPruning(KeepPrunedZero):
    """Gradual magnitude pruning (Zhu & Gupta 2018) during `fit`.

    Args:
      hparams: a GradualHparams (e.g. bound from gin); default GradualHparams().
      **overrides: its fields by name: initial_sparsity, final_sparsity,
        begin_step, end_step, frequency (steps such as '2ep' or '500it', or
        plain integers of iterations; epochs are `fit`'s steps per epoch),
        power, scope ('layerwise', 'global' or an N:M pattern such as '2:4'),
        excluded_layers.

    Before the batch at each pruning step (begin_step, every `frequency`
    steps, and end_step), the lowest-magnitude remaining weights are pruned
    to the schedule's sparsity; pruned weights stay pruned and exactly zero.
    """

    def __init__(self, hparams: Optional[GradualHparams] = None, **overrides):
        super().__init__()
        overrides = {k: f"{v}it" if isinstance(v, int) and k.endswith(("_step", "frequency"))
                     else v for k, v in overrides.items()}
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(GradualHparams)})
        if unknown:
            raise ConfigError(f"GradualPruning got unknown settings {', '.join(unknown)}; "
                              f"it takes the fields of GradualHparams")
        self.hp = dataclasses.replace(hparams or GradualHparams(), **overrides)
        self._hook = None
        self._next = 0

    def _resolve(self):
        """(begin, end, frequency) in iterations, checked as the gradual experiment checks them."""
        hp = self.hp
        per_epoch = (self.params or {}).get("steps")
        steps = (hp.begin_step, hp.end_step, hp.frequency)
        if per_epoch is None and any(Step.parse(s).ep for s in steps):
            raise ConfigError("GradualPruning steps are given in epochs but fit does not know "
                              "its steps per epoch; give them in iterations ('500it')")
        begin, end, frequency = (to_iterations(s, per_epoch or 1) for s in steps)
        check_schedule(hp, begin, end, frequency)
        return begin, end, frequency

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        begin, end, frequency = self._resolve()
        steps = pruning_steps(begin, end, frequency)
        excluded = excluded_weights(self.hp.excluded_layers,
                                    list(masking.prunable_variables(self.model)))
        self._hook = GradualPruningHook(polynomial_decay(self.hp, begin, end, frequency), steps,
                                        self.hp.scope, excluded, log_path=None, writable=False)
        now = int(self.model.optimizer.iterations.numpy())
        self._next = sum(1 for s in steps if s < now)   # steps passed in earlier fit calls
        # A pruning due before the first batch (begin_step 0, or where an earlier fit
        # stopped) happens here: then it is not timed as a batch hook, and Keras does not
        # warn that on_train_batch_begin "is slow compared to the batch time".
        self._prune_due(now)

    def on_train_batch_begin(self, batch, logs=None):
        self._prune_due(int(self.model.optimizer.iterations.numpy()))

    def _prune_due(self, now: int) -> None:
        """Prune to the latest scheduled sparsity whose step is <= `now`, if not done yet."""
        steps = self._hook.steps
        due = None
        while self._next < len(steps) and steps[self._next] <= now:
            due = steps[self._next]   # with steps_per_execution > 1, several may be due
            self._next += 1
        if due is not None:
            self._hook(self.model, due)


class SparsitySummaries(keras.callbacks.Callback):
    """TensorBoard scalars density/total and density/<weight name> of the masks.

    Written at the start of training and at the end of every epoch, at the
    global step (`optimizer.iterations`), into `log_dir`/train: the run that
    keras' TensorBoard callback writes the training loss to for the same
    `log_dir`, and the run tflottery's own phases write density to
    (training/summaries.py), so TensorBoard shows density beside the loss
    instead of as a run of its own.
    """

    def __init__(self, log_dir: str):
        super().__init__()
        self.log_dir = log_dir
        self._writer = None

    def _write(self):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(
                os.path.join(self.log_dir, summaries.TRAIN))
        summaries.write_density(self._writer, int(self.model.optimizer.iterations.numpy()),
                                self.model)
        self._writer.flush()

    def on_train_begin(self, logs=None):
        self._write()

    def on_epoch_end(self, epoch, logs=None):
        self._write()
