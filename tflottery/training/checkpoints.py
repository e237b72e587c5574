"""Checkpoints of one training phase: a rolling 'latest' and named ones.

'latest' is what a preempted job resumes from (weights, optimizer slots and
the step counter; the data position is the step, because the input pipeline
can start at any step).  Named checkpoints ('init', 'step_<N>', 'end') are
kept for the experiments (rewinding, interpolation).  A named checkpoint
counts as written only once its `info.json` exists, which is written
atomically after the checkpoint files.

Multi-worker training (MultiWorkerMirroredStrategy): saving reads replicated
and sync-on-read variables (e.g. BatchNorm statistics) with collective ops, so
every worker must call save at the same point or the chief waits forever.
Only the chief's files are kept: the other workers save into a scratch
directory of their own, which is deleted straight after (TensorFlow's
documented recipe).  Every worker restores from the chief's directory, so
the run directory must be on storage all workers see (gs:// or a shared
file system).
"""
import contextlib
import os
import shutil
import tempfile
from typing import Iterator, Optional, Tuple

import tensorflow as tf

from tflottery.errors import TfLotteryError
from tflottery.runs import io


def multi_worker_task(strategy) -> Optional[Tuple[str, int]]:
    """(task_type, task_id) of this process under MultiWorkerMirroredStrategy, else None.

    Only that strategy needs every worker to take part in saving; under the
    others (one process) a non-writing Checkpointer simply skips saves.
    """
    if strategy is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None
    resolver = strategy.cluster_resolver
    return str(resolver.task_type), int(resolver.task_id)


def scratch_prefix(task_type: str, task_id: int) -> str:
    """Name prefix of a non-chief worker's scratch directories.

    The task and the process id make it unique per worker even when several
    workers share a host (and so a temporary directory).
    """
    return f"tflottery-ckpt-{task_type}{task_id}-pid{os.getpid()}-"


@contextlib.contextmanager
def scratch_dir(task: Tuple[str, int], base: Optional[str] = None) -> Iterator[str]:
    """A fresh local directory for one throw-away save, removed afterwards.

    Local disk rather than a folder in the (possibly gs://) run directory:
    the files are never read, so they should cost no bucket traffic, and a
    worker killed mid-save must not leave debris in the run directory.
    """
    path = tempfile.mkdtemp(prefix=scratch_prefix(*task), dir=base)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Checkpointer:
    """Saves and restores one phase's checkpoints under `directory`.

    writable: False on non-chief workers (see `runner.prepare`).  strategy:
      the model's strategy by default (the model is built under its scope);
      it only matters for non-chief MultiWorkerMirroredStrategy workers, which
      must still save, to a scratch directory (see module docstring).
    """

    def __init__(self, directory: str, model, optimizer, writable: bool = True,
                 strategy=None):
        self.directory = directory
        self.writable = writable
        self._ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer)
        latest_dir = os.path.join(directory, "latest")
        self._manager = tf.train.CheckpointManager(self._ckpt, latest_dir, max_to_keep=1)
        if strategy is None:
            strategy = getattr(model, "distribute_strategy", None)
        self._worker = None if writable else multi_worker_task(strategy)

    @property
    def saves_to_scratch(self) -> bool:
        """Whether saves go to a throw-away directory (a non-chief multi-worker worker)."""
        return self._worker is not None

    # The rolling checkpoint for resumption.
    def save_latest(self, step: int) -> None:
        if self.writable:
            self._manager.save(checkpoint_number=step)
        elif self.saves_to_scratch:
            # The same calls as the chief's (a manager's save also bumps the
            # checkpoint's save counter), so the collectives line up.
            with scratch_dir(self._worker) as path:
                tf.train.CheckpointManager(self._ckpt, path, max_to_keep=1).save(
                    checkpoint_number=step)

    def restore_latest(self) -> bool:
        """Restore the newest rolling checkpoint; False if there is none."""
        path = self._manager.latest_checkpoint
        if path is None:
            return False
        self._ckpt.restore(path).assert_existing_objects_matched()
        return True

    # Named checkpoints.
    def named_path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def has_named(self, name: str) -> bool:
        return io.exists(os.path.join(self.named_path(name), "info.json"))

    def save_named(self, name: str, info: dict) -> None:
        if self.writable:
            self._ckpt.write(os.path.join(self.named_path(name), "ckpt"))
            io.atomic_write_json(os.path.join(self.named_path(name), "info.json"), info)
        elif self.saves_to_scratch:
            with scratch_dir(self._worker) as path:
                self._ckpt.write(os.path.join(path, "ckpt"))


def restore_weights(model, directory: str, name: str) -> dict:
    """Load only the model weights of a named checkpoint into `model`; return its info."""
    path = os.path.join(directory, name)
    info_path = os.path.join(path, "info.json")
    if not io.exists(info_path):
        raise TfLotteryError(f"no finished checkpoint {name!r} in {directory}; the stage that "
                             "writes it has not run (re-run the experiment that makes it)")
    tf.train.Checkpoint(model=model).read(os.path.join(path, "ckpt")).expect_partial()
    return io.read_json(info_path)


def latest_step(directory: str) -> Optional[int]:
    """The step of the rolling checkpoint in `directory`, if any."""
    path = tf.train.latest_checkpoint(os.path.join(directory, "latest"))
    if path is None:
        return None
    return int(path.rsplit("-", 1)[-1])
