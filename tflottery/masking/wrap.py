"""Converting between a user's model and its masked twin.

`wrap` clones a Sequential/functional model, replacing each prunable layer by
`Masked(layer)`, and copies the weights so the twin computes exactly the same
function.  `export` goes back: a plain model with the mask baked into the
weights, for serving or for tools that do not know `Masked`.  Both clone
(and so create variables) under the strategy scope active at the call, so
call them inside the scope where the result will be used.

A subclassed model cannot be cloned layer by layer, but its own __init__
says how to build it: export rebuilds it with type(model).from_config(
model.get_config()) while `Masked(layer)` returns the plain layer
(layer.plain_layers), builds it as the original was built, and copies the
weights in order, baking in the mask.

tf_keras and Keras 3 models alike: the model's adapter (keras_compat.api_of)
supplies the Keras module, the masking class and the cloneability test.
"""
import collections
from typing import Callable, Iterable, List, Optional

import numpy as np
from absl import logging

from tflottery.errors import ConfigError, first_few
from tflottery.keras_compat import api_of, check_supported_model
from tflottery.masking.layer import MaskedMixin, plain_layers
from tflottery.masking.prunable import NOT_CONNECTION_WEIGHTS, PrunableTable, prunable_attrs
from tflottery.masking.tfmot_detect import refuse_tfmot_model
from tflottery.masking.walk import masked_pairs, require_masked_layers


_SUBCLASSED_HINT = {
    "wrap()": "subclassed models can use tflottery.masking.Masked(layer) layers directly instead",
}


def _check_cloneable(model, action: str):
    api = check_supported_model(model)
    if not api.is_cloneable(model):
        raise ConfigError(
            f"{action} needs a Sequential or functional model, got the subclassed "
            f"model {type(model).__name__}; {_SUBCLASSED_HINT.get(action, '')}")
    return api


def _check_built(model, action: str) -> None:
    if not model.built:
        raise ConfigError(
            f"{action} needs a built model: give {model.name!r} an Input, or call it once")


def _fresh(layer):
    return layer.__class__.from_config(layer.get_config())


def _clone(model, layer_fn: Callable, action: str):
    """clone_model, recursing into nested models (clone_model itself does not)."""
    # Nested models need not be built on their own (the outer model builds
    # them), so only the cloneable check applies here.
    keras = _check_cloneable(model, action).keras

    def clone_layer(layer):
        if isinstance(layer, keras.Model):
            return _clone(layer, layer_fn, action)
        return layer_fn(layer)

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    if not clone.built and model.built and getattr(model, "input_shape", None) is not None:
        clone.build(model.input_shape)
    return clone


def _copy_weights(source, target, copy_leaf: Callable) -> None:
    """Copy weights layer by layer, matching layers by (inner) name per model level."""
    targets = {_inner(layer).name: layer for layer in target.layers}
    for layer in source.layers:
        if not layer.weights:
            continue    # (Keras 3's clone_model renames input layers)
        twin = targets[_inner(layer).name]
        if _is_nested_model(layer):
            _copy_weights(layer, twin, copy_leaf)
        else:
            copy_leaf(layer, twin)


def _inner(layer):
    return layer.layer if isinstance(layer, MaskedMixin) else layer


def _is_nested_model(layer) -> bool:
    return isinstance(layer, api_of(layer).keras.Model)


def _prunable_layer_names(model, table) -> list:
    names = []
    for layer in model.layers:
        if _is_nested_model(layer):
            names += _prunable_layer_names(layer, table)
        elif not isinstance(layer, MaskedMixin) and prunable_attrs(layer, table):
            names.append(layer.name)
    return names


def _left_dense(model, table, unmasked) -> List:
    """The layers holding weights that wrap() leaves unwrapped (not prunable, not asked)."""
    out = []
    for layer in model.layers:
        if _is_nested_model(layer):
            out += _left_dense(layer, table, unmasked)
        elif not isinstance(layer, MaskedMixin) and layer.name not in unmasked \
                and not prunable_attrs(layer, table) and layer.count_params():
            out.append(layer)
    return out


def _by_type(layers) -> str:
    """'DepthwiseConv2D x17 (64,224 weights), ...': one entry per layer type, largest first."""
    counts, sizes = collections.Counter(), collections.Counter()
    for layer in layers:
        counts[type(layer).__name__] += 1
        sizes[type(layer).__name__] += layer.count_params()
    return first_few(f"{name} x{counts[name]} ({sizes[name]:,} weights)"
                     for name in sorted(sizes, key=lambda n: (-sizes[n], n)))


def _is_connection_layer(layer) -> bool:
    """False for the normalisation layers that are left dense by design (prunable.py)."""
    return not any(cls.__name__ in NOT_CONNECTION_WEIGHTS for cls in type(layer).__mro__)


def _report_left_dense(model, table, unmasked, strict: bool) -> None:
    """One log line naming the layer types wrap() leaves dense; with strict, a refusal."""
    left = _left_dense(model, table, unmasked)
    connections = [layer for layer in left if _is_connection_layer(layer)]
    if strict and connections:
        raise ConfigError(
            f"wrap(strict=True): these layers hold weights that no prunable_weights entry "
            f"covers: {_by_type(connections)}; name their weights in prunable_weights="
            f"{{LayerClass: ('attribute',)}} to prune them, or wrap without strict=True to "
            f"leave them dense")
    if left:
        log = logging.warning if connections else logging.info
        log("wrap(): left dense (not prunable): %s", _by_type(left))


def wrap(model, unmasked_layers: Iterable[str] = (),
         prunable_weights: Optional[PrunableTable] = None, strict: bool = False):
    """The masked twin of `model`: same weights, same outputs, all-ones masks.

    Args:
      model: a built Sequential or functional model, tf_keras or Keras 3
        (nested Sequential/functional sub-models are wrapped too).
      unmasked_layers: names of prunable layers to leave unwrapped (e.g. the
        output layer); they are absent from the model's Mask.
      prunable_weights: {layer class or class name: attribute names}; default
        PRUNABLE_WEIGHTS (prunable.py).
      strict: refuse (ConfigError) a model with layers that hold weights but
        are neither prunable nor normalisation layers (e.g. a custom layer
        with its own kernel), instead of leaving them dense.

    Either way one log line lists the layer types left dense with their
    weight counts (absl logging: a warning if any is not a normalisation
    layer, info otherwise).

    Call under the tf.distribute strategy scope in which the model will be
    used: the new variables are created there.  The result is not compiled.
    """
    masked_class = _check_cloneable(model, "wrap()").masked_class
    _check_built(model, "wrap()")
    refuse_tfmot_model(model, "wrap()")
    unmasked = set(unmasked_layers)
    valid = _prunable_layer_names(model, prunable_weights)
    unknown = sorted(unmasked - set(valid))
    if unknown:
        raise ConfigError(
            f"unmasked_layers names {first_few(repr(n) for n in unknown)}, which "
            f"{'is' if len(unknown) == 1 else 'are'} not a prunable layer of the model; "
            f"prunable layers: {first_few(valid) or '(none)'}")
    _report_left_dense(model, prunable_weights, unmasked, strict)

    def wrap_layer(layer):
        attrs = () if isinstance(layer, MaskedMixin) else prunable_attrs(layer, prunable_weights)
        if attrs and layer.name not in unmasked:
            return masked_class(_fresh(layer), prunable_attrs=attrs)
        return _fresh(layer)

    def copy_leaf(source, target):
        if isinstance(target, MaskedMixin) and not isinstance(source, MaskedMixin):
            target.layer.set_weights(source.get_weights())
        else:
            target.set_weights(source.get_weights())

    clone = _clone(model, wrap_layer, "wrap()")
    _copy_weights(model, clone, copy_leaf)
    return clone


def _baked(wrapper, attr: str) -> np.ndarray:
    """The weight `attr` of a Masked wrapper times its mask, pruned entries exactly +0.0."""
    keep = np.asarray(wrapper.mask_variable(attr).numpy()) != 0
    value = np.asarray(getattr(wrapper.layer, attr).numpy())
    return np.where(keep, value, np.zeros((), value.dtype))


def export(model):
    """A plain model equal to the masked `model`, the mask baked into its weights.

    Masked layers become their inner layers (same names, so the model's Mask
    still names the exported weights) whose prunable weights are weight*mask,
    with pruned entries exactly 0.0.  The result is a model of the same
    Keras (tf_keras or Keras 3).  Sequential and functional models are
    cloned; a subclassed model is rebuilt from its config (module
    docstring).  Call under the strategy scope where the result will be used.
    """
    api = check_supported_model(model)
    _check_built(model, "export()")
    require_masked_layers(model)
    if not api.is_cloneable(model):
        return _export_rebuilt(model)

    def unwrap_layer(layer):
        return _fresh(_inner(layer))

    def copy_leaf(source, target):
        target.set_weights(_inner(source).get_weights())
        if isinstance(source, MaskedMixin):
            for attr in source.prunable_attrs:
                getattr(target, attr).assign(_baked(source, attr))

    clone = _clone(model, unwrap_layer, "export()")
    _copy_weights(model, clone, copy_leaf)
    return clone


def _export_rebuilt(model):
    """export() of a subclassed model: rebuilt plain from its config, weights copied in order."""
    name = type(model).__name__
    try:
        with plain_layers():
            twin = type(model).from_config(model.get_config())
    except (TypeError, ValueError, NotImplementedError) as error:
        raise ConfigError(
            f"export() rebuilds the subclassed model {name} with "
            f"{name}.from_config(model.get_config()), which failed ({error}); give {name} a "
            f"get_config() that returns its constructor arguments") from None
    _build_like(twin, model)
    masks = {id(mask) for _, mask in masked_pairs(model).values()}
    baked = {id(getattr(w.layer, attr)): _baked(w, attr)
             for w in require_masked_layers(model) for attr in w.prunable_attrs}
    source = [v for v in model.weights if id(v) not in masks]
    target = twin.weights
    if [tuple(v.shape) for v in source] != [tuple(v.shape) for v in target]:
        raise ConfigError(
            f"export() rebuilt {name} from its config but its weights differ from the "
            f"original's (count or shapes); give {name} a get_config() that returns its "
            f"constructor arguments")
    for src, dst in zip(source, target):
        dst.assign(baked[id(src)] if id(src) in baked else np.asarray(src.numpy()))
    return twin


def _build_like(twin, model) -> None:
    """Build `twin` as `model` was built (its recorded input shape)."""
    config = model.get_build_config()
    if not config:
        raise ConfigError(
            f"export() cannot tell the input shape of {type(model).__name__}; call the model "
            f"once on data (or build(input_shape)) before exporting")
    twin.build_from_config(config)
