"""TensorBoard summaries of a training phase, read back with TensorBoard's own
event reader: learning rate, steps/s, total and per-layer density (also after a
mask hook prunes), the run's hyperparameters for the HParams plugin, and no
event file for a phase with nothing to train."""
import glob
import os

import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tflottery import data, masking, models
from tflottery.hparams import DatasetHparams, TrainingHparams
from tflottery.training.loop import Trainer
from tflottery.training.run_log import RunLog

HP = TrainingHparams(optimizer="sgd", lr=0.05, training_steps="16it", eval_every="8it",
                     steps_per_loop=4)


def _model():
    return masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=0))


def _scalars(directory):
    """{tag: [(step, value)]} and the accumulator of a phase's tensorboard/ directory."""
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
    scalars, acc = _scalars(str(tmp_path / "tensorboard"))
    for tag in ("train/loss", "train/accuracy", "train/learning_rate", "train/steps_per_second",
                "test/accuracy", "density/total", "density/output/kernel",
                "density/fc_1/kernel"):
        assert tag in scalars, (tag, sorted(scalars))
    assert [s for s, _ in scalars["train/learning_rate"]] == [8, 16]   # at each record
    assert [v for _, v in scalars["train/learning_rate"]] == pytest.approx([0.05] * 2)
    assert all(v > 0 for _, v in scalars["train/steps_per_second"])
    # Density at the start, and again when the hook pruned at step 8.
    assert scalars["density/output/kernel"] == [(0, 1.0), (8, 0.5)]
    total = masking.get_mask(model).density
    assert scalars["density/total"][0] == (0, 1.0)
    assert scalars["density/total"][-1][0] == 8
    assert scalars["density/total"][-1][1] == pytest.approx(total)
    # The HParams plugin's session-start record holds the run's hyperparameters.
    content = acc.PluginTagToContent("hparams")
    starts = [plugin_data_pb2.HParamsPluginData.FromString(c) for c in content.values()]
    hparams = {k: v for s in starts if s.HasField("session_start_info")
               for k, v in s.session_start_info.hparams.items()}
    assert hparams["TrainingHparams.lr"].number_value == pytest.approx(0.05)
    assert hparams["ModelHparams.name"].string_value == "lenet_300_100"
    assert hparams["BranchHparams.names"].string_value == "('random_reinit',)"
    assert hparams["phase"].string_value == "level 1"


def test_a_phase_with_nothing_to_train_writes_no_summaries(tmp_path):
    dataset = data.build(DatasetHparams(name="synthetic", batch_size=32))
    Trainer(tf.distribute.get_strategy(), _model(), dataset, HP, 0, str(tmp_path),
            end_step=0).run()
    assert (tmp_path / "final.json").exists()
    assert not glob.glob(os.path.join(str(tmp_path), "**", "events.out.tfevents*"),
                         recursive=True)
    assert not (tmp_path / "tensorboard").exists()
