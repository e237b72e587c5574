"""A wrapped model saved in every format loads in a new process after `import tflottery`.

Each save and each load runs in its own Python process, as a user's would:
the loading script is `import tf_keras; import tflottery;
tf_keras.models.load_model(path)` (or the Keras 3 equivalent, in both import
orders), nothing deeper.  The expectations come from the saving process: the
mask it set (drawn with NumPy) and the model's output on a fixed input;
the loaded model must give the same output (to a tolerance), hold the same
masks, and keep its pruned weights exactly 0.0.
"""
import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# argv: keras module name, output directory, formats to save (".keras", ".h5", "_savedmodel").
SAVE = textwrap.dedent("""
    import importlib, sys
    import numpy as np
    import tflottery
    from tflottery import masking
    K = importlib.import_module(sys.argv[1])
    out, formats = sys.argv[2], sys.argv[3:]
    K.utils.set_random_seed(0)
    inputs = K.Input((6, 6, 2))
    x = K.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = K.layers.Flatten()(x)
    model = masking.wrap(K.Model(inputs, K.layers.Dense(3, name="dense")(x)))
    rng = np.random.default_rng(0)
    mask = {name: rng.random(tuple(v.shape)) < 0.4
            for name, v in masking.prunable_variables(model).items()}
    masking.set_mask(model, masking.Mask(mask))
    if "legacy" in formats:   # the previous version: masks stored as float32 weights "0", "1", ...
        formats.remove("legacy")
        wrapper = type(model.get_layer("masked_conv"))
        wrapper.save_own_variables = wrapper.__mro__[2].save_own_variables
    x = rng.standard_normal((5, 6, 6, 2)).astype("float32")
    for fmt in formats:
        if fmt == "_savedmodel":
            model.save(out + "/model_savedmodel", save_format="tf")
        else:
            model.save(out + "/model" + fmt)
    np.savez(out + "/expected.npz", x=x, y=np.asarray(model(x)),
             **{"mask/" + name: keep for name, keep in mask.items()})
""")

# argv: model path, expected.npz, result.npz.  The first lines are a user's.
LOAD = textwrap.dedent("""
    import sys
    {imports}
    model = {keras}.models.load_model(sys.argv[1])

    import numpy as np
    from tflottery import masking
    x = np.load(sys.argv[2])["x"]
    np.savez(sys.argv[3], y=np.asarray(model(x)),
             types=[type(layer).__name__ for layer in masking.masked_layers(model)],
             **{{"mask/" + n: keep for n, keep in masking.get_mask(model).items()}},
             **{{"weight/" + n: np.asarray(v)
                for n, v in masking.prunable_variables(model).items()}})
""")

IMPORTS = {
    "tf_keras": "import tf_keras\nimport tflottery",
    "keras": "import keras\nimport tflottery",
    "keras_after": "import tflottery\nimport keras",
}


def _run(script, args, backend="tensorflow"):
    env = dict(os.environ, PYTHONPATH=REPO, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    # As in a user's shell: the suite's conftest sets TF_USE_LEGACY_KERAS, a user does not
    # (then `import keras` first loads TensorFlow before tflottery can set it).
    env.pop("TF_USE_LEGACY_KERAS", None)
    proc = subprocess.run([sys.executable, "-c", script, *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _saved(tmp_path_factory, keras_module, formats, backend="tensorflow"):
    directory = tmp_path_factory.mktemp(f"{keras_module}_{backend}")
    _run(SAVE, [keras_module, str(directory), *formats], backend)
    return directory


@pytest.fixture(scope="module")
def tf_keras_saved(tmp_path_factory):
    return _saved(tmp_path_factory, "tf_keras", [".keras", ".h5", "_savedmodel"])


@pytest.fixture(scope="module")
def keras3_saved(tmp_path_factory):
    return _saved(tmp_path_factory, "keras", [".keras"])


def _load_and_check(directory, filename, imports, backend="tensorflow"):
    keras_module = "tf_keras" if imports == "tf_keras" else "keras"
    script = LOAD.format(imports=IMPORTS[imports], keras=keras_module)
    result_path = str(directory / f"result_{filename}_{imports}.npz")
    _run(script, [str(directory / filename), str(directory / "expected.npz"), result_path],
         backend)
    expected, result = np.load(directory / "expected.npz"), np.load(result_path)
    want_masks = {k[len("mask/"):]: expected[k] for k in expected.files if k.startswith("mask/")}
    got_masks = {k[len("mask/"):]: result[k] for k in result.files if k.startswith("mask/")}
    assert sorted(got_masks) == sorted(want_masks) == ["conv/kernel", "dense/kernel"]
    for name, keep in want_masks.items():
        np.testing.assert_array_equal(got_masks[name], keep, err_msg=name)
        weight = result["weight/" + name]
        assert (weight[~keep] == 0.0).all(), f"{name}: pruned weights are not exactly 0"
        assert (weight[keep] != 0.0).mean() > 0.9, f"{name}: kept weights lost"
    np.testing.assert_allclose(result["y"], expected["y"], rtol=1e-5, atol=1e-6)
    assert len(result["types"]) == 2


@pytest.mark.parametrize("filename", ["model.keras", "model.h5", "model_savedmodel"])
def test_tf_keras_model_loads_in_new_process(tf_keras_saved, filename):
    _load_and_check(tf_keras_saved, filename, "tf_keras")


@pytest.mark.parametrize("imports", ["keras", "keras_after"])
def test_keras3_model_loads_in_new_process(keras3_saved, imports):
    """Keras 3 imported before or after tflottery: its Masked is registered either way."""
    _load_and_check(keras3_saved, "model.keras", imports)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_keras3_jax_model_loads_in_new_process(tmp_path_factory):
    directory = _saved(tmp_path_factory, "keras", [".keras"], backend="jax")
    _load_and_check(directory, "model.keras", "keras", backend="jax")


@pytest.mark.parametrize("keras_module", ["tf_keras", "keras"])
def test_file_of_previous_version_loads(tmp_path_factory, keras_module):
    """Masks stored as float32 weights "0", "1", ... (before they were packed) still load."""
    directory = _saved(tmp_path_factory, keras_module, ["legacy", ".keras"])
    _load_and_check(directory, "model.keras", keras_module)


def test_import_tflottery_does_not_import_keras3():
    """tf_keras users do not pay for Keras 3: `import tflottery` leaves it unimported."""
    _run("import sys, tflottery, tf_keras\n"
         "assert 'keras' not in sys.modules, 'import tflottery imported Keras 3'\n"
         "assert tf_keras.saving.get_registered_object('tflottery>Masked') is not None", [])


def test_masks_are_stored_as_bits():
    """A saved mask costs 1 bit per weight; a float mask that is not all 0/1 (a file of
    a version whose float32 masks could be set to anything by hand) is refused as it loads."""
    import tf_keras
    from tflottery import masking
    from tflottery.errors import ConfigError

    model = masking.wrap(tf_keras.Sequential([tf_keras.Input((5,)), tf_keras.layers.Dense(7)]))
    wrapper = masking.masked_layers(model)[0]
    keep = np.arange(35).reshape(5, 7) % 3 == 0
    wrapper.kernel_mask.assign(keep.astype(np.float32))
    store = {}
    wrapper.save_own_variables(store)
    assert sorted(store) == ["kernel_mask_bits"] and store["kernel_mask_bits"].nbytes == 5
    wrapper.kernel_mask.assign(np.ones((5, 7), np.float32))
    wrapper.load_own_variables(store)
    np.testing.assert_array_equal(wrapper.kernel_mask.numpy(), keep)

    old = keep.astype(np.float32)       # as the previous versions stored such a mask
    wrapper.kernel_mask.assign(np.ones((5, 7), bool))
    wrapper.load_own_variables({"kernel_mask": old})
    np.testing.assert_array_equal(wrapper.kernel_mask.numpy(), keep)
    with pytest.raises(ConfigError, match="all 0 or 1"):
        wrapper.load_own_variables({"kernel_mask": np.full((5, 7), 0.5, np.float32)})
    np.testing.assert_array_equal(wrapper.kernel_mask.numpy(), keep)


def test_reading_masks_from_a_keras_file_does_not_reread_it(tmp_path, monkeypatch):
    """tf_keras reads a wrapper's masks from the `.keras` zip stream without going back in it.

    A backward seek in tf_keras' zip member stream reads the member again
    from its start (Python 3.11), so a mask whose data sat before its
    group's name table cost a re-read of the file up to that layer.  The
    bytes the stream decodes while the wrappers load must be the masks'
    own bytes plus at most one `MIN_READ_SIZE` read (the stream's smallest)
    of metadata per wrapper and one more; before the fix they were ~37x
    the masks (each re-read costs the layer's offset in the file).
    """
    import zipfile

    import tf_keras
    from tflottery import masking
    from tflottery.masking.layer import Masked

    tf_keras.utils.set_random_seed(0)
    model = masking.wrap(tf_keras.Sequential(
        [tf_keras.Input((256,))] + [tf_keras.layers.Dense(256) for _ in range(3)]))
    rng = np.random.default_rng(0)
    masking.set_mask(model, masking.Mask({n: rng.random(tuple(v.shape)) < 0.5
                                          for n, v in masking.prunable_variables(model).items()}))
    model.save(tmp_path / "wrapped.keras")

    decoded, inside = [0], [False]
    read, load = zipfile.ZipExtFile.read, Masked.load_own_variables

    def counting_read(stream, n=-1):
        data = read(stream, n)
        decoded[0] += len(data) if inside[0] else 0
        return data

    def flagged_load(layer, store):
        inside[0] = True
        try:
            load(layer, store)
        finally:
            inside[0] = False

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting_read)
    monkeypatch.setattr(Masked, "load_own_variables", flagged_load)
    loaded = tf_keras.models.load_model(tmp_path / "wrapped.keras")

    mask_bytes = sum(-(-int(np.prod(v.shape)) // 8)
                     for v in masking.prunable_variables(model).values())
    wrappers = len(masking.masked_layers(loaded))
    assert wrappers == 3 and decoded[0] >= mask_bytes
    assert decoded[0] <= mask_bytes + (wrappers + 1) * zipfile.ZipExtFile.MIN_READ_SIZE, decoded
    for name, keep in masking.get_mask(model).items():
        np.testing.assert_array_equal(masking.get_mask(loaded)[name], keep)


def test_users_inner_layer_is_still_converted_by_autograph():
    """The wrapper's own call skips autograph (loading cost), the inner layer's does not:
    a user's layer that branches on a tensor builds and runs wrapped, as it would alone."""
    import tensorflow as tf
    import tf_keras
    from tflottery import masking

    class SignFlip(tf_keras.layers.Dense):
        def call(self, inputs):
            outputs = super().call(inputs)
            if tf.reduce_sum(outputs) < 0:     # a tensor condition: needs autograph in graphs
                return -outputs
            return outputs

    inputs = tf_keras.Input((4,))
    model = tf_keras.Model(inputs, masking.Masked(SignFlip(3, use_bias=False))(inputs))
    kernel = np.array([[1.0, 2.0, 0.5]] * 4, np.float32)   # x @ kernel < 0: flipped
    model.layers[1].layer.kernel.assign(kernel)
    x = -np.ones((2, 4), np.float32)
    want = x @ kernel
    want = -want if want.sum() < 0 else want
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-6)
    np.testing.assert_allclose(tf.function(model)(x).numpy(), want, rtol=1e-6)
