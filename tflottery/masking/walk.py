"""Finding masked layers and prunable weights inside a (possibly nested) model."""
from typing import Dict, List, Optional

from tflottery.errors import ConfigError
from tflottery.keras_compat import api_of
from tflottery.masking.layer import MaskedMixin
from tflottery.masking.prunable import PrunableTable, prunable_attrs, stable_name


def _all_layers(model):
    # Keras' own recursive walk (tf_keras and Keras 3 alike): it also finds
    # layers held inside nested models, custom layers and lists, in a
    # deterministic order.
    return list(model._flatten_layers(include_self=False, recursive=True))


def masked_layers(model) -> List[MaskedMixin]:
    """Every Masked wrapper in `model`, including those inside nested models."""
    return [layer for layer in _all_layers(model) if isinstance(layer, MaskedMixin)]


def require_masked_layers(model) -> List[MaskedMixin]:
    layers = masked_layers(model)
    if not layers:
        raise ConfigError(
            "model has no masked layers; call tflottery.masking.wrap(model) first")
    return layers


def _put(out: Dict, name: str, value):
    if name in out:
        raise ConfigError(
            f"two prunable weights are both named {name!r}; give every layer a unique name")
    out[name] = value


def masked_pairs(model):
    """{stable name: (weight variable, mask variable)} for every Masked wrapper."""
    out = {}
    for wrapper in require_masked_layers(model):
        for attr, name in wrapper.stable_names.items():
            _put(out, name, (getattr(wrapper.layer, attr), wrapper.mask_variable(attr)))
    return out


def prunable_variables(model, prunable_weights: Optional[PrunableTable] = None) -> Dict:
    """{stable weight name: weight variable} of the weights a Mask covers.

    If `model` contains Masked layers, these are exactly their masked weights.
    Otherwise (e.g. an exported model) they are the weights that
    `prunable_weights` (default PRUNABLE_WEIGHTS) calls prunable, so a mask
    can be checked against a plain model too.  (A model wrapped with
    `unmasked_layers` and then exported has more prunable weights than its
    mask: validate the masked model instead.)
    """
    if masked_layers(model):
        return {name: pair[0] for name, pair in masked_pairs(model).items()}
    out = {}
    api = api_of(model)
    for layer in _all_layers(model):
        for attr in prunable_attrs(layer, prunable_weights):
            weight = getattr(layer, attr, None)
            if api.is_variable(weight):
                _put(out, stable_name(layer, attr), weight)
    return out
