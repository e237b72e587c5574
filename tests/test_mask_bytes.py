"""Masks are 1 byte per weight (keras_compat.MASK_DTYPE), and files with the float32 masks
of the previous versions still load, exactly (#21: a wrapped `.h5` loads within 1.2x).

The old files are tests/fixtures/float_masks/, written by the code before the change
(its make.py says how).
"""
import importlib.util
import os
import shutil

import h5py
import numpy as np
import pytest
import tensorflow as tf

from tflottery import masking
from tflottery.keras_compat import MASK_DTYPE, keras

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "float_masks")


def _fixture_module():
    spec = importlib.util.spec_from_file_location("float_masks_make",
                                                  os.path.join(FIXTURE, "make.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _expected():
    with np.load(os.path.join(FIXTURE, "expected.npz")) as data:
        return {key: data[key] for key in data.files}


def _mask_ids(model):
    return {id(w.mask_variable(a)) for w in masking.masked_layers(model) for a in w.prunable_attrs}


def _assert_model_is_the_fixtures(model):
    expected = _expected()
    masks = _mask_ids(model)
    assert len(model.variables) == len([k for k in expected if k.startswith("w/")])
    for i, variable in enumerate(model.variables):
        value, want = variable.numpy(), expected[f"w/{i}"]
        if id(variable) in masks:
            assert value.dtype == MASK_DTYPE and want.dtype == np.float32
            np.testing.assert_array_equal(value, want == 1.0)
            assert np.isin(want, (0.0, 1.0)).all() and 0 < want.mean() < 1
        else:
            assert value.dtype == want.dtype and value.tobytes() == want.tobytes(), variable.name
    np.testing.assert_allclose(model(expected["x"]).numpy(), expected["y"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("which", ["tf_keras", "keras3"])
def test_mask_variables_are_one_byte_wide(which):
    K = keras if which == "tf_keras" else pytest.importorskip("keras")
    model = masking.wrap(K.Sequential([K.Input((4,)), K.layers.Dense(3), K.layers.Dense(2)]))
    variables = [w.mask_variable(a) for w in masking.masked_layers(model) for a in w.prunable_attrs]
    assert len(variables) == 2
    for variable in variables:
        assert np.asarray(variable).dtype == MASK_DTYPE and MASK_DTYPE.itemsize == 1


def test_h5_file_holds_masks_in_one_byte_per_weight(tmp_path):
    model = masking.wrap(keras.Sequential([keras.Input((30,)), keras.layers.Dense(20),
                                           keras.layers.Dense(10)]))
    model.save(tmp_path / "m.h5")
    mask_bytes, masks = 0, []
    with h5py.File(tmp_path / "m.h5", "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.endswith("_mask:0"):
                masks.append(name)
                nonlocal mask_bytes
                mask_bytes += obj.id.get_storage_size()
        f.visititems(visit)
    assert len(masks) == 2
    assert mask_bytes == 30 * 20 + 20 * 10      # one byte per masked weight


def test_old_h5_with_float32_masks_loads_exactly():
    loaded = keras.models.load_model(os.path.join(FIXTURE, "model.h5"))
    _assert_model_is_the_fixtures(loaded)


def test_old_keras_file_with_float32_masks_loads_exactly():
    loaded = keras.models.load_model(os.path.join(FIXTURE, "legacy.keras"))
    _assert_model_is_the_fixtures(loaded)


@pytest.mark.parametrize("mirrored", [False, True])
def test_old_latest_checkpoint_with_float32_masks_resumes_exactly(tmp_path, mirrored):
    """A preempted run's rolling checkpoint of the previous version restores (also into
    a model under a MirroredStrategy): weights, optimizer state and step as written,
    masks as bool; its files are not changed."""
    import contextlib

    from conftest import two_cpu_strategy
    from tflottery.training.checkpoints import Checkpointer

    make = _fixture_module()
    phase = str(tmp_path / "phase")
    shutil.copytree(os.path.join(FIXTURE, "phase"), phase)
    before = {name: open(os.path.join(phase, "latest", name), "rb").read()
              for name in os.listdir(os.path.join(phase, "latest"))}
    with two_cpu_strategy().scope() if mirrored else contextlib.nullcontext():
        model, optimizer = make.build(), make.optimizer()
        optimizer.build(model.trainable_variables)
    assert Checkpointer(phase, model, optimizer).restore_latest()
    _assert_model_is_the_fixtures(model)
    assert int(optimizer.iterations.numpy()) == 3
    reader = tf.train.load_checkpoint(os.path.join(FIXTURE, "phase", "latest", "ckpt-3"))
    slots = {int(k.split("/")[2]): reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
             if k.startswith("optimizer/_variables/")}
    assert len(slots) == 12 and all(np.any(v != 0) for v in slots.values())   # Adam's m, v
    for i, value in slots.items():
        assert optimizer.variables[i].numpy().tobytes() == value.tobytes()
    assert before == {name: open(os.path.join(phase, "latest", name), "rb").read()
                      for name in os.listdir(os.path.join(phase, "latest"))}
