"""tflottery: Lottery Ticket Hypothesis experiments for TensorFlow / tf_keras.

TensorFlow decides at import time whether `tf.keras` means Keras 3 or the
legacy Keras 2 (`tf_keras`).  tensorflow-model-optimization only works with
Keras 2, so the switch must be thrown before anything imports TensorFlow:
that is why these lines come first.

Importing the package registers its Keras layers, as Keras packages do, so
`import tflottery` before `load_model` is enough to load a wrapped model.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from tflottery.errors import TfLotteryError, ConfigError  # noqa: E402,F401
# Keras' convention: importing the package registers its serializable layers
# ("tflottery>Masked"), so `import tflottery` is all that
# tf_keras.models.load_model / keras.models.load_model need in a new process.
# The registering modules are imported when tf_keras (or Keras 3) is, by a
# post-import hook (at once if it already is), so `import tflottery` itself
# stays light: no TensorFlow, no Keras 3 (launch/sweep.py and the CLI's
# argument checks rely on that; masking/keras3_layer.py says more).
import importlib  # noqa: E402

import wrapt  # noqa: E402


def _register_keras3_layer(_):
    # tf_keras first: the masking package's adapter (keras_compat) imports it, and
    # tf_keras' own hook below imports masking.layer, which needs the adapter whole.
    # Imported from inside the adapter's import instead (Keras 3 imported before
    # tflottery, in a shell without TF_USE_LEGACY_KERAS), that hook would find
    # the adapter half-initialised.
    importlib.import_module("tf_keras")
    importlib.import_module("tflottery.masking.keras3_layer")


wrapt.register_post_import_hook(
    lambda _: importlib.import_module("tflottery.masking.layer"), "tf_keras")
wrapt.register_post_import_hook(_register_keras3_layer, "keras")
