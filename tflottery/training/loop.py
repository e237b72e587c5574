"""The training loop every experiment uses.

Shape (as in Google's reference TPU code and Orbit): the host calls a
`tf.function` that runs `steps_per_loop` training steps, each through
`strategy.run`; between those calls the host evaluates, checkpoints, writes
metrics and prints progress.  Masks are never changed in here.

A phase trains `model` from `start_step` to `end_step` (iterations of the
LR schedule; rewinding starts at k > 0) and writes to `out_dir`:

  out_dir/metrics.jsonl      one JSON object per evaluation / progress line
  out_dir/checkpoints/       'latest' (for resuming), 'init', 'step_<N>', 'end'
  out_dir/tensorboard/       summaries
  out_dir/final.json         written last: its presence means "phase done"

Re-running a phase whose final.json exists returns the stored result; a phase
with a 'latest' checkpoint continues from it, with the same data stream
because the input pipeline can start at any step.
"""
import dataclasses
import json
import math
import os
import time
from typing import Dict, Iterable, Optional

import tensorflow as tf
from absl import logging

from tflottery import masking, models
from tflottery.errors import ConfigError, TrainingDivergedError
from tflottery.keras_compat import keras
from tflottery.runs import io
from tflottery.steps import to_iterations
from tflottery.training.checkpoints import Checkpointer
from tflottery.training import masked_updates
from tflottery.training.optimizers import OPTIMIZERS, build_optimizer
from tflottery.training.schedules import LotterySchedule


@dataclasses.dataclass(frozen=True)
class PhaseSteps:
    """All step quantities of a phase, resolved to iterations."""

    total: int          # length of the LR schedule / of full training
    start: int          # first step of this phase (k for rewinding)
    end: int            # last step of this phase
    eval_every: int
    named: Dict[str, int]   # named checkpoints: name -> step

    @classmethod
    def resolve(cls, hp, iterations_per_epoch: int, start_step=0, end_step=None,
                extra_checkpoints: Iterable = ()):
        """Step strings ('2ep') are resolved and dilated; plain ints are taken as
        iterations already resolved (and dilated) by the caller."""
        ipe, dil = iterations_per_epoch, hp.dilation

        def iters(value):
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            return to_iterations(value, ipe, dil)

        total = to_iterations(hp.training_steps, ipe, dil)
        if total <= 0:
            raise ConfigError(f"training_steps must be positive, got {hp.training_steps!r}")
        start = iters(start_step)
        end = total if end_step is None else iters(end_step)
        if not 0 <= start <= end <= total:
            raise ConfigError(
                f"phase from step {start} to {end} does not fit in training of {total} steps "
                f"({hp.training_steps}); choose steps at most {hp.training_steps}")
        eval_every = to_iterations(hp.eval_every, ipe, dil)
        if eval_every <= 0:
            raise ConfigError(f"eval_every must be positive, got {hp.eval_every!r}")
        if eval_every > total:
            raise ConfigError(
                f"eval_every {hp.eval_every!r} ({eval_every} it) is past the end of training "
                f"({hp.training_steps} = {total} it); make it at most training_steps")
        named = {"init": start, "end": end}
        for value in tuple(hp.checkpoint_steps) + tuple(extra_checkpoints):
            step = iters(value)
            if step > total:
                raise ConfigError(
                    f"checkpoint step {value!r} ({step} iterations) is past the end of training "
                    f"({hp.training_steps} = {total} iterations)")
            if start <= step <= end:
                named[f"step_{step}"] = step
        return cls(total, start, end, eval_every, named)


def build_schedule(hp, total_steps: int, iterations_per_epoch: int,
                   offset: int = 0) -> LotterySchedule:
    milestones = []
    for m in hp.milestones:
        step = to_iterations(m, iterations_per_epoch, hp.dilation)
        if step > total_steps:
            raise ConfigError(f"LR milestone {m!r} ({step} it) is past the end of training "
                              f"({total_steps} it)")
        milestones.append(step)
    warmup = to_iterations(hp.warmup, iterations_per_epoch, hp.dilation)
    if warmup > total_steps:
        raise ConfigError(f"warmup {hp.warmup!r} is longer than training ({total_steps} it)")
    return LotterySchedule(hp.lr, hp.schedule, total_steps, milestones, hp.gamma,
                           hp.final_lr, warmup, offset=offset)


def validate_training(hp, iterations_per_epoch: int, start_step=0, end_step=None,
                      extra_checkpoints: Iterable = ()) -> PhaseSteps:
    """Check every training setting without building anything; return the steps."""
    steps = PhaseSteps.resolve(hp, iterations_per_epoch, start_step, end_step, extra_checkpoints)
    if hp.steps_per_loop < 1:
        raise ConfigError(f"steps_per_loop must be >= 1, got {hp.steps_per_loop}")
    if hp.weight_decay < 0 or not 0 <= hp.label_smoothing < 1:
        raise ConfigError("weight_decay must be >= 0 and label_smoothing in [0, 1)")
    if hp.aux_loss_weight < 0:
        raise ConfigError(f"aux_loss_weight must be >= 0, got {hp.aux_loss_weight}")
    OPTIMIZERS.get(hp.optimizer)
    build_schedule(hp, steps.total, iterations_per_epoch)
    return steps


def weight_decay_variables(model) -> list:
    """Trainable variables of every layer except BatchNormalization ones."""
    bn_ids = set()
    for module in model.submodules:
        if isinstance(module, keras.layers.BatchNormalization):
            bn_ids.update(id(v) for v in module.trainable_variables)
    return [v for v in model.trainable_variables if id(v) not in bn_ids]


class Trainer:
    """Trains one phase of one model under a strategy (see module docstring)."""

    def __init__(self, strategy, model, dataset, hp, data_seed: int, out_dir: str,
                 start_step=0, end_step=None, extra_checkpoints: Iterable = (),
                 writable: bool = True, progress_every_seconds: float = 10.0,
                 mask_hook=None):
        """mask_hook: None, or an object with `steps` (the steps at which it
        acts) and `__call__(model, step)`, which may change the masks; the
        loop stops at those steps and calls it on the host, then zeroes the
        newly pruned weights (the training step trusts that pruned weights
        are zero: see masking/fast_path.py and training/masked_updates.py)."""
        self.strategy = strategy
        self.mask_hook = mask_hook
        self.model = model
        self.dataset = dataset
        self.hp = hp
        self.data_seed = int(data_seed)
        self.out_dir = out_dir
        self.writable = writable
        self.progress_every_seconds = progress_every_seconds
        self.steps = validate_training(hp, dataset.iterations_per_epoch, start_step, end_step,
                                       extra_checkpoints)
        # The optimizer counts this phase's iterations from 0 (so Adam's bias
        # correction starts afresh, as with a new optimizer in PyTorch/open_lth);
        # the schedule adds the phase's start step to find its place.
        schedule = build_schedule(hp, self.steps.total, dataset.iterations_per_epoch,
                                  offset=self.steps.start)
        self.schedule = schedule
        with strategy.scope():
            self.optimizer = build_optimizer(
                hp, schedule, model, xla=hp.xla_update and masked_updates.xla_available(strategy))
            self.optimizer.build(model.trainable_variables)
            self.train_loss = keras.metrics.Mean("train_loss")
            self.train_acc = keras.metrics.SparseCategoricalAccuracy("train_accuracy")
            self.eval_loss = keras.metrics.Mean("eval_loss")
            self.eval_acc = keras.metrics.SparseCategoricalAccuracy("eval_accuracy")
        self._decay_vars = weight_decay_variables(model)
        self._checkpointer = Checkpointer(os.path.join(out_dir, "checkpoints"), model,
                                          self.optimizer, writable)
        self._train_loop = None
        self._eval_fns = {}

    # ---- the replica-side computations ----
    def _loss(self, labels, logits):
        labels = tf.cast(labels, tf.int32)
        logits = tf.cast(logits, tf.float32)
        if self.hp.label_smoothing:
            onehot = tf.one_hot(labels, tf.shape(logits)[-1])
            return keras.losses.categorical_crossentropy(
                onehot, logits, from_logits=True, label_smoothing=self.hp.label_smoothing)
        return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)

    def _replica_train_step(self, images, labels):
        with tf.GradientTape() as tape:
            outputs = self.model(images, training=True)
            logits = models.main_logits(outputs)
            per_example = self._loss(labels, logits)
            objective = per_example
            if isinstance(outputs, (list, tuple)):
                # Auxiliary classifiers (Inception-v3's) join the objective with
                # weight aux_loss_weight, as in the reference; the train metrics
                # stay those of the main classifier, comparable with evaluation.
                for aux_logits in outputs[1:]:
                    objective += self.hp.aux_loss_weight * self._loss(labels, aux_logits)
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

    def _replica_eval_step(self, images, labels):
        logits = models.eval_logits(self.model, images, self.dataset.info.num_classes)
        # Labels < 0 mark padding (static-shape datasets fill their last batch
        # with them, see data/imagenet.py): weight 0 in both metrics.
        labels = tf.cast(labels, tf.int32)
        real = labels >= 0
        labels = tf.where(real, labels, tf.zeros_like(labels))
        weight = tf.cast(real, tf.float32)
        self.eval_loss.update_state(self._loss(labels, logits), sample_weight=weight)
        self.eval_acc.update_state(labels, logits, sample_weight=weight)

    def make_train_fn(self, start_step: int):
        """A function `f(n)` that trains n more steps on the data stream from `start_step`.

        One tf.function trace serves every n (it is a tensor).  `run()` uses it;
        benchmarks call it directly to time training steps alone.
        """
        dist = self.strategy.distribute_datasets_from_function(
            lambda ctx: self.dataset.train_dataset(self.data_seed, ctx, start_step=start_step))
        iterator = iter(dist)
        strategy = self.strategy

        @tf.function
        def train_loop(num_steps):
            for _ in tf.range(num_steps):
                images, labels = next(iterator)
                strategy.run(self._replica_train_step, args=(images, labels))

        def run_steps(n):
            # Traced (on the first call) on the masking fast path: pruned
            # weights are zero now (below), the optimizer keeps them zero, and
            # whoever changes a mask between calls zeroes them again (run()).
            with masking.trusted_zero_pruned_weights():
                return train_loop(tf.constant(n, tf.int64))
        masking.zero_pruned_weights(self.model)
        return run_steps

    def evaluate(self, split: str = "test") -> dict:
        """Loss and accuracy (in [0, 1]) of the current model on a whole split."""
        if split not in self._eval_fns:
            dist = self.strategy.distribute_datasets_from_function(
                lambda ctx: self.dataset.eval_dataset(split, ctx))
            strategy = self.strategy

            @tf.function
            def eval_fn():
                for images, labels in dist:
                    strategy.run(self._replica_eval_step, args=(images, labels))
            self._eval_fns[split] = eval_fn
        self.eval_loss.reset_state()
        self.eval_acc.reset_state()
        self._eval_fns[split]()
        return {"loss": float(self.eval_loss.result()), "accuracy": float(self.eval_acc.result())}

    # ---- the host loop ----
    def _metrics_path(self):
        return os.path.join(self.out_dir, "metrics.jsonl")

    def _append_metrics(self, record: dict) -> None:
        if not self.writable:
            return
        path = self._metrics_path()
        old = io.read_text(path) if io.exists(path) else ""
        io.atomic_write_text(path, old + json.dumps(record, sort_keys=True) + "\n")

    def _drop_metrics_after(self, step: int) -> None:
        """On resume, forget records written after the checkpoint we restored."""
        path = self._metrics_path()
        if not (self.writable and io.exists(path)):
            return
        lines = [l for l in io.read_text(path).splitlines() if l.strip()]
        kept = [l for l in lines if json.loads(l)["step"] <= step]
        if len(kept) != len(lines):
            io.atomic_write_text(path, "".join(l + "\n" for l in kept))

    def _event_steps(self):
        s = self.steps
        events = set(s.named.values()) | {s.end}
        if self.mask_hook is not None:
            events.update(t for t in self.mask_hook.steps if s.start <= t < s.end)
        first_eval = (s.start // s.eval_every + 1) * s.eval_every
        events.update(range(first_eval, s.end, s.eval_every))
        return sorted(e for e in events if e >= s.start)

    def _checkpoint_info(self, step: int) -> dict:
        ipe = self.dataset.iterations_per_epoch
        return {"step": step, "epoch": step // ipe, "iteration_in_epoch": step % ipe,
                "data_seed": self.data_seed}

    def run(self) -> dict:
        """Train the phase (or resume it, or return it if done); returns final metrics."""
        final_path = os.path.join(self.out_dir, "final.json")
        if io.exists(final_path):
            logging.info("phase %s already finished; skipping", self.out_dir)
            return io.read_json(final_path)
        s = self.steps
        if self._checkpointer.restore_latest():
            step = s.start + int(self.optimizer.iterations.numpy())
            logging.info("resuming %s at step %d", self.out_dir, step)
            self._drop_metrics_after(step)
        else:
            step = s.start
            if self.writable:
                io.makedirs(self.out_dir)

        train_loop = self.make_train_fn(step)
        writer = (tf.summary.create_file_writer(os.path.join(self.out_dir, "tensorboard"))
                  if self.writable else tf.summary.create_noop_writer())

        self._save_named_at(step)
        if step == s.start and s.start != s.end:
            self._record_eval(step, writer)
        last_print, t_loop, steps_since = time.time(), time.time(), 0
        hook_steps = set(self.mask_hook.steps) if self.mask_hook is not None else set()
        if step in hook_steps:
            # Also on resuming at a hook step: the checkpoint of that step was
            # taken before the hook acted (a hook is deterministic, so
            # repeating it is harmless).
            self._apply_mask_hook(step)
        for event in [e for e in self._event_steps() if e > step]:
            while step < event:
                n = min(self.hp.steps_per_loop, event - step)
                train_loop(n)
                step += n
                steps_since += n
                loss = float(self.train_loss.result())
                if not math.isfinite(loss):
                    raise TrainingDivergedError(
                        f"loss became {loss} by step {step}: training diverged; lower "
                        f"TrainingHparams.lr (now {self.hp.lr}) or add warmup")
                now = time.time()
                if now - last_print >= self.progress_every_seconds or step == event == s.end:
                    rate = steps_since / max(now - t_loop, 1e-9)
                    logging.info("step %d/%d  %.1f steps/s  loss %.4f  train acc %.2f%%  lr %.3g",
                                 step, s.end, rate, loss, 100 * float(self.train_acc.result()),
                                 float(self.schedule(step - s.start)))
                    last_print = now
            record = {"step": step, "train_loss": float(self.train_loss.result()),
                      "train_accuracy": float(self.train_acc.result()),
                      "steps_per_second": steps_since / max(time.time() - t_loop, 1e-9)}
            with writer.as_default(step=step):
                tf.summary.scalar("train/loss", record["train_loss"])
                tf.summary.scalar("train/accuracy", record["train_accuracy"])
            self.train_loss.reset_state()
            self.train_acc.reset_state()
            self._append_metrics(record)
            self._record_eval(step, writer)
            self._save_named_at(step)
            self._checkpointer.save_latest(step)
            if step in hook_steps:
                self._apply_mask_hook(step)
            t_loop, steps_since = time.time(), 0

        final = self._final_result(step)
        if self.writable:
            io.atomic_write_json(final_path, final)
        writer.flush()
        return final

    def _apply_mask_hook(self, step):
        self.mask_hook(self.model, step)
        masking.zero_pruned_weights(self.model)

    def _record_eval(self, step, writer):
        is_eval = step == self.steps.end or step % self.steps.eval_every == 0
        if not is_eval:
            return
        result = self.evaluate("test")
        self._last_eval = (step, result)
        with writer.as_default(step=step):
            tf.summary.scalar("test/loss", result["loss"])
            tf.summary.scalar("test/accuracy", result["accuracy"])
        self._append_metrics({"step": step, "test_loss": result["loss"],
                              "test_accuracy": result["accuracy"]})
        logging.info("step %d  test loss %.4f  test accuracy %.2f%%", step, result["loss"],
                     100 * result["accuracy"])
        if getattr(self.dataset.info, "num_holdout", 0):
            # The early-stopping metric (thesis 3.3.6) needs the holdout loss at every evaluation.
            holdout = self.evaluate("holdout")
            with writer.as_default(step=step):
                tf.summary.scalar("holdout/loss", holdout["loss"])
                tf.summary.scalar("holdout/accuracy", holdout["accuracy"])
            self._append_metrics({"step": step, "holdout_loss": holdout["loss"],
                                  "holdout_accuracy": holdout["accuracy"]})

    def _save_named_at(self, step):
        for name, at in self.steps.named.items():
            if at == step and not self._checkpointer.has_named(name):
                self._checkpointer.save_named(name, self._checkpoint_info(step))

    def _final_result(self, step) -> dict:
        last = getattr(self, "_last_eval", None)
        result = last[1] if last and last[0] == step else self.evaluate("test")
        return {"step": step, "test_loss": result["loss"], "test_accuracy": result["accuracy"]}


def read_metrics(out_dir: str) -> list:
    """The JSON records of a phase's metrics.jsonl."""
    path = os.path.join(out_dir, "metrics.jsonl")
    if not io.exists(path):
        return []
    return [json.loads(l) for l in io.read_text(path).splitlines() if l.strip()]
