"""Instability analysis: interpolation curves, BN recomputation, distances.

Expected values are computed independently: in NumPy from the same weights
and data (float64), or by construction (a permutation of hidden units
computes the same function, an identical copy interpolates to itself).
"""
from conftest import two_cpu_strategy  # noqa: E402
import numpy as np
import pytest
import tensorflow as tf

from tflottery import analysis, data, masking
from tflottery.errors import ConfigError
from tflottery.hparams import DatasetHparams
from tflottery.keras_compat import keras

NUM_CLASSES = 10
BN_EPS = 1e-3


@pytest.fixture(scope="module")
def ds():
    return data.build(DatasetHparams(name="synthetic", batch_size=32, augment=False))


@pytest.fixture(scope="module")
def ds48():
    """Batch 48 over 64 test and 256 training examples, neither divisible, so
    evaluation pads: under two replicas the 64 test examples fill 2 steps of
    2 x 24 with 32 padding examples, one replica's whole last batch among them."""
    return data.build(DatasetHparams(name="synthetic", batch_size=48, augment=False))


def split_arrays(dataset, split):
    """The real (not padding) examples of a split, in order, images as float64."""
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset.eval_dataset(split)])
    x, y = np.concatenate(xs).astype(np.float64), np.concatenate(ys)
    return x[y >= 0], y[y >= 0]


def numpy_cross_entropy(logits, labels):
    """Per-example softmax cross-entropy, float64."""
    top = logits.max(1)
    return np.log(np.exp(logits - top[:, None]).sum(1)) + top - logits[np.arange(len(labels)), labels]


def mirrored():
    return two_cpu_strategy()


# ---- models and their NumPy twins ---------------------------------------------------------

def mlp(hidden=20):
    x = keras.Input((8, 8, 1))
    h = keras.layers.Flatten()(x)
    h = keras.layers.Dense(hidden, activation="relu", name="hidden")(h)
    return keras.Model(x, keras.layers.Dense(NUM_CLASSES, name="output")(h))


def mlp_numpy(weights, x):
    w1, b1, w2, b2 = weights
    return np.maximum(x.reshape(len(x), -1) @ w1 + b1, 0.0) @ w2 + b2


def nearest_mean_mlp_weights(dataset):
    """An MLP computing the nearest-class-mean scores z = x.mu_c - |mu_c|^2/2 exactly.

    Hidden units relu(z) and relu(-z), output relu(z) - relu(-z) = z: a good
    classifier of the synthetic data without any training.
    """
    x, y = split_arrays(dataset, "train")
    x = x.reshape(len(x), -1)
    mu = np.stack([x[y == c].mean(axis=0) for c in range(NUM_CLASSES)])   # [10, 64]
    bias = -0.5 * np.sum(mu ** 2, axis=1)
    w1 = np.concatenate([mu.T, -mu.T], axis=1)
    b1 = np.concatenate([bias, -bias])
    w2 = np.concatenate([np.eye(NUM_CLASSES), -np.eye(NUM_CLASSES)], axis=0)
    return [w1, b1, w2, np.zeros(NUM_CLASSES)]


def permuted(weights, perm):
    w1, b1, w2, b2 = weights
    return [w1[:, perm], b1[perm], w2[perm, :], b2]


def numpy_error(logits, labels):
    return float(np.mean(np.argmax(logits, axis=1) != labels))


def numpy_curve(weights_a, weights_b, forward, dataset, split, alpha_list):
    x, y = split_arrays(dataset, split)
    errors = []
    for a in alpha_list:
        mixed = [(1 - a) * wa + a * wb for wa, wb in zip(weights_a, weights_b)]
        errors.append(numpy_error(forward(mixed, x), y))
    return errors


def three(strategy, build, weights_a, weights_b, wrap=False):
    """(A, B, mix) built under `strategy`; with wrap=True masked (weights set before wrapping)."""
    with strategy.scope():
        models = [build() for _ in range(3)]
        models[0].set_weights([np.float32(w) for w in weights_a])
        models[1].set_weights([np.float32(w) for w in weights_b])
        if wrap:
            models = [masking.wrap(m) for m in models]
    return models


def bn_model(two_bn=True):
    """1x1 conv -> BN -> flatten -> dense -> [BN ->] relu -> logits."""
    x = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(3, 1, name="conv")(x)
    h = keras.layers.BatchNormalization(epsilon=BN_EPS, name="bn1")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(16, name="dense")(h)
    if two_bn:
        h = keras.layers.BatchNormalization(epsilon=BN_EPS, name="bn2")(h)
    h = keras.layers.ReLU()(h)
    return keras.Model(x, keras.layers.Dense(NUM_CLASSES, name="output")(h))


def random_weights(model, seed):
    """Random values for every weight: kernels of std 1/sqrt(fan_in), so logits stay
    moderate and float32 round-off small; BN gammas and variances positive."""
    rng = np.random.default_rng(seed)
    out = []
    for v in model.weights:
        fan_in = int(np.prod(v.shape[:-1])) if "kernel" in v.name else 4
        value = rng.normal(0, 1 / np.sqrt(fan_in), size=v.shape)
        if "moving_variance" in v.name or "gamma" in v.name:
            value = np.abs(value) + 0.5
        out.append(value.astype(np.float32).astype(np.float64))   # exactly what the model holds
    return out


def named(model, weights):
    return {v.name.split(":")[0]: w for v, w in zip(model.weights, weights)}


def bn_stats_numpy(w, batches, two_bn=True):
    """Per-batch BN input statistics (training mode) averaged over batches, in NumPy."""
    stats = {"bn1": [], "bn2": []}
    for x in batches:
        h = x @ w["conv/kernel"][0, 0] + w["conv/bias"]                       # [b, 8, 8, 3]
        m, v = h.mean(axis=(0, 1, 2)), h.var(axis=(0, 1, 2))
        stats["bn1"].append((m, v))
        h = (h - m) / np.sqrt(v + BN_EPS) * w["bn1/gamma"] + w["bn1/beta"]
        h = h.reshape(len(h), -1) @ w["dense/kernel"] + w["dense/bias"]
        stats["bn2"].append((h.mean(axis=0), h.var(axis=0)))
    layers = ("bn1", "bn2") if two_bn else ("bn1",)
    return {name: tuple(np.mean([s[i] for s in stats[name]], axis=0) for i in range(2)) for name in layers}


def bn_forward_numpy(w, x, two_bn=True):
    """Inference-mode forward pass of bn_model with its moving statistics."""
    def bn(h, name):
        return ((h - w[f"{name}/moving_mean"]) / np.sqrt(w[f"{name}/moving_variance"] + BN_EPS)
                * w[f"{name}/gamma"] + w[f"{name}/beta"])
    h = bn(x @ w["conv/kernel"][0, 0] + w["conv/bias"], "bn1")
    h = h.reshape(len(h), -1) @ w["dense/kernel"] + w["dense/bias"]
    if two_bn:
        h = bn(h, "bn2")
    return np.maximum(h, 0) @ w["output/kernel"] + w["output/bias"]


# ---- small pure functions -----------------------------------------------------------------

def test_alphas_and_error_barrier():
    np.testing.assert_array_equal(analysis.alphas(30), np.linspace(0, 1, 30))
    assert len(analysis.alphas()) == 30
    assert analysis.error_barrier([0.1, 0.5, 0.2]) == pytest.approx(0.5 - 0.15)
    assert analysis.error_barrier([0.3, 0.3, 0.3]) == 0.0
    with pytest.raises(ConfigError):
        analysis.alphas(1)


def test_linear_barrier_measures_from_the_straight_line_between_the_ends():
    """By hand: errors 0.1, 0.4, 0.5, 0.3 at alphas 0, 1/3, 2/3, 1.  The line between
    the ends is 0.1, 0.1667, 0.2333, 0.3, so the barrier above it is 0.5 - 0.2333 =
    0.2667, where error_barrier (from the ends' mean, 0.2) gives 0.3."""
    errors, alphas = [0.1, 0.4, 0.5, 0.3], [0.0, 1 / 3, 2 / 3, 1.0]
    assert analysis.linear_barrier(errors, alphas) == pytest.approx(0.5 - (0.1 + 2 / 3 * 0.2))
    assert analysis.error_barrier(errors) == pytest.approx(0.3)
    # Equal end points: the two definitions agree; a path below the line: 0.
    assert analysis.linear_barrier([0.2, 0.6, 0.2], [0, 0.5, 1]) == pytest.approx(0.4)
    assert analysis.linear_barrier([0.1, 0.1, 0.3], [0, 0.5, 1]) == 0.0
    with pytest.raises(ConfigError, match="one error per alpha"):
        analysis.linear_barrier([0.1, 0.2], [0.0, 0.5, 1.0])


# ---- the curve ----------------------------------------------------------------------------

def test_permuted_hidden_units_give_a_barrier_matching_numpy(ds):
    weights_a = nearest_mean_mlp_weights(ds)
    perm = np.random.default_rng(0).permutation(20)
    weights_b = permuted(weights_a, perm)
    strategy = tf.distribute.get_strategy()
    a, b, mix = three(strategy, mlp, weights_a, weights_b)
    interp = analysis.Interpolator(strategy, a, b, mix, ds)   # no BN: 'recompute' is a no-op
    alpha_list = analysis.alphas(30)
    curves = interp.evaluate(alpha_list)
    # One trace for all 30 alphas.
    assert interp.assign_fn.experimental_get_tracing_count() == 1
    assert {s: f.experimental_get_tracing_count() for s, f in interp.eval_fns.items()} == {"test": 1, "train": 1}
    for split in ("test", "train"):
        expected = numpy_curve(weights_a, weights_b, mlp_numpy, ds, split, alpha_list)
        curve = curves[split]
        np.testing.assert_allclose(curve["alpha"], alpha_list)
        np.testing.assert_allclose(curve["error"], expected, atol=1e-9)
        np.testing.assert_allclose(np.array(curve["accuracy"]) + curve["error"], 1.0)
        assert curve["error"][0] == curve["error"][-1] < 0.2       # same function, a good one
        barrier = analysis.error_barrier(curve["error"])
        assert barrier == pytest.approx(max(expected) - (expected[0] + expected[-1]) / 2)
        assert barrier > 0.2
    # Loss at alpha 0 against NumPy cross-entropy of A.
    x, y = split_arrays(ds, "test")
    logits = mlp_numpy(weights_a, x)
    assert curves["test"]["loss"][0] == pytest.approx(numpy_cross_entropy(logits, y).mean(), rel=1e-5)


def test_identical_copy_has_zero_barrier_and_keeps_the_shared_mask(ds):
    weights = nearest_mean_mlp_weights(ds)
    strategy = tf.distribute.get_strategy()
    a, b, mix = three(strategy, mlp, weights, weights, wrap=True)
    rng = np.random.default_rng(1)
    mask = {name: rng.random(v.shape) < 0.7 for name, v in masking.prunable_variables(a).items()}
    masking.set_mask(a, mask)
    masking.set_mask(b, mask)
    w1, b1, w2, b2 = weights
    masked_weights = [w1 * mask["hidden/kernel"], b1, w2 * mask["output/kernel"], b2]
    interp = analysis.Interpolator(strategy, a, b, mix, ds)
    alpha_list = analysis.alphas(7)
    curves = interp.evaluate(alpha_list, splits=("test",))
    x, y = split_arrays(ds, "test")
    error_a = numpy_error(mlp_numpy(masked_weights, x), y)
    assert curves["test"]["error"] == [pytest.approx(error_a, abs=1e-9)] * 7
    assert analysis.error_barrier(curves["test"]["error"]) == 0.0
    got = masking.get_mask(mix)
    for name, keep in mask.items():
        np.testing.assert_array_equal(got[name], keep)


# ---- BatchNormalization -------------------------------------------------------------------

def _bn_models(strategy, two_bn=True, seeds=(1, 2)):
    template = bn_model(two_bn)
    wa, wb = random_weights(template, seeds[0]), random_weights(template, seeds[1])
    return (wa, wb) + tuple(three(strategy, lambda: bn_model(two_bn), wa, wb, wrap=True)), template


def test_bn_recompute_equals_numpy_statistics_of_the_bn_inputs(ds):
    strategy = tf.distribute.get_strategy()
    (wa, wb, a, b, mix), template = _bn_models(strategy)
    alpha, bn_seed, bn_batches = 0.3, 7, 3
    interp = analysis.Interpolator(strategy, a, b, mix, ds, bn_batches=bn_batches, bn_seed=bn_seed)
    interp.set_alpha(alpha)
    mixed = named(template, [(1 - alpha) * x + alpha * y for x, y in zip(wa, wb)])
    batches = [x.numpy().astype(np.float64) for x, _ in ds.train_dataset(bn_seed).take(bn_batches)]
    expected = bn_stats_numpy(mixed, batches)
    for name, (mean, var) in expected.items():
        layer = mix.get_layer(name)
        np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(layer.moving_variance.numpy(), var, rtol=1e-4, atol=1e-4)
    # The weights themselves are the interpolated ones; the end models are untouched.
    np.testing.assert_allclose(mix.get_layer("masked_dense").layer.kernel.numpy(), mixed["dense/kernel"],
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a.get_layer("bn1").moving_mean.numpy(), named(template, wa)["bn1/moving_mean"],
                               rtol=1e-6)


def test_bn_interpolate_mode_interpolates_moving_statistics(ds):
    strategy = tf.distribute.get_strategy()
    (wa, wb, a, b, mix), template = _bn_models(strategy)
    interp = analysis.Interpolator(strategy, a, b, mix, ds, bn_mode="interpolate")
    interp.set_alpha(0.3)
    na, nb = named(template, wa), named(template, wb)
    for name in ("bn1", "bn2"):
        for stat in ("moving_mean", "moving_variance"):
            key = f"{name}/{stat}"
            np.testing.assert_allclose(getattr(mix.get_layer(name), stat).numpy(),
                                       0.7 * na[key] + 0.3 * nb[key], rtol=1e-6)
    # And the curve evaluates that network.
    curve = interp.evaluate([0.3], splits=("test",))["test"]
    x, y = split_arrays(ds, "test")
    mixed = {k: 0.7 * na[k] + 0.3 * nb[k] for k in na}
    assert curve["error"][0] == pytest.approx(numpy_error(bn_forward_numpy(mixed, x), y), abs=1e-9)


def test_bn_recompute_traces_once_for_30_alphas(ds):
    strategy = tf.distribute.get_strategy()
    (_, _, a, b, mix), _ = _bn_models(strategy)
    interp = analysis.Interpolator(strategy, a, b, mix, ds, bn_batches=2)
    interp.evaluate(analysis.alphas(30), splits=("test",))
    assert interp.assign_fn.experimental_get_tracing_count() == 1
    assert interp._bn.fn.experimental_get_tracing_count() == 1
    assert interp.eval_fns["test"].experimental_get_tracing_count() == 1


def test_mirrored_strategy_curve_equals_default_strategy_curve(ds48):
    """One BN layer fed by a conv: its global-batch statistics do not depend on the replica count."""
    alpha_list = analysis.alphas(5)
    curves = []
    for strategy in (tf.distribute.get_strategy(), mirrored()):
        (_, _, a, b, mix), _ = _bn_models(strategy, two_bn=False)
        interp = analysis.Interpolator(strategy, a, b, mix, ds48, bn_batches=3, bn_seed=5)
        curves.append((interp.evaluate(alpha_list), mix.get_layer("bn1").moving_variance.numpy()))
    (default, var_default), (mirror, var_mirror) = curves
    np.testing.assert_allclose(var_mirror, var_default, rtol=1e-5)
    for split in ("test", "train"):
        for key in ("loss", "accuracy", "error"):
            np.testing.assert_allclose(mirror[split][key], default[split][key], rtol=1e-5, atol=1e-5)


# ---- distances ----------------------------------------------------------------------------

def test_vector_distances_by_hand():
    assert analysis.l2_distance([1, 0], [0, 1]) == pytest.approx(np.sqrt(2))
    assert analysis.cosine_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert analysis.cosine_distance([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0, abs=1e-12)
    assert analysis.cosine_distance([1, 0], [-1, 0]) == pytest.approx(2.0)
    assert analysis.l2_distance([1, 2, 3], [2, 4, 6]) == pytest.approx(np.sqrt(14))
    assert analysis.disagreement([1, 2, 3, 4], [1, 0, 3, 0]) == 2
    assert analysis.loss_distance([1.0, 2.0], [4.0, 6.0]) == pytest.approx(5.0)
    with pytest.raises(ConfigError):
        analysis.cosine_distance([0, 0], [1, 0])
    with pytest.raises(ConfigError):
        analysis.l2_distance([1, 2], [1, 2, 3])


def test_weight_vector_applies_masks_in_variable_order():
    model = masking.wrap(mlp(hidden=4))
    rng = np.random.default_rng(3)
    weights = [rng.normal(size=v.shape) for v in model.trainable_variables]
    mask = {name: rng.random(v.shape) < 0.5 for name, v in masking.prunable_variables(model).items()}
    masking.set_mask(model, mask)
    # Write nonzero values into pruned positions too: the vector must still mask them.
    for v, w in zip(model.trainable_variables, weights):
        v.assign(np.float32(w))
    w1, b1, w2, b2 = (np.float32(w).astype(np.float64) for w in weights)
    expected = np.concatenate([(w1 * mask["hidden/kernel"]).ravel(), b1, (w2 * mask["output/kernel"]).ravel(), b2])
    np.testing.assert_array_equal(analysis.weight_vector(model), expected)
    raw = np.concatenate([w1.ravel(), b1, w2.ravel(), b2])
    np.testing.assert_array_equal(analysis.weight_vector(model, masked=False), raw)
    assert analysis.l2_distance(analysis.weight_vector(model), raw) == pytest.approx(
        np.linalg.norm(expected - raw))


@pytest.mark.parametrize("use_mirrored", [False, True])
def test_prediction_loop_matches_numpy_and_traces_once_per_split(ds48, use_mirrored):
    """Two weight settings, two splits: predictions and losses equal the NumPy
    network's, in the split's order with the padding dropped, and each split
    is traced once (new weights are read, not retraced)."""
    ds = ds48
    strategy = mirrored() if use_mirrored else tf.distribute.get_strategy()
    with strategy.scope():
        model = mlp(hidden=8)
    loop = analysis.PredictionLoop(strategy, model, ds)
    traced = {}
    for seed in (4, 5):
        weights = random_weights(model, seed)
        model.set_weights([np.float32(w) for w in weights])
        for split in ("test", "train"):
            pred, loss = loop(split)
            x, y = split_arrays(ds, split)
            logits = mlp_numpy(weights, x)
            assert pred.dtype == np.int32 and loss.dtype == np.float32 and pred.shape == loss.shape == y.shape
            np.testing.assert_array_equal(pred, np.argmax(logits, 1))
            np.testing.assert_allclose(loss, numpy_cross_entropy(logits, y), rtol=1e-4, atol=1e-5)
        assert analysis.disagreement(pred, np.argmax(logits, 1)) == 0
        traced = traced or dict(loop.functions)
    assert loop.functions == traced  # the same function objects at the second weights
    assert {s: f.experimental_get_tracing_count() for s, f in loop.functions.items()} == {"test": 1, "train": 1}
    # The one-off function of earlier releases gives the same.
    again = analysis.predictions_and_losses(strategy, model, ds, "train")
    np.testing.assert_array_equal(again[0], pred)
    # Another traced function: equal up to float32 rounding (ops may fuse otherwise).
    np.testing.assert_allclose(again[1], loss, rtol=1e-6, atol=1e-6)


def test_prediction_step_compiles_with_xla_for_lenet(ds48):
    """The per-replica step of a masked LeNet-300-100 compiles as one XLA
    program (what a TPU needs) on a padded batch, and agrees with NumPy."""
    from tflottery import models
    model = masking.wrap(models.build("lenet_300_100", (8, 8, 1), NUM_CLASSES, seed=3))
    rng = np.random.default_rng(0)
    mask = {name: rng.random(v.shape) < 0.3 for name, v in masking.prunable_variables(model).items()}
    masking.set_mask(model, mask)
    loop = analysis.PredictionLoop(tf.distribute.get_strategy(), model, ds48)
    step = tf.function(loop.replica_step, jit_compile=True)
    images, labels = list(ds48.eval_dataset("test"))[-1]   # 16 real examples, 32 padding
    assert (labels.numpy() < 0).sum() == 32
    pred, loss = step(images, labels)   # jit_compile=True raises if any op cannot be compiled
    h = images.numpy().astype(np.float64).reshape(len(labels), -1)
    for name, act in (("fc_1", True), ("fc_2", True), ("output", False)):
        layer = model.get_layer(f"masked_{name}").layer
        kernel = layer.kernel.numpy().astype(np.float64) * mask[f"{name}/kernel"]
        h = h @ kernel + layer.bias.numpy()
        h = np.maximum(h, 0.0) if act else h
    np.testing.assert_array_equal(pred.numpy(), np.argmax(h, 1))
    np.testing.assert_allclose(loss.numpy(), numpy_cross_entropy(h, np.maximum(labels.numpy(), 0)),
                               rtol=1e-4, atol=1e-5)


# ---- errors -------------------------------------------------------------------------------

def test_mismatched_architectures_are_config_errors(ds):
    strategy = tf.distribute.get_strategy()
    a, b, c = mlp(20), mlp(20), mlp(21)
    with pytest.raises(ConfigError, match="architecture"):
        analysis.Interpolator(strategy, a, b, c, ds)
    with pytest.raises(ConfigError, match="architecture"):
        analysis.Interpolator(strategy, a, bn_model(), mlp(20), ds)
    with pytest.raises(ConfigError, match="shares variables"):
        analysis.Interpolator(strategy, a, b, a, ds)
    with pytest.raises(ConfigError, match="bn_mode"):
        analysis.Interpolator(strategy, a, b, mlp(20), ds, bn_mode="reset")


def test_different_masks_are_config_errors(ds):
    strategy = tf.distribute.get_strategy()
    a, b, mix = (masking.wrap(mlp(8)) for _ in range(3))
    mask = {name: np.ones(v.shape, bool) for name, v in masking.prunable_variables(a).items()}
    mask["hidden/kernel"][0, 0] = False
    masking.set_mask(a, mask)
    with pytest.raises(ConfigError, match="different masks"):
        analysis.Interpolator(strategy, a, b, mix, ds)
    # Also when the masks diverge after construction.
    masking.set_mask(b, mask)
    interp = analysis.Interpolator(strategy, a, b, mix, ds)
    mask["output/kernel"][1, 1] = False
    masking.set_mask(b, mask)
    with pytest.raises(ConfigError, match="different masks"):
        interp.evaluate([0.5], splits=("test",))


def test_nested_batchnorm_cannot_be_recomputed(ds):
    def nested():
        inner_in = keras.Input((64,))
        inner = keras.Model(inner_in, keras.layers.BatchNormalization(name="bn")(inner_in), name="block")
        x = keras.Input((8, 8, 1))
        h = inner(keras.layers.Flatten()(x))
        return keras.Model(x, keras.layers.Dense(NUM_CLASSES, name="output")(h))
    strategy = tf.distribute.get_strategy()
    with pytest.raises(ConfigError, match="top level"):
        analysis.Interpolator(strategy, nested(), nested(), nested(), ds)
    analysis.Interpolator(strategy, nested(), nested(), nested(), ds, bn_mode="interpolate")
