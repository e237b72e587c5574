"""One process per run directory, and a clean start after a killed one.

Two processes on one run directory (the same command started twice, or an
'lmc' run over the IMP levels of a 'lottery' run that is still going) would
both train every phase, resume from each other's checkpoints and interleave
their metrics.  So a process that writes to a run directory first takes its
lock: the file `lock.json` in it, created atomically (O_CREAT | O_EXCL) and
holding the pid, host and start time.  A second process stops at once with
one line naming the holder, or with `wait=True` (--wait_for_lock) polls until
the lock is free.  A lock left by a process that died on this host (SIGKILL,
a crash) is stale and taken over; one from another host cannot be checked
and is reported, with the fix (delete it once that process is gone).

Object stores (gs://) have no exclusive create through tf.io.gfile, and a
pid means nothing on another machine, so there the lock is a lease: the
record carries an expiry time that a background thread of the holder pushes
forward every LEASE_SECONDS / 3.  A lock past its expiry belongs to a process
that is gone (killed, preempted) and is taken over.  To take a free lock a
process writes its record, waits SETTLE_SECONDS and reads it back: of two
processes that wrote at the same moment, only the one whose record is there
(the last writer) goes on, the other sees a live holder and stops or waits.

Once a process holds the lock, what a killed process left half-written is
removed: `*.tmp-*` files of atomic writes (runs/io.py) and the `*_temp`
directories of interrupted TensorFlow checkpoint writes.  Finished files are
never touched.
"""
import datetime
import json
import os
import re
import socket
import threading
import time
import uuid
from typing import Optional

import tensorflow as tf
from absl import logging

from tflottery import stop
from tflottery.errors import RUN_DIR_IN_USE, ConfigError
from tflottery.runs import io, layout

LOCK_FILENAME = layout.LOCK
LEASE_SECONDS = 600.0     # object stores: a holder silent this long is gone
SETTLE_SECONDS = 2.0      # object stores: wait before reading a written lock back
_LEFTOVER_FILE = re.compile(r"\.tmp-[0-9a-f]{8}$")
_LEFTOVER_DIR = re.compile(r"_temp(_[0-9a-f]+)?$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True     # exists, owned by someone else
    return True


class RunLock:
    """The lock of one run directory; a context manager."""

    def __init__(self, run_dir: str, wait: bool = False, poll_seconds: float = 5.0,
                 lease: Optional[bool] = None, lease_seconds: float = LEASE_SECONDS,
                 settle_seconds: float = SETTLE_SECONDS):
        """lease: use the lease protocol (default: for object-store paths only)."""
        self.run_dir = run_dir
        self.path = layout.file(run_dir, LOCK_FILENAME)
        self.wait = wait
        self.poll_seconds = poll_seconds
        self.lease = "://" in run_dir if lease is None else lease
        self.lease_seconds = lease_seconds
        self.settle_seconds = settle_seconds
        self._token: Optional[str] = None
        self._renewing: Optional[threading.Event] = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    def _record(self) -> dict:
        self._token = uuid.uuid4().hex
        self._started = datetime.datetime.now().isoformat(timespec="seconds")
        return self._stamped()

    def _stamped(self) -> dict:
        record = {"pid": os.getpid(), "host": socket.gethostname(), "token": self._token,
                  "started": self._started}
        if self.lease:
            record["expires"] = time.time() + self.lease_seconds
        return record

    def _write(self, record: dict) -> None:
        """Written aside and renamed into place: a reader sees the old record or the new
        one, never a half-written one (which it would take for a stale lock)."""
        io.atomic_write_text(self.path, json.dumps(record, sort_keys=True))

    def _create(self) -> bool:
        """Write the lock if nobody holds it; False if somebody does."""
        if self.lease:
            if tf.io.gfile.exists(self.path):
                return False
            self._write(self._record())
            time.sleep(self.settle_seconds)
            mine = (self.holder() or {}).get("token") == self._token
            if mine:
                self._start_renewing()
            return mine
        data = json.dumps(self._record(), sort_keys=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(data)
        return True

    def holder(self) -> Optional[dict]:
        """The lock's record, {} if unreadable, None if there is no lock."""
        try:
            with tf.io.gfile.GFile(self.path, "r") as f:
                return json.loads(f.read())
        except tf.errors.NotFoundError:
            return None
        except (ValueError, tf.errors.OpError):
            return {}

    def _stale(self, holder: dict) -> bool:
        """Left by a process that is gone: a dead pid on this host, an expired lease,
        or a half-written record."""
        if not holder:
            return True
        if "expires" in holder:
            return float(holder["expires"]) < time.time()
        return holder.get("host") == socket.gethostname() and not _alive(int(holder["pid"]))

    def _start_renewing(self) -> None:
        """Push the lease's expiry forward in the background until released."""
        released = threading.Event()
        self._renewing = released

        def renew():
            while not released.wait(self.lease_seconds / 3):
                try:
                    self._write(self._stamped())
                except tf.errors.OpError as e:     # the next renewal may get through
                    logging.warning("could not renew the lock %s: %s", self.path, e)
        threading.Thread(target=renew, name="tflottery-lock-lease", daemon=True).start()

    def acquire(self) -> None:
        tf.io.gfile.makedirs(self.run_dir)
        while not self._create():
            holder = self.holder()
            if holder is None:
                continue            # released meanwhile
            if self._stale(holder):
                # Rename first, so that of two processes taking over only one removes it.
                aside = f"{self.path}.stale-{uuid.uuid4().hex[:8]}"
                try:
                    tf.io.gfile.rename(self.path, aside)
                    tf.io.gfile.remove(aside)
                except tf.errors.OpError:
                    pass
                continue
            if not self.wait:
                raise ConfigError(
                    f"run directory {self.run_dir} {RUN_DIR_IN_USE} {holder.get('pid')} on "
                    f"{holder.get('host')} since {holder.get('started')}; wait for it to finish "
                    f"(or pass --wait_for_lock), or delete {self.path} if that process is gone")
            stop.check(f"while waiting for the lock of {self.run_dir}")
            time.sleep(self.poll_seconds)
        remove_leftovers(self.run_dir)

    def release(self) -> None:
        if self._renewing is not None:
            self._renewing.set()
            self._renewing = None
        if self._token is None:
            return
        holder = self.holder()
        if holder and holder.get("token") == self._token:
            tf.io.gfile.remove(self.path)
        self._token = None


def live_holder(run_dir: str) -> Optional[dict]:
    """The lock record of the live process working in `run_dir`; None if nobody
    holds it or its holder is gone (sweeps: is a job running elsewhere?)."""
    lock = RunLock(run_dir)
    holder = lock.holder()
    if holder is None or lock._stale(holder):
        return None
    return holder


def remove_leftovers(directory: str) -> list:
    """Delete temporary files and checkpoint directories a killed process left; return them."""
    removed = []
    if not tf.io.gfile.isdir(directory):
        return removed
    for parent, dirs, files in tf.io.gfile.walk(directory):
        for name in files:
            if _LEFTOVER_FILE.search(name):
                path = os.path.join(parent, name)
                tf.io.gfile.remove(path)
                removed.append(path)
        for name in list(dirs):
            if _LEFTOVER_DIR.search(name):
                path = os.path.join(parent, name)
                tf.io.gfile.rmtree(path)
                removed.append(path)
                dirs.remove(name)
    return removed
