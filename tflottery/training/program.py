"""One training program per run: the model, its optimizer and the traced device functions.

Why.  On a TPU every `tf.function` trace is a whole-program XLA compilation
(seconds for LeNet, a minute or more for ResNet-50), and even on a CPU the
trace and graph build of a short phase cost more than its training steps.
An IMP run has tens of phases (levels, branches, LMC copies, PaI ablations)
that differ only in the values of variables: weights, masks, optimizer slots,
the iteration counter and the schedule's offset.  So a run builds one
`TrainingProgram` per architecture and training configuration and drives every
phase through it (`Trainer(..., program=...)`); between phases only variables
change, as in Orbit and Google's reference TPU code.

What it holds, built once:
  * the masked model and a masked optimizer (training/masked_updates.py),
    built for the model's trainable variables;
  * the schedule's offset, an int64 variable (the phase's first schedule step);
  * the training and evaluation metrics;
  * `train_loop(iterator, num_steps)`, traced once: every phase passes its own
    distributed iterator over its own data stream (its seed, its start step),
    and a new iterator with the same element spec does not retrace;
  * one evaluation function per split, traced once, reading the split from
    an input pipeline built once (split_pass.py; the evaluation data are the
    same in every phase);
  * one `tf.train.Checkpoint` of model and optimizer, written to each phase's
    directory.

`begin_phase(start_step)` puts the optimizer back in its initial state (the
iteration counter and every slot variable zero, exactly what a fresh optimizer
holds, so a phase is bit-identical to one trained with a new optimizer) and
sets the offset.  Weights and masks are the caller's to set.
"""
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from tflottery import masking, models
from tflottery.autograph_status import autograph_on
from tflottery.keras_compat import keras
from tflottery.training import masked_updates, stored_weights
from tflottery.training.iterate import for_steps
from tflottery.training.optimizers import build_optimizer
from tflottery.training.phases import build_schedule, validate_training
from tflottery.training.split_pass import SplitPass


def weight_decay_variables(model) -> list:
    """Trainable variables of every layer except BatchNormalization ones."""
    bn_ids = set()
    for module in model.submodules:
        if isinstance(module, keras.layers.BatchNormalization):
            bn_ids.update(id(v) for v in module.trainable_variables)
    return [v for v in model.trainable_variables if id(v) not in bn_ids]


def variable_values(model) -> List[np.ndarray]:
    """Every variable of `model` (weights, BatchNorm statistics, masks) as host arrays."""
    return [v.numpy() for v in model.variables]


def assign_values(model, values) -> None:
    """Set every variable of `model` from `variable_values` of a model of the same architecture."""
    variables = model.variables
    if len(variables) != len(values):
        raise ValueError(f"expected {len(variables)} values, got {len(values)}")
    for variable, value in zip(variables, values):
        variable.assign(value)


class TrainingProgram:
    """The model, optimizer and traced functions that every phase of a run reuses.

    strategy: the tf.distribute strategy the model was built under.
    model: a (masked) tf_keras model built under `strategy.scope()`.
    dataset: a tflottery data.Dataset (train_dataset / eval_dataset / info).
    hp: the TrainingHparams: the schedule and optimizer are built from them
      once, so phases with other training settings need another program.
    """

    def __init__(self, strategy, model, dataset, hp, initialisation: Optional[dict] = None):
        """initialisation: how to build `model`'s initial values (W0) again, as
        experiments.context.initialisation_recipe gives it; None if unknown.  A
        named checkpoint of W0 (under a mask) then records it instead of tensors
        (stored_weights.py)."""
        self.strategy = strategy
        self.model = model
        self.dataset = dataset
        self.hp = hp
        ipe = dataset.iterations_per_epoch
        total = validate_training(hp, ipe).total
        with strategy.scope():
            self.offset = tf.Variable(0, dtype=tf.int64, trainable=False,
                                      name="schedule_offset")
            self.schedule = build_schedule(hp, total, ipe, offset=self.offset)
            self.optimizer = build_optimizer(
                hp, self.schedule, model,
                xla=hp.xla_update and masked_updates.xla_available(strategy))
            self.optimizer.build(model.trainable_variables)
            self.train_loss = keras.metrics.Mean("train_loss")
            self.train_acc = keras.metrics.SparseCategoricalAccuracy("train_accuracy")
            self.eval_loss = keras.metrics.Mean("eval_loss")
            self.eval_acc = keras.metrics.SparseCategoricalAccuracy("eval_accuracy")
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=self.optimizer)
        self.initial_values = self._built_values = variable_values(model)
        self.initialisation = initialisation
        self._note_initialisation()
        self._decay_vars = weight_decay_variables(model)
        self._train_loop = None
        self._eval_fns: Dict[str, tf.types.experimental.GenericFunction] = {}

    # ---- between phases ----
    def begin_phase(self, start_step: int) -> None:
        """Fresh optimizer state, the schedule at `start_step`, metrics reset."""
        for variable in self.optimizer.variables:
            variable.assign(tf.zeros(variable.shape, variable.dtype))
        self.offset.assign(int(start_step))
        for metric in (self.train_loss, self.train_acc, self.eval_loss, self.eval_acc):
            metric.reset_state()

    def load_initial_weights(self) -> None:
        """Put back the values every variable had when the program was built (W0)."""
        assign_values(self.model, self.initial_values)
        self._note_initialisation()

    def _note_initialisation(self) -> None:
        # Only while initial_values are the ones built (an experiment may put another
        # replicate's W0 there for a while: lmc's independent_imp).
        if self.initialisation is not None and self.initial_values is self._built_values:
            stored_weights.note_initialisation(self.model, self.initialisation,
                                               self.initial_values)

    # ---- the replica-side computations ----
    def loss(self, labels, logits):
        """Per-example cross-entropy (with the configured label smoothing), float32."""
        labels = tf.cast(labels, tf.int32)
        logits = tf.cast(logits, tf.float32)
        if self.hp.label_smoothing:
            onehot = tf.one_hot(labels, tf.shape(logits)[-1])
            return keras.losses.categorical_crossentropy(
                onehot, logits, from_logits=True, label_smoothing=self.hp.label_smoothing)
        return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)

    def replica_train_step(self, images, labels):
        with tf.GradientTape() as tape:
            with autograph_on():
                outputs = self.model(images, training=True)
            logits = models.main_logits(outputs)
            per_example = self.loss(labels, logits)
            objective = per_example
            if isinstance(outputs, (list, tuple)):
                # Auxiliary classifiers (Inception-v3's) join the objective with
                # weight aux_loss_weight, as in the reference; the train metrics
                # stay those of the main classifier, comparable with evaluation.
                for aux_logits in outputs[1:]:
                    objective += self.hp.aux_loss_weight * self.loss(labels, aux_logits)
            loss = tf.nn.compute_average_loss(objective,
                                              global_batch_size=self.dataset.batch_size)
            if self.hp.weight_decay:
                l2 = tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32)))
                               for v in self._decay_vars])
                loss += tf.nn.scale_regularization_loss(0.5 * self.hp.weight_decay * l2)
            if self.model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
        variables = self.model.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        self.train_loss.update_state(per_example)
        self.train_acc.update_state(labels, logits)

    def replica_eval_step(self, images, labels):
        with autograph_on():
            logits = models.eval_logits(self.model, images)
        # Labels < 0 mark padding (evaluation datasets fill their last batch
        # with them so every batch has the same static shape): weight 0.
        labels = tf.cast(labels, tf.int32)
        real = labels >= 0
        labels = tf.where(real, labels, tf.zeros_like(labels))
        weight = tf.cast(real, tf.float32)
        self.eval_loss.update_state(self.loss(labels, logits), sample_weight=weight)
        self.eval_acc.update_state(labels, logits, sample_weight=weight)

    # ---- the traced functions ----
    def train_iterator(self, data_seed: int, start_step: int):
        """A distributed iterator over the training stream of `data_seed` from `start_step`."""
        dist = self.strategy.distribute_datasets_from_function(
            lambda ctx: self.dataset.train_dataset(data_seed, ctx, start_step=start_step))
        return iter(dist)

    @property
    def train_loop(self):
        """`train_loop(iterator, num_steps)`: num_steps training steps (traced once).

        Traced without autograph (the loop is `iterate.for_steps`, the
        tf.while_loop autograph would make of it): autograph's transpiling of the loop,
        the step and every tflottery function the step calls took more than
        half of the trace (0.7 of 1.0 s CPU for LeNet-300-100, measured at
        load 6-7; 0.3 s without), in every run's first phase.  The model is
        still called with autograph on (`autograph_on`), as under a plain
        tf.function: a user's model may branch on tensors.
        """
        if self._train_loop is None:
            strategy = self.strategy

            def one_step(images, labels, state):
                strategy.run(self.replica_train_step, args=(images, labels))
                return state

            @tf.function(autograph=False)
            def train_loop(iterator, num_steps):
                for_steps(iterator, num_steps, one_step)
            self._train_loop = train_loop
        return self._train_loop

    def train_steps(self, iterator, num_steps: int) -> None:
        """Run `num_steps` training steps on `iterator` (pruned weights must be zero now)."""
        # Traced (on the first call) on the masking fast path: the caller has
        # zeroed the pruned weights, the optimizer keeps them zero, and
        # whoever changes a mask between calls zeroes them again.
        with masking.trusted_zero_pruned_weights():
            self.train_loop(iterator, tf.constant(num_steps, tf.int64))

    def eval_function(self, split: str):
        """A no-argument function: one pass over `split` into the eval metrics.

        The evaluation data are the same in every phase: each split's pipeline
        is built once (split_pass.py) and one traced function serves every
        split and every phase.
        """
        if split not in self._eval_fns:
            split_pass = SplitPass(self.strategy, self.dataset, split)

            def body(images, labels, state):
                self.strategy.run(self.replica_eval_step, args=(images, labels))
                return state

            def eval_pass():
                with masking.weights_masked_once(self.model, self.strategy):
                    split_pass.for_each_batch(body)
            # Without autograph where the pass allows it, as train_loop (whose
            # docstring says why); the model is called with it.
            self._eval_fns[split] = tf.function(eval_pass,
                                                autograph=split_pass.needs_autograph)
        return self._eval_fns[split]

    def evaluate(self, split: str = "test") -> dict:
        """Loss and accuracy (in [0, 1]) of the current model on a whole split."""
        self.eval_loss.reset_state()
        self.eval_acc.reset_state()
        self.eval_function(split)()
        return {"loss": float(self.eval_loss.result()), "accuracy": float(self.eval_acc.result())}

    def tracing_counts(self) -> Dict[str, int]:
        """How often each traced function has been traced (for tests and benchmarks)."""
        counts = {"train": self._train_loop.experimental_get_tracing_count()
                  if self._train_loop is not None else 0}
        counts.update({f"eval_{split}": fn.experimental_get_tracing_count()
                       for split, fn in self._eval_fns.items()})
        return counts
