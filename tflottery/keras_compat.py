"""The one import of Keras in the package, and the Keras-3 guard.

tflottery works with Keras 2 (`tf_keras`) only, because
tensorflow-model-optimization does.  A Keras-3 model looks like a Keras model
but has none of the internals we rely on, so we refuse it with a message that
says what to do instead.
"""
import tflottery  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import tf_keras as keras  # noqa: E402

from tflottery.errors import ConfigError  # noqa: E402


def is_keras3_object(obj) -> bool:
    module = type(obj).__module__ or ""
    return module == "keras" or module.startswith("keras.") or module.startswith("keras.src")


def check_tf_keras_model(model) -> None:
    """Raise a ConfigError unless `model` is a tf_keras (Keras 2) model."""
    if isinstance(model, keras.Model):
        return
    if is_keras3_object(model):
        raise ConfigError(
            "this is a Keras 3 model; tflottery needs a Keras 2 model: build it with "
            "`import tf_keras` (pip install tf_keras) instead of `import keras`")
    raise ConfigError(f"expected a tf_keras.Model, got {type(model).__name__}")
