"""tflottery: Lottery Ticket Hypothesis experiments for TensorFlow / tf_keras.

TensorFlow decides at import time whether `tf.keras` means Keras 3 or the
legacy Keras 2 (`tf_keras`).  tensorflow-model-optimization only works with
Keras 2, so the switch must be thrown before anything imports TensorFlow:
that is why these lines come first.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from tflottery.errors import TfLotteryError, ConfigError  # noqa: E402,F401
