"""The host loop of one training phase; every experiment uses it.

Shape (as in Google's reference TPU code and Orbit): the host calls a
`tf.function` that runs `steps_per_loop` training steps, each through
`strategy.run`; between those calls the host evaluates, checkpoints, writes
metrics and prints progress.  Masks are never changed in here.  The traced
functions, the optimizer and the model belong to a `TrainingProgram`
(program.py) that a run builds once and hands to the Trainer of every phase,
so phases after the first compile nothing.

A phase trains `model` from `start_step` to `end_step` (iterations of the
LR schedule; rewinding starts at k > 0) and writes to `out_dir`:

  out_dir/metrics.jsonl      one JSON object per evaluation / progress line (appended)
  out_dir/checkpoints/       'init', 'step_<N>', 'end'; and 'latest' (for
                             resuming) while the phase runs, removed at its end
  out_dir/tensorboard/       summaries, Keras' layout (summaries.py): runs train/
                             and test/ with the same tags (loss, accuracy in %),
                             learning rate, steps/s and density in train/, the
                             run's hyperparameters (TensorBoard's HParams plugin)
  out_dir/final.json         written last: its presence means "phase done"

Re-running a phase whose final.json exists returns the stored result; a phase
with a 'latest' checkpoint continues from it, with the same data stream
because the input pipeline can start at any step, after dropping the metrics
recorded past that checkpoint; a phase killed before its first 'latest'
starts afresh (its partial metrics and summaries removed).  A phase of zero
steps (rewinding to step 0) builds no input pipeline and writes no summaries:
it saves its one state as 'init' and 'end' and evaluates it once.
"""
import json
import math
import os
import time
from typing import Iterable, Optional

import tensorflow as tf
from absl import logging

from tflottery import masking
from tflottery import stop
from tflottery.errors import TrainingDivergedError
from tflottery.runs import damage, io, jsonl, layout, step_log
from tflottery.training import checkpoints, metrics_log, summaries
from tflottery.training.checkpoints import Checkpointer
from tflottery.training.run_log import duration
from tflottery.training.phases import (  # noqa: F401  (re-exported: the loop's vocabulary)
    PhaseSteps, build_schedule, validate_training)
from tflottery.training.program import TrainingProgram, weight_decay_variables  # noqa: F401


class Trainer:
    """Trains one phase of one model under a strategy (see module docstring)."""

    def __init__(self, strategy, model, dataset, hp, data_seed: int, out_dir: str,
                 start_step=0, end_step=None, extra_checkpoints: Iterable = (),
                 writable: bool = True, progress_every_seconds: float = 10.0,
                 mask_hook=None, program: Optional[TrainingProgram] = None,
                 phase_name: Optional[str] = None, run_log=None):
        """phase_name: what the logs call this phase ('level 3', 'level 3 /
        random_reinit', 'k=500 / copy 2'); default: the last two parts of
        out_dir.  run_log: the run's training.run_log.RunLog (ETA of the run,
        hyperparameters for TensorBoard), or None.

        mask_hook: None, or an object with `steps` (the steps at which it
        acts) and `__call__(model, step)`, which may change the masks; the
        loop stops at those steps and calls it on the host, then zeroes the
        newly pruned weights (the training step trusts that pruned weights
        are zero: see masking/fast_path.py and training/masked_updates.py)
        unless the hook's `zeroes_pruned_weights` says it did so itself; a
        hook's `counts` ({weight name: (kept, size)}, or None) spares the
        density summary reading the masks back.
        A hook whose `skips_training_step` is true also takes the place of
        the weight update of its step: the loop takes that step's batch from
        the iterator unused and advances the iteration counter (and so the
        schedule) by one; no train record is written for an event reached
        without a trained step since the last record.

        program: the run's TrainingProgram for `model` (whose traced
        functions every phase reuses); None builds a private one.
        """
        if program is None:
            program = TrainingProgram(strategy, model, dataset, hp)
        elif program.model is not model or program.hp != hp:
            raise ValueError("the program was built for another model or other TrainingHparams")
        self.program = program
        self.strategy = strategy
        self.mask_hook = mask_hook
        self.model = model
        self.dataset = dataset
        self.hp = hp
        self.data_seed = int(data_seed)
        self.out_dir = out_dir
        self.writable = writable
        self.progress_every_seconds = progress_every_seconds
        self.phase_name = phase_name or default_phase_name(out_dir)
        self.run_log = run_log
        self._writers = None
        self.steps = validate_training(hp, dataset.iterations_per_epoch, start_step, end_step,
                                       extra_checkpoints)
        # The program now serves this phase: fresh optimizer state, the schedule at its start.
        program.begin_phase(self.steps.start)
        self.schedule = program.schedule
        self.optimizer = program.optimizer
        self.train_loss, self.train_acc = program.train_loss, program.train_acc
        self._checkpointer = self._new_checkpointer()

    def _new_checkpointer(self) -> Checkpointer:
        return Checkpointer(layout.checkpoints_dir(self.out_dir), self.model,
                            self.optimizer, self.writable, checkpoint=self.program.checkpoint)

    def make_train_fn(self, start_step: int):
        """A function `f(n)` that trains n more steps on the data stream from `start_step`.

        The program's one traced loop serves every n and every phase.
        `run()` uses it; benchmarks call it directly to time training steps
        alone (after `program.begin_phase`).
        """
        iterator = self.program.train_iterator(self.data_seed, start_step)
        self._iterator = iterator
        masking.zero_pruned_weights(self.model)
        return lambda n: self.program.train_steps(iterator, n)

    def evaluate(self, split: str = "test") -> dict:
        """Loss and accuracy (in [0, 1]) of the current model on a whole split."""
        return self.program.evaluate(split)

    # ---- the host loop ----
    def _metrics_path(self):
        return metrics_log.path_of(self.out_dir)

    def _append_metrics(self, record: dict) -> None:
        if self.writable:
            io.append_line(self._metrics_path(), json.dumps(record, sort_keys=True))

    def _drop_metrics_after(self, step: int) -> None:
        """On resume, forget records written after the checkpoint we restored
        (and a last line cut short by a kill); those before it were checked
        whole by _check_logs_before_latest."""
        path = self._metrics_path()
        if not (self.writable and io.exists(path)):
            return
        lines = jsonl.read_lines(path, tail_may_be_cut=True)
        kept = [l for l in lines if jsonl.record_of(l)["step"] <= step]
        io.atomic_write_text(path, "".join(l + "\n" for l in kept))

    def _expected_records(self, up_to: int) -> set:
        """The (step, kind) metrics records the loop writes from the phase's start up to `up_to`."""
        s = self.steps
        holdout = bool(getattr(self.dataset.info, "num_holdout", 0))
        evals = ["test", "holdout"] if holdout else ["test"]
        expected = set()
        if s.start < s.end and self._is_eval(s.start):
            expected.update((s.start, k) for k in evals)
        skipped = self._skipped_steps()
        for event in self._event_steps():
            if s.start < event <= up_to:
                if not (event - 1 in skipped and event - 1 >= s.start):
                    expected.add((event, "train"))
                if self._is_eval(event):
                    expected.update((event, k) for k in evals)
        return expected

    def _skipped_steps(self) -> set:
        """The steps whose weight update the mask hook takes the place of."""
        if self.mask_hook is None or not getattr(self.mask_hook, "skips_training_step", False):
            return set()
        return set(self.mask_hook.steps)

    def _hook_log(self) -> Optional[str]:
        """The step log the mask hook writes (runs/step_log.py), if any."""
        path = getattr(self.mask_hook, "log_path", None)
        return path if self.writable and path else None

    def _hook_log_problem(self, before: int) -> Optional[str]:
        """Why the mask hook's log lacks a record of a hook step in [start, before)."""
        path = self._hook_log()
        if path is None:
            return None
        steps = [t for t in self.mask_hook.steps if self.steps.start <= t < before]
        try:
            missing = step_log.missing_steps(path, steps)
        except jsonl.DamagedLog as e:
            return str(e)
        return f"no record of hook step(s) {missing}" if missing else None

    def _check_logs_before_latest(self) -> None:
        """Resuming at the rolling checkpoint's step S needs every record up to S
        in metrics.jsonl and the hook's step log; a damaged or shortened log is
        set aside and the phase trains again from its start, never silently
        shorter."""
        latest = checkpoints.latest_step(self._checkpointer.directory)
        if latest is None or not self.writable:
            return
        problems = [(self._metrics_path(), metrics_log.missing_before(
                        self.out_dir, self._expected_records(latest), latest)),
                    (self._hook_log(), self._hook_log_problem(latest))]
        problems = [(path, why) for path, why in problems if why is not None]
        for path, why in problems:
            set_aside_if_there(path, why)
        if problems:
            logging.warning("%s: its logs do not reach the checkpoint at step %d: training "
                            "the phase again from its start", self.phase_name, latest)
            self._forget_latest()

    def _forget_latest(self) -> None:
        """Drop the rolling checkpoint (set aside instead if it is damaged too), so that
        the phase starts afresh; the new Checkpointer's manager no longer lists it."""
        directory = layout.join(self._checkpointer.directory, layout.LATEST)
        try:
            checkpoints.check_readable(tf.train.latest_checkpoint(directory))
            self._checkpointer.remove_latest()
        except damage.DAMAGE_ERRORS:
            damage.set_aside(directory)
        self._checkpointer = self._new_checkpointer()

    def _check_named_before_latest(self) -> None:
        """A named checkpoint the rolling one has passed must be intact, or the
        phase starts afresh (it is written only at its own step)."""
        latest = checkpoints.latest_step(self._checkpointer.directory)
        if latest is None:
            return
        for name, at in self.steps.named.items():
            if at <= latest and not self._checkpointer.named_intact(name):
                logging.warning("checkpoint %r of %s is missing or damaged: training the phase "
                                "again from its start", name, self.out_dir)
                self._forget_latest()
                return

    def _start_afresh(self) -> None:
        """No checkpoint to resume from: remove what a killed attempt left behind."""
        if not self.writable:
            return
        io.makedirs(self.out_dir)
        hook_log = self._hook_log()
        if hook_log is not None and io.exists(hook_log):
            try:
                step_log.read(hook_log)
            except jsonl.DamagedLog as e:
                damage.set_aside(hook_log, str(e))
        for path in [layout.file(self.out_dir, name)
                     for name in (metrics_log.FILENAME, layout.TENSORBOARD)] + [hook_log]:
            if path is not None and io.exists(path):
                logging.info("removing %s of an earlier attempt: the phase starts afresh", path)
                io.remove(path)

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
        stop.check(f"before {self.phase_name} ({self.out_dir})")
        final_path = layout.file(self.out_dir, layout.FINAL)
        s = self.steps
        done = finished_result(self.out_dir, tuple(s.named))
        hook_problem = self._hook_log_problem(s.end) if done is not None else None
        if done is not None and hook_problem is None:
            logging.info("%s: finished before (%s); skipped", self.phase_name, self.out_dir)
            self._checkpointer.remove_latest()
            return done
        if hook_problem is not None:
            set_aside_if_there(self._hook_log(), hook_problem)
            io.remove(final_path)       # not finished: trained again from its start
        self.program.begin_phase(s.start)
        self._check_named_before_latest()
        self._check_logs_before_latest()
        if self._checkpointer.restore_latest():
            step = s.start + int(self.optimizer.iterations.numpy())
            logging.info("%s: resuming at step %d of %d..%d (%s)", self.phase_name, step,
                         s.start, s.end, self.out_dir)
            self._drop_metrics_after(step)
        else:
            step = s.start
            self._start_afresh()
            logging.info("%s: %s (%s)", self.phase_name,
                         f"training steps {s.start}..{s.end}" if s.start < s.end else
                         f"nothing to train (step {s.start})", self.out_dir)
        training = step < s.end
        # A phase with nothing to train (rewinding to step 0) needs no input
        # pipeline and leaves no summaries.
        train_loop = self.make_train_fn(step) if training else None
        writers = summaries.Writers(layout.join(self.out_dir, layout.TENSORBOARD)
                                   if self.writable and training else None)
        self._writers = writers

        self._save_named_at(step)
        if training:
            summaries.write_start(writers, step, self.model, self._hparams())
        if step == s.start and training:
            self._record_eval(step, writers)
        try:
            step = self._train_to_end(step, train_loop, writers)
        except KeyboardInterrupt:       # a second Ctrl-C (stop.py): say where it stopped
            raise stop.interrupted(f"at step {self._step} of {self.out_dir}") from None
        final = self._final_result(step)
        if self.writable:
            io.atomic_write_json(final_path, dict(
                final, **{metrics_log.COUNT_KEY: metrics_log.count(self.out_dir)}))
        writers.close()
        self._checkpointer.remove_latest()
        return final

    def _train_to_end(self, step: int, train_loop, writers) -> int:
        """The events of the phase from `step` on; returns the end step."""
        s = self.steps
        self._step = step
        last_print, t_loop, steps_since = time.time(), time.time(), 0
        t_phase, phase_steps = time.time(), 0
        hook_steps = set(self.mask_hook.steps) if self.mask_hook is not None else set()
        first = step
        if step in hook_steps:
            # Also on resuming at a hook step: the checkpoint of that step was
            # taken before the hook acted (a hook is deterministic, so
            # repeating it is harmless).  A skipping hook moves on one step,
            # which may be an event itself.
            step = self._apply_mask_hook(step)
        for event in [e for e in self._event_steps() if e > first]:
            while step < event:
                # The safe point of a stop request: resuming repeats at most the
                # steps since the last event's checkpoint.
                stop.check(f"at step {step} of {self.out_dir}")
                n = min(self.hp.steps_per_loop, event - step)
                train_loop(n)
                step += n
                self._step = step
                steps_since += n
                phase_steps += n
                loss = float(self.train_loss.result())
                if not math.isfinite(loss):
                    raise TrainingDivergedError(
                        f"loss became {loss} by step {step}: training diverged; lower "
                        f"TrainingHparams.lr (now {self.hp.lr}) or add warmup")
                now = time.time()
                if self.run_log is not None:
                    self.run_log.add(n)
                if now - last_print >= self.progress_every_seconds or step == event == s.end:
                    self._log_progress(step, loss, phase_steps / max(now - t_phase, 1e-9))
                    last_print = now
            if steps_since:     # none only just after a skipped step (see mask_hook)
                record = {"step": step, "train_loss": float(self.train_loss.result()),
                          "train_accuracy": float(self.train_acc.result()),
                          "steps_per_second": steps_since / max(time.time() - t_loop, 1e-9)}
                summaries.write_train(writers, step, record,
                                      float(self.schedule(step - s.start)))
                self.train_loss.reset_state()
                self.train_acc.reset_state()
                self._append_metrics(record)
            self._record_eval(step, writers)
            self._save_named_at(step)
            if step < s.end:
                # At the end, 'end' (saved just above) and final.json take over.
                self._checkpointer.save_latest(step)
            if step in hook_steps:
                step = self._apply_mask_hook(step)
                self._step = step
            t_loop, steps_since = time.time(), 0
        return step

    def _log_progress(self, step: int, loss: float, rate: float) -> None:
        """One progress line: where the phase is, its speed so far, and the ETAs."""
        s = self.steps
        done = (step - s.start) / max(s.end - s.start, 1)
        eta = f"ETA {duration((s.end - step) / rate if rate > 0 else None)}"
        run_eta = self.run_log.eta_seconds(rate) if self.run_log is not None else None
        if run_eta is not None:
            eta += f" (run {duration(run_eta)})"
        logging.info("%s: step %d/%d (%.0f%%)  %.1f steps/s  %s  loss %.4f  train acc %.2f%%  "
                     "lr %.3g", self.phase_name, step, s.end, 100 * done, rate, eta, loss,
                     100 * float(self.train_acc.result()), float(self.schedule(step - s.start)))

    def _hparams(self) -> dict:
        """The hyperparameters shown in TensorBoard's HParams dashboard."""
        if self.run_log is not None and self.run_log.hparams:
            return dict(self.run_log.hparams, phase=self.phase_name)
        fields = {f"TrainingHparams.{k}": v for k, v in vars(self.hp).items()}
        return dict(fields, phase=self.phase_name)

    def _apply_mask_hook(self, step) -> int:
        """Call the mask hook at `step`; returns the step training goes on from."""
        self.mask_hook(self.model, step)
        if not getattr(self.mask_hook, "zeroes_pruned_weights", False):
            masking.zero_pruned_weights(self.model)
        if self._writers is not None:
            summaries.write_density(self._writers[summaries.TRAIN], step, self.model,
                                    getattr(self.mask_hook, "counts", None))
        if step not in self._skipped_steps():
            return step
        # The hook took the place of this step's weight update: its batch is
        # used up, and the counter the schedule (and resuming) reads moves on.
        next(self._iterator)
        self.optimizer.iterations.assign_add(1)
        if self.run_log is not None:
            self.run_log.add(1)
        return step + 1

    def _is_eval(self, step: int) -> bool:
        return step == self.steps.end or step % self.steps.eval_every == 0

    def _record_eval(self, step, writers):
        if not self._is_eval(step):
            return
        result = self.evaluate("test")
        self._last_eval = (step, result)
        summaries.write_metrics(writers[summaries.TEST], step, result["loss"], result["accuracy"])
        self._append_metrics({"step": step, "test_loss": result["loss"],
                              "test_accuracy": result["accuracy"]})
        logging.info("%s: step %d  test loss %.4f  test accuracy %.2f%%", self.phase_name, step,
                     result["loss"], 100 * result["accuracy"])
        if getattr(self.dataset.info, "num_holdout", 0):
            # The early-stopping metric (thesis 3.3.6) needs the holdout loss at every evaluation.
            holdout = self.evaluate("holdout")
            summaries.write_metrics(writers[summaries.HOLDOUT], step, holdout["loss"],
                                    holdout["accuracy"])
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


def default_phase_name(out_dir: str) -> str:
    """'level_3/train' of '.../replicate_0/level_3/train' (for callers that give no name)."""
    parts = os.path.normpath(out_dir).replace(os.sep, "/").split("/")
    return "/".join(parts[-2:]) if parts[-1] == "train" and len(parts) > 1 else parts[-1]


def finished_result(out_dir: str, named=("init", "end")) -> Optional[dict]:
    """The final.json of a finished phase whose `named` checkpoints read back whole and
    whose metrics.jsonl holds every record; else None.

    A damaged final.json, checkpoint or metrics.jsonl is set aside
    (runs/damage.py), so the phase counts as unfinished and trains again
    from its start (for the metrics, final.json is removed with it).
    """
    final_path = layout.file(out_dir, layout.FINAL)
    final = damage.read_output(final_path, io.read_json)
    if not isinstance(final, dict):
        return None
    problem = metrics_log.problem_of_finished(out_dir, final)
    if problem is not None:
        set_aside_if_there(metrics_log.path_of(out_dir), problem)
        io.remove(final_path)
        return None
    directory = layout.checkpoints_dir(out_dir)
    if all([checkpoints.intact(directory, name) for name in named]):
        final.pop(metrics_log.COUNT_KEY, None)
        return final
    return None


def set_aside_if_there(path: str, why: str) -> None:
    """Set a damaged log aside (runs/damage.py); a missing one only gets the warning."""
    if io.exists(path):
        damage.set_aside(path, why)
    else:
        logging.warning("%s: %s; redoing the stage that writes it", path, why)


def read_metrics(out_dir: str) -> list:
    """The JSON records of a phase's metrics.jsonl (a last line cut short by a kill is
    skipped; any other bad line raises runs.jsonl.DamagedLog)."""
    path = metrics_log.path_of(out_dir)
    if not io.exists(path):
        return []
    return jsonl.read_records(path, tail_may_be_cut=True)
