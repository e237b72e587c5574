"""Stop requests (tflottery/stop.py): a SIGTERM or Ctrl-C is never lost.

The handler only records the signal; the run stops at its next safe point
with errors.Interrupted (exit 143 / 130), and resumes bit for bit.  The
battery with hundreds of signals is benchmarks/signal_battery.py.
"""
import glob
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO, SMALL_RUN
from tflottery import stop
from tflottery.errors import Interrupted

LOTTERY = SMALL_RUN + ["ExperimentHparams.name = 'lottery'", "PruningHparams.levels = 1",
                       "BranchHparams.names = ()"]


@pytest.fixture
def handlers():
    """stop.install() for the test, pytest's own handlers back afterwards."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    stop.reset()
    stop.install()
    yield
    for s, h in saved.items():
        signal.signal(s, h)
    stop.reset()


def test_signal_inside_a_destructor_is_not_lost(handlers):
    """TensorFlow frees resources in __del__, where an exception raised by a signal
    handler is printed as "Exception ignored" and dropped: the handler must only record."""
    class Resource:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)       # the handler runs here, inside __del__
    Resource()
    assert stop.requested() == signal.SIGTERM
    with pytest.raises(Interrupted) as info:
        stop.check("at step 3 of runs/x")
    assert info.value.exit_code == 143
    assert str(info.value) == "interrupted at step 3 of runs/x; run the same command to continue"


def test_second_ctrl_c_aborts_at_once(handlers):
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)
    assert stop.requested() == signal.SIGINT and stop.exit_code() == 130
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)


def _results(root):
    out = {}
    for path in sorted(glob.glob(os.path.join(root, "*", "replicate_0", "**", "*.json"),
                                 recursive=True)):
        if not path.endswith("finished.json"):
            with open(path) as f:
                out[os.path.relpath(path, root)] = json.load(f)
    return out


def test_sigterm_at_random_moments_stops_at_a_safe_point_and_resumes_exactly(tmp_path,
                                                                           handlers):
    """Five SIGTERMs, each at a random moment of a run of the same directory: each
    run stops with Interrupted (143), or, if the signal came after its last safe
    point, returns with the request recorded (the CLI then exits 143); the
    resumed runs end exactly where an uninterrupted run does."""
    import gin
    from tflottery import gin_files, runner
    gin.clear_config()
    gin_files.parse([], LOTTERY)
    try:
        runner.run(str(tmp_path / "straight"))       # traces: the runs below do not
        expected = _results(str(tmp_path / "straight"))
        start = time.time()
        runner.run(str(tmp_path / "warm"))
        duration = time.time() - start               # a whole run, as the runs below
        rng = random.Random(22)
        stopped, after_last_safe_point = 0, 0
        for attempt in range(5):
            stop.reset()
            # The first signal lands well inside the first run (later runs resume
            # less work, and once the directory is finished they only re-check it).
            moment = rng.uniform(0.1, 0.6) if attempt == 0 else rng.uniform(0, 1)
            timer = threading.Timer(moment * duration, os.kill,
                                    (os.getpid(), signal.SIGTERM))
            timer.start()
            try:
                runner.run(str(tmp_path / "stopped"))
                timer.join()
                time.sleep(0.05)       # the handler runs in this (main) thread
                assert stop.requested() == signal.SIGTERM
                after_last_safe_point += 1
            except Interrupted as e:
                assert e.exit_code == 143 and str(e).startswith("interrupted "), e
                stopped += 1
            finally:
                timer.cancel()
                timer.join()
        assert stopped >= 1, "no signal landed inside a run"
        stop.reset()
        runner.run(str(tmp_path / "stopped"))
        assert _results(str(tmp_path / "stopped")) == expected      # bit for bit
    finally:
        gin.clear_config()


def test_signal_after_the_last_safe_point_is_still_reported(tmp_path):
    """The CLI checks once more when the run returns: a SIGTERM that arrived after
    the run's last safe point exits 143 with one line, never 0."""
    code = ("import os, signal\n"
            "import tflottery.main as cli\n"
            "from tflottery import runner\n"
            "real = runner.run\n"
            "def run_then_signal(*args, **kwargs):\n"
            "    result = real(*args, **kwargs)\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    return result\n"
            "runner.run = run_then_signal\n"
            "cli.run()\n")
    gin_file = tmp_path / "tiny.gin"
    gin_file.write_text("\n".join(LOTTERY) + "\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", code, f"--root_dir={tmp_path / 'runs'}",
                          f"--gin_file={gin_file}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 143, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last == ("interrupted as the run finished (every result is written); run the same "
                    "command to continue"), last
    assert glob.glob(str(tmp_path / "runs" / "lottery_*" / "replicate_0" / "finished.json"))


def test_waiting_for_a_lock_stops_on_a_signal(tmp_path, handlers):
    """--wait_for_lock polls for as long as the holder runs: a SIGTERM must end the
    wait (the holder here releases after 20 s, so a lost signal shows as no stop)."""
    from tflottery.runs.lock import RunLock
    held = RunLock(str(tmp_path))
    held.acquire()
    release = threading.Timer(20.0, held.release)
    sigterm = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    release.start()
    sigterm.start()
    waiting = RunLock(str(tmp_path), wait=True, poll_seconds=0.1)
    try:
        with pytest.raises(Interrupted, match=f"while waiting for the lock of {tmp_path}"):
            waiting.acquire()
    finally:
        release.cancel()
        sigterm.join()
        waiting.release()
        held.release()


def test_a_signal_pending_as_the_process_exits_is_taken_not_lost(handlers):
    """The CLI's last step (main._exit_without_teardown) blocks the signals and takes one
    that is pending: a SIGTERM arriving after the last safe point but before os._exit
    was dropped (exit 0; once in the signal battery), its handler never run."""
    saved = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        # To this thread, which blocks it (a process-wide kill may go to another thread
        # of the process, one of TensorFlow's, that does not): pending, its handler not run.
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        assert stop.requested() is None
        stop.take_pending()
        assert stop.requested() == signal.SIGTERM and stop.exit_code() == 143
        assert signal.SIGTERM not in signal.sigpending()   # taken, not left to fire later
        stop.take_pending()                         # nothing pending: nothing changes
        assert stop.requested() == signal.SIGTERM
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, saved)
