"""Converting between a user's model and its masked twin.

`wrap` clones a Sequential/functional model, replacing each prunable layer by
`Masked(layer)`, and copies the weights so the twin computes exactly the same
function.  `export` goes back: a plain model with the mask baked into the
weights, for serving or for tools that do not know `Masked`.  Both clone
(and so create variables) under the strategy scope active at the call, so
call them inside the scope where the result will be used.
"""
from typing import Callable, Iterable, Optional

import numpy as np

from tflottery.errors import ConfigError
from tflottery.keras_compat import check_tf_keras_model, keras
from tflottery.masking.layer import Masked
from tflottery.masking.prunable import PrunableTable, prunable_attrs
from tflottery.masking.walk import require_masked_layers


def _is_cloneable(model) -> bool:
    return isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)


_SUBCLASSED_HINT = {
    "wrap()": "subclassed models can use tflottery.masking.Masked(layer) layers directly instead",
    "export()": "for a subclassed model, build its plain twin yourself and copy the "
                "weights, multiplying each by get_mask(model)[name]",
}


def _check_cloneable(model, action: str) -> None:
    check_tf_keras_model(model)
    if not _is_cloneable(model):
        raise ConfigError(
            f"{action} needs a Sequential or functional tf_keras model, got the subclassed "
            f"model {type(model).__name__}; {_SUBCLASSED_HINT.get(action, '')}")


def _check_model(model, action: str) -> None:
    _check_cloneable(model, action)
    if not model.built:
        raise ConfigError(
            f"{action} needs a built model: give {model.name!r} an Input, or call it once")


def _fresh(layer):
    return layer.__class__.from_config(layer.get_config())


def _clone(model, layer_fn: Callable, action: str):
    """clone_model, recursing into nested models (clone_model itself does not)."""
    def clone_layer(layer):
        if isinstance(layer, keras.Model):
            return _clone(layer, layer_fn, action)
        return layer_fn(layer)

    # Nested models need not be built on their own (the outer model builds
    # them), so only the cloneable check applies here.
    _check_cloneable(model, action)
    clone = keras.models.clone_model(model, clone_function=clone_layer)
    if not clone.built and model.built and getattr(model, "input_shape", None) is not None:
        clone.build(model.input_shape)
    return clone


def _copy_weights(source, target, copy_leaf: Callable) -> None:
    """Copy weights layer by layer, matching layers by (inner) name per model level."""
    targets = {_inner(layer).name: layer for layer in target.layers}
    for layer in source.layers:
        twin = targets[_inner(layer).name]
        if isinstance(layer, keras.Model):
            _copy_weights(layer, twin, copy_leaf)
        elif layer.weights:
            copy_leaf(layer, twin)


def _inner(layer):
    return layer.layer if isinstance(layer, Masked) else layer


def _prunable_layer_names(model, table) -> list:
    names = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            names += _prunable_layer_names(layer, table)
        elif not isinstance(layer, Masked) and prunable_attrs(layer, table):
            names.append(layer.name)
    return names


def wrap(model, unmasked_layers: Iterable[str] = (),
         prunable_weights: Optional[PrunableTable] = None):
    """The masked twin of `model`: same weights, same outputs, all-ones masks.

    Args:
      model: a built Sequential or functional tf_keras model (nested
        Sequential/functional sub-models are wrapped too).
      unmasked_layers: names of prunable layers to leave unwrapped (e.g. the
        output layer); they are absent from the model's Mask.
      prunable_weights: {layer class or class name: attribute names}; default
        PRUNABLE_WEIGHTS.

    Call under the tf.distribute strategy scope in which the model will be
    used: the new variables are created there.  The result is not compiled.
    """
    _check_model(model, "wrap()")
    unmasked = set(unmasked_layers)
    valid = _prunable_layer_names(model, prunable_weights)
    unknown = sorted(unmasked - set(valid))
    if unknown:
        raise ConfigError(
            f"unmasked_layers names {', '.join(repr(n) for n in unknown)}, which "
            f"{'is' if len(unknown) == 1 else 'are'} not a prunable layer of the model; "
            f"prunable layers: {', '.join(valid) or '(none)'}")

    def wrap_layer(layer):
        attrs = () if isinstance(layer, Masked) else prunable_attrs(layer, prunable_weights)
        if attrs and layer.name not in unmasked:
            return Masked(_fresh(layer), prunable_attrs=attrs)
        return _fresh(layer)

    def copy_leaf(source, target):
        if isinstance(target, Masked) and not isinstance(source, Masked):
            target.layer.set_weights(source.get_weights())
        else:
            target.set_weights(source.get_weights())

    clone = _clone(model, wrap_layer, "wrap()")
    _copy_weights(model, clone, copy_leaf)
    return clone


def export(model):
    """A plain tf_keras model equal to the masked `model`, the mask baked into its weights.

    Masked layers become their inner layers (same names, so the model's Mask
    still names the exported weights) whose prunable weights are weight*mask,
    with pruned entries exactly 0.0.  Call under the strategy scope where the
    result will be used.
    """
    _check_model(model, "export()")
    require_masked_layers(model)

    def unwrap_layer(layer):
        return _fresh(_inner(layer))

    def copy_leaf(source, target):
        target.set_weights(_inner(source).get_weights())
        if isinstance(source, Masked):
            for attr in source.prunable_attrs:
                keep = source.mask_variable(attr).numpy() != 0
                value = getattr(source.layer, attr).numpy()
                getattr(target, attr).assign(np.where(keep, value, np.zeros((), value.dtype)))

    clone = _clone(model, unwrap_layer, "export()")
    _copy_weights(model, clone, copy_leaf)
    return clone
