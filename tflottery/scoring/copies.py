"""A private copy of a masked model, in a chosen float type, with an installable mask.

Why a copy.  Scorers differentiate with respect to the weights, run
BatchNorm in training mode (which updates its moving statistics), replace
weights by their absolute values (SynFlow) and try out masks round after
round.  Doing that on a copy leaves the user's model untouched by
construction, instead of relying on restoring it afterwards.

Where it lives.  The copy is built under a `placement` context: the host CPU
for SynFlow (host.py), the scope of the model's tf.distribute strategy for
the data-based scorers (device.py), whose variables are then mirrored on
every replica like the model's own.  `load` refills an existing copy from a
model of the same architecture, so one copy (and the functions traced on
it) serves every scoring of a run.

Why a float type.  SynFlow multiplies the absolute weights of every layer
along each path, which overflows or underflows float32 in deep or badly
scaled networks; it is computed in float64.  Data-based scorers run in
float32 even for a mixed-precision model (its bfloat16/float16 compute would
quantise the gradients the scores are made of), or in float64 if the model
computes in float64.

The copy is rebuilt from the model's config with every dtype policy
replaced (layers, Masked wrappers, the input layer), so it needs a
Sequential or functional model, as masking.wrap does.  A Keras 3 model is
copied the same way through its adapter (keras_compat.api_of); the copy's
gradients are TensorFlow's, so a Keras 3 model must be on the TensorFlow
backend.

Why logits.  A copy whose model ends in softmax or sigmoid has that
activation removed (head.py), so every scorer computes on the logits,
whatever head the user's model has; `head` says which it had.
"""
import copy
from typing import Callable, Optional

import numpy as np

from tflottery.errors import ConfigError
from tflottery.keras_compat import check_supported_model, require_tensorflow_backend
from tflottery.masking.mask import Mask
from tflottery.masking.walk import masked_pairs
from tflottery.scoring.head import strip_activation

_POLICY_CLASSES = ("Policy", "DTypePolicy")
# Only floating-point policies are replaced: a layer whose `dtype` means
# something else (an int or string lookup layer) keeps it.
_FLOAT_POLICIES = ("float16", "bfloat16", "float32", "float64", "mixed_float16", "mixed_bfloat16")


def compute_dtype(model) -> str:
    """'float64' if any layer of `model` computes in float64, else 'float32'."""
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if getattr(layer, "compute_dtype", None) == "float64":
            return "float64"
    return "float32"


def _is_float_policy(value) -> bool:
    if isinstance(value, str):
        return value in _FLOAT_POLICIES
    return (isinstance(value, dict) and value.get("class_name") in _POLICY_CLASSES
            and (value.get("config") or {}).get("name") in _FLOAT_POLICIES)


def _with_dtype(config, dtype: str):
    """A deep copy of a Keras config with every layer's dtype (policy) set to `dtype`."""
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            if key == "dtype" and _is_float_policy(value):
                out[key] = dtype
            else:
                out[key] = _with_dtype(value, dtype)
        return out
    if isinstance(config, (list, tuple)):
        return type(config)(_with_dtype(v, dtype) for v in config)
    return copy.deepcopy(config)


class ModelCopy:
    """`model` rebuilt in `dtype` under `placement()`, with its weights and an installable mask.

    absolute=True stores |value| of every weight (kernels, biases, BatchNorm
    gamma/beta and moving statistics alike), as SynFlow needs; mask
    variables are copied as they are.
    """

    def __init__(self, model, dtype: str, placement: Callable, absolute: bool = False):
        api = check_supported_model(model)
        require_tensorflow_backend(model, "this scorer (it differentiates with TensorFlow)")
        if not api.is_cloneable(model):
            raise ConfigError(
                f"scoring needs a Sequential or functional model (it rebuilds a copy "
                f"from the config), got the subclassed model {type(model).__name__}")
        self._api = api
        self.dtype = dtype
        self._placement = placement
        self._absolute = absolute
        config = _with_dtype(model.get_config(), dtype)
        with placement():
            clone = type(model).from_config(config, custom_objects={"Masked": api.masked_class})
            if not clone.built and getattr(model, "input_shape", None) is not None:
                clone.build(model.input_shape)
        self.head = strip_activation(clone)
        self.model = clone
        self._pairs = masked_pairs(clone)
        self.kernels = {name: weight for name, (weight, _) in self._pairs.items()}
        self.load(model)

    def load(self, model) -> None:
        """Copy every weight of `model` (the same architecture) into the copy; no mask installed."""
        src, dst = model.weights, self.model.weights
        problems = len(src) != len(dst) or any(
            tuple(a.shape) != tuple(b.shape) or _local_name(a) != _local_name(b)
            for a, b in zip(src, dst))
        if problems:
            raise ConfigError(
                f"could not rebuild model {model.name!r} from its config with the same "
                f"weights (names or shapes differ); scoring needs a model whose "
                f"get_config()/from_config() round-trip, and a scoring program serves "
                f"only models of the architecture it was built for")
        mask_ids = {id(mask) for _, mask in masked_pairs(model).values()}
        with self._placement():
            for source, target in zip(src, dst):
                value = np.asarray(source.numpy())
                if self._absolute and id(source) not in mask_ids:
                    value = np.abs(value)
                target.assign(value.astype(self._api.numpy_dtype(target)))
        # The unmasked values, so that any mask can be installed, in any order.
        self._values = {name: weight.numpy() for name, weight in self.kernels.items()}
        self._installed: Optional[Mask] = None

    def install(self, mask: Mask) -> None:
        """Make the copy compute with `mask`: mask variables set, pruned weights exactly 0.0.

        Zeroing the stored pruned weights (as masking.set_mask does) makes
        every weight-times-gradient score of a pruned weight exactly 0.
        """
        if self._installed is not None and mask == self._installed:
            return
        mask.check_shapes({name: tuple(w.shape) for name, w in self.kernels.items()})
        with self._placement():
            for name, (weight, mask_var) in self._pairs.items():
                keep = mask[name]
                value = self._values[name]
                mask_var.assign(keep)
                weight.assign(np.where(keep, value, np.zeros((), value.dtype)))
        self._installed = mask


def _local_name(variable) -> str:
    """'masked_conv/kernel:0' -> 'kernel' (a rebuilt model may lose the name scope)."""
    return variable.name.split(":")[0].split("/")[-1]
