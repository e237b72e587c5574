"""The library API on Keras 3 models (TensorFlow backend), beside tf_keras in one process (#17).

Expected values come from NumPy re-implementations, the unwrapped model's
own outputs, or the same computation on a tf_keras model holding the same
weights.  The JAX backend is tests/test_keras3_jax.py.
"""
import subprocess
import sys

import numpy as np
import pytest

import keras as keras3
from conftest import two_cpu_strategy
from test_scoring import np_mlp_grads, np_synflow
from tflottery import masking, pruning, scoring
from tflottery.errors import ConfigError
from tflottery.keras_compat import keras as tf_keras
from tflottery.masking import Mask, Masked


# Outputs of two models computing one function (the masked wrapper multiplies by
# the mask; a reloaded model is another graph): equal up to float32 rounding,
# never bit for bit, since their ops may fuse differently on another CPU.
SAME_FUNCTION = dict(rtol=1e-6, atol=1e-6)


def _np(x):
    return keras3.ops.convert_to_numpy(x)


def _rng(seed):
    return np.random.default_rng(seed)


def _random_mask(model, seed, density=0.5):
    rng = _rng(seed)
    return Mask({n: rng.random(tuple(v.shape)) < density
                 for n, v in masking.prunable_variables(model).items()})


def _mlp(k, widths=(4, 6, 3), seed=0):
    """A ReLU MLP in Keras `k` (tf_keras or Keras 3) with fixed weights; (model, kernels, biases)."""
    rng = _rng(seed)
    kernels = [rng.normal(0, 1, (a, b)).astype(np.float32) for a, b in zip(widths[:-1], widths[1:])]
    biases = [rng.normal(0, 0.1, b).astype(np.float32) for b in widths[1:]]
    names = [f"h{i}" for i in range(1, len(widths) - 1)] + ["out"]
    layers = [k.Input((widths[0],))] + [
        k.layers.Dense(w, activation=None if n == "out" else "relu", name=n)
        for w, n in zip(widths[1:], names)]
    model = k.Sequential(layers)
    for layer, w, b in zip(model.layers, kernels, biases):
        layer.set_weights([w, b])
    return model, [w.astype(np.float64) for w in kernels], [b.astype(np.float64) for b in biases]


def _cnn(k, seed=0):
    """Functional Conv2D + BatchNorm + Dense in Keras `k`, non-trivial BatchNorm statistics."""
    k.utils.set_random_seed(seed)
    x = k.Input((6, 6, 2))
    h = k.layers.Conv2D(3, 3, name="conv")(x)
    h = k.layers.BatchNormalization(name="bn")(h)
    h = k.layers.Flatten(name="flat")(k.layers.ReLU(name="relu")(h))
    model = k.Model(x, k.layers.Dense(4, name="head")(h))
    rng = _rng(seed + 1)
    model.get_layer("bn").set_weights([rng.normal(size=3), rng.normal(size=3),
                                       rng.normal(size=3), rng.uniform(0.5, 2.0, size=3)])
    return model


def _same_weights(source, target):
    """`target` (the other Keras) with `source`'s weights, layer by layer (the orders differ)."""
    for layer in source.layers:
        if layer.weights:
            target.get_layer(layer.name).set_weights(layer.get_weights())
    return target


# -- the Keras 3 masking layer -------------------------------------------------------

def test_masked_dense_and_conv_match_numpy():
    x = _rng(0).normal(size=(5, 3)).astype(np.float32)
    dense = Masked(keras3.layers.Dense(4, bias_initializer="random_normal"))
    assert isinstance(dense, keras3.layers.Layer) and dense in [dense]
    dense(x)
    m = _rng(1).random((3, 4)) < 0.5
    dense.kernel_mask.assign(m.astype(np.float32))       # the mask only; the kernel is dense
    w, b = _np(dense.layer.kernel), _np(dense.layer.bias)
    assert np.count_nonzero(w[~m]) > 0
    np.testing.assert_allclose(_np(dense(x)), x @ (w * m) + b, rtol=1e-5, atol=1e-6)

    conv = Masked(keras3.layers.Conv2D(2, 3, bias_initializer="random_normal"))
    images = _rng(2).normal(size=(2, 5, 5, 3)).astype(np.float32)
    conv(images)
    cm = _rng(3).random((3, 3, 3, 2)) < 0.5
    conv.kernel_mask.assign(cm.astype(np.float32))
    kernel, bias = _np(conv.layer.kernel) * cm, _np(conv.layer.bias)
    patches = np.stack([images[:, i:i + 3, j:j + 3, :] for i in range(3) for j in range(3)], 1)
    expected = np.einsum("npijc,ijco->npo", patches, kernel).reshape(2, 3, 3, 2) + bias
    np.testing.assert_allclose(_np(conv(images)), expected, rtol=1e-5, atol=1e-5)


def test_masked_refuses_a_layer_without_prunable_weights():
    with pytest.raises(ConfigError, match="no prunable weights"):
        Masked(keras3.layers.ReLU())


@pytest.mark.parametrize("build", [lambda: _mlp(keras3)[0], lambda: _cnn(keras3)])
def test_wrap_all_ones_reproduces_the_model_and_names_its_weights(build):
    model = build()
    wrapped = masking.wrap(model)
    assert all(type(layer).__module__ == "tflottery.masking.keras3_layer"
               for layer in masking.masked_layers(wrapped))
    x = _rng(4).normal(size=(3,) + tuple(model.input_shape[1:])).astype(np.float32)
    np.testing.assert_allclose(_np(wrapped(x, training=False)), _np(model(x, training=False)),
                               **SAME_FUNCTION)
    names = {f"{layer.name}/kernel" for layer in model.layers if hasattr(layer, "kernel")}
    assert set(masking.prunable_variables(wrapped)) == names
    assert masking.get_mask(wrapped) == Mask.ones_like(model)


def test_set_mask_zeroes_and_outputs_match_numpy():
    model, kernels, biases = _mlp(keras3)
    wrapped = masking.wrap(model)
    mask = _random_mask(wrapped, seed=5)
    masking.set_mask(wrapped, mask)
    assert masking.get_mask(wrapped) == mask
    eff = [np.where(mask[n], k, 0.0) for n, k in zip(["h1/kernel", "out/kernel"], kernels)]
    for (name, var), e in zip(masking.prunable_variables(wrapped).items(), eff):
        np.testing.assert_array_equal(_np(var), e.astype(np.float32))
    x = _rng(6).normal(size=(5, 4))
    expected = np.maximum(x @ eff[0] + biases[0], 0) @ eff[1] + biases[1]
    np.testing.assert_allclose(_np(wrapped(x.astype(np.float32))), expected, rtol=1e-5, atol=1e-5)


def test_nested_model_unmasked_layers_export_and_mirrored_snip():
    sub = keras3.Sequential([keras3.layers.Dense(7, activation="tanh", name="sub_dense"),
                             keras3.layers.Dense(5, name="sub_out")], name="sub")
    inputs = keras3.Input((6,))
    model = keras3.Model(inputs, keras3.layers.Dense(3, name="head")(
        sub(keras3.layers.Dense(4, name="d0")(inputs))))
    wrapped = masking.wrap(model, unmasked_layers=["head"])
    assert sorted(masking.prunable_variables(wrapped)) == ["d0/kernel", "sub_dense/kernel",
                                                          "sub_out/kernel"]
    x = _rng(21).normal(size=(6, 6)).astype(np.float32)
    np.testing.assert_allclose(_np(wrapped(x)), _np(model(x)), **SAME_FUNCTION)
    np.testing.assert_allclose(_np(masking.export(wrapped)(x)), _np(model(x)), **SAME_FUNCTION)
    batch = (x, np.array([0, 1, 2, 0, 1, 2]))
    strategy = two_cpu_strategy()
    with strategy.scope():
        mirrored = masking.wrap(model, unmasked_layers=["head"])
    assert mirrored.distribute_strategy is strategy
    expected = scoring.compute_scores("snip", wrapped, batch)
    got = scoring.compute_scores("snip", mirrored, batch)
    for name in expected:   # no BatchNorm: the replica count does not change the gradient
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-9)


# -- training with Keras 3's own fit -----------------------------------------------------

@pytest.mark.parametrize("optimizer", [
    lambda: keras3.optimizers.SGD(0.05, momentum=0.9),
    lambda: keras3.optimizers.AdamW(0.01, weight_decay=0.1)])
def test_fit_keeps_pruned_weights_exactly_zero(optimizer):
    wrapped = masking.wrap(_cnn(keras3))
    rng = _rng(7)
    x = rng.normal(size=(16, 6, 6, 2)).astype(np.float32)
    y = rng.integers(0, 4, 16)
    wrapped.compile(optimizer(), keras3.losses.SparseCategoricalCrossentropy(from_logits=True))
    wrapped.fit(x, y, batch_size=8, epochs=1, verbose=0)   # dense: optimizer state everywhere
    mask = _random_mask(wrapped, seed=8)
    masking.set_mask(wrapped, mask)
    before = {n: _np(v) for n, v in masking.prunable_variables(wrapped).items()}
    wrapped.fit(x, y, batch_size=8, epochs=2, verbose=0)   # the same optimizer, stale state
    for name, var in masking.prunable_variables(wrapped).items():
        after = _np(var)
        assert np.all(after[~mask[name]] == 0.0), name
        assert np.mean(after[mask[name]] != before[name][mask[name]]) > 0.5, name   # it trained


# -- subclassed models, export, save/load ----------------------------------------------------

@keras3.utils.register_keras_serializable(package="tflottery_tests")
class _Net(keras3.Model):
    def __init__(self, width=5, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.hidden = Masked(keras3.layers.Dense(width, activation="relu", name="hidden"))
        self.out = keras3.layers.Dense(2, name="out")

    def call(self, x):
        return self.out(self.hidden(x))

    def get_config(self):
        return {**super().get_config(), "width": self.width}


def test_subclassed_model_with_masked_layers_masks_and_exports():
    net = _Net()
    x = _rng(9).normal(size=(4, 3)).astype(np.float32)
    net(x)
    assert set(masking.prunable_variables(net)) == {"hidden/kernel"}
    mask = _random_mask(net, seed=10)
    masking.set_mask(net, mask)
    kernel = net.hidden.layer.kernel
    kernel.assign(_np(kernel) + 1.0)          # export must apply the mask itself
    exported = masking.export(net)
    assert type(exported) is _Net and not masking.masked_layers(exported)
    np.testing.assert_array_equal(_np(exported.hidden.kernel),
                                  np.where(mask["hidden/kernel"], _np(kernel), 0.0))
    np.testing.assert_allclose(_np(exported(x)), _np(net(x)), rtol=1e-6, atol=1e-6)


def test_export_gives_a_plain_keras3_model_with_zeros_baked_in():
    wrapped = masking.wrap(_cnn(keras3))
    mask = _random_mask(wrapped, seed=11)
    masking.set_mask(wrapped, mask)
    for var in masking.prunable_variables(wrapped).values():
        var.assign(_np(var) + 1.0)
    exported = masking.export(wrapped)
    assert isinstance(exported, keras3.Model) and not masking.masked_layers(exported)
    mask.validate(exported)
    for name, var in masking.prunable_variables(exported).items():
        assert np.all(_np(var)[~mask[name]] == 0.0) and np.all(_np(var)[mask[name]] != 0.0)
    x = _rng(12).normal(size=(3, 6, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(_np(exported(x, training=False)), _np(wrapped(x, training=False)),
                               rtol=1e-6, atol=1e-6)


def test_save_and_load_keep_the_masks(tmp_path):
    wrapped = masking.wrap(_cnn(keras3))
    mask = _random_mask(wrapped, seed=13)
    masking.set_mask(wrapped, mask)
    path = str(tmp_path / "m.keras")
    wrapped.save(path)
    loaded = keras3.models.load_model(path)
    assert masking.get_mask(loaded) == mask
    x = _rng(14).normal(size=(3, 6, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(_np(loaded(x, training=False)), _np(wrapped(x, training=False)),
                               **SAME_FUNCTION)


def test_a_fresh_process_loads_the_saved_masks(tmp_path):
    wrapped = masking.wrap(_mlp(keras3)[0])
    mask = _random_mask(wrapped, seed=22)
    masking.set_mask(wrapped, mask)
    wrapped.save(str(tmp_path / "m.keras"))
    mask.save(str(tmp_path))
    # As the README says: keras imported before tflottery.masking.
    script = ("import keras\nfrom tflottery import masking\n"
              f"m = keras.models.load_model({str(tmp_path / 'm.keras')!r})\n"
              f"assert masking.get_mask(m) == masking.Mask.load({str(tmp_path)!r})\n"
              "print('loaded')")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "loaded" in result.stdout, result.stderr[-2000:]


# -- scorers: the same numbers as on tf_keras --------------------------------------------------

@pytest.mark.parametrize("name", ["random", "magnitude", "magnitude_unit_variance", "snip",
                                  "isnip", "grasp", "grasp_abs", "synflow"])
def test_scorers_equal_the_tf_keras_scorers_on_the_same_weights(name):
    k3, _, _ = _mlp(keras3, seed=15)
    k2, _, _ = _mlp(tf_keras, seed=15)
    w3, w2 = masking.wrap(k3), masking.wrap(k2)
    mask = _random_mask(w3, seed=16, density=0.7)
    masking.set_mask(w3, mask)
    masking.set_mask(w2, mask)
    rng = _rng(17)
    batch = (rng.normal(size=(12, 4)).astype(np.float32), rng.integers(0, 3, 12))
    s3 = scoring.compute_scores(name, w3, batch, seed=3)
    s2 = scoring.compute_scores(name, w2, batch, seed=3)
    assert set(s3) == set(s2) == set(mask)
    for n in s3:
        np.testing.assert_allclose(s3[n], s2[n], rtol=1e-5, atol=1e-9)


def test_cnn_with_batchnorm_scores_equal_the_tf_keras_scores():
    k3 = _cnn(keras3, seed=23)
    w3, w2 = masking.wrap(k3), masking.wrap(_same_weights(k3, _cnn(tf_keras, seed=23)))
    mask = _random_mask(w3, seed=24, density=0.6)
    masking.set_mask(w3, mask)
    masking.set_mask(w2, mask)
    rng = _rng(25)
    batch = (rng.normal(size=(12, 6, 6, 2)).astype(np.float32), rng.integers(0, 4, 12))
    # GraSP's Hessian-gradient product through training-mode BatchNorm at T=200
    # cancels heavily; the two Kerases' float32 BatchNorm round differently.
    for name, atol in (("snip", 1e-7), ("synflow", 1e-7), ("grasp", 2e-2)):
        s3 = scoring.compute_scores(name, w3, batch)
        s2 = scoring.compute_scores(name, w2, batch)
        for n in mask:
            np.testing.assert_allclose(s3[n], s2[n], rtol=2e-4, atol=atol * np.abs(s2[n]).max(),
                                       err_msg=f"{name} {n}")
    assert scoring.prune_to_density("isnip", w3, 0.2, batch=batch, iterations=4) == \
        scoring.prune_to_density("isnip", w2, 0.2, batch=batch, iterations=4)


def test_keras3_scores_match_numpy_and_prune_to_density_keeps_the_count():
    model, kernels, biases = _mlp(keras3, seed=18)
    wrapped = masking.wrap(model)
    rng = _rng(19)
    x, y = rng.normal(size=(10, 4)).astype(np.float32), rng.integers(0, 3, 10)
    names = ["h1/kernel", "out/kernel"]
    snip = scoring.compute_scores("snip", wrapped, (x, y))
    for n, g, w in zip(names, np_mlp_grads(kernels, biases, x, y), kernels):
        np.testing.assert_allclose(snip[n], np.abs(g * w), rtol=1e-5, atol=1e-8)
    flow = scoring.compute_scores("synflow", wrapped)
    for n, expected in zip(names, np_synflow(kernels, biases)[0]):
        np.testing.assert_allclose(flow[n], expected, rtol=1e-9)
    for scorer in ("isnip", "synflow"):
        mask = scoring.prune_to_density(scorer, wrapped, 0.3, batch=(x, y), iterations=5)
        assert mask.num_remaining == round(0.3 * mask.num_weights)
    assert masking.get_mask(wrapped) == Mask.ones_like(model)   # the model is left alone


# -- what the library does not take ---------------------------------------------------------------

def test_unsupported_kinds_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="Keras 3 model, got Dense; .*Masked") as info:
        masking.wrap(keras3.layers.Dense(2))
    assert "\n" not in str(info.value)
    from tflottery.analysis.interpolation import check_tf_keras_model   # a tf_keras-only part
    with pytest.raises(ConfigError, match="Keras 3 model; .*tf_keras"):
        check_tf_keras_model(_mlp(keras3)[0])


# -- both Kerases in one process ----------------------------------------------------------------

def test_tf_keras_and_keras3_models_wrapped_and_pruned_side_by_side():
    models = {"tf_keras": masking.wrap(_cnn(tf_keras)), "keras3": masking.wrap(_cnn(keras3))}
    assert type(masking.masked_layers(models["tf_keras"])[0]) is Masked
    for model in models.values():
        weights = {n: _np(v) for n, v in masking.prunable_variables(model).items()}
        mask = pruning.prune({n: np.abs(w) for n, w in weights.items()},
                             masking.get_mask(model), fraction=0.5)
        masking.set_mask(model, mask)
        assert masking.get_mask(model) == mask and mask.density == pytest.approx(0.5, abs=0.02)
        kept = np.concatenate([np.abs(w[mask[n]]) for n, w in weights.items()])
        pruned = np.concatenate([np.abs(w[~mask[n]]) for n, w in weights.items()])
        assert kept.min() >= pruned.max()               # global magnitude pruning
        for name, var in masking.prunable_variables(model).items():
            np.testing.assert_array_equal(_np(var), np.where(mask[name], weights[name], 0.0))


def test_readme_imp_with_fit():
    """The README's IMP-with-fit example, as written there."""
    keras = keras3
    rng = _rng(20)
    x, y = rng.normal(size=(32, 6, 6, 2)).astype(np.float32), rng.integers(0, 4, 32)
    model = masking.wrap(_cnn(keras3))
    init = model.get_weights()
    for level in range(3):
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, epochs=1, verbose=0)
        trained = {n: abs(v.numpy()) for n, v in masking.prunable_variables(model).items()}
        mask = pruning.prune(trained, masking.get_mask(model), fraction=0.2)
        model.set_weights(init)                 # rewind (masks go back to all ones)...
        masking.set_mask(model, mask)           # ...so install the new one
    assert masking.get_mask(model).density == pytest.approx(0.8 ** 3, abs=0.02)
