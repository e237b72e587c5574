"""Layer coverage beyond Dense/Conv2D (issue 21, point 3), and one-line error lists (point 7).

DepthwiseConv2D, SeparableConv2D (both kernels), Conv1D, Conv3D,
Conv2DTranspose and Embedding are prunable by default, in tf_keras and in
Keras 3.  Each is checked on a one-layer model against a NumPy forward pass
written here (valid padding, stride 1, no bias): the mask takes effect in
the forward pass, the masked-updates optimizer keeps pruned entries at 0,
magnitude and SNIP scores (SNIP's gradient by central finite differences of
the NumPy loss), export, tfmot interop and the N:M pattern.
"""
import importlib.util
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from numpy.lib.stride_tricks import sliding_window_view

import tf_keras
from tflottery import masking, scoring
from tflottery.errors import ConfigError, MaskMismatchError, first_few
from tflottery.hparams import TrainingHparams
from tflottery.masking import Mask
from tflottery.pruning import n_m, select
from tflottery.training.optimizers import build_optimizer

BATCH = 3


# -- NumPy forward passes (channels last, valid padding, stride 1, no bias) ---------------------
def _windows(x, kernel_dims):
    """[batch, *out, channels, *kernel] sliding windows of x [batch, *spatial, channels]."""
    return sliding_window_view(x, kernel_dims, axis=tuple(range(1, len(kernel_dims) + 1)))


def np_conv(x, w):
    """Convolution of any rank: out[b, *p, o] = sum_{k, i} x[b, p + k, i] w[k, i, o]."""
    d = w.ndim - 2
    k = "ijk"[:d]
    return np.einsum(f"b{'pqr'[:d]}c{k},{k}co->b{'pqr'[:d]}o", _windows(x, w.shape[:d]), w)


def np_depthwise(x, w):
    """out[b, y, x, c * mult + m] = sum_k x[b, y + k, x + l, c] w[k, l, c, m]."""
    out = np.einsum("byxcij,ijcm->byxcm", _windows(x, w.shape[:2]), w)
    return out.reshape(out.shape[:3] + (-1,))


def np_conv_transpose(x, w):
    """out[b, y + i, x + j, o] += x[b, y, x, c] w[i, j, o, c] (w is [h, w, out, in])."""
    b, h, wd, _ = x.shape
    kh, kw, cout, _ = w.shape
    out = np.zeros((b, h + kh - 1, wd + kw - 1, cout))
    for i in range(kh):
        for j in range(kw):
            out[:, i:i + h, j:j + wd] += np.einsum("byxc,oc->byxo", x, w[i, j])
    return out


class Case:
    """A one-layer model `layer_fn(K)` on input shape `shape`, its NumPy forward and its
    prunable attributes per Keras."""

    def __init__(self, layer_fn, shape, forward, attrs, keras3_attrs=None, ids=False):
        self.layer_fn, self.shape, self.forward, self.ids = layer_fn, shape, forward, ids
        self.attrs = {"tf_keras": attrs, "keras3": keras3_attrs or attrs}

    def model(self, K, seed=0):
        inputs = K.Input(self.shape, dtype="int32" if self.ids else "float32")
        outputs = K.layers.Flatten()(self.layer_fn(K)(inputs))
        model = K.Model(inputs, outputs)
        rng = np.random.default_rng(seed)
        model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.weights])
        return model

    def inputs(self, seed=1):
        rng = np.random.default_rng(seed)
        if self.ids:
            return rng.integers(0, VOCAB, size=(BATCH,) + self.shape)
        return rng.normal(size=(BATCH,) + self.shape).astype(np.float32)

    def logits(self, kernels, x):
        """Float64 NumPy logits from the (masked) kernels, in the order of `attrs`."""
        kernels = [np.asarray(k, np.float64) for k in kernels]
        return self.forward(kernels, np.asarray(x)).reshape(len(x), -1)


VOCAB = 7
CASES = {
    "conv1d": Case(lambda K: K.layers.Conv1D(4, 3, use_bias=False, name="layer"), (6, 3),
                   lambda k, x: np_conv(x, k[0]), ("kernel",)),
    "conv3d": Case(lambda K: K.layers.Conv3D(3, 2, use_bias=False, name="layer"), (3, 3, 3, 4),
                   lambda k, x: np_conv(x, k[0]), ("kernel",)),
    "conv2d_transpose": Case(
        lambda K: K.layers.Conv2DTranspose(3, 2, use_bias=False, name="layer"), (3, 3, 2),
        lambda k, x: np_conv_transpose(x, k[0]), ("kernel",)),
    "depthwise": Case(
        lambda K: K.layers.DepthwiseConv2D(3, depth_multiplier=2, use_bias=False, name="layer"),
        (5, 5, 3), lambda k, x: np_depthwise(x, k[0]), ("depthwise_kernel",), ("kernel",)),
    "separable": Case(
        lambda K: K.layers.SeparableConv2D(4, 3, depth_multiplier=2, use_bias=False,
                                           name="layer"),
        (5, 5, 3), lambda k, x: np_conv(np_depthwise(x, k[0]), k[1]),
        ("depthwise_kernel", "pointwise_kernel")),
    "embedding": Case(lambda K: K.layers.Embedding(VOCAB, 3, name="layer"), (4,),
                      lambda k, x: k[0][x], ("embeddings",), ids=True),
}


def _kerases():
    out = [pytest.param(tf_keras, id="tf_keras")]
    try:
        import keras
        out.append(pytest.param(keras, id="keras3"))
    except ImportError:  # pragma: no cover - Keras 3 is installed with TensorFlow 2.16+
        pass
    return out


def _api_name(K):
    return "tf_keras" if K is tf_keras else "keras3"


def _random_mask(model, seed=2, density=0.5):
    rng = np.random.default_rng(seed)
    return Mask({name: rng.random(tuple(v.shape)) < density
                 for name, v in masking.prunable_variables(model).items()})


def _masked_model(case, K):
    """The wrapped one-layer model with a random half mask; also (names, mask)."""
    wrapped = masking.wrap(case.model(K))
    names = [f"layer/{attr}" for attr in case.attrs[_api_name(K)]]
    mask = _random_mask(wrapped)
    masking.set_mask(wrapped, mask)
    return wrapped, names, mask


def _np(value):
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


# -- coverage and the forward pass -----------------------------------------------------------------
@pytest.mark.parametrize("K", _kerases())
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_layer_is_masked_and_the_mask_acts_in_the_forward_pass(case, K):
    wrapped, names, mask = _masked_model(case, K)
    assert sorted(mask) == sorted(names)
    variables = masking.prunable_variables(wrapped)
    # Garbage in the pruned entries: only the forward multiply can hide it.
    rng = np.random.default_rng(3)
    raw = {}
    for name in names:
        raw[name] = rng.normal(size=tuple(variables[name].shape)).astype(np.float32)
        variables[name].assign(raw[name])
    x = case.inputs()
    expected = case.logits([np.where(mask[n], raw[n], 0.0) for n in names], x)
    np.testing.assert_allclose(_np(wrapped(x)), expected, rtol=1e-5, atol=1e-5)
    # ... and the mask really changes the function.
    assert not np.allclose(case.logits([raw[n] for n in names], x), expected, atol=1e-3)


# -- training -------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_masked_updates_follow_sgd_and_keep_pruned_weights_at_zero(case):
    """tflottery's optimizer (tf_keras): kept entries w - lr * g, pruned entries exactly 0."""
    wrapped, names, mask = _masked_model(case, tf_keras)
    variables = masking.prunable_variables(wrapped)
    optimizer = build_optimizer(TrainingHparams(lr=0.1, optimizer="sgd"), 0.1, wrapped,
                                xla=False)
    rng = np.random.default_rng(4)
    for _ in range(3):
        grads = {n: rng.normal(size=tuple(variables[n].shape)) for n in names}
        expected = {n: np.where(mask[n], _np(variables[n]) - 0.1 * grads[n], 0.0)
                    for n in names}
        optimizer.apply_gradients([(tf.constant(grads[n], tf.float32), variables[n])
                                   for n in names])
        for n in names:
            np.testing.assert_allclose(_np(variables[n]), expected[n], rtol=1e-6, atol=1e-6)
            assert (_np(variables[n])[~mask[n]] == 0).all()


def test_keras3_fit_keeps_pruned_weights_at_zero():
    """Keras 3's own fit with Adam, on every new layer type at once."""
    import keras
    keras.utils.set_random_seed(0)   # the suite runs with op determinism on
    rng = np.random.default_rng(5)
    for case in CASES.values():
        wrapped, names, mask = _masked_model(case, keras)
        before = {n: _np(masking.prunable_variables(wrapped)[n]).copy() for n in names}
        wrapped.compile(optimizer=keras.optimizers.Adam(0.05),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        x = case.inputs()
        y = rng.integers(0, wrapped.output_shape[-1], len(x))
        wrapped.fit(x, y, epochs=3, batch_size=len(x), verbose=0)
        for n in names:
            after = _np(masking.prunable_variables(wrapped)[n])
            assert (after[~mask[n]] == 0).all(), n
            assert not np.allclose(after[mask[n]], before[n][mask[n]]), n


_JAX_CHECKS = r"""
import numpy as np
import keras
import test_layer_coverage as t
from tflottery import masking

assert keras.backend.backend() == "jax"
keras.utils.set_random_seed(0)
for key, case in t.CASES.items():
    wrapped, names, mask = t._masked_model(case, keras)
    variables = masking.prunable_variables(wrapped)
    raw = {n: np.random.default_rng(3).normal(size=tuple(variables[n].shape)).astype("float32")
           for n in names}
    for n in names:
        variables[n].assign(raw[n])
    x = case.inputs()
    expected = case.logits([np.where(mask[n], raw[n], 0.0) for n in names], x)
    np.testing.assert_allclose(np.asarray(wrapped(x)), expected, rtol=1e-5, atol=1e-5)
    wrapped.compile(optimizer=keras.optimizers.Adam(0.05),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    wrapped.fit(x, np.zeros(len(x), "int32"), epochs=2, batch_size=len(x), verbose=0)
    for n in names:
        assert (np.asarray(variables[n].numpy())[~mask[n]] == 0).all(), (key, n)
print("jax layer checks passed")
"""


@pytest.mark.slow   # a minute or more: a child process imports TensorFlow, Keras and JAX
@pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                    reason="jax is not installed (pip install 'jax[cpu]')")
def test_keras3_on_jax_masks_every_new_layer_type():
    """The forward pass against NumPy and fit keeping pruned weights at 0, on the JAX backend."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, KERAS_BACKEND="jax",
               PYTHONPATH=os.pathsep.join([here] + os.environ.get("PYTHONPATH", "").split(
                   os.pathsep)))
    result = subprocess.run([sys.executable, "-c", _JAX_CHECKS], env=env, capture_output=True,
                            text=True, timeout=300, cwd=os.path.dirname(here))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "jax layer checks passed" in result.stdout


# -- scorers --------------------------------------------------------------------------------------
def _np_loss(case, kernels, x, y):
    z = case.logits(kernels, x)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(y)), y].mean()


def _np_gradient(case, kernels, index, x, y, eps=1e-5):
    """dL/dkernels[index] by central differences of the float64 NumPy loss."""
    kernels = [k.astype(np.float64) for k in kernels]
    grad = np.zeros_like(kernels[index])
    for pos in np.ndindex(grad.shape):
        for sign in (1, -1):
            shifted = [k.copy() for k in kernels]
            shifted[index][pos] += sign * eps
            grad[pos] += sign * _np_loss(case, shifted, x, y) / (2 * eps)
    return grad


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_magnitude_and_snip_scores_match_numpy(case):
    wrapped, names, mask = _masked_model(case, tf_keras)
    variables = masking.prunable_variables(wrapped)
    effective = [np.where(mask[n], _np(variables[n]), 0.0) for n in names]
    x = case.inputs()
    y = np.random.default_rng(6).integers(0, wrapped.output_shape[-1], len(x))
    magnitude = scoring.compute_scores("magnitude", wrapped)
    snip = scoring.compute_scores("snip", wrapped, (x, y))
    for i, name in enumerate(names):
        np.testing.assert_array_equal(magnitude[name], np.abs(effective[i]))
        expected = np.abs(_np_gradient(case, effective, i, x, y) * effective[i])
        np.testing.assert_allclose(snip[name], expected, rtol=1e-3, atol=1e-6)
        assert (snip[name][~mask[name]] == 0).all()


# -- export and tfmot -----------------------------------------------------------------------------
@pytest.mark.parametrize("K", _kerases())
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_export_bakes_the_mask_into_the_weights(case, K):
    wrapped, names, mask = _masked_model(case, K)
    effective = [np.where(mask[n], _np(masking.prunable_variables(wrapped)[n]), 0.0)
                 for n in names]
    plain = masking.export(wrapped)
    layer = plain.get_layer("layer")
    for attr, name, value in zip(case.attrs[_api_name(K)], names, effective):
        np.testing.assert_array_equal(_np(getattr(layer, attr)), value)
    x = case.inputs()
    np.testing.assert_allclose(_np(plain(x)), case.logits(effective, x), rtol=1e-5, atol=1e-5)


TFMOT_PRUNES = ["conv1d", "conv3d", "conv2d_transpose", "embedding"]


@pytest.mark.parametrize("key", TFMOT_PRUNES)
def test_to_tfmot_and_back_keep_the_mask(key):
    import tensorflow_model_optimization as tfmot
    case = CASES[key]
    wrapped, names, mask = _masked_model(case, tf_keras)
    effective = {n: np.where(mask[n], _np(masking.prunable_variables(wrapped)[n]), 0.0)
                 for n in names}
    pruned = masking.to_tfmot(wrapped)
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    for attr, name in zip(case.attrs["tf_keras"], names):
        np.testing.assert_array_equal(_np(getattr(stripped.get_layer("layer"), attr)),
                                      effective[name])
    assert masking.get_mask(masking.from_tfmot(pruned)) == mask


@pytest.mark.parametrize("key", ["depthwise", "separable"])
def test_to_tfmot_refuses_depthwise_kernels_in_one_line(key):
    wrapped, _, _ = _masked_model(CASES[key], tf_keras)
    with pytest.raises(ConfigError, match="'layer/depthwise_kernel'.*unmasked_layers") as info:
        masking.to_tfmot(wrapped)
    assert "\n" not in str(info.value)


# -- N:M ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["conv1d", "conv3d", "embedding"])
def test_n_m_pruning_keeps_the_two_largest_of_every_four_inputs(key):
    """Ranks 3, 5 and 2: blocks of 4 along the input axis (-2), checked by a NumPy loop."""
    model = masking.wrap(CASES[key].model(tf_keras))
    name = "layer/" + CASES[key].attrs["tf_keras"][0]
    weight = _np(masking.prunable_variables(model)[name])
    current = Mask.ones_like(model)
    mask = select.prune({name: np.abs(weight)}, current, 0.2, scope="2:4")[name]
    # Expected, entry by entry: move the input axis last, cut it into blocks of 4.
    moved_w, moved_m = np.moveaxis(np.abs(weight), -2, -1), np.moveaxis(mask, -2, -1)
    for pos in np.ndindex(moved_w.shape[:-1]):
        for start in range(0, moved_w.shape[-1], 4):
            block = moved_w[pos][start:start + 4]
            keep = np.zeros(block.shape, bool)
            keep[np.argsort(block)[-2:]] = True
            np.testing.assert_array_equal(moved_m[pos][start:start + 4], keep)
    assert n_m.follows(mask, 2, 4)


# -- what wrap leaves dense ------------------------------------------------------------------------
class Scale(tf_keras.layers.Layer):
    """A custom layer with its own weight, which no table entry covers."""

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="ones")

    def call(self, inputs):
        return inputs * self.scale


def _model_with_unprunable_layers():
    inputs = tf_keras.Input((8,))
    h = tf_keras.layers.Dense(8, name="fc")(inputs)
    h = tf_keras.layers.LayerNormalization(name="ln1")(h)
    h = tf_keras.layers.LayerNormalization(name="ln2")(h)
    h = Scale(name="scale")(h)
    h = tf_keras.layers.BatchNormalization(name="bn")(h)
    return tf_keras.Model(inputs, tf_keras.layers.Dense(2, name="out")(h))


def test_wrap_logs_one_line_naming_the_layers_it_left_dense(caplog):
    with caplog.at_level(logging.INFO):
        masking.wrap(_model_with_unprunable_layers())
    lines = [r.getMessage() for r in caplog.records if "left dense" in r.getMessage()]
    # By hand: 2 x LayerNormalization(8) = 2 * (8 + 8); BatchNormalization(8) = 4 * 8; Scale 8.
    assert lines == ["wrap(): left dense (not prunable): BatchNormalization x1 (32 weights), "
                     "LayerNormalization x2 (32 weights), Scale x1 (8 weights)"]
    assert [r.levelname for r in caplog.records if "left dense" in r.getMessage()] == ["WARNING"]


def test_wrap_strict_refuses_unprunable_connection_layers_in_one_line():
    with pytest.raises(ConfigError, match=r"strict=True.*: Scale x1 \(8 weights\); .*"
                                          r"prunable_weights") as info:
        masking.wrap(_model_with_unprunable_layers(), strict=True)
    assert "\n" not in str(info.value) and "Normalization" not in str(info.value)
    # A table entry for the custom layer (by class name, as the README says)
    # makes it prunable, and strict then passes.
    model = _model_with_unprunable_layers()
    wrapped = masking.wrap(model, strict=True, prunable_weights={
        **masking.prunable.prunable_weights_of(model), "Scale": ("scale",)})
    assert sorted(masking.get_mask(wrapped)) == ["fc/kernel", "out/kernel", "scale/scale"]


# -- long error lists -----------------------------------------------------------------------------
def test_first_few_shows_five_and_counts_the_rest():
    assert first_few(["a", "b"]) == "a, b"
    assert first_few(range(12)) == "0, 1, 2, 3, 4 and 7 more (12 in all)"


def test_mask_mismatch_lists_the_first_few_missing_weights_and_a_count():
    inputs = tf_keras.Input((3,))
    h = inputs
    for i in range(12):
        h = tf_keras.layers.Dense(3, name=f"d{i:02d}")(h)
    wrapped = masking.wrap(tf_keras.Model(inputs, h))
    with pytest.raises(MaskMismatchError) as info:
        Mask({"d00/kernel": np.ones((3, 3), bool)}).validate(wrapped)
    message = str(info.value)
    assert "weights missing from the mask: 'd01/kernel', 'd02/kernel', 'd03/kernel', " \
           "'d04/kernel', 'd05/kernel' and 6 more (11 in all)" in message
    assert "d06" not in message and "\n" not in message
