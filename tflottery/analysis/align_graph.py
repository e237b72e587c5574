"""Permutation groups of a Sequential or functional model, found by walking its graph.

Why a graph walk: permuting the hidden units of a layer leaves the network's
function unchanged only if every weight that touches those units moves with
them -- the layer's own kernel columns and bias, the next layer's kernel
rows, a BatchNorm's gamma/beta/moving statistics in between, and, across a
residual addition, every layer whose output is added to theirs.  Which
weights those are follows from how tensors flow, so the walk propagates a
*channel layout* along every tensor (Ainsworth et al. 2022, "Git Re-Basin",
Appendix A's permutation spec, built here automatically).  A layout says
which group indexes each entry of the tensor's last axis: in general `repeat`
copies (outermost) of a concatenation of *segments*, each one group's
channels; mostly it is one segment of one group, repeated once.

* the model's inputs and outputs carry the fixed group (never permuted);
* a Dense or Conv layer starts a new group for its output units/channels; its
  kernel is indexed by (input layout, output group) on its last two axes, its
  bias by the output group;
* BatchNorm (over the last axis), LayerNormalization, activations, dropout,
  pooling, cropping, zero-padding and a Reshape that keeps the last
  dimension (squeeze-and-excite's (C,) -> (1, 1, C): row-major order keeps
  every channel's index) pass the layout through; BN's four
  vectors and LN's gamma/beta are indexed by it (LayerNormalization is
  permutation-equivariant over any axes: statistics over the channel axis
  do not depend on the channels' order, statistics per channel move with it);
* DepthwiseConv1D/2D (depth_multiplier 1): output channel c is computed from
  input channel c alone, so it passes the layout through; its depthwise
  kernel (..., C, 1) and bias are indexed by it.  A multiplier m > 1 gives
  channels c*m + j, which no layout here describes: refused where a
  permuted group reaches it;
* SeparableConv1D/2D: its depthwise kernel (..., C, m) is indexed by the
  input layout, its pointwise kernel (..., C*m, out) is viewed as
  (..., C, m, out) and indexed by (input layout, -, new output group);
* an elementwise merge (Add, Subtract, Average, Maximum, Minimum, Multiply)
  ties the groups of its inputs into one (union-find), segment by segment,
  so a ResNet block's shortcut and its residual branch share one
  permutation; a Concatenate along another axis than the channels ties
  them the same way;
* Concatenate along the channel axis gives the concatenation of its inputs'
  segments (Inception's branches): a consumer's kernel is cut along its
  input axis into pieces, one per segment, each permuted by its own group;
* Flatten of an (H, W, C) tensor gives H*W repeats of the channel layout (the
  channel index runs fastest in channels-last order), so the next Dense
  kernel is viewed as (H*W, C, units) and permuted on its middle axis;
* a nested Sequential or functional model (a model used as a layer) is
  walked into: its inputs take the layouts of the tensors it is called on,
  and the tensors it returns take its outputs' layouts.

A layer of any other type may sit where only fixed channels reach it (e.g. a
Rescaling of the input): its output is fixed.  Anywhere a permutation group
reaches it, it is a ConfigError naming it (Conv2DTranspose,
GroupNormalization, a Reshape of the channel axis, a depthwise multiplier
> 1, a concatenation of flattened tensors, a merge of a concatenation with
a tensor cut otherwise (NASNet), ...).  A Masked wrapper is treated as its
inner layer; its mask variables move with their weights.

tf_keras and Keras 3: the walk reads the model's graph (`_nodes_by_depth`,
deepest first, in the order Keras found the nodes walking back from the
outputs), whose node objects differ between the two only in attribute
names (_node_layer, _node_inputs, _node_outputs); layer classes are taken
from the model's own Keras (_classes).
"""
import dataclasses
import functools
from typing import Dict, List, NamedTuple, Optional, Tuple

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
    depthwise: tuple
    separable: tuple
    pass_through: tuple
    merges: tuple
    batchnorm: type
    layernorm: type
    concatenate: type
    flatten: type
    reshape: type
    input_layer: type
    model: type

    @property
    def propagating(self) -> tuple:
        return (self.weighted + self.depthwise + self.separable + self.pass_through + self.merges
                + (self.batchnorm, self.layernorm, self.concatenate, self.flatten, self.reshape))


@functools.lru_cache(maxsize=None)
def _classes(keras) -> _Classes:
    layers = keras.layers

    def named(*names):
        return tuple(getattr(layers, n) for n in names if hasattr(layers, n))

    # NOT_WEIGHTED first where it matters: tf_keras' ConvNDTranspose subclass ConvND.
    return _Classes(
        weighted=named("Dense", "Conv1D", "Conv2D", "Conv3D"),
        not_weighted=named("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"),
        depthwise=named("DepthwiseConv1D", "DepthwiseConv2D"),
        separable=named("SeparableConv1D", "SeparableConv2D"),
        pass_through=named(*_PASS_THROUGH_NAMES),
        merges=named("Add", "Subtract", "Average", "Maximum", "Minimum", "Multiply"),
        batchnorm=layers.BatchNormalization, layernorm=layers.LayerNormalization,
        concatenate=layers.Concatenate, flatten=layers.Flatten, reshape=layers.Reshape,
        input_layer=layers.InputLayer, model=keras.Model)


_BN_VECTORS = (("gamma", True), ("beta", True), ("moving_mean", False),
               ("moving_variance", False))
SUPPORTED = ("Dense, Conv1D/2D/3D, DepthwiseConv1D/2D (depth_multiplier 1), "
             "SeparableConv1D/2D, BatchNormalization, LayerNormalization, activations, dropout, "
             "pooling, zero-padding, cropping, Flatten, Reshape keeping the last axis, "
             "Concatenate, elementwise merges (Add, ...) and nested Sequential/functional models")

FIXED = 0   # union-find node of the channels that are never permuted


class Layout(NamedTuple):
    """How a tensor's last axis is indexed: `repeat` copies (outermost; Flatten's positions)
    of the concatenation of `segments`, each (union-find node, number of channels)."""

    repeat: int
    segments: Tuple[Tuple[int, Optional[int]], ...]


def _one(node: int, size: Optional[int]) -> Layout:
    return Layout(1, ((node, size),))


def _last_dim(tensor) -> Optional[int]:
    shape = tensor.shape
    return int(shape[-1]) if len(shape) > 1 and shape[-1] is not None else None


@dataclasses.dataclass(frozen=True)
class PermutedWeight:
    """One variable, or one piece of it, with at least one permuted axis.

    expanded: the shape under which every permuted axis is an axis of its
      own (a Dense kernel after Flatten: (positions, channels, units));
    piece: None for the whole (expanded) variable, or (axis, start, stop):
      the slice of the expanded variable along `axis` this entry stands for
      (a kernel reading a concatenation: one piece per concatenated segment);
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
    piece: Optional[Tuple[int, int, int]] = None

    @property
    def label(self) -> str:
        return f"{self.layer}/{self.attr}"

    @property
    def index(self) -> tuple:
        """NumPy index of this entry in the expanded variable (everything if not a piece)."""
        if self.piece is None:
            return (Ellipsis,)
        axis, start, stop = self.piece
        return (slice(None),) * axis + (slice(start, stop),)

    def read(self, variable=None) -> np.ndarray:
        """This entry's values (of `variable`, by default its own) in its expanded layout."""
        value = np.asarray((self.variable if variable is None else variable).numpy())
        return value.reshape(self.expanded)[self.index]


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
    out), (layer name, expanded shape, piece, group index per axis).  Only
    classes, shapes and group indices are compared, never names: the walk
    order and the group order follow from the graph alone, so two models
    built by one function (`dense`, `dense_1` and `dense_3`, `dense_4`) have
    one architecture.  The names are there to say where two models differ.
    """

    layers: Tuple[Tuple[str, str, Tuple], ...]
    wiring: Tuple[Tuple, ...]


class NestedCall:
    """A nested model's call: its graph's input tensors, the tensors it was called on (in
    the graph of `parent`, None for the outermost model)."""

    def __init__(self, graph_inputs, call_inputs, parent: Optional["NestedCall"]):
        self.graph_inputs, self.call_inputs, self.parent = graph_inputs, call_inputs, parent


@dataclasses.dataclass
class PermutationSpec:
    groups: List[Group]
    weights: List[PermutedWeight]
    # (group index, KerasTensor, NestedCall or None) of every tensor whose last axis is one
    # group, for activation matching; the NestedCall says in which nested model's graph the
    # tensor lives (None: the model's own).
    tensors: List[Tuple[int, object, Optional[NestedCall]]]
    # Per node in walk order: (inner layer name, class name, variable shapes),
    # to tell two models' architectures apart.
    signature: List[Tuple[str, str, Tuple]]

    @property
    def sizes(self) -> List[int]:
        return [g.size for g in self.groups]

    @property
    def architecture(self) -> Architecture:
        return Architecture(tuple(self.signature),
                            tuple((w.layer, w.expanded, w.piece, w.axes) for w in self.weights
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


def _pieces(shape, axis: int, layout: Layout, multiplier: int = 1, last: Optional[int] = None):
    """(expanded shape, [(piece, axes)]) of a weight of `shape` whose axis `axis` runs over
    the channels of a tensor of `layout`, each channel `multiplier` times (fastest: a
    separable convolution's depth multiplier), and whose last axis is indexed by the
    union-find node `last` (if given).  The axes hold union-find nodes."""
    shape = tuple(int(n) for n in shape)
    axis %= len(shape)
    repeat, segments = layout
    if len(segments) == 1:
        segments = ((segments[0][0], shape[axis] // (repeat * multiplier)),)
    total = sum(size for _, size in segments)
    if repeat * total * multiplier != shape[axis]:
        raise ConfigError(f"a weight of shape {shape} does not fit {repeat} x {total} channels "
                          f"(x {multiplier}) on its axis {axis}")
    expanded = (shape[:axis] + ((repeat,) if repeat > 1 else ()) + (total,)
                + ((multiplier,) if multiplier > 1 else ()) + shape[axis + 1:])
    channel = axis + (repeat > 1)
    out, start = [], 0
    for node, size in segments:
        axes = [None] * len(expanded)
        if last is not None:
            axes[-1] = last
        axes[channel] = node
        piece = None if len(segments) == 1 else (channel, start, start + size)
        out.append((piece, tuple(axes)))
        start += size
    return expanded, out


class _Walker:
    """One pass over the graph (and the graphs of nested models): tensor -> Layout."""

    def __init__(self, model):
        self.model = model
        self.graph, self.classes = _graph(model)
        self.uf = _UnionFind()
        self.info = {}             # id(KerasTensor) -> Layout
        self.weights: List[PermutedWeight] = []     # axes hold union-find nodes until finish()
        self.tensors = []          # (node, KerasTensor, NestedCall or None)
        self.signature = []

    def run(self) -> PermutationSpec:
        self.walk(self.graph, None)
        for t in tf.nest.flatten(self.graph.outputs):
            for g, _ in self.info[id(t)].segments:
                self.uf.union(g, FIXED, self.model.name + " output")
        return self.finish()

    def walk(self, graph, call: Optional[NestedCall]):
        for node in _walk_order(graph):
            self.visit(node, call)

    def fixed(self, layout: Layout) -> bool:
        return all(self.uf.find(g) == FIXED for g, _ in layout.segments)

    def visit(self, node, call):
        layer = _node_layer(node)
        inner = _inner(layer)
        c = self.classes
        # (A nested model's weights are its layers', listed when the walk reaches them: not
        # here, where a masked copy's would add its masks.)
        self.signature.append((inner.name, type(inner).__name__,
                               () if isinstance(inner, c.model) else
                               tuple(tuple(w.shape) for w in inner.weights)))
        outputs = _node_outputs(node)
        if isinstance(layer, c.input_layer):
            if call is None or any(id(t) not in self.info for t in outputs):
                for t in outputs:
                    self.info[id(t)] = _one(FIXED, _last_dim(t))
            return      # (a nested model's inputs were given their callers' layouts)
        inputs = [self.info[id(t)] for t in _node_inputs(node)]
        if isinstance(inner, c.model):
            return self.nested(layer, inner, node, inputs, call)
        if all(self.fixed(layout) for layout in inputs) and not isinstance(inner, c.propagating):
            outs = _one(FIXED, _last_dim(outputs[0]))   # nothing permuted reaches it: anything
        else:
            if layer.weights and len(layer._inbound_nodes) > 1:
                raise _unsupported(layer, f"is called {len(layer._inbound_nodes)} times")
            outs = self.propagate(layer, inner, inputs, node)
        for t in outputs:
            self.info[id(t)] = outs
            if outs.repeat == 1 and len(outs.segments) == 1 and not self.fixed(outs):
                self.tensors.append((outs.segments[0][0], t, call))

    def nested(self, layer, inner, node, inputs, call):
        """Walk into a nested model: its inputs take `inputs`' layouts; its outputs' layouts
        go to the tensors its call returned."""
        if len(layer._inbound_nodes) > 1:
            raise _unsupported(layer, f"is a nested model called {len(layer._inbound_nodes)} "
                               "times")
        graph, _ = _graph(inner)
        graph_inputs = tf.nest.flatten(graph.inputs)
        for t, layout in zip(graph_inputs, inputs):
            self.info[id(t)] = layout
        self.walk(graph, NestedCall(graph_inputs, _node_inputs(node), call))
        for t, inner_t in zip(_node_outputs(node), tf.nest.flatten(graph.outputs)):
            self.info[id(t)] = self.info[id(inner_t)]

    def propagate(self, layer, inner, inputs, node) -> Layout:
        c = self.classes
        if isinstance(inner, c.not_weighted) or (
                isinstance(inner, c.weighted + c.depthwise + c.separable + c.pass_through
                           + (c.flatten,)) and not _channels_last(inner)):
            raise _unsupported(layer, "is not a supported layer or data format")
        if isinstance(inner, c.depthwise):
            return self.depthwise(layer, inner, inputs[0], node)
        if isinstance(inner, c.separable):
            return self.separable(layer, inner, inputs[0])
        if isinstance(inner, c.weighted):
            return self.weighted(layer, inner, inputs[0])
        if isinstance(inner, c.batchnorm):
            return self.batchnorm(layer, inner, inputs[0], node)
        if isinstance(inner, c.layernorm):
            return self.layernorm(layer, inner, inputs[0], node)
        if isinstance(inner, c.pass_through):
            return inputs[0]
        if isinstance(inner, c.merges):
            return self.tie(layer, inputs)
        if isinstance(inner, c.concatenate):
            return self.concatenate(layer, inner, inputs, node)
        if isinstance(inner, c.flatten):
            repeat, segments = inputs[0]
            shape = _node_inputs(node)[0].shape
            positions = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
            return Layout(repeat * positions, segments)
        if isinstance(inner, c.reshape):
            # Row-major: a reshape that keeps the last dimension keeps every channel's index
            # (a squeeze-and-excite block's (C,) -> (1, 1, C)).
            if _last_dim(_node_inputs(node)[0]) != _last_dim(_node_outputs(node)[0]):
                raise _unsupported(layer, "changes the last (channel) dimension")
            return inputs[0]
        raise _unsupported(layer, "is not a supported layer type")

    def add(self, layer, inner, attr, axis, layout, multiplier=1, last=None, matched=True):
        """Record variable `attr` of `inner`, its axis `axis` indexed by `layout` (see
        _pieces), with its mask if it has one."""
        var = getattr(inner, attr, None)
        if var is None:
            return
        mask = layer.mask_variable(attr) if (isinstance(layer, MaskedMixin)
                                             and attr in layer.prunable_attrs) else None
        expanded, pieces = _pieces(var.shape, axis, layout, multiplier, last)
        for piece, axes in pieces:
            self.weights.append(PermutedWeight(inner.name, attr, var, expanded, axes, matched,
                                               mask, piece=piece))
            if mask is not None:
                self.weights.append(PermutedWeight(inner.name, f"{attr}_mask", mask, expanded,
                                                   axes, False, None, True, piece))

    def weighted(self, layer, inner, source: Layout) -> Layout:
        if getattr(inner, "groups", 1) != 1:
            raise _unsupported(layer, f"is a grouped convolution (groups={inner.groups})")
        units = int(inner.kernel.shape[-1])
        g_out = self.uf.new(units, inner.name)
        self.add(layer, inner, "kernel", -2, source, last=g_out)
        self.add(layer, inner, "bias", 0, _one(g_out, units))
        return _one(g_out, units)

    def depthwise(self, layer, inner, source: Layout, node) -> Layout:
        if self.fixed(source):
            return _one(FIXED, _last_dim(_node_outputs(node)[0]))
        if inner.depth_multiplier != 1:
            raise _unsupported(layer, f"has depth_multiplier {inner.depth_multiplier} (its "
                               "output channel c*m + j is not one group's channel)")
        kernel = "depthwise_kernel" if hasattr(inner, "depthwise_kernel") else "kernel"
        self.add(layer, inner, kernel, -2, source)      # (..., C, 1)
        self.add(layer, inner, "bias", 0, source)
        return source

    def separable(self, layer, inner, source: Layout) -> Layout:
        units = int(inner.pointwise_kernel.shape[-1])
        g_out = self.uf.new(units, inner.name)
        self.add(layer, inner, "depthwise_kernel", -2, source)      # (..., C, m)
        self.add(layer, inner, "pointwise_kernel", -2, source, multiplier=inner.depth_multiplier,
                 last=g_out)                                        # (..., C*m, out)
        self.add(layer, inner, "bias", 0, _one(g_out, units))
        return _one(g_out, units)

    def batchnorm(self, layer, inner, source: Layout, node) -> Layout:
        rank = len(_node_inputs(node)[0].shape)
        axes = inner.axis if isinstance(inner.axis, (list, tuple)) else [inner.axis]
        if [a % rank for a in axes] != [rank - 1] or source.repeat != 1:
            raise _unsupported(layer, "normalises another axis than the last (channels)")
        for attr, matched in _BN_VECTORS:
            self.add(layer, inner, attr, 0, source, matched=matched)
        return source

    def layernorm(self, layer, inner, source: Layout, node) -> Layout:
        rank = len(_node_inputs(node)[0].shape)
        axes = [a % rank for a in (inner.axis if isinstance(inner.axis, (list, tuple))
                                   else [inner.axis])]
        if rank - 1 in axes:     # gamma and beta have one axis per normalised axis, in order
            position = axes.index(rank - 1)
            for attr in ("gamma", "beta"):
                self.add(layer, inner, attr, position, source)
        return source

    def tie(self, layer, inputs) -> Layout:
        """One layout for inputs that meet channel by channel (elementwise merges): their
        segments' groups are tied in pairs."""
        first = inputs[0]
        for other in inputs[1:]:
            if other.repeat != first.repeat:
                raise _unsupported(layer, "merges flattened tensors of different layouts")
            if len(other.segments) == len(first.segments):
                for (a, _), (b, _) in zip(first.segments, other.segments):
                    self.uf.union(a, b, layer.name)
            elif self.fixed(first) or self.fixed(other):
                for g, _ in first.segments + other.segments:
                    self.uf.union(g, FIXED, layer.name)
            else:
                raise _unsupported(layer, "merges tensors concatenated from different parts")
        return Layout(first.repeat, tuple((self.uf.find(g), size) for g, size in first.segments))

    def concatenate(self, layer, inner, inputs, node) -> Layout:
        tensors = _node_inputs(node)
        rank = len(tensors[0].shape)
        if inner.axis % rank != rank - 1:
            return self.tie(layer, inputs)
        if all(self.fixed(layout) for layout in inputs):
            return _one(FIXED, _last_dim(_node_outputs(node)[0]))
        if any(layout.repeat != 1 for layout in inputs):
            raise _unsupported(layer, "concatenates flattened tensors")
        segments = ()
        for layout, t in zip(inputs, tensors):
            if len(layout.segments) == 1:
                segments += ((layout.segments[0][0], _last_dim(t)),)
            else:
                segments += layout.segments
        return Layout(1, segments)

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

        weights = [dataclasses.replace(w, axes=tuple(group_of(a) for a in w.axes))
                   for w in self.weights]
        weights = [w for w in weights if any(a is not None for a in w.axes)]
        tensors = [(index[uf.find(n)], t, call) for n, t, call in self.tensors
                   if uf.find(n) != fixed]
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
