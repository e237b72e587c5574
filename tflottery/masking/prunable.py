"""Which weights of which layers may be pruned.

The Lottery Ticket experiments prune the connection weights of fully
connected and convolutional layers only: biases and BatchNorm parameters are
few, and pruning them changes what a layer can represent rather than how many
connections it has.  The table is data, not code, so a caller can prune other
layers (or other attributes) by passing their own mapping.
"""
from typing import Mapping, Optional, Sequence, Tuple, Union

from tflottery.keras_compat import TF_KERAS, api_of

LayerKey = Union[type, str]
PrunableTable = Mapping[LayerKey, Sequence[str]]

# Dense and Conv1D/2D/3D kernels (keras_compat._prunable_table says which
# layers are covered and why).  A Keras 3 layer is looked up in the same
# table of Keras 3's classes.
PRUNABLE_WEIGHTS: Mapping[type, Tuple[str, ...]] = TF_KERAS.prunable_weights


def prunable_attrs(layer, table: Optional[PrunableTable] = None) -> Tuple[str, ...]:
    """The attribute names of `layer` that hold prunable weights (maybe empty).

    A table key may be a layer class (matching subclasses too, the most
    specific class winning) or a class name (matching that exact class name),
    so configs that cannot import classes can still name layers.
    """
    table = api_of(layer).prunable_weights if table is None else table
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
