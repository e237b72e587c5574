"""The run-directory lock's lease protocol (what it does on gs://), on a local directory.

No object store is reachable here; `RunLock(lease=True)` runs the same
protocol on a local path, with seconds scaled down.
"""
import json
import os
import time

import pytest

from tflottery.errors import ConfigError
from tflottery.runs.lock import RunLock


def lease_lock(run_dir, **kwargs):
    return RunLock(str(run_dir), lease=True, lease_seconds=0.6, settle_seconds=0.05,
                   poll_seconds=0.05, **kwargs)


def test_lease_is_renewed_while_held_and_free_after_release(tmp_path):
    first = lease_lock(tmp_path)
    first.acquire()
    try:
        record = json.load(open(tmp_path / "lock.json"))
        assert record["expires"] > time.time()
        time.sleep(1.5)             # more than two lease lengths: renewed meanwhile
        assert json.load(open(tmp_path / "lock.json"))["expires"] > record["expires"]
        with pytest.raises(ConfigError, match="is in use by process"):
            lease_lock(tmp_path).acquire()
    finally:
        first.release()
    assert not (tmp_path / "lock.json").exists()
    second = lease_lock(tmp_path)
    second.acquire()
    second.release()


def test_expired_lease_is_taken_over(tmp_path):
    with open(tmp_path / "lock.json", "w") as f:
        json.dump({"pid": 1, "host": "elsewhere", "token": "x", "started": "then",
                   "expires": time.time() - 1}, f)
    lock = lease_lock(tmp_path)
    lock.acquire()
    assert json.load(open(tmp_path / "lock.json"))["token"] == lock._token
    lock.release()


def test_of_two_simultaneous_writers_only_the_last_goes_on(tmp_path):
    """Both wrote a record; the one whose record was overwritten backs off."""
    loser = lease_lock(tmp_path)
    real_write = loser._write

    def write_then_overwritten(record):
        real_write(record)
        rival = dict(record, token="rival", pid=os.getpid() + 1, expires=time.time() + 60)
        real_write(rival)      # the other process's write lands after ours
    loser._write = write_then_overwritten
    with pytest.raises(ConfigError, match=f"in use by process {os.getpid() + 1}"):
        loser.acquire()
    assert json.load(open(tmp_path / "lock.json"))["token"] == "rival"


def test_a_renewal_is_never_seen_half_written(tmp_path):
    """Another process reading the lock while its holder renews it sees the old record or
    the new one, never an empty or partial file: a half-written record counts as stale
    (`_stale({})`), so a reader caught in the middle of a renewal would take a live lock
    over.  (Renewals wrote the file in place; the suite once read '' here under load.)"""
    lock = RunLock(str(tmp_path), lease=True, lease_seconds=0.003, settle_seconds=0.0)
    lock.acquire()
    unreadable = reads = 0
    try:
        deadline = time.time() + 1.5          # about 1,500 renewals
        while time.time() < deadline:
            with open(tmp_path / "lock.json") as f:
                text = f.read()
            reads += 1
            try:
                json.loads(text)
            except ValueError:
                unreadable += 1
    finally:
        lock.release()
    assert reads > 1000 and unreadable == 0, (unreadable, reads)
