"""Permutation alignment (tflottery.analysis.align): applying a permutation keeps
the function (with masks, BatchNorm in training mode, residual adds, Flatten),
weight and activation matching recover a permuted copy exactly, the
coordinate descent never lowers its objective (checked against a brute-force
NumPy search), and bad inputs give one-line ConfigErrors naming the layer."""
from conftest import SMALL_RUN  # noqa: F401,E402  (sets up TF before the imports below)
import itertools

import numpy as np
import pytest

from tflottery import masking, models
from tflottery.analysis import align
from tflottery.errors import ConfigError
from tflottery.keras_compat import keras

L = keras.layers


def conv_bn_net(seed=0):
    """Conv-BN-ReLU-pool, Conv-BN-ReLU, Flatten (4 positions x 5 channels), Dense, Dense."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4, 4, 2))
    x = L.Conv2D(4, 3, padding="same")(inputs)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(5, 3, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    x = L.Flatten()(x)
    x = L.Dense(6)(x)
    x = L.ReLU()(x)       # a layer of its own: activation matching sees the pre-activations
    return keras.Model(inputs, L.Dense(3)(x))


def mlp(hidden=(4, 3), seed=0, inputs_dim=3):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((inputs_dim,))
    x = inputs
    for units in hidden:
        x = L.Dense(units, activation="relu", bias_initializer="random_normal")(x)
    return keras.Model(inputs, L.Dense(2, bias_initializer="random_normal")(x))


BUILDERS = {
    "mlp": (lambda: models.build("lenet_300_100", (4, 4, 1), 10, seed=0), (4, 4, 1)),
    "conv_bn": (conv_bn_net, (4, 4, 2)),
    "resnet_20": (lambda: models.build("resnet_20", (8, 8, 3), 10, seed=0), (8, 8, 3)),
}


def randomised(model, seed, masked):
    """`model` (wrapped if `masked`, with a random 70% mask) with random BN parameters and
    statistics, so that BN ties are exercised with distinct per-channel values."""
    rng = np.random.default_rng(seed)
    if masked:
        model = masking.wrap(model)
        names = masking.prunable_variables(model)
        masking.set_mask(model, {n: rng.random(v.shape) < 0.7 for n, v in names.items()})
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            for var in (layer.gamma, layer.beta, layer.moving_mean):
                var.assign(rng.normal(size=var.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=layer.moving_variance.shape))
    return model


def inputs_for(shape, n=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n,) + shape).astype(np.float32)


def same_variables(a, b):
    """Every variable equal, layer by layer (a clone may order `model.variables` otherwise)."""
    assert len(a.layers) == len(b.layers)
    return all(np.array_equal(u.numpy(), v.numpy())
               for la, lb in zip(a.layers, b.layers) for u, v in zip(la.weights, lb.weights))


@pytest.mark.parametrize("masked", [False, True], ids=["dense", "masked"])
@pytest.mark.parametrize("name", list(BUILDERS))
def test_apply_keeps_the_function_and_matching_recovers_the_copy(name, masked):
    build, shape = BUILDERS[name]
    a = randomised(build(), 1, masked)
    p = align.random_permutation(a, seed=2)
    b = align.apply(a, p)
    assert not same_variables(a, b)                       # the copy's units did move
    if masked:      # each mask moved with its weight
        for wrapper in masking.masked_layers(b):
            for attr in wrapper.prunable_attrs:
                kept = wrapper.mask_variable(attr).numpy() > 0
                assert np.all(getattr(wrapper.layer, attr).numpy()[~kept] == 0)
        assert masking.get_mask(a) != masking.get_mask(b)
    q = align.weight_matching(a, b)
    for group, perm in p.items():        # p moves a's unit p[i] to i; q must undo it
        np.testing.assert_array_equal(q[group], np.argsort(perm))
    aligned = align.apply(b, q)
    assert same_variables(a, aligned)
    # Last: a training-mode call updates BN moving statistics (in a and b alike).
    x = inputs_for(shape)
    for training in (False, True):
        np.testing.assert_allclose(b(x, training=training), a(x, training=training),
                                   rtol=1e-5, atol=1e-5)


def midpoint(model_a, model_b):
    mix = keras.models.clone_model(model_a)
    mix.set_weights([(u + v) / 2 for u, v in zip(model_a.get_weights(), model_b.get_weights())])
    return mix


def test_aligned_barrier_is_zero_and_raw_barrier_is_not():
    from tflottery.analysis import error_barrier
    a = randomised(models.build("lenet_300_100", (4, 4, 1), 10, seed=0), 1, masked=True)
    b = align.apply(a, align.random_permutation(a, seed=5))
    x = inputs_for((4, 4, 1), n=200)
    labels = np.argmax(a(x, training=False), axis=-1)

    def error(model):
        return float(np.mean(np.argmax(model(x, training=False), axis=-1) != labels))

    aligned = align.apply(b, align.weight_matching(a, b))
    assert error_barrier([error(a), error(midpoint(a, aligned)), error(aligned)]) == 0.0
    assert error_barrier([error(a), error(midpoint(a, b)), error(b)]) > 0.05


def brute_force_objective(a, b, p1, p2):
    """<W_a, pi(W_b)> of a 3 -> 4 -> 3 -> 2 MLP written out by hand (the output bias,
    which no permutation touches, is left out, as the library leaves it out)."""
    ka1, ba1, ka2, ba2, ka3, _ = (np.float64(w) for w in a.get_weights())
    kb1, bb1, kb2, bb2, kb3, _ = (np.float64(w) for w in b.get_weights())
    return (np.sum(ka1 * kb1[:, p1]) + np.sum(ba1 * bb1[p1]) + np.sum(ka2 * kb2[p1][:, p2])
            + np.sum(ba2 * bb2[p2]) + np.sum(ka3 * kb3[p2, :]))


@pytest.mark.parametrize("seed", range(4))
def test_coordinate_descent_never_decreases_and_ends_at_a_coordinatewise_optimum(seed):
    a, b = mlp(seed=10 + seed), mlp(seed=20 + seed)
    names = list(align.groups(a))
    assert align.groups(a) == {names[0]: 4, names[1]: 3}
    q = align.weight_matching(a, b, seed=seed)
    values = [v for _, v in q.history]
    assert len(values) >= 3 and all(y >= x - 1e-9 for x, y in zip(values, values[1:]))
    p1, p2 = q[names[0]], q[names[1]]
    assert values[0] == pytest.approx(brute_force_objective(a, b, np.arange(4), np.arange(3)))
    final = brute_force_objective(a, b, p1, p2)
    assert values[-1] == pytest.approx(final)
    everything = [brute_force_objective(a, b, np.array(r1), np.array(r2))
                  for r1 in itertools.permutations(range(4))
                  for r2 in itertools.permutations(range(3))]
    assert final <= max(everything) + 1e-9
    # No single group can do better with the other held: the stopping rule.
    for r1 in itertools.permutations(range(4)):
        assert brute_force_objective(a, b, np.array(r1), p2) <= final + 1e-9
    for r2 in itertools.permutations(range(3)):
        assert brute_force_objective(a, b, p1, np.array(r2)) <= final + 1e-9


def test_restarts_keep_the_highest_objective_of_the_visiting_orders():
    """weight_matching(restarts=N) is the best of the N searches seed, seed + 1, ...:
    each restart is the single search of its seed, its objective is the NumPy
    objective of its permutation, and the result is the first of the highest."""
    a, b = mlp(hidden=(5, 4), seed=35), mlp(hidden=(5, 4), seed=36)
    names = list(align.groups(a))
    best = align.weight_matching(a, b, seed=3, restarts=6)   # here seed 7 finds the best
    assert len(best.restarts) == 6 and any(p is best for p in best.restarts)
    objectives = []
    for i, found in enumerate(best.restarts):
        single = align.weight_matching(a, b, seed=3 + i)
        assert all(np.array_equal(found[n], single[n]) for n in names)
        value = brute_force_objective(a, b, found[names[0]], found[names[1]])
        assert found.objective == pytest.approx(value)
        objectives.append(value)
    assert len(set(np.round(objectives, 9))) > 1        # the orders end in different optima
    assert best.objective == pytest.approx(max(objectives)) and best is not best.restarts[0]
    first_best = next(p for p in best.restarts if p.objective == max(q.objective
                                                                   for q in best.restarts))
    assert first_best is best
    single = align.weight_matching(a, b, seed=3)
    assert single.restarts == (single,) and single.objective == pytest.approx(objectives[0])
    with pytest.raises(ConfigError, match="restarts must be a positive integer"):
        align.weight_matching(a, b, restarts=0)


def test_activation_matching_recovers_a_permuted_copy():
    a = randomised(conv_bn_net(), 3, masked=False)
    p = align.random_permutation(a, seed=4)
    b = align.apply(a, p)
    q = align.activation_matching(a, b, inputs_for((4, 4, 2), n=64))
    for group, perm in p.items():
        np.testing.assert_array_equal(q[group], np.argsort(perm))
    assert same_variables(a, align.apply(b, q))


def test_residual_groups_are_tied_through_adds_and_batchnorm():
    a = models.build("resnet_20", (8, 8, 3), 10)
    spec = align.permutation_spec(a)
    stream = {g.name: set(g.layers) for g in spec.groups}["stem_conv"]
    # Stage 1's residual stream: the stem and the second conv of each block.
    assert stream == {"stem_conv", "stage1_block1_conv_b", "stage1_block2_conv_b",
                      "stage1_block3_conv_b"}
    bn = [w for w in spec.weights if w.layer == "stem_bn"]
    assert {w.attr for w in bn} == {"gamma", "beta", "moving_mean", "moving_variance"}
    assert {w.axes for w in bn} == {(0,)}
    assert len(spec.groups) == 3 + 9      # three residual streams, one group per block's conv_a


def test_layers_outside_every_group_may_be_anything():
    inputs = keras.Input((5,))
    x = L.Rescaling(2.0)(inputs)
    x = L.Dense(4, activation="relu")(x)
    a = keras.Model(inputs, L.Dense(2)(x))
    b = align.apply(a, align.random_permutation(a, 1))
    x = inputs_for((5,))
    np.testing.assert_allclose(a(x), b(x), rtol=1e-6)


def one_line_error(call, *fragments):
    with pytest.raises(ConfigError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_bad_inputs_name_the_layer():
    a = mlp((4, 3))
    b = mlp((5, 3))
    b_layer = b.layers[1].name
    one_line_error(lambda: align.weight_matching(a, b), "differ in architecture", b_layer)
    wrong = align.Permutation({n: np.arange(s + 1) for n, s in align.groups(a).items()})
    one_line_error(lambda: align.apply(a, wrong), "has 5 entries", "has 4 units")
    one_line_error(lambda: align.apply(a, align.Permutation({"nope": np.arange(2)})), "nope")

    inputs = keras.Input((5,))
    x = L.Dense(4)(inputs)
    x = L.GroupNormalization(2, name="the_norm")(x)     # mixes the channels of a group
    unsupported = keras.Model(inputs, L.Dense(2)(x))
    one_line_error(lambda: align.groups(unsupported), "'the_norm'", "GroupNormalization")
    with pytest.raises(ConfigError, match="not a permutation"):
        align.Permutation({"x": np.array([0, 0, 1])})


def test_activation_matching_uses_correlation_not_raw_products():
    from tflottery.analysis import align_match
    rng = np.random.default_rng(0)
    xa = rng.normal(size=(500, 4)) + np.array([0.0, 10.0, 20.0, 30.0])
    perm = np.array([2, 0, 3, 1])
    # B's unit perm[i] is A's unit i, scaled and shifted so that the means run the other
    # way: raw products would pair units by their means, correlation sees through it.
    xb = np.empty_like(xa)
    xb[:, perm] = (xa + np.array([40.0, 20.0, 0.0, -20.0])) * np.array([100.0, 1.0, 0.01, 3.0])
    (found,) = align_match.activation_matching([[xa]], [[xb]])
    np.testing.assert_array_equal(found, perm)
    # Independently: the found order makes the columns perfectly correlated.
    for i in range(4):
        assert np.corrcoef(xa[:, i], xb[:, found[i]])[0, 1] == pytest.approx(1.0)


def test_correlation_accumulated_in_chunks_equals_numpy_corrcoef():
    from tflottery.analysis import align_match
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 4)) * [1.0, 5.0, 0.1, 2.0] + [3.0, -1.0, 40.0, 0.0]
    y = x @ rng.normal(size=(4, 4)) + rng.normal(size=(300, 4))
    y[:, 2] = 7.0                                   # a constant (dead) unit
    corr = align_match.Correlation(4)
    corr.add(x[:120], y[:120])
    corr.add(x[120:], y[120:])
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.corrcoef(x.T, y.T)[:4, 4:]    # NaN in the constant unit's column
    expected[:, 2] = 0.0
    np.testing.assert_allclose(corr.matrix(), expected, atol=1e-10)
