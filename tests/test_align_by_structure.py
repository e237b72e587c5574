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
import importlib.util
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

import keras as keras3
from tflottery import masking
from tflottery.analysis import align
from tflottery.errors import ConfigError
from tflottery.keras_compat import keras
from test_align import brute_force_objective as objective   # the 3 -> 4 -> 3 -> 2 MLP's

KERASES = {"tf_keras": keras, "keras3": keras3}


def sequential_net(widths=(4, 3), k=keras):
    layers = [k.Input((3,))]
    layers += [k.layers.Dense(w, activation="relu", bias_initializer="random_normal")
               for w in widths]
    return k.Sequential(layers + [k.layers.Dense(2, bias_initializer="random_normal")])


def functional_net(widths=(4, 3), k=keras):
    inputs = k.Input((4, 4, 2))
    x = k.layers.Conv2D(widths[0], 3, padding="same")(inputs)
    x = k.layers.BatchNormalization()(x)
    x = k.layers.ReLU()(x)
    x = k.layers.Flatten()(x)
    x = k.layers.Dense(widths[1], activation="relu")(x)
    return k.Model(inputs, k.layers.Dense(2, activation="softmax")(x))


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
@pytest.mark.parametrize("k", list(KERASES))
def test_two_models_from_one_function_align_whatever_their_names(k, kind, masked):
    def build():
        return BUILDERS[kind](k=KERASES[k])

    KERASES[k].utils.set_random_seed(0)
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
    np.testing.assert_allclose(np.asarray(b(x, training=False)), np.asarray(a(x, training=False)),
                               rtol=1e-5, atol=1e-6)


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


def test_keras3_activation_matching_and_mixing_kerases():
    keras3.utils.set_random_seed(0)
    a, b = functional_net(k=keras3), functional_net(k=keras3)
    p = align.random_permutation(a, seed=3)
    align.apply(same_weights_as(b, a), p, in_place=True)
    x = np.random.default_rng(4).normal(size=(64, 4, 4, 2)).astype(np.float32)
    q = align.activation_matching(a, b, x)
    for (group, perm), found in zip(p.items(), q.values()):
        np.testing.assert_array_equal(found, np.argsort(perm), err_msg=group)
    # A tf_keras model of the same architecture takes a Keras 3 model's permutation.
    keras.utils.set_random_seed(0)
    c = same_weights_as(functional_net(k=keras), b)
    assert weights_equal(align.apply(c, q), a)


def test_the_objective_history_ends_at_the_objective_of_the_final_permutation():
    """Steps add their cost change to the objective, except for a group on two axes of one
    weight (x + Dense(x) ties them), which is recomputed; both must end at <W_a, pi(W_b)>."""
    from tflottery.analysis import align_match
    rng = np.random.default_rng(5)
    axes = [(None, 0), (0,), (0, 1), (1, 1), (1, None)]
    shapes = [(3, 4), (4,), (4, 5), (5, 5), (5, 2)]
    weights_a = [rng.normal(size=s) for s in shapes]
    weights_b = [rng.normal(size=s) for s in shapes]
    perms, history = align_match.weight_matching(weights_a, weights_b, axes, [4, 5], seed=1)
    assert len(history) > 3 and any(g == 1 for g, _ in history)
    by_hand = (np.sum(weights_a[0] * weights_b[0][:, perms[0]])
               + np.sum(weights_a[1] * weights_b[1][perms[0]])
               + np.sum(weights_a[2] * weights_b[2][perms[0]][:, perms[1]])
               + np.sum(weights_a[3] * weights_b[3][perms[1]][:, perms[1]])
               + np.sum(weights_a[4] * weights_b[4][perms[1], :]))
    assert history[-1][1] == pytest.approx(by_hand, rel=1e-12)
    values = [v for _, v in history]
    assert all(y >= x - 1e-9 for x, y in zip(values, values[1:]))


JAX_CHECKS = r'''
import numpy as np
import keras
from tflottery import masking
from tflottery.analysis import align
assert keras.backend.backend() == "jax"

def net():
    i = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(4, 3, padding="same")(i)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(3, activation="relu")(x)
    return keras.Model(i, keras.layers.Dense(2)(x))

keras.utils.set_random_seed(0)
a, b = masking.wrap(net()), masking.wrap(net())
b.set_weights(a.get_weights())
p = align.random_permutation(a, seed=1)
align.apply(b, p, in_place=True)
assert not all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))
x = np.random.default_rng(0).normal(size=(5, 4, 4, 2)).astype(np.float32)
np.testing.assert_allclose(np.asarray(b(x)), np.asarray(a(x)), rtol=1e-5, atol=1e-6)
q = align.weight_matching(a, b)
for perm, found in zip(p.values(), q.values()):
    np.testing.assert_array_equal(found, np.argsort(perm))
c = align.apply(b, q)
assert all(np.array_equal(u, v) for u, v in zip(a.get_weights(), c.get_weights()))
images = np.random.default_rng(1).normal(size=(64, 4, 4, 2)).astype(np.float32)
q2 = align.activation_matching(a, b, images)
for perm, found in zip(p.values(), q2.values()):
    np.testing.assert_array_equal(found, np.argsort(perm))
print("JAX ALIGN OK")
'''


@pytest.mark.slow    # a child Python importing JAX and Keras: ~45 s
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_keras3_on_jax_permuted_copy_recovered_by_weight_and_activation_matching():
    """Keras picks its backend once per process: the checks run in a child Python."""
    result = subprocess.run([sys.executable, "-c", JAX_CHECKS],
                            env=dict(os.environ, KERAS_BACKEND="jax"), capture_output=True,
                            text=True, timeout=300,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "JAX ALIGN OK" in result.stdout
