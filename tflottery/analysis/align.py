"""Permutation alignment of two networks (Entezari et al. 2022; Ainsworth et al. 2022).

    from tflottery.analysis import align
    permutation = align.weight_matching(model_a, model_b)   # B's units matched to A's
    aligned_b = align.apply(model_b, permutation)            # a new model; or in_place=True
    align.activation_matching(model_a, model_b, images)     # the data-driven alternative

Why: the hidden units of a layer can be listed in any order without changing
the function the network computes, so two networks that differ only by such
an ordering are the same network at two far-apart points of weight space,
and the linear path between them can cross a high error barrier.  Entezari
et al. conjecture that, once units are put into correspondence, networks
trained with different SGD noise -- even from different initialisations --
are linearly mode connected; Ainsworth et al. find the correspondence by
weight matching.  Aligning copy B to copy A before interpolating measures
the barrier that is left.

Which units may be permuted together is read off the model's graph
(align_graph.py: Dense/Conv units, tied through BatchNorm, depthwise
convolutions and residual additions, concatenated into the kernels that
read them, also inside nested models); the search itself is NumPy
(align_match.py).  A weight reading a concatenation is cut into pieces, one
per concatenated group: the search sees every piece as a weight of its own,
and `apply` permutes a variable piece by piece and assigns it once.  A
`Permutation` holds one int array per group, B's unit perm[i] going to
position i, in the groups' structural order: the order in which a walk of
the graph meets them (align_graph.py), which depends on the architecture
alone.  `apply` uses
that order, never layer names, so a permutation found for `b` applies to
`b` and to any model of the same architecture, however Keras named its
layers (two models built by one function in one process are `dense`,
`dense_1` and `dense_3`, `dense_4`); a model of another architecture is a
ConfigError naming the first layer that differs.  The group names (the
first layer of each group in the model the permutation was made from) only
label the groups for reading: `permutation['dense']`.  Masks of a Masked
model move with their weights, so applying a permutation never changes the
function, also for a subnetwork and also for BatchNorm in training mode.

tf_keras and Keras 3 models alike (Sequential or functional; on Keras 3
the variables are read and assigned through Keras, so any backend).
"""
from collections.abc import Mapping
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tflottery import stop
from tflottery.analysis import align_graph, align_match
from tflottery.errors import ConfigError
from tflottery.keras_compat import api_of
from tflottery.masking.layer import MaskedMixin

permutation_spec = align_graph.permutation_spec


class Permutation(Mapping):
    """Immutable mapping group name -> int permutation array, in the groups' structural order.

    perms: {group name: array}, in the order of the groups of the model's
    permutation spec (align.groups(model) lists them).  `apply` pairs the
    arrays with a model's groups by position; the names are labels.
    architecture: the align_graph.Architecture of the model the permutation
    was made for, so that `apply` can name the layer where another model
    differs (None for a hand-made permutation: only the group sizes are
    checked).
    history: for a weight-matching result, the objective before the search
    and after every coordinate step, as (group name or None, objective).
    """

    def __init__(self, perms: Dict[str, np.ndarray], history: Sequence[Tuple] = (),
                 architecture: Optional[align_graph.Architecture] = None):
        self._perms = {}
        for name, perm in perms.items():
            perm = np.asarray(perm)
            if perm.ndim != 1 or not np.array_equal(np.sort(perm), np.arange(perm.size)):
                raise ConfigError(f"the permutation of group {name!r} is not a permutation of "
                                  f"0..{perm.size - 1}")
            perm = perm.astype(np.int64)
            perm.setflags(write=False)
            self._perms[str(name)] = perm
        self.history = tuple(history)
        self.architecture = architecture
        self.restarts = (self,)     # weight_matching(restarts=N): every search's result

    def __getitem__(self, name):
        return self._perms[name]

    def __iter__(self):
        return iter(self._perms)

    def __len__(self):
        return len(self._perms)

    def is_identity(self) -> bool:
        return all(np.array_equal(p, np.arange(p.size)) for p in self._perms.values())

    @property
    def objective(self) -> Optional[float]:
        """The weight-matching objective the permutation reached (None if hand-made)."""
        return self.history[-1][1] if self.history else None

    def moved_fraction(self) -> float:
        """Fraction of all units that the permutation moves (0 for the identity)."""
        total = sum(p.size for p in self._perms.values())
        moved = sum(int(np.count_nonzero(p != np.arange(p.size))) for p in self._perms.values())
        return moved / total if total else 0.0

    def __repr__(self):
        return f"Permutation({len(self)} groups, {100 * self.moved_fraction():.1f}% of units moved)"


def groups(model) -> Dict[str, int]:
    """{group name: number of units} of `model`'s permutation groups."""
    return {g.name: g.size for g in permutation_spec(model).groups}


def identity(model) -> Permutation:
    spec = permutation_spec(model)
    return Permutation({g.name: np.arange(g.size) for g in spec.groups},
                       architecture=spec.architecture)


def random_permutation(model, seed: int = 0) -> Permutation:
    """A uniformly random permutation of every group of `model` (for tests and controls)."""
    rng = np.random.default_rng(seed)
    spec = permutation_spec(model)
    return Permutation({g.name: rng.permutation(g.size) for g in spec.groups},
                       architecture=spec.architecture)


def _pair_specs(model_a, model_b):
    spec_a, spec_b = permutation_spec(model_a), permutation_spec(model_b)
    align_graph.check_same_architecture(spec_a.architecture, spec_b.architecture)
    return spec_a, spec_b


def _matched_arrays(spec) -> list:
    """The objective's weights (times their masks), in the expanded layout."""
    out = []
    for w in spec.weights:
        if w.matched:
            value = np.asarray(w.read(), np.float64)
            if w.mask is not None:
                value = value * w.read(w.mask)
            out.append(value)
    return out


def weight_matching(model_a, model_b, seed: int = 0, max_rounds: int = 1000,
                    restarts: int = 1) -> Permutation:
    """The permutation of B's units maximising sum <W_a, pi(W_b)> (coordinate descent).

    Every trainable weight indexed by a group counts (kernels times masks,
    biases, BN gamma and beta); BN moving statistics and masks only move.
    `seed` orders the groups in each round.  The result's `history` holds
    the objective after every step (it never decreases).

    restarts: search from this many visiting orders (seeds seed, seed + 1,
    ...) and keep the permutation of the highest final objective (the first
    on a tie).  Coordinate descent ends in a local optimum that depends on
    the order (on LeNet two orders can share only a third of the units), so
    restarts trade time for a better optimum.  The result's `restarts`
    holds every search's Permutation, in seed order (just itself for one).
    """
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ConfigError(f"restarts must be a positive integer, got {restarts!r}")
    spec_a, spec_b = _pair_specs(model_a, model_b)
    axes = [w.axes for w in spec_a.weights if w.matched]
    arrays_a, arrays_b = _matched_arrays(spec_a), _matched_arrays(spec_b)
    names = [g.name for g in spec_a.groups]
    found = []
    for restart in range(restarts):
        perms, history = align_match.weight_matching(
            arrays_a, arrays_b, axes, spec_a.sizes, seed + restart, max_rounds)
        found.append(Permutation(dict(zip(names, perms)),
                                 [(None if g is None else names[g], value) for g, value in history],
                                 spec_a.architecture))
    best = max(found, key=lambda p: p.objective)     # max() keeps the first of equals
    best.restarts = tuple(found)
    return best


def _one_or_all(tensors):
    tensors = list(tensors)
    return tensors[0] if len(tensors) == 1 else tensors


def _probe(model, spec):
    """A model sharing `model`'s layers whose outputs are every tensor of every group.

    A tensor inside a nested model lives in that model's graph, not connected
    to `model`'s inputs: a model from the nested model's inputs to its
    tensors is called on the tensors the nested model was called on (lifted
    the same way if those are nested themselves).  No layer of `model` gets
    a new call.
    """
    keras = api_of(model).keras

    def lift(tensors, call):
        if call is None:
            return list(tensors)
        inner = keras.Model(_one_or_all(call.graph_inputs), list(tensors))
        return tf.nest.flatten(inner(_one_or_all(lift(call.call_inputs, call.parent))))

    by_call = {}
    for i, (_, _, call) in enumerate(spec.tensors):
        by_call.setdefault(call, []).append(i)
    outputs = [None] * len(spec.tensors)
    for call, indices in by_call.items():
        for i, t in zip(indices, lift([spec.tensors[i][1] for i in indices], call)):
            outputs[i] = t
    return keras.Model(_one_or_all(model.inputs), outputs)


def activation_matching(model_a, model_b, images, chunk_size: int = 100) -> Permutation:
    """The permutation of B's units maximising the correlation of their activations with A's.

    `images`: (training) inputs, as an array or tensor, run through both
    models (inference mode) `chunk_size` at a time; every tensor of a group
    (outputs of its Dense/Conv layers, BatchNorms, activations, additions;
    not concatenations, whose parts are tensors of their own) adds its
    correlation matrix, each spatial position counting as an example.
    """
    spec_a, spec_b = _pair_specs(model_a, model_b)
    names = [g.name for g in spec_a.groups]
    if not spec_a.tensors:
        return Permutation({}, architecture=spec_a.architecture)
    probes = (_probe(model_a, spec_a), _probe(model_b, spec_b))
    correlations = [align_match.Correlation(int(t.shape[-1])) for _, t, _ in spec_a.tensors]
    images = np.asarray(images)
    for start in range(0, len(images), int(chunk_size)):
        stop.check(f"aligning (example {start} of {len(images)})")
        chunk = images[start:start + int(chunk_size)]
        outputs_a, outputs_b = (tf.nest.flatten(p(chunk, training=False)) for p in probes)
        for corr, x, y in zip(correlations, outputs_a, outputs_b):
            corr.add(*(np.reshape(np.asarray(v), (-1, v.shape[-1])) for v in (x, y)))
    totals = [0.0] * len(names)
    for (group, _, _), corr in zip(spec_a.tensors, correlations):
        totals[group] = totals[group] + corr.matrix()
    return Permutation(dict(zip(names, align_match.assign_by_correlation(totals))),
                       architecture=spec_a.architecture)


def _check_fits(spec, permutation: Permutation, model_name: str) -> None:
    """ConfigError unless `permutation`'s groups, by position, fit the groups of `spec`."""
    if permutation.architecture is not None:
        align_graph.check_same_architecture(permutation.architecture, spec.architecture,
                                            "the permutation's model", f"model {model_name!r}")
    names = [g.name for g in spec.groups]
    if len(permutation) != len(names):
        raise ConfigError(f"the permutation does not fit the model: it has {len(permutation)} "
                          f"groups {list(permutation)} but model {model_name!r} has "
                          f"{len(names)}: {names}")
    for index, (group, (name, perm)) in enumerate(zip(spec.groups, permutation.items())):
        if perm.size != group.size:
            raise ConfigError(
                f"group {index} of the permutation ({name!r}) has {perm.size} entries but "
                f"group {index} of model {model_name!r} (layer {group.name!r}) has {group.size} "
                f"units")


def _fresh(layer):
    """A new layer configured like `layer` (Masked: around a fresh inner layer)."""
    if isinstance(layer, MaskedMixin):
        inner = layer.layer
        return type(layer)(inner.__class__.from_config(inner.get_config()),
                           prunable_attrs=layer.prunable_attrs, name=layer.name)
    return layer.__class__.from_config(layer.get_config())


def _clone(model):
    keras = api_of(model).keras

    def fresh(layer):       # clone_model leaves nested models to the clone function
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, clone_function=fresh)
        return _fresh(layer)

    clone = keras.models.clone_model(model, clone_function=fresh)
    clone.set_weights(model.get_weights())
    return clone


def apply(model, permutation: Permutation, in_place: bool = False):
    """`model` with its units permuted by `permutation` (same function).

    The permutation's groups are taken in order (module docstring), so
    `model` may be any model of the architecture it was made for, whatever
    its layer names.  in_place=False returns a clone (built under the caller's strategy scope)
    and leaves `model` alone; in_place=True permutes `model`'s own variables
    and returns it (no new variables: traced functions keep working).
    """
    _check_fits(permutation_spec(model), permutation, model.name)
    target = model if in_place else _clone(model)
    spec = permutation_spec(target)
    perms = list(permutation.values())
    # A variable cut into pieces (a kernel reading a concatenation) is permuted piece by
    # piece from its old value and assigned once.
    moved = {}      # id(variable) -> (variable, new value in its expanded layout)
    for w in spec.weights:
        if id(w.variable) not in moved:
            whole = np.array(w.variable.numpy()).reshape(w.expanded)
            moved[id(w.variable)] = (w.variable, whole)
        moved[id(w.variable)][1][w.index] = align_match.permute(w.read(), w.axes, perms)
    for variable, value in moved.values():
        variable.assign(value.reshape(tuple(variable.shape)))
    return target


def align_to(model_a, model_b, method: str = "weights", images: Optional[np.ndarray] = None,
             seed: int = 0, restarts: int = 1) -> Permutation:
    """Permute `model_b` in place to match `model_a` by `method`; returns the permutation.

    restarts: weight matching's (see weight_matching); activation matching is
    one assignment per group, with no visiting order to restart from.
    """
    if method == "weights":
        permutation = weight_matching(model_a, model_b, seed=seed, restarts=restarts)
    elif method == "activations":
        if images is None:
            raise ConfigError("activation matching needs a batch of images")
        if restarts != 1:
            raise ConfigError(f"restarts={restarts!r} needs weight matching: activation "
                              "matching has no visiting order; leave restarts at 1")
        permutation = activation_matching(model_a, model_b, images)
    else:
        raise ConfigError(f"unknown alignment method {method!r}; choose 'weights' or "
                          "'activations'")
    apply(model_b, permutation, in_place=True)
    return permutation
