"""Tests for tflottery.scoring (pruning at initialisation).

Every expected score is computed here independently of the code under test:
NumPy forward and backward passes written out by hand for tiny networks
with fixed weights, finite differences of those NumPy gradients for the
Hessian-gradient product and for BatchNorm in training mode, and a NumPy
re-implementation of SynFlow's 100-round loop.  Tolerances: float32 TF vs
float64 NumPy rtol 1e-5 (analytic gradients) or 1e-3 (finite differences);
SynFlow runs in float64 on both sides, rtol 1e-12, and bit-for-bit equal
under different tf.distribute strategies (the data-based scorers under a
strategy: test_scoring_device.py).  Scores of the batch in
chunks must equal the one-pass scores to float rounding (float32 rtol 1e-5,
atol 1e-6 of the largest score; float64 rtol 1e-12) without BatchNorm, and
with BatchNorm the size-weighted sum of per-chunk gradients taken by
tf.GradientTape on the model itself (float32, rtol 1e-5).
"""
from conftest import two_cpu_strategy  # noqa: E402
import types

import numpy as np
import pytest
import tensorflow as tf

from tflottery import data, masking, scoring
from tflottery.errors import ConfigError
from tflottery.hparams import DatasetHparams
from tflottery.keras_compat import keras
from tflottery.masking import Mask
from tflottery.scoring.grasp import hessian_gradient_product

ALL = ["grasp", "grasp_abs", "isnip", "magnitude", "magnitude_unit_variance", "random", "snip",
       "synflow"]


def _round(x):
    return int(np.floor(x + 0.5 + 1e-9))


# -- tiny networks with fixed weights ------------------------------------------------------
def _mlp(widths, seed=0, scale=1.0, dtype=None, biases=True, strategy=None):
    """Masked Sequential MLP: Input(widths[0]), ReLU Dense layers 'h1'.., linear Dense 'out'.

    Returns (model, [kernels], [biases]) with the fixed NumPy weights it holds.
    """
    rng = np.random.default_rng(seed)
    kernels = [rng.normal(0, scale, (a, b)) for a, b in zip(widths[:-1], widths[1:])]
    bias = [rng.normal(0, 0.1, b) if biases else np.zeros(b) for b in widths[1:]]
    names = [f"h{i}" for i in range(1, len(widths) - 1)] + ["out"]
    with (strategy or tf.distribute.get_strategy()).scope():
        layers = [keras.Input((widths[0],))]
        for i, name in enumerate(names):
            last = name == "out"
            layers.append(keras.layers.Dense(
                widths[i + 1], activation=None if last else "relu", name=name,
                dtype="float32" if last or dtype is None else dtype))
        plain = keras.Sequential(layers)
        for layer, k, b in zip(plain.layers, kernels, bias):
            layer.set_weights([k.astype(np.float32), b.astype(np.float32)])
        model = masking.wrap(plain)
    # What the float32 model really holds, as float64.
    kernels = [k.astype(np.float32).astype(np.float64) for k in kernels]
    bias = [b.astype(np.float32).astype(np.float64) for b in bias]
    return model, kernels, bias


def _conv_bn(strategy=None, seed=0, batchnorm=True):
    """A 2-conv net, BatchNorm after conv1 unless batchnorm=False, seeded initialisers.

    The weights are the same under any strategy.
    """
    init = lambda i: keras.initializers.GlorotNormal(seed=seed * 10 + i)  # noqa: E731
    with (strategy or tf.distribute.get_strategy()).scope():
        x = keras.Input((6, 6, 2))
        h = keras.layers.Conv2D(4, 3, padding="same", name="conv1", kernel_initializer=init(1))(x)
        if batchnorm:
            h = keras.layers.BatchNormalization(name="bn1", epsilon=1e-3)(h)
        h = keras.layers.Activation("relu")(h)
        h = keras.layers.Conv2D(4, 3, strides=2, name="conv2", kernel_initializer=init(2))(h)
        h = keras.layers.Activation("relu")(h)
        h = keras.layers.Flatten()(h)
        y = keras.layers.Dense(3, name="out", kernel_initializer=init(3))(h)
        plain = keras.Model(x, y)
        if not batchnorm:
            return masking.wrap(plain)
        # Non-trivial BN state so that modes and abs() make a difference.
        bn = plain.get_layer("bn1")
        bn.set_weights([np.array([1.5, -0.5, 0.8, 1.0], np.float32),
                        np.array([-0.2, 0.3, 0.0, 0.1], np.float32),
                        np.array([0.3, -0.4, 0.1, 0.0], np.float32),
                        np.array([0.5, 2.0, 1.0, 1.2], np.float32)])
        return masking.wrap(plain)


def _conv_batch(n_per_class=4, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(3 * n_per_class, 6, 6, 2)).astype(np.float32),
            np.repeat(np.arange(3), n_per_class))


def _mlp_batch(n=8, inputs=4, classes=2, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, inputs)).astype(np.float32), rng.integers(0, classes, n)


def _random_mask(model, density, seed=5):
    rng = np.random.default_rng(seed)
    return Mask({name: rng.random(tuple(v.shape)) < density
                 for name, v in masking.prunable_variables(model).items()})


def _names(model):
    return sorted(masking.prunable_variables(model))


# -- NumPy references --------------------------------------------------------------------------
def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_mlp_grads(kernels, biases, x, y, temperature=1.0):
    """Gradients of mean cross-entropy(logits / T) w.r.t. the kernels of a ReLU MLP (float64)."""
    acts, pre = [x.astype(np.float64)], []
    for i, (k, b) in enumerate(zip(kernels, biases)):
        a = acts[-1] @ k + b
        pre.append(a)
        acts.append(a if i == len(kernels) - 1 else np.maximum(a, 0))
    p = _softmax(acts[-1] / temperature)
    delta = (p - np.eye(p.shape[1])[y]) / len(y) / temperature
    grads = [None] * len(kernels)
    for i in reversed(range(len(kernels))):
        grads[i] = acts[i].T @ delta
        if i:
            delta = (delta @ kernels[i].T) * (pre[i - 1] > 0)
    return grads


def np_synflow(kernels, biases, dtype=np.float64):
    """SynFlow scores |dR/dW * W| of a ReLU MLP: |weights|, ones input, R = sum(outputs)."""
    ks = [np.abs(k).astype(dtype) for k in kernels]
    bs = [np.abs(b).astype(dtype) for b in biases]
    acts, pre = [np.ones((1, ks[0].shape[0]), dtype)], []
    for i, (k, b) in enumerate(zip(ks, bs)):
        a = acts[-1] @ k + b
        pre.append(a)
        acts.append(a if i == len(ks) - 1 else np.maximum(a, 0))
    delta = np.ones_like(acts[-1])
    scores = [None] * len(ks)
    for i in reversed(range(len(ks))):
        scores[i] = np.abs((acts[i].T @ delta) * ks[i])
        if i:
            delta = (delta @ ks[i].T) * (pre[i - 1] > 0)
    return scores, acts[-1].sum()


def np_keep_top(scores, alive, keep):
    """Keep the `keep` highest of the alive scores (concatenated in layer order, ties by position)."""
    flat_scores = np.concatenate([s.ravel() for s in scores])
    flat_alive = np.concatenate([a.ravel() for a in alive])
    idx = np.flatnonzero(flat_alive)
    order = np.argsort(flat_scores[idx], kind="stable")
    new = flat_alive.copy()
    new[idx[order[:len(idx) - keep]]] = False
    out, start = [], 0
    for a in alive:
        out.append(new[start:start + a.size].reshape(a.shape))
        start += a.size
    return out


# -- registry and arguments -------------------------------------------------------------------
def test_names_and_unknown_scorer():
    assert scoring.names() == ALL
    model, _, _ = _mlp([4, 3, 2])
    with pytest.raises(ConfigError, match="choose one of: grasp, grasp_abs, isnip") as e:
        scoring.prune_to_density("snipp", model, 0.5)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(target_density=0.0), "target density must be a number in"),
    (dict(target_density=1.5), "target density must be a number in"),
    (dict(target_density=True), "target density must be a number in"),
    (dict(target_density=0.001), "rounds to keeping none"),
    (dict(target_density=0.5, scope="local"), "unknown pruning scope"),
    (dict(target_density=0.5, excluded=["nope/kernel"]), "excluded names weights"),
    (dict(target_density=0.5, iterations=0), "iterations must be a positive integer"),
    (dict(target_density=0.5, name="snip"), "needs a batch of training data"),
    (dict(target_density=0.5, name="snip", batch=(np.zeros((2, 5)), np.zeros(2, int))),
     "batch images have shape"),
    (dict(target_density=0.5, name="snip", batch=(np.zeros((2, 4)), np.array([0, 7]))),
     r"batch labels must be in \[0, 2\)"),
])
def test_bad_arguments_are_one_line_config_errors(kwargs, message):
    model, _, _ = _mlp([4, 3, 2])
    name = kwargs.pop("name", "magnitude")
    with pytest.raises(ConfigError, match=message) as e:
        scoring.prune_to_density(name, model, **kwargs)
    assert "\n" not in str(e.value)


def test_target_above_current_density_and_excluded_overflow():
    model, _, _ = _mlp([4, 3, 2])                       # 12 + 6 = 18 weights
    masking.set_mask(model, Mask({"h1/kernel": np.arange(12).reshape(4, 3) < 3,
                                  "out/kernel": np.ones((3, 2), bool)}))   # 9 remain
    with pytest.raises(ConfigError, match="only 9 remain"):
        scoring.prune_to_density("magnitude", model, 0.6)   # keeps 11
    with pytest.raises(ConfigError, match="excluded weights alone keep 6"):
        scoring.prune_to_density("magnitude", model, 0.3, excluded=["out/kernel"])  # keeps 5


def test_prune_to_count_by_hand():
    from tflottery.pruning.select import prune_to_count
    scores = {"a": np.array([[5., 1.], [3., 3.]]), "b": np.array([2., 0., 4.]), "c": np.zeros(2)}
    current = Mask({"a": [[True, True], [True, True]], "b": [True, False, True], "c": [True, True]})
    got = prune_to_count(scores, current, 3, names=["a", "b"])
    # Remaining scores a: 5 1 3 3, b: 2 4 (c not named).  Removed first: 1, 2, then of the
    # tied 3s the earlier one; kept: 5, a[1,1] and 4.
    assert got == Mask({"a": [[True, False], [False, True]], "b": [False, False, True],
                        "c": [True, True]})
    inverted = prune_to_count(scores, current, 2, names=["a", "b"], invert=True)
    assert inverted == Mask({"a": [[False, True], [False, False]], "b": [True, False, False],
                             "c": [True, True]})
    assert prune_to_count(scores, current, 6, names=["a", "b"]) == current
    with pytest.raises(ConfigError, match="between 0 and the 6 remaining"):
        prune_to_count(scores, current, 7, names=["a", "b"])


# -- magnitude, unit variance, random ---------------------------------------------------------
def test_magnitude_and_unit_variance_scores_by_hand():
    model, kernels, _ = _mlp([4, 3, 2], scale=2.0)
    mask = _random_mask(model, 0.6)
    masking.set_mask(model, mask)
    for name, k in zip(["h1/kernel", "out/kernel"], kernels):
        masked = np.where(mask[name], k, 0.0)
        np.testing.assert_allclose(scoring.compute_scores("magnitude", model)[name],
                                   np.abs(masked), rtol=1e-7)
        np.testing.assert_allclose(scoring.compute_scores("magnitude_unit_variance", model)[name],
                                   np.abs(masked) / masked.std(), rtol=1e-6)


def test_unit_variance_ignores_per_layer_init_scale():
    # The same unit-variance draws Z scaled per layer by very different
    # factors (as Kaiming/Glorot do): unit-variance pruning gives the same
    # mask as for Z itself, while plain global magnitude pruning does not.
    base, _, _ = _mlp([20, 30, 10], seed=3, biases=False)
    scaled, _, _ = _mlp([20, 30, 10], seed=3, biases=False)
    for layer, factor in zip(scaled.layers, [0.05, 20.0]):
        layer.layer.kernel.assign(layer.layer.kernel * factor)
    unit = [scoring.prune_to_density("magnitude_unit_variance", m, 0.3) for m in (base, scaled)]
    assert unit[0] == unit[1]
    plain = scoring.prune_to_density("magnitude", scaled, 0.3)
    assert plain != unit[1]
    assert plain["h1/kernel"].sum() == 0       # the scale decides: all 270 kept are in 'out'


def test_random_is_seeded_and_exact():
    model = _conv_bn()
    n = masking.get_mask(model).num_weights
    a = scoring.prune_to_density("random", model, 0.37, seed=3)
    b = scoring.prune_to_density("random", model, 0.37, seed=3)
    c = scoring.prune_to_density("random", model, 0.37, seed=4)
    assert a == b and a != c
    assert a.num_remaining == c.num_remaining == _round(0.37 * n)
    scores = scoring.compute_scores("random", model, seed=3)
    assert all(((s >= 0) & (s < 1)).all() for s in scores.values())
    layer = scoring.prune_to_density("random", model, 0.37, scope="layerwise", seed=3)
    sizes = {k: v.size for k, v in layer.items()}
    for name, keep in layer.items():
        assert abs(keep.sum() - 0.37 * sizes[name]) < 1


# -- SNIP ----------------------------------------------------------------------------------------
def test_snip_scores_match_numpy_backprop_on_masked_mlp():
    model, kernels, biases = _mlp([4, 3, 2], seed=2)
    mask = Mask({"h1/kernel": np.arange(12).reshape(4, 3) % 5 != 0,
                 "out/kernel": np.array([[1, 1], [0, 1], [1, 1]], bool)})
    masking.set_mask(model, mask)
    x, y = _mlp_batch()
    eff = [np.where(mask[n], k, 0.0) for n, k in zip(["h1/kernel", "out/kernel"], kernels)]
    grads = np_mlp_grads(eff, biases, x, y)
    scores = scoring.compute_scores("snip", model, (x, y))
    for name, g, w in zip(["h1/kernel", "out/kernel"], grads, eff):
        np.testing.assert_allclose(scores[name], np.abs(g * w), rtol=1e-5, atol=1e-8)
        assert (scores[name][~mask[name]] == 0).all()


def test_isnip_100_rounds_match_numpy_loop():
    model, kernels, biases = _mlp([4, 6, 3], seed=13)
    x, y = _mlp_batch(n=12, classes=3, seed=14)
    target, rounds = 0.2, 100
    total = sum(k.size for k in kernels)
    final = _round(target * total)
    alive = [np.ones(k.shape, bool) for k in kernels]
    for n in range(1, rounds + 1):
        keep = final if n == rounds else _round(total * (final / total) ** (n / rounds))
        eff = [k * a for k, a in zip(kernels, alive)]
        scores = [np.abs(g * w) for g, w in zip(np_mlp_grads(eff, biases, x, y), eff)]
        alive = np_keep_top(scores, alive, keep)
    got = scoring.prune_to_density("isnip", model, target, batch=(x, y))
    for name, expected in zip(["h1/kernel", "out/kernel"], alive):
        np.testing.assert_array_equal(got[name], expected)


def _np_bn_net_loss(w1, w2, b1, gamma, beta, b2, x, y, eps):
    """Dense - BN (batch statistics) - ReLU - Dense, mean cross-entropy, float64."""
    a = x @ w1 + b1
    mean, var = a.mean(axis=0), a.var(axis=0)
    h = np.maximum(gamma * (a - mean) / np.sqrt(var + eps) + beta, 0)
    p = _softmax(h @ w2 + b2)
    return -np.mean(np.log(p[np.arange(len(y)), y]))


def test_snip_uses_batchnorm_in_training_mode():
    rng = np.random.default_rng(7)
    w1, b1 = rng.normal(size=(4, 3)), rng.normal(0, 0.1, 3)
    w2, b2 = rng.normal(size=(3, 2)), rng.normal(0, 0.1, 2)
    gamma, beta = np.array([1.2, 0.7, 1.0]), np.array([0.1, -0.2, 0.3])
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="h1"),
                              keras.layers.BatchNormalization(name="bn", epsilon=1e-3),
                              keras.layers.Activation("relu"), keras.layers.Dense(2, name="out")])
    plain.layers[0].set_weights([w1, b1])
    # Moving statistics far from the batch's: inference mode would score differently.
    plain.layers[1].set_weights([gamma, beta, np.full(3, 5.0), np.full(3, 9.0)])
    plain.layers[3].set_weights([w2, b2])
    model = masking.wrap(plain)
    w1, b1, w2, b2 = (v.astype(np.float32).astype(np.float64) for v in (w1, b1, w2, b2))
    x, y = _mlp_batch(n=10)
    x64 = x.astype(np.float64)

    def loss(a, b):
        return _np_bn_net_loss(a, b, b1, gamma, beta, b2, x64, y, 1e-3)

    def numeric_grads(h=1e-6):
        out = []
        for which, w in enumerate((w1, w2)):
            g = np.zeros_like(w)
            for i in np.ndindex(w.shape):
                up, down = [w1.copy(), w2.copy()], [w1.copy(), w2.copy()]
                up[which][i] += h
                down[which][i] -= h
                g[i] = (loss(*up) - loss(*down)) / (2 * h)
            out.append(g)
        return out

    g1, g2 = numeric_grads()
    scores = scoring.compute_scores("snip", model, (x, y))
    for name, g, w in (("h1/kernel", g1, w1), ("out/kernel", g2, w2)):
        expected = np.abs(g * w)
        np.testing.assert_allclose(scores[name], expected, rtol=1e-3, atol=1e-4 * expected.max())


# -- GraSP ---------------------------------------------------------------------------------------
def _np_hessian_gradient(eff, biases, masks, x, y, temperature=200.0):
    """H g of the masked MLP: central differences of the NumPy gradient along g (float64)."""
    grads = [g * m for g, m in zip(np_mlp_grads(eff, biases, x, y, temperature), masks)]
    step = 1e-3 / max(np.abs(g).max() for g in grads)
    up = np_mlp_grads([w + step * g for w, g in zip(eff, grads)], biases, x, y, temperature)
    down = np_mlp_grads([w - step * g for w, g in zip(eff, grads)], biases, x, y, temperature)
    return [(u - d) / (2 * step) * m for u, d, m in zip(up, down, masks)]


def test_grasp_hessian_gradient_product_and_scores_match_numpy():
    model, kernels, biases = _mlp([4, 5, 3], seed=4)
    mask = _random_mask(model, 0.7, seed=2)
    masking.set_mask(model, mask)
    x, y = _mlp_batch(n=12, classes=3, seed=3)
    names = ["h1/kernel", "out/kernel"]
    masks = [mask[n].astype(np.float64) for n in names]
    eff = [k * m for k, m in zip(kernels, masks)]
    expected_hg = _np_hessian_gradient(eff, biases, masks, x, y)

    hg = hessian_gradient_product(model, (x, y))
    scores = scoring.compute_scores("grasp", model, (x, y))
    abs_scores = scoring.compute_scores("grasp_abs", model, (x, y))
    for name, e_hg, w in zip(names, expected_hg, eff):
        scale = np.abs(e_hg).max()
        np.testing.assert_allclose(hg[name], e_hg, rtol=1e-3, atol=1e-4 * scale)
        np.testing.assert_allclose(scores[name], -w * e_hg, rtol=1e-3, atol=1e-4 * scale)
        np.testing.assert_array_equal(abs_scores[name], np.abs(scores[name]))


def test_grasp_prunes_highest_and_grasp_abs_lowest_magnitude():
    model, _, _ = _mlp([4, 5, 3], seed=4)
    x, y = _mlp_batch(n=12, classes=3, seed=3)
    names = _names(model)
    alive = [np.ones(masking.get_mask(model)[n].shape, bool) for n in names]
    scores = scoring.compute_scores("grasp", model, (x, y))
    keep = _round(0.4 * sum(a.size for a in alive))
    # Keeping the lowest scores == keeping the highest negated scores.
    expected = np_keep_top([-scores[n] for n in names], alive, keep)
    got = scoring.prune_to_density("grasp", model, 0.4, batch=(x, y))
    assert all(np.array_equal(got[n], e) for n, e in zip(names, expected))
    expected = np_keep_top([np.abs(scores[n]) for n in names], alive, keep)
    got = scoring.prune_to_density("grasp_abs", model, 0.4, batch=(x, y))
    assert all(np.array_equal(got[n], e) for n, e in zip(names, expected))


def test_invert_keeps_what_the_scorer_would_remove():
    """The inversion ablation: magnitude keeps the smallest |w|, GraSP the highest scores."""
    model, _, _ = _mlp([4, 5, 3], seed=4)
    x, y = _mlp_batch(n=12, classes=3, seed=3)
    names = _names(model)
    alive = [np.ones(masking.get_mask(model)[n].shape, bool) for n in names]
    keep = _round(0.4 * sum(a.size for a in alive))
    weights = masking.prunable_variables(model)
    expected = np_keep_top([-np.abs(weights[n].numpy()) for n in names], alive, keep)
    got = scoring.prune_to_density("magnitude", model, 0.4, invert=True)
    assert all(np.array_equal(got[n], e) for n, e in zip(names, expected))
    scores = scoring.compute_scores("grasp", model, (x, y))
    expected = np_keep_top([scores[n] for n in names], alive, keep)
    got = scoring.prune_to_density("grasp", model, 0.4, batch=(x, y), invert=True)
    assert all(np.array_equal(got[n], e) for n, e in zip(names, expected))


# -- SynFlow -------------------------------------------------------------------------------------
def test_synflow_one_round_matches_numpy():
    model, kernels, biases = _mlp([4, 3, 2], seed=6)
    mask = Mask({"h1/kernel": np.arange(12).reshape(4, 3) % 4 != 1,
                 "out/kernel": np.array([[1, 0], [1, 1], [1, 1]], bool)})
    masking.set_mask(model, mask)
    eff = [np.where(mask[n], k, 0.0) for n, k in zip(["h1/kernel", "out/kernel"], kernels)]
    expected, _ = np_synflow(eff, biases)
    scores = scoring.compute_scores("synflow", model)
    for name, e in zip(["h1/kernel", "out/kernel"], expected):
        np.testing.assert_allclose(scores[name], e, rtol=1e-12)


def test_synflow_takes_abs_of_batchnorm_and_uses_inference_mode():
    rng = np.random.default_rng(8)
    w1, w2 = rng.normal(size=(4, 3)), rng.normal(size=(3, 2))
    gamma, beta = np.array([-1.5, 0.5, 2.0]), np.array([-0.2, 0.3, -1.0])
    mean, var = np.array([-0.5, 30.0, 0.1]), np.array([0.5, 2.0, 1.5])
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="h1", use_bias=False),
                              keras.layers.BatchNormalization(name="bn", epsilon=1e-3),
                              keras.layers.Activation("relu"),
                              keras.layers.Dense(2, name="out", use_bias=False)])
    plain.layers[0].set_weights([w1])
    plain.layers[1].set_weights([gamma, beta, mean, var])
    plain.layers[3].set_weights([w2])
    model = masking.wrap(plain)
    w1, w2, gamma, beta, mean, var = (np.abs(v.astype(np.float32).astype(np.float64))
                                      for v in (w1, w2, gamma, beta, mean, var))
    a = np.ones((1, 4)) @ w1
    bn = gamma * (a - mean) / np.sqrt(var + 1e-3) + beta
    assert (bn <= 0).any() and (bn > 0).any()          # the ReLU matters
    h = np.maximum(bn, 0)
    d_h = np.ones((1, 2)) @ w2.T
    d_a = d_h * (bn > 0) * gamma / np.sqrt(var + 1e-3)
    scores = scoring.compute_scores("synflow", model)
    np.testing.assert_allclose(scores["out/kernel"], np.abs(h.T @ np.ones((1, 2)) * w2), rtol=1e-12)
    np.testing.assert_allclose(scores["h1/kernel"], np.abs(np.ones((4, 1)) @ d_a * w1), rtol=1e-12)


def test_synflow_100_rounds_match_numpy_loop():
    widths = [5, 6, 4, 3]
    model, kernels, biases = _mlp(widths, seed=9)
    names = ["h1/kernel", "h2/kernel", "out/kernel"]         # sorted order
    target, rounds = 0.1, 100
    total = sum(k.size for k in kernels)
    final = _round(target * total)
    alive = [np.ones(k.shape, bool) for k in kernels]
    for n in range(1, rounds + 1):
        keep = final if n == rounds else _round(total * (final / total) ** (n / rounds))
        scores, _ = np_synflow([k * a for k, a in zip(kernels, alive)], biases)
        alive = np_keep_top(scores, alive, keep)
    got = scoring.prune_to_density("synflow", model, target)
    assert got.num_remaining == final
    for name, expected in zip(names, alive):
        np.testing.assert_array_equal(got[name], expected)
    assert all(a.any() for a in alive)                   # no layer collapsed


def test_synflow_float64_where_float32_overflows():
    # 20 layers of width 8 with |w| ~ 20: R ~ (8 * 20) ** 20 ~ 1e44 > float32 max.
    widths = [8] * 21
    rng = np.random.default_rng(10)
    model, _, _ = _mlp(widths, seed=10, biases=False)
    kernels = []
    for layer in model.layers:
        k = (rng.uniform(15, 25, (8, 8)) * rng.choice([-1, 1], (8, 8))).astype(np.float32)
        layer.layer.kernel.assign(k)
        kernels.append(k.astype(np.float64))
    zeros = [np.zeros(8)] * 20
    with np.errstate(over="ignore", invalid="ignore"):
        scores32, flow32 = np_synflow(kernels, zeros, np.float32)
    assert np.isinf(flow32)
    assert not all(np.isfinite(s).all() for s in scores32)
    expected, flow64 = np_synflow(kernels, zeros, np.float64)
    assert 1e40 < flow64 < 1e50
    scores = scoring.compute_scores("synflow", model)
    names = [f"h{i}/kernel" for i in range(1, 20)] + ["out/kernel"]
    for name, e in zip(names, expected):
        assert np.isfinite(scores[name]).all() and (scores[name] > 0).all()
        np.testing.assert_allclose(scores[name], e, rtol=1e-10)
    mask = scoring.prune_to_density("synflow", model, 0.5, iterations=3)
    assert mask.num_remaining == _round(0.5 * 20 * 64)


# -- chunks: the scoring batch in several forward/backward passes ------------------------------
def test_chunks_are_strided_bounded_and_cover_the_batch():
    from tflottery.scoring.chunks import split
    for n, size in [(14, 5), (15, 4), (100, 7), (10000, 256), (3, 1)]:
        parts = split(n, size)
        index = [np.arange(n)[p] for p in parts]
        assert len(parts) == -(-n // size)
        assert max(len(i) for i in index) <= size
        assert max(len(i) for i in index) - min(len(i) for i in index) <= 1
        np.testing.assert_array_equal(np.sort(np.concatenate(index)), np.arange(n))
    assert split(14, None) == split(14, 14) == split(14, 99) == [slice(0, None, 1)]
    assert [list(np.arange(14)[p]) for p in split(14, 5)] == [
        [0, 3, 6, 9, 12], [1, 4, 7, 10, 13], [2, 5, 8, 11]]
    from tflottery.experiments.pai import PaiHparams
    assert PaiHparams().chunk_size == scoring.DEFAULT_CHUNK_SIZE == 256


@pytest.mark.parametrize("dtype, rtol, atol", [(None, 1e-5, 1e-6), ("float64", 1e-12, 1e-14)])
def test_chunked_snip_and_grasp_equal_one_pass_without_batchnorm(dtype, rtol, atol):
    # n = 14 in chunks of at most 5: sizes 5, 5, 4, so the weights n_c / n
    # differ.  Without BatchNorm chunking is exact; the tolerance is float
    # rounding (rtol 1e-5 and atol 1e-6 of the largest score in float32, 1e-12
    # and 1e-14 in float64).
    model, _, _ = _mlp([4, 6, 3], seed=13, dtype=dtype)
    masking.set_mask(model, _random_mask(model, 0.8))
    batch = _mlp_batch(n=14, classes=3, seed=14)
    for name in ("snip", "grasp", "grasp_abs"):
        one = scoring.compute_scores(name, model, batch, chunk_size=None)
        for size in (5, 14):
            got = scoring.compute_scores(name, model, batch, chunk_size=size)
            for n in one:
                scale = np.abs(one[n]).max()
                np.testing.assert_allclose(got[n], one[n], rtol=rtol, atol=atol * scale,
                                           err_msg=f"{name} {n} chunk {size}")
                assert (got[n][~masking.get_mask(model)[n]] == 0).all()
                if size == 14:                    # one chunk: the one-pass computation itself
                    np.testing.assert_array_equal(got[n], one[n])
    one = hessian_gradient_product(model, batch, chunk_size=None)
    got = hessian_gradient_product(model, batch, chunk_size=5)
    for n in one:
        np.testing.assert_allclose(got[n], one[n], rtol=rtol, atol=atol * np.abs(one[n]).max())


def test_chunked_isnip_gives_the_same_masks():
    model, _, _ = _mlp([4, 6, 3], seed=13)
    batch = _mlp_batch(n=14, classes=3, seed=14)
    one = scoring.prune_to_density("isnip", model, 0.2, batch=batch, chunk_size=None)
    for size in (1, 5):
        assert scoring.prune_to_density("isnip", model, 0.2, batch=batch, chunk_size=size) == one
    one = scoring.prune_to_density("grasp", model, 0.3, batch=batch, chunk_size=None)
    assert scoring.prune_to_density("grasp", model, 0.3, batch=batch, chunk_size=5) == one


def _tape_gradients(model, x, y, temperature=1.0, g=None):
    """dL/dw (or, given g, d/dw (g . dL/dw)) by tf.GradientTape on the model itself, float64.

    Independent of the scoring code: the model's own variables, Keras's
    cross-entropy, BatchNorm in training mode on exactly these examples.
    """
    variables = masking.prunable_variables(model)
    names = sorted(variables)
    kernels = [variables[n] for n in names]
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            logits = model(tf.constant(x), training=True) / temperature
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                tf.constant(y), logits, from_logits=True))
        grads = inner.gradient(loss, kernels)
        if g is not None:
            z = tf.add_n([tf.reduce_sum(tf.constant(g[n], tf.float32) * gr)
                          for n, gr in zip(names, grads)])
    if g is not None:
        grads = outer.gradient(z, kernels)
    return {n: gr.numpy().astype(np.float64) for n, gr in zip(names, grads)}


def test_chunked_scores_with_batchnorm_weight_each_chunk_by_its_size():
    # With BatchNorm in training mode each chunk is normalised by its own
    # statistics, so chunking changes the scores; what they must equal is
    # the n_c / n weighted sum of the per-chunk gradients, each computed
    # here on that chunk alone.  15 examples in chunks of at most 4: the
    # strided chunks x[c::4] of sizes 4, 4, 4, 3.  Float32 on both sides:
    # rtol 1e-5, atol 1e-6 of the largest value.
    model = _conv_bn()
    mask = _random_mask(model, 0.8)
    masking.set_mask(model, mask)
    x, y = _conv_batch(n_per_class=5)
    snip = scoring.compute_scores("snip", model, (x, y), chunk_size=4)
    one = scoring.compute_scores("snip", model, (x, y), chunk_size=None)
    hg = hessian_gradient_product(model, (x, y), chunk_size=4)
    weights = {n: v.numpy().astype(np.float64)
               for n, v in masking.prunable_variables(model).items()}
    parts = [(x[c::4], y[c::4]) for c in range(4)]
    assert [len(p[1]) for p in parts] == [4, 4, 4, 3]

    def combined(**kwargs):
        per_chunk = [_tape_gradients(model, px, py, **kwargs) for px, py in parts]
        return {n: sum(len(py) / 15 * g[n] for g, (_, py) in zip(per_chunk, parts))
                for n in weights}

    def close(got, expected):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())

    g = combined()
    for n in weights:
        close(snip[n], np.abs(g[n] * weights[n]))
        assert (snip[n][~mask[n]] == 0).all()
    assert not all(np.allclose(snip[n], one[n], rtol=1e-3) for n in one)   # BN made a difference
    # GraSP: g of the whole batch (chunk by chunk), then each chunk's H_c g.
    g = combined(temperature=200.0)
    expected = combined(temperature=200.0, g=g)
    for n in weights:
        close(hg[n], expected[n])


@pytest.mark.parametrize("chunk_size", [0, -3, 2.5, True, "8"])
def test_bad_chunk_size_is_a_one_line_config_error(chunk_size):
    model, _, _ = _mlp([4, 3, 2])
    batch = _mlp_batch()
    calls = [lambda: scoring.prune_to_density("snip", model, 0.5, batch=batch,
                                              chunk_size=chunk_size),
             lambda: scoring.compute_scores("grasp", model, batch, chunk_size=chunk_size),
             lambda: scoring.compute_scores("magnitude", model, chunk_size=chunk_size),
             lambda: hessian_gradient_product(model, batch, chunk_size=chunk_size)]
    for call in calls:
        with pytest.raises(ConfigError, match="chunk_size must be a positive integer or None") as e:
            call()
        assert "\n" not in str(e.value)


# -- masks: counts, prior pruning, exclusions, scope, no side effects ---------------------------
def _snapshot(model):
    return [v.numpy().copy() for v in model.weights]


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_every_scorer_respects_mask_exclusions_counts_and_leaves_model_alone(scope):
    model = _conv_bn()
    start = _random_mask(model, 0.7)
    masking.set_mask(model, start)
    before = _snapshot(model)
    batch = _conv_batch()
    total = start.num_weights
    keep = _round(0.35 * total)
    others = [n for n in start if n != "out/kernel"]
    for name in ALL:
        mask = scoring.prune_to_density(name, model, 0.35, batch=batch, scope=scope,
                                        excluded=["out/kernel"], seed=1,
                                        iterations=3 if name in ("synflow", "isnip") else None)
        assert mask.num_remaining == keep, name
        np.testing.assert_array_equal(mask["out/kernel"], start["out/kernel"])
        for n in mask:
            assert not (mask[n] & ~start[n]).any(), (name, n)     # nothing revived
        if scope == "layerwise":
            # Same fraction of each layer's remaining weights (to within one).
            ratio = (keep - start["out/kernel"].sum()) / sum(start[n].sum() for n in others)
            for n in others:
                assert abs(mask[n].sum() - ratio * start[n].sum()) < 1, (name, n)
    after = _snapshot(model)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))  # weights, BN stats, masks
    assert masking.get_mask(model) == start


def test_global_and_layerwise_scopes_differ_as_expected():
    model, _, _ = _mlp([10, 20, 5], seed=11, biases=False)
    model.layers[0].layer.kernel.assign(model.layers[0].layer.kernel * 10.0)   # h1 much larger
    glob = scoring.prune_to_density("magnitude", model, 0.25)
    layer = scoring.prune_to_density("magnitude", model, 0.25, scope="layerwise")
    total = 200 + 100
    assert glob.num_remaining == layer.num_remaining == 75
    assert glob["out/kernel"].sum() < 10                  # global: the small layer loses most
    # Layerwise: quotas 0.25 * 200 = 50 and 0.25 * 100 = 25, both whole numbers.
    assert layer["h1/kernel"].sum() == 50 and layer["out/kernel"].sum() == 25
    assert total == sum(v.size for v in layer.values())


# -- strategies and precision --------------------------------------------------------------------
def test_synflow_scores_are_identical_under_default_and_mirrored_strategies():
    # SynFlow runs on a float64 host copy, so its scores do not depend on the
    # strategy at all.  (SNIP and GraSP run on the strategy's replicas, where
    # BatchNorm normalises per replica: tests/test_scoring_device.py.)
    reference = _conv_bn()
    mirrored = _conv_bn(strategy=two_cpu_strategy())
    mask = _random_mask(reference, 0.8)
    masking.set_mask(reference, mask)
    with two_cpu_strategy().scope():
        masking.set_mask(mirrored, mask)
    expected = scoring.compute_scores("synflow", reference)
    outside = scoring.compute_scores("synflow", mirrored)
    with two_cpu_strategy().scope():          # inside the scope: the helper-thread path
        inside = scoring.compute_scores("synflow", mirrored)
    for got in (outside, inside):
        assert all(np.array_equal(expected[n], got[n]) for n in expected)   # exact
    with two_cpu_strategy().scope():
        got = scoring.prune_to_density("synflow", mirrored, 0.3, iterations=4)
    assert got == scoring.prune_to_density("synflow", reference, 0.3, iterations=4)


def test_mixed_precision_model_is_scored_in_float32():
    x, y = _mlp_batch()
    float32, _, _ = _mlp([4, 3, 2], seed=12)
    mixed, _, _ = _mlp([4, 3, 2], seed=12, dtype="mixed_bfloat16")
    assert mixed.layers[0].compute_dtype == "bfloat16"
    for name in ("snip", "grasp", "synflow"):
        a = scoring.compute_scores(name, float32, (x, y))
        b = scoring.compute_scores(name, mixed, (x, y))
        assert all(np.array_equal(a[n], b[n]) for n in a), name


# -- the scoring batch ----------------------------------------------------------------------------
def test_class_balanced_batch_from_in_memory_dataset():
    ds = data.build(DatasetHparams(name="synthetic", batch_size=32))
    x, y = scoring.class_balanced_batch(ds, per_class=3, seed=0)
    assert x.shape == (30, 8, 8, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(y, np.repeat(np.arange(10), 3))
    again = scoring.class_balanced_batch(ds, per_class=3, seed=0)
    other = scoring.class_balanced_batch(ds, per_class=3, seed=1)
    assert np.array_equal(x, again[0]) and not np.array_equal(x, other[0])
    # Every image is a normalised (synthetic: /255), unaugmented training image of its label.
    train_x, train_y = ds._splits["train"]
    flat = train_x.reshape(len(train_x), -1).astype(np.float32) / np.float32(255)
    for image, label in zip(x, y):
        rows = np.flatnonzero((np.abs(flat - image.ravel()) < 1e-6).all(axis=1))
        assert len(rows) >= 1 and label in train_y[rows]
    assert len({image.tobytes() for image in x}) == 30
    with pytest.raises(ConfigError, match="cannot take 1000 examples per class") as e:
        scoring.class_balanced_batch(ds, per_class=1000)
    assert "\n" not in str(e.value)


class _Stream:
    """A streaming dataset: info + an infinite train_dataset(seed), no in-memory splits."""

    def __init__(self, labels, num_classes):
        self.info = types.SimpleNamespace(num_classes=num_classes)
        self.labels = np.asarray(labels, np.int32)
        self.images = np.arange(len(labels), dtype=np.float32).reshape(-1, 1, 1, 1)

    def train_dataset(self, seed):
        return tf.data.Dataset.from_tensor_slices((self.images, self.labels)).repeat().batch(4)


def test_class_balanced_batch_from_stream():
    stream = _Stream([0, 1, 1, 2, 0, 2, 1, 0, 2, 2, 0, 1], num_classes=3)
    x, y = scoring.class_balanced_batch(stream, per_class=2, seed=0)
    np.testing.assert_array_equal(y, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(x.ravel(), [0, 4, 1, 2, 3, 5])   # first two of each, in order
    missing = _Stream([0, 1, 0, 1], num_classes=3)                # class 2 never appears
    with pytest.raises(ConfigError, match="first 5 batches.*class 2 has 0") as e:
        scoring.class_balanced_batch(missing, per_class=1, max_batches=5)
    assert "\n" not in str(e.value)
    # Default bound: 20x the examples needed, in batches of 4: ceil(20 * 3 / 4) = 15.
    with pytest.raises(ConfigError, match="first 15 batches"):
        scoring.class_balanced_batch(missing, per_class=1)
