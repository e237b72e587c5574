"""Permutation groups of a Sequential or functional model, found by walking its graph.

Why a graph walk: permuting the hidden units of a layer leaves the network's
function unchanged only if every weight that touches those units moves with
them -- the layer's own kernel columns and bias, the next layer's kernel
rows, a BatchNorm's gamma/beta/moving statistics in between, and, across a
residual addition, every layer whose output is added to theirs.  Which
weights those are follows from how tensors flow, so the walk propagates a
*channel group* along every tensor (Ainsworth et al. 2022, "Git Re-Basin",
Appendix A's permutation spec, built here automatically):

* the model's inputs and outputs carry the fixed group (never permuted);
* a Dense or Conv layer starts a new group for its output units/channels; its
  kernel is indexed by (input group, output group) on its last two axes, its
  bias by the output group;
* BatchNorm (over the last axis), activations, dropout, pooling and
  zero-padding pass the group through; BN's four vectors are indexed by it;
* an elementwise merge (Add, Subtract, Average, Maximum, Minimum, Multiply)
  ties the groups of its inputs into one (union-find), so a ResNet block's
  shortcut and its residual branch share one permutation;
* Flatten of an (H, W, C) tensor gives H*W repeats of the channel group (the
  channel index runs fastest in channels-last order), so the next Dense
  kernel is viewed as (H*W, C, units) and permuted on its middle axis.

A layer of any other type may sit where only fixed channels reach it (e.g. a
Rescaling of the input): its output is fixed.  Anywhere a permutation group
reaches it, it is a ConfigError naming it (DepthwiseConv2D, for one: its
channels are both its input and output channels, which this walk does not
yet model).  A Masked wrapper is treated as its inner layer; its mask
variables move with their weights.

tf_keras and Keras 3: the walk reads the model's graph (`_nodes_by_depth`,
deepest first, in the order Keras found the nodes walking back from the
outputs), whose node objects differ between the two only in attribute
names (_node_layer, _node_inputs, _node_outputs); layer classes are taken
from the model's own Keras (_classes).
"""
import dataclasses
import functools
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from tflottery.errors import ConfigError
from tflottery.keras_compat import check_supported_model
from tflottery.masking.layer import MaskedMixin

_PASS_THROUGH_NAMES = (
    "Activation", "ReLU", "LeakyReLU", "ELU", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "MaxPooling1D", "MaxPooling2D",
    "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "ZeroPadding1D",
    "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D")


@dataclasses.dataclass(frozen=True)
class _Classes:
    """The layer classes the walk tells apart, taken from one Keras (tf_keras or Keras 3)."""

    weighted: tuple
    not_weighted: tuple
    pass_through: tuple
    merges: tuple
    batchnorm: type
    flatten: type
    input_layer: type

    @property
    def propagating(self) -> tuple:
        return self.weighted + self.pass_through + self.merges + (self.batchnorm, self.flatten)


@functools.lru_cache(maxsize=None)
def _classes(keras) -> _Classes:
    layers = keras.layers

    def named(*names):
        return tuple(getattr(layers, n) for n in names if hasattr(layers, n))

    # NOT_WEIGHTED first where it matters: tf_keras' ConvNDTranspose subclass ConvND.
    return _Classes(
        weighted=named("Dense", "Conv1D", "Conv2D", "Conv3D"),
        not_weighted=named("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
                           "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D",
                           "SeparableConv2D"),
        pass_through=named(*_PASS_THROUGH_NAMES),
        merges=named("Add", "Subtract", "Average", "Maximum", "Minimum", "Multiply"),
        batchnorm=layers.BatchNormalization, flatten=layers.Flatten,
        input_layer=layers.InputLayer)


_BN_VECTORS = (("gamma", True), ("beta", True), ("moving_mean", False),
               ("moving_variance", False))
SUPPORTED = ("Dense, Conv1D/2D/3D, BatchNormalization, activations, dropout, pooling, "
             "zero-padding, cropping, Flatten and elementwise merges (Add, ...)")

FIXED = 0   # union-find node of the channels that are never permuted


@dataclasses.dataclass(frozen=True)
class PermutedWeight:
    """One variable with at least one permuted axis.

    expanded: the shape under which every permuted axis is an axis of its
      own (a Dense kernel after Flatten: (positions, channels, units));
    axes: per expanded axis, the index of its group in `PermutationSpec.groups`,
      or None; matched: part of the weight-matching objective (trainable
      parameters; not BN moving statistics, not masks); mask: the mask
      variable the objective multiplies the weight by, if any.
    """

    layer: str
    attr: str
    variable: tf.Variable
    expanded: Tuple[int, ...]
    axes: Tuple[Optional[int], ...]
    matched: bool
    mask: Optional[tf.Variable] = None
    is_mask: bool = False

    @property
    def label(self) -> str:
        return f"{self.layer}/{self.attr}"


@dataclasses.dataclass(frozen=True)
class Group:
    """A set of channels permuted together: `size` units, named after its first layer."""

    name: str
    size: int
    layers: Tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Architecture:
    """What two models must share for one's permutation to fit the other.

    layers: per graph node in walk order, (layer name, class name, weight
    shapes of the layer -- the inner layer of a Masked wrapper, so a masked
    and an unmasked copy agree); wiring: per permuted weight (masks left
    out), (layer name, expanded shape, group index per axis).  Only classes,
    shapes and group indices are compared, never names: the walk order and
    the group order follow from the graph alone, so two models built by one
    function (`dense`, `dense_1` and `dense_3`, `dense_4`) have one
    architecture.  The names are there to say where two models differ.
    """

    layers: Tuple[Tuple[str, str, Tuple], ...]
    wiring: Tuple[Tuple[str, Tuple[int, ...], Tuple[Optional[int], ...]], ...]


@dataclasses.dataclass
class PermutationSpec:
    groups: List[Group]
    weights: List[PermutedWeight]
    # (group index, KerasTensor) of every tensor whose last axis is one group,
    # for activation matching.
    tensors: List[Tuple[int, object]]
    # Per node in walk order: (inner layer name, class name, variable shapes),
    # to tell two models' architectures apart.
    signature: List[Tuple[str, str, Tuple]]

    @property
    def sizes(self) -> List[int]:
        return [g.size for g in self.groups]

    @property
    def architecture(self) -> Architecture:
        return Architecture(tuple(self.signature),
                            tuple((w.layer, w.expanded, w.axes) for w in self.weights
                                  if not w.is_mask))


class _UnionFind:
    def __init__(self):
        self.parent = {FIXED: FIXED}
        self.size = {FIXED: None}
        self.origin = {FIXED: None}
        self.members: Dict[int, List[str]] = {FIXED: []}

    def new(self, size: int, layer: str) -> int:
        node = len(self.parent)
        self.parent[node], self.size[node], self.origin[node] = node, size, layer
        self.members[node] = [layer]
        return node

    def find(self, node: int) -> int:
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def union(self, a: int, b: int, layer: str) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        sizes = {self.size[ra], self.size[rb]} - {None}
        if len(sizes) > 1:
            raise ConfigError(f"layer {layer!r} merges {sorted(sizes)} channels; align needs "
                              "merged tensors of one width")
        # The lower node (created first, or FIXED) stays the root.
        root, child = min(ra, rb), max(ra, rb)
        self.parent[child] = root
        self.members[root] += self.members.pop(child)
        return root


def _inner(layer):
    return layer.layer if isinstance(layer, MaskedMixin) else layer


def _graph(model):
    """(the functional graph of `model`, its Keras' layer classes); ConfigError if it has none.

    A Keras 3 Sequential model keeps its graph in a functional model of its own.
    """
    api = check_supported_model(model)
    if not api.is_cloneable(model):
        raise ConfigError(f"align needs a Sequential or functional model; {model.name!r} is "
                          "subclassed: build it functionally")
    graph = getattr(model, "_functional", None) or model
    if not hasattr(graph, "_nodes_by_depth"):
        raise ConfigError(f"align needs a built model; call {model.name!r} on an input or build "
                          f"it with keras.Input")
    return graph, _classes(api.keras)


def _walk_order(graph):
    depths = sorted(graph._nodes_by_depth, reverse=True)
    return [node for d in depths for node in graph._nodes_by_depth[d]]


# A node's layer and tensors: tf_keras names them layer, keras_inputs and
# outputs; Keras 3 operation, input_tensors and output_tensors.
def _node_layer(node):
    return node.operation if hasattr(node, "operation") else node.layer


def _node_inputs(node) -> list:
    return tf.nest.flatten(node.input_tensors if hasattr(node, "operation")
                           else node.keras_inputs)


def _node_outputs(node) -> list:
    return tf.nest.flatten(node.output_tensors if hasattr(node, "operation") else node.outputs)


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") in (None, "channels_last")


def _unsupported(layer, why: str) -> ConfigError:
    return ConfigError(
        f"layer {layer.name!r} ({type(_inner(layer)).__name__}) is on the path of a permuted "
        f"channel group but {why}; align supports {SUPPORTED}")


class _Walker:
    """One pass over the graph: tensor -> (union-find node, repeat)."""

    def __init__(self, model):
        self.model = model
        self.graph, self.classes = _graph(model)
        self.uf = _UnionFind()
        self.info = {}             # id(KerasTensor) -> (node, repeat)
        self.weights = []          # (layer, attr, var, expanded, node axes, matched, mask)
        self.tensors = []          # (node, KerasTensor)
        self.signature = []

    def run(self) -> PermutationSpec:
        for node in _walk_order(self.graph):
            self.visit(node)
        for t in tf.nest.flatten(self.graph.outputs):
            g, _ = self.info[id(t)]
            self.uf.union(g, FIXED, self.model.name + " output")
        return self.finish()

    def visit(self, node):
        layer = _node_layer(node)
        inner = _inner(layer)
        c = self.classes
        self.signature.append((inner.name, type(inner).__name__,
                               tuple(tuple(w.shape) for w in inner.weights)))
        inputs = [self.info[id(t)] for t in _node_inputs(node)]
        outputs = _node_outputs(node)
        if isinstance(layer, c.input_layer):
            outs = (FIXED, 1)
        elif all(self.uf.find(g) == FIXED for g, _ in inputs) and not isinstance(
                inner, c.propagating):
            outs = (FIXED, 1)       # nothing permuted reaches it: it may be anything
        else:
            if layer.weights and len(layer._inbound_nodes) > 1:
                raise _unsupported(layer, f"is called {len(layer._inbound_nodes)} times")
            outs = self.propagate(layer, inner, inputs, node)
        for t in outputs:
            self.info[id(t)] = outs
            if outs[1] == 1 and self.uf.find(outs[0]) != FIXED:
                self.tensors.append((outs[0], t))

    def propagate(self, layer, inner, inputs, node):
        c = self.classes
        if isinstance(inner, c.not_weighted) or (
                isinstance(inner, c.weighted + c.pass_through + (c.flatten,))
                and not _channels_last(inner)):
            raise _unsupported(layer, "is not a supported layer or data format")
        if isinstance(inner, c.weighted):
            return self.weighted(layer, inner, inputs[0])
        if isinstance(inner, c.batchnorm):
            return self.batchnorm(layer, inner, inputs[0], node)
        if isinstance(inner, c.pass_through):
            return inputs[0]
        if isinstance(inner, c.merges):
            repeats = {r for _, r in inputs}
            if len(repeats) > 1:
                raise _unsupported(layer, "merges flattened tensors of different layouts")
            root = inputs[0][0]
            for g, _ in inputs[1:]:
                root = self.uf.union(root, g, layer.name)
            return root, repeats.pop()
        if isinstance(inner, c.flatten):
            g, r = inputs[0]
            shape = _node_inputs(node)[0].shape
            positions = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
            return g, r * positions
        raise _unsupported(layer, "is not a supported layer type")

    def add(self, layer, inner, attr, expanded, axes, matched):
        var = getattr(inner, attr, None)
        if var is None:
            return
        mask = layer.mask_variable(attr) if (isinstance(layer, MaskedMixin)
                                             and attr in layer.prunable_attrs) else None
        self.weights.append((inner.name, attr, var, tuple(expanded), tuple(axes), matched, mask,
                             False))
        if mask is not None:
            self.weights.append((inner.name, f"{attr}_mask", mask, tuple(expanded), tuple(axes),
                                 False, None, True))

    def weighted(self, layer, inner, source):
        g_in, repeat = source
        if getattr(inner, "groups", 1) != 1:
            raise _unsupported(layer, f"is a grouped convolution (groups={inner.groups})")
        kernel = tuple(inner.kernel.shape)
        units = kernel[-1]
        g_out = self.uf.new(units, inner.name)
        if repeat > 1:
            expanded = kernel[:-2] + (repeat, kernel[-2] // repeat, units)
            axes = (None,) * (len(kernel) - 1) + (g_in, g_out)
        else:
            expanded, axes = kernel, (None,) * (len(kernel) - 2) + (g_in, g_out)
        self.add(layer, inner, "kernel", expanded, axes, True)
        self.add(layer, inner, "bias", (units,), (g_out,), True)
        return g_out, 1

    def batchnorm(self, layer, inner, source, node):
        g, repeat = source
        rank = len(_node_inputs(node)[0].shape)
        axes = inner.axis if isinstance(inner.axis, (list, tuple)) else [inner.axis]
        if [a % rank for a in axes] != [rank - 1] or repeat != 1:
            raise _unsupported(layer, "normalises another axis than the last (channels)")
        for attr, matched in _BN_VECTORS:
            self.add(layer, inner, attr, (self.uf.size[self.uf.find(g)],), (g,), matched)
        return g, 1

    def finish(self) -> PermutationSpec:
        uf = self.uf
        fixed = uf.find(FIXED)
        roots = sorted({uf.find(n) for n in uf.parent} - {fixed})
        index = {root: i for i, root in enumerate(roots)}
        groups = [Group(uf.origin[r], uf.size[r], tuple(uf.members[r])) for r in roots]

        def group_of(node):
            if node is None:
                return None
            return index.get(uf.find(node))

        weights = [PermutedWeight(layer, attr, var, expanded, tuple(group_of(a) for a in axes),
                                  matched, mask, is_mask)
                   for layer, attr, var, expanded, axes, matched, mask, is_mask in self.weights]
        weights = [w for w in weights if any(a is not None for a in w.axes)]
        tensors = [(index[uf.find(n)], t) for n, t in self.tensors if uf.find(n) != fixed]
        return PermutationSpec(groups, weights, tensors, self.signature)


def permutation_spec(model) -> PermutationSpec:
    """The permutation groups of `model` and every weight they index (see module docstring)."""
    return _Walker(model).run()


def _first_mismatch(items_a, items_b) -> Optional[int]:
    """Index of the first pair of items that differ other than by their name (item[0]); the
    shorter length if one list is a prefix of the other; None if they agree."""
    for index, (x, y) in enumerate(zip(items_a, items_b)):
        if x[1:] != y[1:]:
            return index
    return None if len(items_a) == len(items_b) else min(len(items_a), len(items_b))


def _layer_at(items, index) -> str:
    return repr(items[index][0]) if index < len(items) else "(none: it ends there)"


def check_same_architecture(a: Architecture, b: Architecture, name_a: str = "model_a",
                            name_b: str = "model_b") -> None:
    """ConfigError naming the first layer where `b` differs from `a` (names are not compared)."""
    index = _first_mismatch(a.layers, b.layers)
    if index is not None:
        def describe(items):
            return (f"{items[index][1]}, weight shapes {list(items[index][2])}"
                    if index < len(items) else f"{len(items)} layers")
        raise ConfigError(
            f"{name_a} and {name_b} differ in architecture at layer {_layer_at(b.layers, index)} "
            f"of {name_b} ({describe(b.layers)}) vs {_layer_at(a.layers, index)} of {name_a} "
            f"({describe(a.layers)}); align needs two networks of one architecture")
    index = _first_mismatch(a.wiring, b.wiring)
    if index is not None:
        raise ConfigError(
            f"{name_a} and {name_b} differ in how their layers are connected, first at layer "
            f"{_layer_at(b.wiring, index)} of {name_b} ({_layer_at(a.wiring, index)} of "
            f"{name_a}); align needs two networks of one architecture")
