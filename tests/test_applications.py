"""Models nobody here wrote: keras.applications and tf_keras.applications (issue 21, point 6).

Each family is built with weights=None at 32x32 (the smallest input all of
them take) and 10 classes, its head left as logits (classifier_activation=
None: the scorers' loss is cross-entropy of logits), and taken through what
a user does: wrap (strict, so no layer holding connection weights is left
dense), prune to 10% by magnitude (globally) and by SNIP (per layer), fit
a few steps on random data, save as .keras, load in a new process, export,
convert to TFLite.

The default suite runs one family on one Keras (tf_keras MobileNetV2 at
width 0.35) up to export; the other seven pairs, the new-process load and
the TFLite conversion (each a minute or more on a CPU) are marked slow:
`pytest -m slow tests/test_applications.py`.  The README's table of
application families is filled from these tests.
"""
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from tflottery import masking, scoring

FAMILIES = {"MobileNetV2": dict(alpha=0.35), "ResNet50": {}, "EfficientNetB0": {},
            "DenseNet121": {}}
DEFAULT = ("tf_keras", "MobileNetV2")
DENSITY = 0.1
SHAPE = (32, 32, 3)
CLASSES = 10


def _params():
    out = []
    for keras_name in ("tf_keras", "keras3"):
        for family in FAMILIES:
            marks = () if (keras_name, family) == DEFAULT else (pytest.mark.slow,)
            out.append(pytest.param((keras_name, family), id=f"{keras_name}-{family}",
                                    marks=marks))
    return out


def _keras(keras_name):
    if keras_name == "tf_keras":
        import tf_keras
        return tf_keras
    import keras
    return keras


def _np(value):
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def _close(actual, expected):
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale)


def _kept(mask, expected_density):
    """Number of kept weights, after checking it is the rounded target (the scorers' rule)."""
    kept = mask.num_remaining
    assert kept == int(np.floor(expected_density * mask.num_weights + 0.5))
    return kept


@pytest.fixture(scope="module", params=_params())
def pruned(request):
    """The application wrapped, pruned by SNIP to 10% per layer and trained a few steps."""
    keras_name, family = request.param
    K = _keras(keras_name)
    K.utils.set_random_seed(0)
    original = getattr(K.applications, family)(
        weights=None, input_shape=SHAPE, classes=CLASSES, classifier_activation=None,
        **FAMILIES[family])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2 * CLASSES,) + SHAPE).astype(np.float32)
    y = np.repeat(np.arange(CLASSES), 2)
    # Every variable named like a kernel or embedding table, "<layer>/<attr>",
    # found by name rather than through tflottery's table.
    kernels = {f"{layer.name}/{w.name.split('/')[-1].split(':')[0]}"
               for layer in original._flatten_layers(include_self=False, recursive=True)
               for w in layer.weights if "kernel" in w.name or "embeddings" in w.name}
    model = masking.wrap(original, strict=True)
    dense_outputs = (_np(original(x[:4], training=False)), _np(model(x[:4], training=False)))
    weights = {n: _np(v).copy() for n, v in masking.prunable_variables(model).items()}
    by_magnitude = scoring.prune_to_density("magnitude", model, DENSITY)
    # Layerwise: a global 10% at initialisation empties whole layers of some
    # applications (MobileNetV2's Conv_1, by magnitude and by SNIP alike),
    # after which the output is constant and fit has nothing to train.
    by_snip = scoring.prune_to_density("snip", model, DENSITY, batch=(x, y), scope="layerwise")
    masking.set_mask(model, by_snip)
    model.compile(optimizer=K.optimizers.SGD(0.01),
                  loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=CLASSES, epochs=1, verbose=0)
    return types.SimpleNamespace(
        K=K, keras_name=keras_name, family=family, model=model, x=x[:4], weights=weights,
        kernels=kernels,
        dense_outputs=dense_outputs, by_magnitude=by_magnitude, by_snip=by_snip,
        outputs=_np(model(x[:4], training=False)))


def test_wrap_keeps_the_function_and_covers_every_kernel(pruned):
    original, wrapped = pruned.dense_outputs
    _close(wrapped, original)
    # wrap(strict=True) accepted it: only normalisation layers hold unmasked
    # weights; and the mask holds exactly the kernels (depthwise ones too).
    assert set(pruned.weights) == pruned.kernels


def test_magnitude_keeps_the_largest_tenth_globally(pruned):
    """Checked against the weights alone: every kept |w| >= every removed |w|."""
    kept = _kept(pruned.by_magnitude, DENSITY)
    magnitudes = np.concatenate([np.abs(w).ravel() for w in pruned.weights.values()])
    keep = np.concatenate([pruned.by_magnitude[n].ravel() for n in pruned.weights])
    assert keep.sum() == kept
    assert magnitudes[keep].min() >= magnitudes[~keep].max()


def test_snip_prunes_every_layer_to_a_tenth_and_fit_keeps_pruned_weights_at_zero(pruned):
    for name, keep in pruned.by_snip.items():
        assert abs(int(keep.sum()) - DENSITY * keep.size) <= 1, name
    assert masking.get_mask(pruned.model) == pruned.by_snip
    moved = 0
    for name, variable in masking.prunable_variables(pruned.model).items():
        value, keep = _np(variable), pruned.by_snip[name]
        assert (value[~keep] == 0).all(), name
        moved += int(np.count_nonzero(value[keep] != pruned.weights[name][keep]))
    assert moved > 0.5 * pruned.by_snip.num_remaining   # fit did train the kept weights


_LOAD = """
import sys
import numpy as np
import {keras} as K
import tflottery
model = K.models.load_model(sys.argv[1])
np.save(sys.argv[3], np.asarray(model(np.load(sys.argv[2]), training=False)))
from tflottery import masking   # after loading: only to read the mask back
mask = masking.get_mask(model)
pruned = sum(int(np.count_nonzero(np.asarray(v)[~mask[n]]))
             for n, v in masking.prunable_variables(model).items())
print("density", mask.density, "nonzero pruned", pruned)
"""


@pytest.mark.slow
def test_save_and_load_in_a_new_process(pruned, tmp_path):
    path, inputs, outputs = (str(tmp_path / name) for name in ("m.keras", "x.npy", "y.npy"))
    pruned.model.save(path)
    np.save(inputs, pruned.x)
    keras = "tf_keras" if pruned.keras_name == "tf_keras" else "keras"
    result = subprocess.run(
        [sys.executable, "-c", _LOAD.format(keras=keras), path, inputs, outputs],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-1500:]
    _close(np.load(outputs), pruned.outputs)
    assert f"density {pruned.by_snip.density} nonzero pruned 0" in result.stdout


def test_export_bakes_in_the_mask(pruned):
    plain = _exported(pruned)
    _close(_np(plain(pruned.x, training=False)), pruned.outputs)
    assert not any("Masked" in type(layer).__name__
                   for layer in plain._flatten_layers(include_self=False, recursive=True))
    for name, variable in masking.prunable_variables(plain).items():
        assert (_np(variable)[~pruned.by_snip[name]] == 0).all(), name


@pytest.mark.slow
def test_tflite_conversion_of_the_export(pruned, tmp_path):
    plain = _exported(pruned)
    if pruned.keras_name == "tf_keras":
        converter = tf.lite.TFLiteConverter.from_keras_model(plain)
    else:   # Keras 3 models go through a SavedModel (Keras 3's own export)
        plain.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved"))
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    (entry,), (exit_,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.set_tensor(entry["index"], pruned.x[:1])
    interpreter.invoke()
    _close(interpreter.get_tensor(exit_["index"]), pruned.outputs[:1])


def _exported(pruned):
    """masking.export of the pruned model, made once per model."""
    if not hasattr(pruned, "exported"):
        pruned.exported = masking.export(pruned.model)
    return pruned.exported
