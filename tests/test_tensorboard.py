"""TensorBoard summaries of a training phase, read back with TensorBoard's own
event reader: Keras' layout (runs train/ and test/ with the same tags, accuracy
in percent as on the console, also across a resume), learning rate, steps/s,
total and per-layer density (also after a mask hook prunes), the run's
hyperparameters for the HParams plugin, and no event file for a phase with
nothing to train."""
import glob
import os
import re

import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tflottery import data, masking, models
from tflottery.hparams import DatasetHparams, TrainingHparams
from tflottery.training import checkpoints
from tflottery.training.loop import Trainer, read_metrics
from tflottery.training.run_log import RunLog

HP = TrainingHparams(optimizer="sgd", lr=0.05, training_steps="16it", eval_every="8it",
                     steps_per_loop=4)


def _model():
    return masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=0))


def _scalars(directory):
    """{tag: [(step, value)]} and the accumulator of one TensorBoard run's directory."""
    acc = event_accumulator.EventAccumulator(directory, size_guidance={"tensors": 0})
    acc.Reload()
    out = {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
           for tag in acc.Tags()["tensors"]
           if acc.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"}
    return out, acc


class HalveOutputLayer:
    """A mask hook that prunes half of output/kernel at step 8."""
    steps = (8,)

    def __call__(self, model, step):
        mask = dict(masking.get_mask(model))
        kept = mask["output/kernel"].copy()
        kept.flat[: kept.size // 2] = False
        mask["output/kernel"] = kept
        masking.set_mask(model, masking.Mask(mask))


def test_lr_steps_per_second_density_and_hparams(tmp_path):
    dataset = data.build(DatasetHparams(name="synthetic", batch_size=32))
    model = _model()
    log = RunLog({"TrainingHparams.lr": 0.05, "ModelHparams.name": "lenet_300_100",
                  "BranchHparams.names": ("random_reinit",)}, planned_steps=16)
    Trainer(tf.distribute.get_strategy(), model, dataset, HP, 0, str(tmp_path),
            mask_hook=HalveOutputLayer(), phase_name="level 1", run_log=log).run()
    assert log.trained_steps == 16
    scalars, _ = _scalars(str(tmp_path / "tensorboard" / "train"))
    for tag in ("loss", "accuracy", "learning_rate", "steps_per_second", "density/total",
                "density/output/kernel", "density/fc_1/kernel"):
        assert tag in scalars, (tag, sorted(scalars))
    assert [s for s, _ in scalars["learning_rate"]] == [8, 16]   # at each record
    assert [v for _, v in scalars["learning_rate"]] == pytest.approx([0.05] * 2)
    assert all(v > 0 for _, v in scalars["steps_per_second"])
    # Density at the start, and again when the hook pruned at step 8.
    assert scalars["density/output/kernel"] == [(0, 1.0), (8, 0.5)]
    total = masking.get_mask(model).density
    assert scalars["density/total"][0] == (0, 1.0)
    assert scalars["density/total"][-1][0] == 8
    assert scalars["density/total"][-1][1] == pytest.approx(total)
    # The HParams plugin's session-start record holds the run's hyperparameters; it
    # is in the directory above train/ and test/, so the plugin's dashboard finds the
    # metrics of both (as groups 'train' and 'test').
    _, acc = _scalars(str(tmp_path / "tensorboard"))
    content = acc.PluginTagToContent("hparams")
    starts = [plugin_data_pb2.HParamsPluginData.FromString(c) for c in content.values()]
    hparams = {k: v for s in starts if s.HasField("session_start_info")
               for k, v in s.session_start_info.hparams.items()}
    assert hparams["TrainingHparams.lr"].number_value == pytest.approx(0.05)
    assert hparams["ModelHparams.name"].string_value == "lenet_300_100"
    assert hparams["BranchHparams.names"].string_value == "('random_reinit',)"
    assert hparams["phase"].string_value == "level 1"


def _runs(tensorboard_dir):
    """{run: {tag: [(step, value)]}} of the runs (subdirectories) of a tensorboard/ dir."""
    return {run: _scalars(os.path.join(tensorboard_dir, run))[0]
            for run in sorted(os.listdir(tensorboard_dir))
            if os.path.isdir(os.path.join(tensorboard_dir, run))}


def test_keras_layout_train_and_test_runs_with_the_same_tags_accuracy_in_percent(
        tmp_path, caplog):
    """As Keras' TensorBoard callback writes logs/train and logs/validation with the
    same tags, so TensorBoard draws train and test loss (and accuracy) in one chart;
    accuracy is in percent, the unit the console prints (metrics.jsonl keeps
    fractions)."""
    dataset = data.build(DatasetHparams(name="synthetic", batch_size=32))
    with caplog.at_level("INFO", logger="absl"):
        Trainer(tf.distribute.get_strategy(), _model(), dataset, HP, 0, str(tmp_path),
                phase_name="level 0").run()
    runs = _runs(str(tmp_path / "tensorboard"))
    assert sorted(runs) == ["test", "train"]
    for tag in ("loss", "accuracy"):
        assert tag in runs["train"] and tag in runs["test"], (tag, runs)
    assert set(runs["test"]) == {"loss", "accuracy"}
    assert not [t for t in runs["train"] if t.startswith(("train/", "test/"))]
    assert [s for s, _ in runs["test"]["accuracy"]] == [0, 8, 16]
    assert [s for s, _ in runs["train"]["accuracy"]] == [8, 16]

    # The console's test accuracy (in %, two decimals) is TensorBoard's value.
    console = {int(m.group(1)): float(m.group(2)) for m in (
        re.search(r"level 0: step (\d+)  test loss \S+  test accuracy ([\d.]+)%",
                  r.getMessage()) for r in caplog.records) if m}
    assert sorted(console) == [0, 8, 16]
    for step, value in runs["test"]["accuracy"]:
        assert value == pytest.approx(console[step], abs=0.006), (step, value, console)
    # The same unit for train accuracy; metrics.jsonl keeps its fractions.
    records = read_metrics(str(tmp_path))
    train = {r["step"]: r["train_accuracy"] for r in records if "train_accuracy" in r}
    test = {r["step"]: r["test_accuracy"] for r in records if "test_accuracy" in r}
    assert all(0 <= v <= 1 for v in list(train.values()) + list(test.values()))
    assert runs["train"]["accuracy"] == [(s, pytest.approx(100 * train[s])) for s in (8, 16)]
    assert runs["test"]["accuracy"] == [(s, pytest.approx(100 * test[s])) for s in (0, 8, 16)]
    assert runs["test"]["loss"] == [(s, pytest.approx(r["test_loss"]))
                                    for r in records if "test_loss" in r for s in [r["step"]]]


class _Crash(Exception):
    pass


def test_a_resumed_phase_writes_each_step_once_in_each_run(tmp_path, monkeypatch):
    """Killed after its checkpoint at step 8 and run again: each run's tags hold every
    step once, as an uninterrupted phase's do."""
    dataset = data.build(DatasetHparams(name="synthetic", batch_size=32))
    strategy = tf.distribute.get_strategy()
    straight = str(tmp_path / "straight")
    Trainer(strategy, _model(), dataset, HP, 0, straight).run()
    original = checkpoints.Checkpointer.save_latest

    def crash_at_8(self, step):
        original(self, step)
        raise _Crash()
    monkeypatch.setattr(checkpoints.Checkpointer, "save_latest", crash_at_8)
    out = str(tmp_path / "resumed")
    with pytest.raises(_Crash):
        Trainer(strategy, _model(), dataset, HP, 0, out).run()
    monkeypatch.undo()
    Trainer(strategy, _model(), dataset, HP, 0, out).run()

    def steps(tensorboard_dir):
        return {(run, tag): [s for s, _ in values]
                for run, tags in _runs(tensorboard_dir).items() for tag, values in tags.items()}
    resumed, expected = steps(os.path.join(out, "tensorboard")), steps(
        os.path.join(straight, "tensorboard"))
    assert {("train", "loss"), ("test", "loss"), ("train", "density/total")} <= set(resumed)
    assert sorted(resumed) == sorted(expected)
    for (run, tag), at in resumed.items():
        # The density is written again at the step the phase resumes from (8).
        again = [8] if tag.startswith("density/") else []
        assert at == sorted(expected[run, tag] + again), (run, tag, at)


def test_a_phase_with_nothing_to_train_writes_no_summaries(tmp_path):
    dataset = data.build(DatasetHparams(name="synthetic", batch_size=32))
    Trainer(tf.distribute.get_strategy(), _model(), dataset, HP, 0, str(tmp_path),
            end_step=0).run()
    assert (tmp_path / "final.json").exists()
    assert not glob.glob(os.path.join(str(tmp_path), "**", "events.out.tfevents*"),
                         recursive=True)
    assert not (tmp_path / "tensorboard").exists()
