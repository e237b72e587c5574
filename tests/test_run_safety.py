"""Run directories against bad roots, concurrent processes, signals and leftovers.

Each case runs `python -m tflottery.main` as a user would and checks the
exit status, the one-line message and what is on disk.
"""
import glob
import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import REPO, run_module, wait_for

# Levels of about a second: long enough to catch a run in the middle of one.
LONG_LEVELS = ["--gin_file=quickstart.gin", "--deterministic",
               "--gin_bindings=TrainingHparams.training_steps = '1600it'",
               "--gin_bindings=TrainingHparams.eval_every = '160it'",
               "--gin_bindings=TrainingHparams.steps_per_loop = 8",
               "--gin_bindings=PruningHparams.levels = 2",
               "--gin_bindings=BranchHparams.names = ()"]
SHORT = ["--gin_file=quickstart.gin", "--gin_bindings=TrainingHparams.training_steps = '40it'",
         "--gin_bindings=TrainingHparams.eval_every = '20it'",
         "--gin_bindings=PruningHparams.levels = 1", "--gin_bindings=BranchHparams.names = ()"]


def _interruptible():
    # A shell without job control starts background commands with SIGINT
    # ignored, and a child inherits that (Python then installs no
    # KeyboardInterrupt handler): give the run the disposition a user's
    # terminal gives it, whatever started the tests.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(root, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([sys.executable, "-m", "tflottery.main", f"--root_dir={root}", *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, preexec_fn=_interruptible)


def one_line_error(result, code=2):
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    return result.stderr.strip().splitlines()[-1]


def finals(run_dir):
    return {os.path.relpath(p, run_dir): json.load(open(p))
            for p in sorted(glob.glob(os.path.join(run_dir, "replicate_0", "*", "train",
                                                   "final.json")))}


@pytest.mark.parametrize("root, message", [
    ("", "--root_dir is empty"),
    ("{file}", "is a file, not a directory"),
    ("/sys/kernel", "cannot be created or written"),          # read-only, even for root
    ("/sys/tflottery_runs", "cannot be created or written"),
])
def test_unusable_root_is_one_line(tmp_path, root, message):
    if root.startswith("/sys") and os.access("/sys", os.W_OK) and not os.path.isdir("/sys/kernel"):
        pytest.skip("no read-only /sys here")
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    root = root.replace("{file}", str(a_file))
    result = run_module("tflottery.main", f"--root_dir={root}", *SHORT)
    last = one_line_error(result)
    assert last.startswith("error: ") and message in last, last
    assert a_file.read_text() == "not a directory"
    assert not glob.glob(os.path.join(REPO, "lottery_*"))   # '' must not mean the checkout


def test_unreachable_bucket_is_one_line_in_seconds(tmp_path):
    import socket
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=3).close()
        pytest.skip("Cloud Storage is reachable from here")
    except OSError:
        pass
    result = run_module("tflottery.main", "--root_dir=gs://no-such-bucket-tflottery/runs", *SHORT,
                        timeout=60)
    last = one_line_error(result)
    assert last.startswith("error: --root_dir gs://no-such-bucket-tflottery/runs is not "
                           "reachable"), last


def test_stray_argument_is_one_line():
    result = run_module("tflottery.main", "--gin_file=quickstart.gin", "quickstart.gin")
    last = one_line_error(result)
    assert last == "error: unexpected argument 'quickstart.gin'; every option is a --flag (see --help)"


def test_second_process_on_a_run_stops_or_waits(tmp_path):
    root = str(tmp_path / "runs")
    first = start(root, *LONG_LEVELS)
    (lock,) = wait_for(os.path.join(root, "*", "lock.json"), first)
    holder = json.load(open(lock))
    assert holder["pid"] == first.pid
    second = run_module("tflottery.main", f"--root_dir={root}", *LONG_LEVELS)
    last = one_line_error(second)
    assert f"is in use by process {first.pid}" in last and "--wait_for_lock" in last
    assert first.poll() is None, "the first run ended before the second was refused"
    waiting = start(root, *LONG_LEVELS, "--wait_for_lock")
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    out2, err2 = waiting.communicate(timeout=600)
    assert waiting.returncode == 0, err2[-2000:]
    assert "training from step" not in err2      # it waited, then found every phase done
    (run_dir,) = glob.glob(os.path.join(root, "lottery_*"))
    assert not os.path.exists(os.path.join(run_dir, "lock.json"))


def finished_short_run(tmp_path):
    """(root, run directory) of a finished short quickstart run."""
    root = tmp_path / "runs"
    first = run_module("tflottery.main", f"--root_dir={root}", *SHORT)
    assert first.returncode == 0, first.stderr[-2000:]
    (run_dir,) = glob.glob(str(root / "lottery_*"))
    return root, run_dir


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    root, run_dir = finished_short_run(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket
    with open(os.path.join(run_dir, "lock.json"), "w") as f:
        json.dump({"pid": dead.pid, "host": socket.gethostname(), "started": "then"}, f)
    again = run_module("tflottery.main", f"--root_dir={root}", *SHORT)
    assert again.returncode == 0, again.stderr[-2000:]
    assert not os.path.exists(os.path.join(run_dir, "lock.json"))


def test_leftovers_of_a_killed_process_are_removed(tmp_path):
    root, run_dir = finished_short_run(tmp_path)
    before = finals(run_dir)
    level = os.path.join(run_dir, "replicate_0", "level_1")
    junk = [os.path.join(level, "mask", "sparsity.json.tmp-0123abcd"),
            os.path.join(level, "train", "checkpoints", "ckpt-120_temp"),
            os.path.join(level, "train", "checkpoints", "init", "ckpt_temp")]
    open(junk[0], "w").write("{half")
    for d in junk[1:]:
        os.makedirs(d)
        open(os.path.join(d, "part-00000-of-00001"), "w").write("half")
    again = run_module("tflottery.main", f"--root_dir={root}", *SHORT)
    assert again.returncode == 0, again.stderr[-2000:]
    assert [p for p in junk if os.path.exists(p)] == []
    assert finals(run_dir) == before
    assert os.path.exists(os.path.join(level, "mask", "sparsity.json"))


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_training_is_one_line_and_resumes_exactly(tmp_path, sig, code):
    straight_root, root = str(tmp_path / "straight"), str(tmp_path / "stopped")
    straight = run_module("tflottery.main", f"--root_dir={straight_root}", *LONG_LEVELS)
    assert straight.returncode == 0, straight.stderr[-2000:]
    proc = start(root, *LONG_LEVELS)
    wait_for(os.path.join(root, "*", "replicate_0", "level_1", "train", "checkpoints", "latest",
                          "checkpoint"), proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted at step ") and "level_1" in last, last
    assert last.endswith("; run the same command to continue"), last
    (run_dir,) = glob.glob(os.path.join(root, "lottery_*"))
    assert not os.path.exists(os.path.join(run_dir, "replicate_0", "level_1", "train",
                                           "final.json"))
    again = run_module("tflottery.main", f"--root_dir={root}", *LONG_LEVELS)
    assert again.returncode == 0, again.stderr[-2000:]
    (straight_dir,) = glob.glob(os.path.join(straight_root, "lottery_*"))
    assert finals(run_dir) == finals(straight_dir)    # bit for bit


@pytest.mark.parametrize("error", [
    OSError(28, "No space left on device"),
    "resource_exhausted",
    OSError(13, "Permission denied"),
])
def test_failed_write_mid_run_is_one_line(tmp_path, monkeypatch, capsys, error):
    """A write that fails in the middle of a run (disk full, permissions) ends
    with one line saying how to go on; other errors keep their traceback."""
    import gin
    import tensorflow as tf
    from absl import flags, logging
    from tflottery import main as cli, runner
    if error == "resource_exhausted":
        error = tf.errors.ResourceExhaustedError(
            None, None, "runs/x/ckpt_temp/part-00000; No space left on device [Op:SaveV2]")

    def failing_run(*args, **kwargs):
        raise error
    monkeypatch.setattr(runner, "run", failing_run)
    monkeypatch.setattr(cli, "build_strategy", lambda tpu: None)
    flags.FLAGS(["main", "--gin_file=quickstart.gin", f"--root_dir={tmp_path}"])
    gin.clear_config()
    sigterm, verbosity = signal.getsignal(signal.SIGTERM), logging.get_verbosity()
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["main"])
        assert exit_info.value.code == 2
        (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
        assert line.startswith("error: writing the run directory failed: ")
        assert line.endswith("and run the same command to continue")
        gin.clear_config()
        monkeypatch.setattr(runner, "run", lambda *a, **k: [][1])    # a bug, not a write
        with pytest.raises(IndexError):
            cli.main(["main"])
    finally:
        gin.clear_config()
        flags.FLAGS.unparse_flags()
        signal.signal(signal.SIGTERM, sigterm)      # main() installs its handler
        logging.set_verbosity(verbosity)
