"""Checkpoints of one training phase: a rolling 'latest' and named ones.

'latest' is what a preempted job resumes from (weights, optimizer slots and
the step counter; the data position is the step, because the input pipeline
can start at any step); it is removed when the phase ends, where it would
only duplicate 'end'.  Named checkpoints ('init', 'step_<N>', 'end') are
kept for the experiments (rewinding, interpolation): what they store, each
tensor once, is stored_weights.py's (the layout before #26, with masks and
optimizer slots in every one, is still read; float32 masks of checkpoints
written before masks were bool are converted as read: old_masks.py).  A
named checkpoint counts as written only once its `info.json` exists, which
is written atomically after the checkpoint files.

Multi-worker training (MultiWorkerMirroredStrategy): saving reads replicated
and sync-on-read variables (e.g. BatchNorm statistics) with collective ops, so
every worker must save at the same points.  Every worker therefore saves, each
in its own copy of the run tree (see `strategy.worker_root`), and restores
from its own files only.
"""
import contextlib
from typing import Optional

import tensorflow as tf
from absl import logging

from tflottery.errors import TfLotteryError
from tflottery.runs import damage, io, layout
from tflottery.training import old_masks, stored_weights


INIT = "init"     # the one named checkpoint that may be a reference (stored_weights.py)


class Checkpointer:
    """Saves and restores one phase's checkpoints under `directory`.

    writable: False to save nothing (evaluation-only or benchmark use, in a
      single process); restoring still reads whatever is in `directory`.
    """

    def __init__(self, directory: str, model, optimizer, writable: bool = True,
                 checkpoint: Optional[tf.train.Checkpoint] = None):
        """checkpoint: an existing tf.train.Checkpoint of exactly (model,
        optimizer) to write and read, so that a training program reuses one
        for all its phases; None makes one."""
        self.directory = directory
        self.writable = writable
        self._model = model
        self._named_ckpt = None
        self._ckpt = checkpoint or tf.train.Checkpoint(model=model, optimizer=optimizer)
        self._latest_dir = layout.join(directory, layout.LATEST)
        self._manager = tf.train.CheckpointManager(self._ckpt, self._latest_dir, max_to_keep=1)

    # The rolling checkpoint for resumption.
    def save_latest(self, step: int) -> None:
        if self.writable:
            with _no_temp_left(layout.join(self._latest_dir, f"{layout.CHECKPOINT_PREFIX}-{step}")):
                self._manager.save(checkpoint_number=step)

    def restore_latest(self) -> bool:
        """Restore the newest rolling checkpoint; False if there is none.

        A damaged one is set aside (runs/damage.py), and the phase starts afresh.
        """
        try:
            path = self._manager.latest_checkpoint
            if path is None:
                return False
            check_readable(path)
            with old_masks.readable_prefix(path, self._ckpt, self._model) as readable:
                self._ckpt.restore(readable).assert_existing_objects_matched()
        except damage.DAMAGE_ERRORS:
            damage.set_aside(self._latest_dir)
            self._manager = tf.train.CheckpointManager(self._ckpt, self._latest_dir,
                                                       max_to_keep=1)
            return False
        return True

    def remove_latest(self) -> None:
        """Delete the rolling checkpoint once the phase is done ('end' holds its state)."""
        if self.writable and io.exists(self._latest_dir):
            io.remove(self._latest_dir)

    # Named checkpoints.
    def named_path(self, name: str) -> str:
        return layout.join(self.directory, name)

    def has_named(self, name: str) -> bool:
        return io.exists(layout.file(self.named_path(name), layout.CHECKPOINT_INFO))

    def named_intact(self, name: str) -> bool:
        """Whether the named checkpoint is there and every byte of it reads back.

        A damaged one is set aside (runs/damage.py): the phase must write it again.
        """
        return intact(self.directory, name)

    def save_named(self, name: str, info: dict) -> None:
        """Store the model as checkpoint `name` (stored_weights.py), then its info.json."""
        if self.writable:
            if self._named_ckpt is None:
                self._named_ckpt = stored_weights.checkpoint_of(self._model)
            record = stored_weights.write(self._model, self.named_path(name), self._write_named,
                                          may_refer=name == INIT)
            io.atomic_write_json(layout.file(self.named_path(name), layout.CHECKPOINT_INFO),
                                 dict(info, **record))

    def _write_named(self, prefix: str) -> None:
        with _no_temp_left(prefix):
            self._named_ckpt.write(prefix)


@contextlib.contextmanager
def _no_temp_left(prefix: str):
    """A checkpoint write that fails (disk full, quota) removes its `<prefix>_temp`
    directory of half-written shards at once, instead of leaving it (and its
    space) until the next run's clean-up (runs/lock.py)."""
    try:
        yield
    except BaseException:
        for path in tf.io.gfile.glob(prefix + "_temp*"):
            try:
                tf.io.gfile.rmtree(path)
            except tf.errors.OpError:   # the write's own error is the one to report
                pass
        raise


def restore_weights(model, directory: str, name: str) -> dict:
    """Load the model weights and masks of a named checkpoint into `model`; return its info."""
    path = layout.join(directory, name)
    info_path = layout.file(path, layout.CHECKPOINT_INFO)
    if not io.exists(info_path):
        raise TfLotteryError(f"no finished checkpoint {name!r} in {directory}; the stage that "
                             "writes it has not run (re-run the experiment that makes it)")
    info = io.read_json(info_path)
    if stored_weights.is_recorded(info):
        stored_weights.restore(model, path, info)
    else:   # the layout before #26: the model's variables, masks included
        checkpoint = tf.train.Checkpoint(model=model)
        prefix = layout.file(path, layout.CHECKPOINT_PREFIX)
        with old_masks.readable_prefix(prefix, checkpoint, model) as readable:
            checkpoint.read(readable).expect_partial()
    return info


def check_readable(prefix: str) -> None:
    """Read every tensor of the checkpoint at `prefix`: raises if any byte is missing."""
    reader = tf.train.load_checkpoint(prefix)
    for key in reader.get_variable_to_shape_map():
        reader.get_tensor(key)


def intact(directory: str, name: str) -> bool:
    """Named checkpoint `name` exists and its files are those written; a damaged one is
    set aside.

    A checkpoint with a record of its files (stored_weights.py) is checked
    against it: sizes, and checksums of the small files, no tensor read.  One
    without (the layout before #26) is read back whole.  A checkpoint whose
    weights are another's is intact only if that one is too; if that one is
    not, this one's reference is removed (not damaged, only stale) and the
    phase that wrote it writes it again.
    """
    path = layout.join(directory, name)
    if not io.exists(layout.file(path, layout.CHECKPOINT_INFO)):
        return False
    try:
        info = io.read_json(layout.file(path, layout.CHECKPOINT_INFO))
        if not stored_weights.is_recorded(info):
            check_readable(layout.file(path, layout.CHECKPOINT_PREFIX))
            return True
        problem = stored_weights.check(path, info)
    except damage.DAMAGE_ERRORS:
        problem = "unreadable"
    if problem is not None:
        damage.set_aside(path, problem)
        return False
    source = stored_weights.tensors_dir(path, info)
    if source != path and not intact(*source.rsplit("/", 1)):
        logging.info("%s refers to the weights of %s, which are gone: written again", path,
                     source)
        io.remove(path)
        return False
    return True


def latest_step(directory: str) -> Optional[int]:
    """The step of the rolling checkpoint in `directory`, if any."""
    path = tf.train.latest_checkpoint(layout.join(directory, layout.LATEST))
    if path is None:
        return None
    return int(path.rsplit("-", 1)[-1])
