"""Named checkpoints store each tensor once (#26): no optimizer slots, masks one bit a
weight, an 'init' that is another checkpoint's weights or a seeded initialisation
under its mask only a verified reference; a finished phase is checked from the
record of its files without reading its tensors."""
import glob
import importlib.util
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, run_module
from tflottery import masking, models
from tflottery.errors import TfLotteryError
from tflottery.keras_compat import keras
from tflottery.runs import layout
from tflottery.training import checkpoints, stored_weights

RECIPE = {"model": "lenet_300_100", "input_shape": [8, 8, 1], "num_classes": 10, "seed": 3,
          "options": {}, "unmasked_layers": []}


def fresh_model(seed=3):
    return masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=seed))


def random_mask(model, seed):
    rng = np.random.default_rng(seed)
    return masking.Mask({name: rng.random(tuple(v.shape)) < 0.6
                         for name, v in masking.prunable_variables(model).items()})


def values(model):
    return [np.asarray(v.numpy()).tobytes() for v in model.variables]


def save(model, directory, name, step=0):
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    checkpoints.Checkpointer(directory, model, optimizer).save_named(name, {"step": step})
    return json.load(open(os.path.join(directory, name, "info.json")))


def test_a_copy_holds_weights_only_and_restores_weights_and_masks_exactly(tmp_path):
    model = fresh_model()
    masking.set_mask(model, random_mask(model, 0))
    model.trainable_variables[0].assign(model.trainable_variables[0] * 1.5)   # not the initialisation
    info = save(model, str(tmp_path), "end")
    assert "weights_from" not in info and "weights_from_seed" not in info
    reader = tf.train.load_checkpoint(str(tmp_path / "end" / "ckpt"))
    keys = [k for k in reader.get_variable_to_shape_map() if k != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    # The kernels and biases, nothing else: no mask, no optimizer slot.
    assert sorted(reader.get_variable_to_shape_map()[k] for k in keys) == sorted(
        list(v.shape) for v in model.trainable_variables)
    other = fresh_model(seed=9)
    checkpoints.restore_weights(other, str(tmp_path), "end")
    assert values(other) == values(model)
    assert masking.get_mask(other) == masking.get_mask(model)


def test_init_equal_to_the_loaded_checkpoint_under_its_mask_is_a_verified_reference(tmp_path):
    model = fresh_model()
    model.trainable_variables[0].assign(model.trainable_variables[0] * 1.5)
    save(model, str(tmp_path / "pretrain"), "end")
    # A level: the rewinding point loaded, its mask installed (pruned weights zeroed).
    level = fresh_model(seed=7)
    checkpoints.restore_weights(level, str(tmp_path / "pretrain"), "end")
    masking.set_mask(level, random_mask(level, 1))
    info = save(level, str(tmp_path / "level"), "init")
    assert info["weights_from"] == "../../pretrain/end"
    assert sorted(os.listdir(tmp_path / "level" / "init")) == ["info.json", "mask_bits.npz"]
    restored = fresh_model(seed=8)
    checkpoints.restore_weights(restored, str(tmp_path / "level"), "init")
    assert values(restored) == values(level)
    # Weights that differ from the loaded checkpoint's (under the mask) are stored.
    checkpoints.restore_weights(level, str(tmp_path / "pretrain"), "end")
    masking.set_mask(level, random_mask(level, 1))
    level.trainable_variables[-1].assign(level.trainable_variables[-1] + 1.0)
    info = save(level, str(tmp_path / "changed"), "init")
    assert "weights_from" not in info
    checkpoints.restore_weights(restored, str(tmp_path / "changed"), "init")
    assert values(restored) == values(level)


def test_seeded_initialisation_is_rebuilt_and_checked(tmp_path):
    model = fresh_model(seed=RECIPE["seed"])
    values_w0 = [v.numpy() for v in model.variables]
    stored_weights.note_initialisation(model, RECIPE, values_w0)
    masking.set_mask(model, random_mask(model, 2))
    info = save(model, str(tmp_path), "init")
    assert info["weights_from_seed"]["seed"] == 3
    assert not glob.glob(str(tmp_path / "init" / "ckpt*"))
    restored = fresh_model(seed=4)
    checkpoints.restore_weights(restored, str(tmp_path), "init")
    assert values(restored) == values(model)
    # Another initialisation than the recorded one: refused in one line.
    info["weights_from_seed"]["sha256"] = "0" * 64
    json.dump(info, open(tmp_path / "init" / "info.json", "w"))
    with pytest.raises(TfLotteryError, match="another TensorFlow or Keras version") as e:
        checkpoints.restore_weights(restored, str(tmp_path), "init")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name, damage", [("ckpt.data-00000-of-00001", "truncate"),
                                          ("ckpt.index", "flip"), ("mask_bits.npz", "flip")])
def test_damaged_file_fails_the_check_and_is_set_aside(tmp_path, name, damage):
    model = fresh_model()
    model.trainable_variables[0].assign(model.trainable_variables[0] * 1.5)
    save(model, str(tmp_path), "end")
    assert checkpoints.intact(str(tmp_path), "end")
    path = tmp_path / "end" / name
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF       # same size, other bytes
    path.write_bytes(bytes(data))
    assert not checkpoints.intact(str(tmp_path), "end")
    assert glob.glob(str(tmp_path / "end.damaged-*")) and not (tmp_path / "end").exists()


def test_reference_to_a_lost_checkpoint_is_not_intact(tmp_path):
    model = fresh_model()
    model.trainable_variables[0].assign(model.trainable_variables[0] * 1.5)
    save(model, str(tmp_path / "pretrain"), "end")
    checkpoints.restore_weights(model, str(tmp_path / "pretrain"), "end")
    save(model, str(tmp_path / "level"), "init")
    assert checkpoints.intact(str(tmp_path / "level"), "init")
    shutil.rmtree(tmp_path / "pretrain" / "end")
    assert not checkpoints.intact(str(tmp_path / "level"), "init")
    assert not (tmp_path / "level" / "init").exists()   # written again by its phase


def test_rerun_of_a_finished_run_reads_under_5_percent_of_its_bytes(tmp_path):
    """The whole re-run, traced: every read of a file of the run counts (strace)."""
    if shutil.which("strace") is None:
        pytest.skip("needs strace")
    spec = importlib.util.spec_from_file_location(
        "run_storage", os.path.join(REPO, "benchmarks", "run_storage.py"))
    run_storage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_storage)
    root = str(tmp_path / "runs")
    gin = tmp_path / "train.gin"
    gin.write_text("ExperimentHparams.name = 'train'\nDatasetHparams.name = 'digits'\n"
                   "ModelHparams.name = 'lenet_300_100'\n"
                   "TrainingHparams.training_steps = '20it'\nTrainingHparams.eval_every = '20it'\n")
    argv = [f"--gin_file={gin}"]
    first = run_module("tflottery.main", f"--root_dir={root}", *argv)
    assert first.returncode == 0, first.stderr[-2000:]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    again, read = run_storage.traced_run(argv, root, str(tmp_path / "trace.txt"), env=env)
    assert again.returncode == 0 and "finished before" in again.stderr, again.stderr[-2000:]
    total = run_storage.run_bytes(root)
    assert 0 < read <= 0.05 * total, (read, total)
    (phase,) = glob.glob(os.path.join(root, "train_*", "replicate_0", "train"))
    assert os.path.getsize(layout.file(os.path.join(phase, "checkpoints", "end"),
                                       "ckpt.data-00000-of-00001")) > 0.05 * total
