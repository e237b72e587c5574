"""The model's output head: logits, or probabilities the scorers turn back into logits.

Why.  Every scorer that differentiates works on logits: SNIP, iterative
SNIP, GraSP and RigL's growth gradient differentiate softmax cross-entropy
of the logits (objective.py), and SynFlow sums the logits of the linearised
network (synflow.py).  A model whose last layer applies softmax or sigmoid
-- `Dense(10, activation='softmax')`, a final `Activation('softmax')` or
`Softmax()` layer, in tf_keras or Keras 3 -- outputs probabilities, and
treating them as logits scores the wrong function without any error.

What is done: the scoring copy (copies.py) has that activation removed, so
it outputs the logits z of which the user's model outputs softmax(z) or
sigmoid(z).  The user's model is never changed.  This is exact, not an
approximation, for every scorer:

* Cross-entropy (SNIP, iterative SNIP, RigL): -log softmax(z)[y] is the
  cross-entropy of the model's probabilities, Keras' from_logits=False loss
  without its clipping, so the scores are those of the loss the model is
  trained with, computed without the underflow of log(softmax(z)).
* GraSP's temperature T divides the logits, as in Wang et al.'s code (whose
  networks output logits): log_softmax(z / T).  Dividing the log-probabilities
  instead gives the same thing, because log softmax(z) = z - logsumexp(z)
  differs from z by one constant per example and softmax ignores constants,
  so there is only one sensible meaning and this is it.
* SynFlow's R is the sum of the outputs of the network with every weight
  replaced by its absolute value: the paper's (and its code's) outputs are
  logits; a softmax would make R = 1 for every input, and its gradient 0.

A one-unit output (a sigmoid, or a single logit) is a binary classifier:
its logit z is scored as the two-class logits [0, z] (objective.py), whose
softmax cross-entropy is exactly the binary cross-entropy of sigmoid(z),
with labels 0 and 1.  A sigmoid over several units is a multi-label head,
which one integer label per example does not describe: the data-based
scorers refuse it (check_head), SynFlow (no labels) scores its logits.

Found where: the layer that produces the model's main output (the first
output; models.main_logits), looking back through Flatten and Reshape,
which do not change values, and into a nested model that makes it (a
keras.applications model inside the user's, whose classifier_activation
is softmax by default).  A log_softmax output needs nothing: its values are
log-probabilities, which differ from logits by a constant per example, so
softmax cross-entropy treats them exactly as logits.  An activation hidden anywhere else (a Lambda,
softmax before pooling) is not seen: such outputs are scored as logits.
"""
from typing import Optional, Tuple

from tflottery.errors import ConfigError
from tflottery.keras_compat import api_of
from tflottery.masking.layer import MaskedMixin

_SOFTMAX = ("softmax", "softmax_v2")
_SIGMOID = ("sigmoid",)
_RESHAPING = ("Flatten", "Reshape")


def _inner(layer):
    """The layer a Masked wrapper wraps (the layer itself otherwise)."""
    return layer.layer if isinstance(layer, MaskedMixin) else layer


def _producer(tensor):
    """The layer that made a Keras tensor (tf_keras: history.layer; Keras 3: .operation)."""
    history = getattr(tensor, "_keras_history", None)
    return None if history is None else history[0]


def _input_of(layer):
    """The one tensor `layer` was called on, or None (several inputs or calls)."""
    try:
        tensor = layer.input
    except (AttributeError, ValueError, RuntimeError):
        return None
    return None if isinstance(tensor, (list, tuple, dict)) else tensor


def _last_layer(model):
    """The (outer, e.g. Masked) layer that makes `model`'s main output, or None."""
    if isinstance(model, api_of(model).keras.Sequential):
        return model.layers[-1] if model.layers else None
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        return None
    return _producer(outputs[0]) if outputs else None


def output_layer(model):
    """The layer whose activation makes the main output (looking through Flatten, Reshape
    and nested models), or None."""
    layer = _last_layer(model)
    while layer is not None:
        if isinstance(layer, api_of(layer).keras.Model):
            layer = _last_layer(layer)
        elif type(_inner(layer)).__name__ in _RESHAPING:
            tensor = _input_of(layer)
            layer = None if tensor is None else _producer(tensor)
        else:
            return layer
    return None


def _activation_name(inner) -> Optional[str]:
    if type(inner).__name__ == "Softmax":
        return "softmax"
    activation = getattr(inner, "activation", None)
    return getattr(activation, "__name__", None) if callable(activation) else None


def kind(model) -> Tuple[str, Optional[object]]:
    """('softmax' | 'sigmoid' | 'logits', the layer applying the activation or None)."""
    layer = output_layer(model)
    if layer is None:
        return "logits", None
    inner = _inner(layer)
    name = _activation_name(inner)
    if name in _SOFTMAX:
        axis = getattr(inner, "axis", -1)
        if axis not in (-1, len(layer.output.shape) - 1):
            raise ConfigError(
                f"the output layer {inner.name!r} applies softmax over axis {axis}, not over "
                f"the classes (the last axis); use Softmax(axis=-1) to score this model")
        return "softmax", layer
    if name in _SIGMOID:
        return "sigmoid", layer
    return "logits", None


def strip_activation(model) -> str:
    """Make `model` (a private scoring copy) output logits instead of probabilities; the kind.

    The activation is replaced on the layer object itself: Dense, Conv and
    Activation layers read `self.activation` at call time; a Softmax layer
    becomes the identity.  Nothing is traced yet, so later traces see it.
    """
    head, layer = kind(model)
    if layer is None:
        return head
    inner = _inner(layer)
    keras = api_of(model).keras
    if type(inner).__name__ == "Softmax":
        object.__setattr__(inner, "call", lambda inputs, mask=None, **kwargs: inputs)
    else:
        object.__setattr__(inner, "activation", keras.activations.linear)
    return head


def num_classes(model) -> Optional[int]:
    """Number of classes the labels index: the main output's width, 2 for a one-unit output.

    ConfigError for a head one integer label per example cannot score
    (module docstring), naming the fix.
    """
    out_shape = model.output_shape   # a list of shapes for a multi-output model (main first)
    units = (out_shape[0] if isinstance(out_shape, list) else out_shape)[-1]
    head, layer = kind(model)
    name = None if layer is None else _inner(layer).name
    if units == 1:
        if head == "softmax":
            raise ConfigError(
                f"the output layer {name!r} applies softmax to one unit, which is always 1; "
                f"for a binary classifier use activation='sigmoid' (or no activation)")
        return 2
    if head == "sigmoid" and units is not None:
        raise ConfigError(
            f"the output layer {name!r} applies sigmoid to {units} units (a multi-label head), "
            f"but scoring takes one class label per example; score the model with "
            f"activation='softmax' (or none) on that layer")
    return units
