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

SHARED_MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")


@pytest.fixture
def mnist_dir():
    """The real MNIST test-set files, or skip when they are not beside the checkout."""
    path = os.path.abspath(SHARED_MNIST)
    if not os.path.exists(os.path.join(path, "t10k-images-idx3-ubyte.gz")):
        pytest.skip("../shared/data/mnist not present")
    return path
