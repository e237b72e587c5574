"""Which weights of which layers may be pruned.

The Lottery Ticket experiments prune connection weights: the kernels of
fully connected and convolutional layers (every kind: 1-D/2-D/3-D,
transposed, depthwise, both kernels of a separable convolution) and the
embedding table of an Embedding layer, as tfmot's prune registry does
(tensorflow_model_optimization .../sparsity/keras/prune_registry.py; it
leaves depthwise kernels dense, tflottery prunes them too).  Biases and
normalisation parameters are not pruned: they are few, and pruning them
changes what a layer can represent rather than how many connections it has
(NOT_CONNECTION_WEIGHTS).  The table is data, not code, so a caller can
prune other layers (or other attributes) by passing their own mapping.

Layers are looked up by class, so a subclass of a listed layer is covered,
the most specific listed class winning (tf_keras' Conv2DTranspose is a
Conv2D; Keras 3's is not, so every class is listed).
"""
import functools
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

from tflottery.keras_compat import TF_KERAS, KerasApi, api_of

LayerKey = Union[type, str]
PrunableTable = Mapping[LayerKey, Sequence[str]]

# {layer class name: attributes holding its prunable weights}, per Keras.
# Keras 3 names a depthwise convolution's kernel `kernel`, tf_keras
# `depthwise_kernel`; the separable convolutions name both alike.
_KERNEL = ("kernel",)
_COMMON = {
    "Dense": _KERNEL,
    "Conv1D": _KERNEL, "Conv2D": _KERNEL, "Conv3D": _KERNEL,
    "Conv1DTranspose": _KERNEL, "Conv2DTranspose": _KERNEL, "Conv3DTranspose": _KERNEL,
    "SeparableConv1D": ("depthwise_kernel", "pointwise_kernel"),
    "SeparableConv2D": ("depthwise_kernel", "pointwise_kernel"),
    "Embedding": ("embeddings",),
}
_DEPTHWISE = {"tf_keras": ("depthwise_kernel",), "keras3": _KERNEL}

# Layers whose weights are per-channel scales, shifts or statistics, not
# connections: wrap() leaves them dense without complaint, even with
# strict=True (tfmot's registry lists them with no prunable weights too).
NOT_CONNECTION_WEIGHTS = frozenset({
    "BatchNormalization", "SyncBatchNormalization", "LayerNormalization",
    "GroupNormalization", "Normalization",
})


@functools.lru_cache(maxsize=None)
def default_table(api: KerasApi) -> Dict[type, Tuple[str, ...]]:
    """The default {layer class: prunable attributes} of one Keras (tf_keras or Keras 3)."""
    names = dict(_COMMON, DepthwiseConv1D=_DEPTHWISE[api.name],
                 DepthwiseConv2D=_DEPTHWISE[api.name])
    layers = api.keras.layers
    return {getattr(layers, name): attrs for name, attrs in names.items()
            if hasattr(layers, name)}


def prunable_weights_of(model) -> Dict[type, Tuple[str, ...]]:
    """A copy of the default table of `model`'s Keras, to extend for wrap(prunable_weights=...)."""
    return dict(default_table(api_of(model)))


# The tf_keras table (a Keras 3 layer is looked up in default_table(keras3_api())).
PRUNABLE_WEIGHTS: Mapping[type, Tuple[str, ...]] = default_table(TF_KERAS)


def prunable_attrs(layer, table: Optional[PrunableTable] = None) -> Tuple[str, ...]:
    """The attribute names of `layer` that hold prunable weights (maybe empty).

    A table key may be a layer class (matching subclasses too, the most
    specific class winning) or a class name (matching that exact class name),
    so configs that cannot import classes can still name layers.
    """
    table = default_table(api_of(layer)) if table is None else table
    for cls in type(layer).__mro__:
        if cls in table:
            return tuple(table[cls])
        if cls.__name__ in table:
            return tuple(table[cls.__name__])
    return ()


def stable_name(layer, attr: str) -> str:
    """The name a prunable weight is known by in every Mask.

    Built from the *inner* layer's name so a mask made for the wrapped model
    also fits the exported one (whose layers are the unwrapped inner layers),
    and independent of TensorFlow's variable names, which change with name
    scopes and strategy.
    """
    return f"{layer.name}/{attr}"


def attribute_holding(layer, weight) -> Optional[str]:
    """The name of the attribute of `layer` whose value is `weight` itself (None if none).

    Layers keep weights, not names: tf_keras' Dense stores its kernel as
    `kernel`, Keras 3's as `_kernel` behind a property, and tfmot lists the
    weight objects it prunes.
    """
    for name, value in vars(layer).items():
        if value is weight:
            return name
    return None
