"""Test set-up shared by every test module.

Two virtual CPUs are configured before TensorFlow creates its devices, so the
same training code can be run under MirroredStrategy with two replicas.
Op determinism makes CPU runs bit-for-bit repeatable.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tflottery  # noqa: E402,F401
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
tf.config.experimental.enable_op_determinism()

import pytest  # noqa: E402

SLOW_TESTS = os.path.join(os.path.dirname(__file__), "slow_tests.txt")


@pytest.hookimpl(tryfirst=True)   # before `-m "not slow"` deselects by mark
def pytest_collection_modifyitems(config, items):
    """Mark slow the tests listed in slow_tests.txt (measured, not guessed: see the file)."""
    with open(SLOW_TESTS, encoding="utf-8") as f:
        listed = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    for item in items:
        if item.nodeid in listed:
            item.add_marker(pytest.mark.slow)


SHARED_MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")


@pytest.fixture
def mnist_dir():
    """The real MNIST test-set files, or skip when they are not beside the checkout."""
    path = os.path.abspath(SHARED_MNIST)
    if not os.path.exists(os.path.join(path, "t10k-images-idx3-ubyte.gz")):
        pytest.skip("../shared/data/mnist not present")
    return path


_MIRRORED = []


def two_cpu_strategy():
    """The one MirroredStrategy over the two virtual CPUs, shared by all tests.

    Separate MirroredStrategy objects in one process reuse the same collective
    instance keys; TensorFlow caches a collective's shapes by key, so a
    second strategy's all-reduce of another shape fails ("Shape mismatch in
    the collective instance").  One shared strategy avoids that.
    """
    if not _MIRRORED:
        _MIRRORED.append(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    return _MIRRORED[0]


# A run small enough for in-process experiment tests: LeNet-300-100 on the
# 'synthetic' data (256 examples, batch 32: 8 iterations per epoch), 24 steps.
SMALL_RUN = [
    "DatasetHparams.name = 'synthetic'",
    "DatasetHparams.batch_size = 32",
    "ModelHparams.name = 'lenet_300_100'",
    "TrainingHparams.optimizer = 'sgd'",
    "TrainingHparams.lr = 0.05",
    "TrainingHparams.momentum = 0.9",
    "TrainingHparams.training_steps = '24it'",
    "TrainingHparams.eval_every = '8it'",
]


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_for(pattern, proc, seconds=300):
    """The paths matching `pattern` once one exists while `proc` still runs (else fail)."""
    import glob
    import time
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        found = glob.glob(pattern)
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"{pattern} never appeared while the run was going")


@pytest.fixture
def clean_gin():
    """No gin bindings before or after the test (use: pytestmark = usefixtures('clean_gin'))."""
    import gin
    gin.clear_config()
    yield
    gin.clear_config()


def run_module(module, *args, timeout=300, extra_env=None):
    """`python -m module args...` from the repository, quiet TensorFlow, no stdin
    (`extra_env`: variables to set; None as a value unsets one)."""
    import subprocess
    import sys
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.update(extra_env or {})
    env = {name: value for name, value in env.items() if value is not None}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


# ---- leaving without interpreter teardown -------------------------------------------------
# TensorFlow's tf.data iterators can deadlock while the interpreter frees them
# at shutdown (see tflottery/main.py): the tests have finished and pytest has
# printed its summary, but the process stalls, sometimes for minutes.  Exit
# with pytest's status as soon as everything is reported instead.
_EXIT_STATUS = []


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    import logging
    import sys
    if not _EXIT_STATUS or os.environ.get("TFLOTTERY_TEST_TEARDOWN"):
        return   # not a normal session end (or teardown explicitly wanted)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    logging.shutdown()
    os._exit(_EXIT_STATUS[-1])
