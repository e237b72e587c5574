"""The one import of Keras in the package, and the adapter between tf_keras and Keras 3.

Two Kerases live in one process.  `tflottery/__init__.py` sets
TF_USE_LEGACY_KERAS=1 before TensorFlow loads, so `tf.keras` is tf_keras
(Keras 2), which the experiments, the model zoo and tfmot need; `import
keras` still gives Keras 3, the Keras most new models are written in.  A
model's own type says which one it belongs to, and `api_of(model)` picks
the adapter for it.  Everything that differs between the two lives in
`KerasApi` below: the layer base classes, how a mask variable is created,
the tensor ops of the forward multiply, what counts as a variable, which
models can be cloned.  The masking code, the pruning selection
(pure NumPy) and the scorer mathematics are shared.

Which parts run on which Keras:

  * tf_keras (Keras 2): everything -- the library (masking, pruning,
    scoring, export), the experiments, the Trainer, the model zoo, the
    analysis tools and tfmot interop.
  * Keras 3, TensorFlow backend: the library -- masking.wrap (Sequential,
    functional), Masked (hand-built and subclassed models), Mask,
    get_mask/set_mask, prunable_variables, export, pruning.prune, and
    scoring.compute_scores/prune_to_density with every scorer -- and
    Keras 3's own model.fit, model.save('m.keras') and
    keras.models.load_model.
  * Keras 3, other backends (JAX): the same library, except that the
    scorers that differentiate (SNIP, iterative SNIP, GraSP, grasp_abs,
    SynFlow) need the TensorFlow backend and say so; random, magnitude and
    magnitude_unit_variance run anywhere, and the masking layer is written
    in keras.ops only.
  * Not Keras 3: the experiments (`python -m tflottery.main`), the Trainer,
    the model zoo, the analysis tools other than analysis.align (which
    takes Keras 3 models on any backend), tfmot interop.
"""
import functools
import importlib

# TF_USE_LEGACY_KERAS is set before TensorFlow loads by tflottery/__init__.py,
# which Python runs before any tflottery module.
import numpy as np
import tensorflow as tf
import tf_keras as keras

from tflottery.errors import ConfigError

# The dtype of every mask variable: one byte per weight.  Why bool rather
# than float32: a wrapped model's mask then takes a quarter of the memory
# (device memory, TPU HBM included) and of a `.h5` file (tf_keras' legacy
# saver writes every variable, masks included: a wrapped ResNet-50's file is
# 118.5 MB, 188.9 MB with float32 masks, 95.0 MB unwrapped).  Why bool rather
# than uint8: a mask is keep/prune and nothing else (the library's masks
# were always 0/1: Mask refuses other values), bool variables have kernels
# on every device (CPU, GPU, TPU), and the old float32 files convert
# without arithmetic.  The mask's one use as a number in the forward pass,
# weight * mask, casts it (KerasApi.masked_value).  A fractional "soft" mask
# cannot be held: files with one are refused as they load (mask_values).
MASK_DTYPE = np.dtype(np.bool_)


def mask_values(value, what: str) -> np.ndarray:
    """`value` as a MASK_DTYPE array: booleans, or numbers that are all 0 or 1
    (e.g. the float32 masks of files written before MASK_DTYPE); ConfigError else."""
    array = np.asarray(value)
    if array.dtype == MASK_DTYPE:
        return array
    if (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)) \
            and np.all((array == 0) | (array == 1)):
        return array.astype(MASK_DTYPE)
    raise ConfigError(f"{what} must be booleans or numbers that are all 0 or 1 "
                      f"(got dtype {array.dtype})")


def is_keras3_object(obj) -> bool:
    """True if `obj`'s class or a base class is Keras 3's (a user's subclass counts)."""
    for cls in type(obj).__mro__:
        module = cls.__module__ or ""
        if module == "keras" or module.startswith("keras."):
            return True
    return False


class KerasApi:
    """What differs between tf_keras and Keras 3, for the masking library (base: tf_keras).

    `keras` is the Keras module itself; `masked_class` the masking layer
    class of this Keras (masking/layer.py, masking/keras3_layer.py),
    imported when first asked for.
    """

    name = "tf_keras"
    _masked_class_path = ("tflottery.masking.layer", "Masked")

    def __init__(self, module):
        self.keras = module

    @property
    def masked_class(self):
        module, attr = self._masked_class_path
        return getattr(importlib.import_module(module), attr)

    def backend(self) -> str:
        return "tensorflow"

    def is_variable(self, obj) -> bool:
        return isinstance(obj, tf.Variable)

    def numpy_dtype(self, variable) -> np.dtype:
        return np.dtype(variable.dtype.as_numpy_dtype)

    def is_cloneable(self, model) -> bool:
        """A Sequential or functional model (clone_model and from_config rebuild it)."""
        return isinstance(model, self.keras.Sequential) or \
            bool(getattr(model, "_is_graph_network", False))

    def add_mask_variable(self, layer, name: str, shape) -> None:
        """Give `layer` a non-trainable all-ones MASK_DTYPE variable, never autocast, as `layer.<name>`.

        Masks change only in cross-replica context; if anything ever
        assigns in a replica, all replicas hold the same value anyway, so
        the first replica's value is taken.
        """
        setattr(layer, name, layer.add_weight(
            name=name, shape=shape, dtype=MASK_DTYPE.name, initializer="ones", trainable=False,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA, experimental_autocast=False))

    def masked_value(self, weight, mask=None):
        """weight * mask (weight alone if mask is None) as a tensor in the weight's read dtype.

        Read inside a layer's __call__, an autocast variable gives the compute
        dtype (e.g. bfloat16); the bool mask is cast to that dtype here, the
        one place a mask becomes a number in the forward pass.
        """
        value = tf.convert_to_tensor(weight)
        return value if mask is None else value * tf.cast(mask, value.dtype)

    def check_model(self, model) -> None:
        """ConfigError unless `model` is a model of this Keras that the library can take."""
        if not isinstance(model, self.keras.Model):
            raise ConfigError(f"expected a tf_keras or Keras 3 model, got {type(model).__name__}; "
                              f"a single layer is masked with masking.Masked(layer)")


class Keras3Api(KerasApi):
    """Keras 3: keras.ops and keras.Variable, so the masking layer runs on any backend."""

    name = "keras3"
    _masked_class_path = ("tflottery.masking.keras3_layer", "KerasMasked")

    def backend(self) -> str:
        return self.keras.backend.backend()

    def is_variable(self, obj) -> bool:
        return isinstance(obj, self.keras.Variable)

    def numpy_dtype(self, variable) -> np.dtype:
        return np.dtype(variable.dtype)

    def is_cloneable(self, model) -> bool:
        # Keras 3 has no public name for functional models.
        return isinstance(model, (self.keras.Sequential,
                                  self.keras.src.models.functional.Functional))

    def add_mask_variable(self, layer, name: str, shape) -> None:
        mask = layer.add_weight(name=name, shape=tuple(shape), dtype=MASK_DTYPE.name,
                                initializer="ones", trainable=False, autocast=False,
                                aggregation="only_first_replica")
        # A plain reference: Keras 3 would track the variable a second time.
        object.__setattr__(layer, name, mask)

    def masked_value(self, weight, mask=None):
        ops = self.keras.ops
        value = ops.convert_to_tensor(weight)
        return value if mask is None else ops.multiply(value, ops.cast(mask, value.dtype))


TF_KERAS = KerasApi(keras)


@functools.lru_cache(maxsize=None)
def keras3_api() -> KerasApi:
    """The Keras 3 adapter; Keras 3 is imported on first use, not by tf_keras users."""
    import keras as keras3
    return Keras3Api(keras3)


def api_of(obj) -> KerasApi:
    """The adapter of the Keras that `obj` (a model, layer or variable) belongs to."""
    return keras3_api() if is_keras3_object(obj) else TF_KERAS


def check_supported_model(model) -> KerasApi:
    """The adapter for `model`, after a ConfigError for a model the library cannot take."""
    api = api_of(model)
    api.check_model(model)
    return api


def require_tensorflow_backend(model, what: str) -> None:
    """ConfigError if `model` is a Keras 3 model on a backend other than TensorFlow."""
    api = api_of(model)
    if api.backend() != "tensorflow":
        raise ConfigError(
            f"{what} needs the TensorFlow backend of Keras 3 (this model runs on "
            f"{api.backend()!r}); set KERAS_BACKEND=tensorflow, or use a scorer that needs no "
            f"gradients (random, magnitude, magnitude_unit_variance)")


def check_tf_keras_model(model) -> None:
    """Raise a ConfigError unless `model` is a tf_keras (Keras 2) model.

    For the parts that run on tf_keras only (the experiments, the analysis
    tools); the masking library takes Keras 3 models too.
    """
    if isinstance(model, keras.Model):
        return
    if is_keras3_object(model):
        raise ConfigError(
            "this is a Keras 3 model; this part of tflottery needs a Keras 2 model: build it "
            "with `import tf_keras` (pip install tf_keras) instead of `import keras`")
    raise ConfigError(f"expected a tf_keras.Model, got {type(model).__name__}")
