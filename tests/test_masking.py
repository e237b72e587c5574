"""Tests for tflottery.masking.

Expected values are computed independently of the code under test: NumPy
re-implementations of Dense/Conv2D, NumPy counts, or the original unmasked
model's own outputs.
"""
from conftest import two_cpu_strategy  # noqa: E402
import json

import numpy as np
import pytest
import tensorflow as tf

from tflottery.errors import ConfigError, MaskMismatchError
from tflottery.keras_compat import keras
from tflottery import masking
from tflottery.masking import Mask, Masked


def _rng(seed=0):
    return np.random.default_rng(seed)


def _random_mask(model, seed=1, density=0.5):
    rng = _rng(seed)
    return Mask({name: rng.random(tuple(var.shape)) < density
                 for name, var in masking.prunable_variables(model).items()})


def _leaves(model):
    """{inner layer name: inner layer} over all nested models, Masked unwrapped."""
    out = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.update(_leaves(layer))
        else:
            inner = layer.layer if isinstance(layer, Masked) else layer
            out[inner.name] = inner
    return out


def _mlp(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6,)),
                             keras.layers.Dense(8, activation="relu", name="hidden"),
                             keras.layers.Dense(3, name="out")])


def _functional(seed=0):
    """Conv2D + BatchNorm + Dense, with a nested Sequential sub-model."""
    keras.utils.set_random_seed(seed)
    sub = keras.Sequential([keras.layers.Dense(7, activation="tanh", name="sub_dense"),
                            keras.layers.Dense(5, name="sub_out")], name="sub")
    x = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(3, 3, name="conv")(x)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Flatten()(h)
    h = sub(h)
    y = keras.layers.Dense(2, name="head")(h)
    model = keras.Model(x, y)
    # Non-trivial BatchNorm statistics, so copying them is actually checked.
    bn = model.get_layer("bn")
    rng = _rng(5)
    bn.set_weights([rng.normal(size=3), rng.normal(size=3), rng.normal(size=3),
                    rng.uniform(0.5, 2.0, size=3)])
    return model


# -- the Masked layer against NumPy -------------------------------------------

def test_masked_dense_matches_numpy():
    layer = Masked(keras.layers.Dense(4, bias_initializer="random_normal"))
    x = _rng(0).normal(size=(5, 3)).astype(np.float32)
    layer(x)
    m = _rng(1).random((3, 4)) < 0.5
    layer.kernel_mask.assign(m.astype(np.float32))  # mask only; kernel untouched
    w, b = layer.layer.kernel.numpy(), layer.layer.bias.numpy()
    assert np.count_nonzero(w[~m]) > 0
    np.testing.assert_allclose(layer(x).numpy(), x @ (w * m) + b, rtol=1e-5, atol=1e-6)


def _numpy_conv2d_valid(x, k, b):
    n, h, w, _ = x.shape
    kh, kw, _, cout = k.shape
    out = np.zeros((n, h - kh + 1, w - kw + 1, cout), np.float64)
    for i in range(h - kh + 1):
        for j in range(w - kw + 1):
            patch = x[:, i:i + kh, j:j + kw, :]
            out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, k)
    return out + b


def test_masked_conv2d_matches_numpy():
    layer = Masked(keras.layers.Conv2D(3, (2, 3), padding="valid", bias_initializer="ones"))
    x = _rng(2).normal(size=(2, 5, 6, 2)).astype(np.float32)
    layer(x)
    m = _rng(3).random((2, 3, 2, 3)) < 0.5
    layer.kernel_mask.assign(m.astype(np.float32))
    k, b = layer.layer.kernel.numpy(), layer.layer.bias.numpy()
    expected = _numpy_conv2d_valid(x, k * m, b)
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_masked_dense_mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = Masked(keras.layers.Dense(4))
        x = _rng(0).normal(size=(5, 3)).astype(np.float32)
        layer(x)
        m = _rng(1).random((3, 4)) < 0.5
        layer.kernel_mask.assign(m.astype(np.float32))
        out = layer(x)
        assert out.dtype == tf.bfloat16
        assert layer.kernel_mask.dtype == tf.bool   # the mask is not autocast
        w = layer.layer.kernel.numpy()
        np.testing.assert_allclose(out.numpy().astype(np.float32), x @ (w * m),
                                   rtol=0.05, atol=0.05)
    finally:
        keras.mixed_precision.set_global_policy("float32")


# -- wrap() ------------------------------------------------------------------

def test_wrap_sequential_same_outputs_and_weights():
    model = _mlp()
    wrapped = masking.wrap(model)
    assert [type(l) for l in wrapped.layers] == [Masked, Masked]
    assert sorted(masking.get_mask(wrapped)) == ["hidden/kernel", "out/kernel"]
    x = _rng(4).normal(size=(10, 6)).astype(np.float32)
    np.testing.assert_allclose(wrapped(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-7)
    originals, copies = _leaves(model), _leaves(wrapped)
    for name, layer in originals.items():
        for a, b in zip(layer.get_weights(), copies[name].get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)


def test_wrap_functional_with_nested_model():
    model = _functional()
    wrapped = masking.wrap(model)
    assert sorted(masking.get_mask(wrapped)) == [
        "conv/kernel", "head/kernel", "sub_dense/kernel", "sub_out/kernel"]
    assert not any(isinstance(l, Masked) and l.layer.name == "bn" for l in wrapped.layers)
    x = _rng(6).normal(size=(4, 6, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(wrapped(x, training=False).numpy(),
                               model(x, training=False).numpy(), rtol=1e-6, atol=1e-6)
    originals, copies = _leaves(model), _leaves(wrapped)
    assert set(originals) == set(copies)
    for name, layer in originals.items():
        for a, b in zip(layer.get_weights(), copies[name].get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)


def test_unmasked_layers_stay_plain():
    wrapped = masking.wrap(_mlp(), unmasked_layers=["out"])
    assert isinstance(wrapped.layers[0], Masked)
    assert type(wrapped.layers[1]) is keras.layers.Dense
    assert list(masking.get_mask(wrapped)) == ["hidden/kernel"]


def test_unknown_unmasked_layer_name():
    with pytest.raises(ConfigError, match=r"'nope'.*hidden, out"):
        masking.wrap(_mlp(), unmasked_layers=["nope"])


def test_subclassed_model_rejected():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 3), np.float32))
    with pytest.raises(ConfigError, match="Sequential or functional.*Masked"):
        masking.wrap(net)


# (Keras 3 models are wrapped too since #17: tests/test_keras3.py.)


def test_export_of_a_subclassed_model_with_masked_layers():
    class Net(keras.Model):
        def __init__(self, width=5, **kwargs):
            super().__init__(**kwargs)
            self.width = width
            self.hidden = Masked(keras.layers.Dense(width, activation="relu", name="hidden"))
            self.norm = keras.layers.BatchNormalization(name="bn")
            self.out = keras.layers.Dense(2, name="out")

        def call(self, x, training=None):
            return self.out(self.norm(self.hidden(x), training=training))

        def get_config(self):
            return {"width": self.width}

    keras.utils.set_random_seed(3)
    net = Net()
    x = _rng(16).normal(size=(4, 3)).astype(np.float32)
    net(x)
    net.norm.set_weights([_rng(17).normal(size=5) for _ in range(3)] + [np.full(5, 2.0)])
    mask = _random_mask(net, seed=18)
    masking.set_mask(net, mask)
    kernel = net.hidden.layer.kernel
    kernel.assign(kernel.numpy() + 1.0)   # export must apply the mask itself
    exported = masking.export(net)
    assert type(exported) is Net and not masking.masked_layers(exported)
    baked = exported.hidden.kernel.numpy()
    np.testing.assert_array_equal(baked, np.where(mask["hidden/kernel"], kernel.numpy(), 0.0))
    np.testing.assert_allclose(exported(x, training=False).numpy(),
                               net(x, training=False).numpy(), rtol=1e-6, atol=1e-6)


# -- gradients and training --------------------------------------------------

def test_gradients_of_pruned_weights_are_zero():
    wrapped = masking.wrap(_mlp())
    mask = _random_mask(wrapped)
    masking.set_mask(wrapped, mask)
    kernels = masking.prunable_variables(wrapped)
    x = _rng(7).normal(size=(16, 6)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(wrapped(x) ** 2)
    grads = tape.gradient(loss, list(kernels.values()))
    for (name, _), grad in zip(kernels.items(), grads):
        grad = grad.numpy()
        assert np.all(grad[~mask[name]] == 0.0), name
        assert np.any(grad[mask[name]] != 0.0), name


def test_pruned_weights_stay_zero_under_momentum_and_weight_decay():
    wrapped = masking.wrap(_mlp())
    mask = _random_mask(wrapped, seed=8)
    masking.set_mask(wrapped, mask)
    kernels = masking.prunable_variables(wrapped)
    before = {name: var.numpy() for name, var in kernels.items()}
    optimizer = keras.optimizers.SGD(learning_rate=0.05, momentum=0.9)
    rng = _rng(9)
    x = tf.constant(rng.normal(size=(32, 6)).astype(np.float32))
    y = tf.constant(rng.normal(size=(32, 3)).astype(np.float32))
    wd = 1e-2

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((wrapped(x, training=True) - y) ** 2)
            loss += wd * tf.add_n([tf.reduce_sum(k ** 2) for k in kernels.values()]) / 2
        grads = tape.gradient(loss, wrapped.trainable_variables)
        optimizer.apply_gradients(zip(grads, wrapped.trainable_variables))

    for _ in range(50):
        step()
    for name, var in kernels.items():
        after, keep = var.numpy(), mask[name]
        assert np.all(after[~keep] == 0.0), name
        assert np.all(after[keep] != before[name][keep]), name


# -- set_mask / get_mask -----------------------------------------------------

def test_set_mask_zeroes_stored_weights_and_roundtrips():
    wrapped = masking.wrap(_mlp())
    before = {n: v.numpy() for n, v in masking.prunable_variables(wrapped).items()}
    mask = _random_mask(wrapped, seed=10)
    masking.set_mask(wrapped, mask)
    assert masking.get_mask(wrapped) == mask
    for name, var in masking.prunable_variables(wrapped).items():
        np.testing.assert_array_equal(var.numpy(), np.where(mask[name], before[name], 0.0))


def test_set_mask_needs_masked_layers():
    model = _mlp()
    with pytest.raises(ConfigError, match="no masked layers.*wrap"):
        masking.set_mask(model, Mask.ones_like(model))


# -- Mask ----------------------------------------------------------------------

def test_mask_counts_and_conversion():
    mask = Mask({"a/kernel": np.array([[1, 0], [1, 1]]), "b/kernel": np.array([0.0, 1.0, 0.0])})
    assert mask["a/kernel"].dtype == np.bool_
    assert (mask.num_weights, mask.num_remaining) == (7, 4)
    assert mask.density == pytest.approx(4 / 7)
    assert mask.sparsity == pytest.approx(3 / 7)
    assert mask == Mask({"b/kernel": [False, True, False], "a/kernel": [[True, False], [True, True]]})
    assert mask != Mask({"a/kernel": np.ones((2, 2), bool), "b/kernel": np.zeros(3, bool)})
    with pytest.raises(ConfigError, match="a/kernel"):
        Mask({"a/kernel": np.array([0.5, 1.0])})
    with pytest.raises(ConfigError):
        Mask({"a/kernel": np.array(["x"])})


def test_mask_save_load_and_report(tmp_path):
    wrapped = masking.wrap(_functional())
    mask = _random_mask(wrapped, seed=11, density=0.3)
    mask.save(str(tmp_path / "run"))
    assert Mask.load(str(tmp_path / "run")) == mask
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["mask.npz", "sparsity.json"]
    report = json.loads((tmp_path / "run" / "sparsity.json").read_text())
    total = remaining = 0
    for name, var in masking.prunable_variables(wrapped).items():
        kept = int(np.count_nonzero(mask[name]))
        size = int(np.prod(var.shape))
        entry = report["layers"][name]
        assert (entry["num_weights"], entry["num_remaining"]) == (size, kept)
        assert entry["density"] == pytest.approx(kept / size)
        assert entry["sparsity"] == pytest.approx(1 - kept / size)
        total, remaining = total + size, remaining + kept
    assert report["total"]["num_weights"] == total
    assert report["total"]["num_remaining"] == remaining
    assert report["total"]["density"] == pytest.approx(remaining / total)


def test_mask_file_is_a_deflated_npz_of_bools(tmp_path):
    rng = np.random.RandomState(3)
    mask = Mask({"dense/kernel": rng.rand(300, 200) < 0.3, "dense_1/kernel": rng.rand(200, 10) < 0.3})
    mask.save(str(tmp_path))
    with np.load(str(tmp_path / "mask.npz")) as npz:
        assert {name: npz[name].dtype for name in npz.files} == {name: np.bool_ for name in mask}
        assert all(np.array_equal(npz[name], mask[name]) for name in mask)
    assert (tmp_path / "mask.npz").stat().st_size < 0.5 * mask.num_weights    # < 1 byte a weight


def test_mask_load_missing(tmp_path):
    with pytest.raises(ConfigError, match="mask.npz"):
        Mask.load(str(tmp_path))


@pytest.mark.parametrize("change, fragment", [
    (lambda d: d.update({"hidden/kernel": np.ones((6, 5), bool)}),
     "'hidden/kernel' has shape (6, 8) but the mask has (6, 5)"),
    (lambda d: d.pop("out/kernel"), "weights missing from the mask: 'out/kernel'"),
    (lambda d: d.update({"ghost/kernel": np.ones(2, bool)}),
     "not prunable weights of the model: 'ghost/kernel'"),
])
def test_validate_reports_mismatch(change, fragment):
    wrapped = masking.wrap(_mlp())
    arrays = dict(Mask.ones_like(wrapped))
    change(arrays)
    with pytest.raises(MaskMismatchError) as info:
        Mask(arrays).validate(wrapped)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(MaskMismatchError):
        masking.set_mask(wrapped, Mask(arrays))


# -- export ----------------------------------------------------------------------

def test_export_bakes_in_zeros():
    wrapped = masking.wrap(_functional())
    mask = _random_mask(wrapped, seed=12)
    masking.set_mask(wrapped, mask)
    # Make the stored kernels non-sparse again, to check export applies the mask itself.
    for var in masking.prunable_variables(wrapped).values():
        var.assign(var.numpy() + 1.0)
    exported = masking.export(wrapped)
    assert not masking.masked_layers(exported)
    leaves = _leaves(exported)
    assert not any(isinstance(l, Masked) for l in leaves.values())
    mask.validate(exported)  # same stable names and shapes
    for name, var in masking.prunable_variables(exported).items():
        assert np.all(var.numpy()[~mask[name]] == 0.0)
        assert np.all(var.numpy()[mask[name]] != 0.0)
    x = _rng(13).normal(size=(3, 6, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(exported(x, training=False).numpy(),
                               wrapped(x, training=False).numpy(), rtol=1e-6, atol=1e-6)


# -- distribution --------------------------------------------------------------

def test_mirrored_strategy_matches_default():
    model = _functional()
    mask = _random_mask(masking.wrap(model), seed=14)
    x = _rng(15).normal(size=(4, 6, 6, 2)).astype(np.float32)

    reference = masking.wrap(model)
    masking.set_mask(reference, mask)
    expected = reference(x, training=False).numpy()

    strategy = two_cpu_strategy()
    with strategy.scope():
        mirrored = masking.wrap(model)
    masking.set_mask(mirrored, mask)
    mask_var = masking.masked_layers(mirrored)[0].kernel_mask
    assert isinstance(mask_var, tf.distribute.DistributedValues)
    for component in mask_var.values:
        np.testing.assert_array_equal(component.numpy(), mask["conv/kernel"])
    assert masking.get_mask(mirrored) == mask

    outputs = strategy.run(tf.function(lambda t: mirrored(t, training=False)),
                           args=(tf.constant(x),))
    results = strategy.experimental_local_results(outputs)
    assert len(results) == 2
    for result in results:
        np.testing.assert_allclose(result.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_output_signature_inference_skips_the_mask_but_calls_apply_it(monkeypatch):
    """Building a functional model infers each layer's output in tf_keras' scratch graph:
    no mask ops there (they were 2.5 ms of graph a wrapped layer when loading); every
    real call, eager or traced, still multiplies by the mask."""
    applied = []
    real = masking.layer.TF_KERAS.masked_value
    monkeypatch.setattr(masking.layer.TF_KERAS, "masked_value",
                        lambda w, m=None: applied.append(m is not None) or real(w, m))
    layer = Masked(keras.layers.Dense(3, kernel_initializer="ones", use_bias=False))
    inputs = keras.Input((2,))
    model = keras.Model(inputs, layer(inputs))
    assert applied == []
    layer.kernel_mask.assign([[True, False, True], [False, True, True]])
    x = np.array([[1.0, 2.0]], np.float32)
    np.testing.assert_array_equal(model(x).numpy(), [[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(tf.function(model)(x).numpy(), [[1.0, 2.0, 3.0]])
    assert applied == [True, True]
