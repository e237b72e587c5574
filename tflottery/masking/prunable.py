"""Which weights of which layers may be pruned.

The Lottery Ticket experiments prune the connection weights of fully
connected and convolutional layers only: biases and BatchNorm parameters are
few, and pruning them changes what a layer can represent rather than how many
connections it has.  The table is data, not code, so a caller can prune other
layers (or other attributes) by passing their own mapping.
"""
from typing import Mapping, Optional, Sequence, Tuple, Union

from tflottery.keras_compat import keras

LayerKey = Union[type, str]
PrunableTable = Mapping[LayerKey, Sequence[str]]

# Conv1DTranspose/Conv2DTranspose/Conv3DTranspose subclass Conv1D/2D/3D and
# hold a `kernel` too, so they are covered.  DepthwiseConv2D and
# SeparableConv2D do not subclass Conv2D and have differently named kernels:
# they are deliberately not pruned by default.
PRUNABLE_WEIGHTS: Mapping[type, Tuple[str, ...]] = {
    keras.layers.Dense: ("kernel",),
    keras.layers.Conv1D: ("kernel",),
    keras.layers.Conv2D: ("kernel",),
    keras.layers.Conv3D: ("kernel",),
}


def prunable_attrs(layer, table: Optional[PrunableTable] = None) -> Tuple[str, ...]:
    """The attribute names of `layer` that hold prunable weights (maybe empty).

    A table key may be a layer class (matching subclasses too, the most
    specific class winning) or a class name (matching that exact class name),
    so configs that cannot import classes can still name layers.
    """
    table = PRUNABLE_WEIGHTS if table is None else table
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
