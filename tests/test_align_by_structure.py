"""Alignment by structure, not by layer name (#21 point 5).

Two models built by one function in one process get different layer names
(`dense`, `dense_1` and `dense_3`, `dense_4`).  A permutation is made by
construction (a random one, applied to a copy of A's weights held by the
differently named B), so the right answer is known: weight matching must
return its inverse, and applying that to B -- or to a third model of the
same architecture with B's weights -- must give A's weights exactly.  A
brute-force search over every permutation of a small MLP confirms the
inverse is the objective's unique maximum.
"""
from conftest import SMALL_RUN  # noqa: F401  (sets up TF before the imports below)
import itertools

import numpy as np
import pytest

import keras as keras3
from tflottery import masking
from tflottery.analysis import align
from tflottery.errors import ConfigError
from tflottery.keras_compat import keras
from test_align import brute_force_objective as objective   # the 3 -> 4 -> 3 -> 2 MLP's

L = keras.layers


def sequential_net(widths=(4, 3)):
    layers = [keras.Input((3,))]
    layers += [L.Dense(w, activation="relu", bias_initializer="random_normal") for w in widths]
    return keras.Sequential(layers + [L.Dense(2, bias_initializer="random_normal")])


def functional_net(widths=(4, 3)):
    inputs = keras.Input((4, 4, 2))
    x = L.Conv2D(widths[0], 3, padding="same")(inputs)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.Flatten()(x)
    x = L.Dense(widths[1], activation="relu")(x)
    return keras.Model(inputs, L.Dense(2, activation="softmax")(x))


BUILDERS = {"sequential": sequential_net, "functional": functional_net}


def names(model):
    return [layer.name for layer in model.layers]


def weights_equal(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


def same_weights_as(model, donor):
    model.set_weights(donor.get_weights())
    return model


@pytest.mark.parametrize("masked", [False, True], ids=["dense", "masked"])
@pytest.mark.parametrize("kind", list(BUILDERS))
def test_two_models_from_one_function_align_whatever_their_names(kind, masked):
    build = BUILDERS[kind]
    keras.utils.set_random_seed(0)
    a, b, c = build(), build(), build()
    if masked:
        a, b, c = (masking.wrap(m) for m in (a, b, c))
        rng = np.random.default_rng(1)
        masking.set_mask(a, {n: rng.random(v.shape) < 0.7
                             for n, v in masking.prunable_variables(a).items()})
    assert len({tuple(names(m)) for m in (a, b, c)}) == 3        # three namings
    # B holds A's network with its units moved by p (made on A, applied to B by position).
    p = align.random_permutation(a, seed=2)
    assert not p.is_identity()
    align.apply(same_weights_as(b, a), p, in_place=True)
    assert not weights_equal(a, b)
    q = align.weight_matching(a, b)
    for (group, perm), found in zip(p.items(), q.values()):
        np.testing.assert_array_equal(found, np.argsort(perm), err_msg=group)
    assert weights_equal(align.apply(b, q), a)
    # A third model of the architecture, named otherwise again, holding B's weights.
    c = same_weights_as(c, b)
    assert weights_equal(align.apply(c, q), a)
    x = np.random.default_rng(3).normal(size=(5,) + tuple(a.input_shape[1:])).astype(np.float32)
    np.testing.assert_allclose(b(x, training=False), a(x, training=False), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_a_permuted_copy_is_the_brute_force_optimum_and_weight_matching_finds_it(seed):
    keras.utils.set_random_seed(seed)
    a, b = sequential_net(), sequential_net()
    p = align.random_permutation(a, seed=seed)
    align.apply(same_weights_as(b, a), p, in_place=True)
    scored = {(r1, r2): objective(a, b, np.array(r1), np.array(r2))
              for r1 in itertools.permutations(range(4))
              for r2 in itertools.permutations(range(3))}
    best = max(scored, key=scored.get)
    perms = list(p.values())
    assert best == (tuple(np.argsort(perms[0])), tuple(np.argsort(perms[1])))
    assert sorted(scored.values())[-2] < scored[best] - 1e-9        # the unique maximum
    q = list(align.weight_matching(a, b).values())
    assert (tuple(q[0]), tuple(q[1])) == best


def one_line_error(call, *fragments):
    with pytest.raises(ConfigError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_another_architecture_is_refused_naming_its_first_differing_layer():
    keras.utils.set_random_seed(0)
    a, b = sequential_net(), sequential_net((4, 5))
    q = align.identity(a)
    other = b.layers[1].name
    one_line_error(lambda: align.apply(b, q), "differ in architecture", repr(other))
    one_line_error(lambda: align.weight_matching(a, b), "differ in architecture", repr(other))
    # A hand-made permutation (no architecture) is checked group by group, by position.
    hand_made = align.Permutation({"first": np.arange(4), "second": np.arange(3)})
    one_line_error(lambda: align.apply(b, hand_made), "group 1", "has 3 entries", "has 5 units",
                   repr(other))


def test_keras3_models_are_refused_in_one_line():
    model = keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(4),
                               keras3.layers.Dense(2)])
    keras.utils.set_random_seed(0)
    q = align.identity(sequential_net())
    for call in (lambda: align.apply(model, q), lambda: align.weight_matching(model, model),
                 lambda: align.groups(model)):
        one_line_error(call, "Keras 3 model", "tf_keras")
