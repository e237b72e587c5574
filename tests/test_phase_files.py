"""What a training phase leaves in its directory: appended metrics, a clean
restart after an early kill, no rolling checkpoint once done, and nothing
but its state for a phase of zero steps."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tflottery import data, masking, models
from tflottery.hparams import DatasetHparams, TrainingHparams
from tflottery.runs import io
from tflottery.training import checkpoints
from tflottery.training.loop import Trainer, read_metrics

SYNTH = DatasetHparams(name="synthetic", batch_size=32)
HP = TrainingHparams(optimizer="sgd", lr=0.05, momentum=0.9, training_steps="24it",
                     eval_every="8it", steps_per_loop=4)


class SimulatedCrash(Exception):
    pass


def lenet(seed=0):
    return masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=seed))


def event_files(out):
    return glob.glob(os.path.join(out, "tensorboard", "**", "events.out.tfevents.*"),
                     recursive=True)


def test_kill_before_the_first_checkpoint_restarts_cleanly(tmp_path, monkeypatch):
    dataset = data.build(SYNTH)
    strategy = tf.distribute.get_strategy()
    straight = str(tmp_path / "straight")
    Trainer(strategy, lenet(), dataset, HP, 0, straight).run()

    def crash(self, step):
        raise SimulatedCrash()
    monkeypatch.setattr(checkpoints.Checkpointer, "save_latest", crash)
    out = str(tmp_path / "killed")
    with pytest.raises(SimulatedCrash):
        Trainer(strategy, lenet(), dataset, HP, 0, out).run()
    assert [r["step"] for r in read_metrics(out)] == [0, 8, 8]   # train and test records
    assert len(event_files(out)) == 3       # tensorboard/ (hparams), train/, test/
    monkeypatch.undo()
    Trainer(strategy, lenet(), dataset, HP, 0, out).run()
    steps = [r["step"] for r in read_metrics(out)]
    assert steps == [r["step"] for r in read_metrics(straight)] == [0, 8, 8, 16, 16, 24, 24]
    assert len(event_files(out)) == 3       # the killed attempt's summaries are gone
    for a, b in zip(read_metrics(out), read_metrics(straight)):
        a.pop("steps_per_second", None)   # timing, the one thing that may differ
        b.pop("steps_per_second", None)
        assert a == b


def test_metrics_are_appended_and_a_torn_line_is_dropped_on_resume(tmp_path, monkeypatch):
    dataset = data.build(SYNTH)
    strategy = tf.distribute.get_strategy()
    writes = []
    real_append, real_atomic = io.append_line, io.atomic_write_text
    monkeypatch.setattr(io, "append_line", lambda p, l: (writes.append("append"),
                                                          real_append(p, l)))
    monkeypatch.setattr(io, "atomic_write_text", lambda p, t: (writes.append(os.path.basename(p)),
                                                                real_atomic(p, t)))
    original = checkpoints.Checkpointer.save_latest

    def crash_at_16(self, step):
        original(self, step)
        if step == 16:
            raise SimulatedCrash()
    monkeypatch.setattr(checkpoints.Checkpointer, "save_latest", crash_at_16)
    out = str(tmp_path / "p")
    with pytest.raises(SimulatedCrash):
        Trainer(strategy, lenet(), dataset, HP, 0, out).run()
    assert "metrics.jsonl" not in writes and writes.count("append") == 5
    # A kill in the middle of the next append leaves half a line.
    with open(os.path.join(out, "metrics.jsonl"), "a") as f:
        f.write('{"step": 2')
    assert [r["step"] for r in read_metrics(out)] == [0, 8, 8, 16, 16]
    monkeypatch.setattr(checkpoints.Checkpointer, "save_latest", original)
    Trainer(strategy, lenet(), dataset, HP, 0, out).run()
    lines = open(os.path.join(out, "metrics.jsonl")).read().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [0, 8, 8, 16, 16, 24, 24]


def test_finished_phase_keeps_no_rolling_checkpoint(tmp_path):
    dataset = data.build(SYNTH)
    strategy = tf.distribute.get_strategy()
    out = str(tmp_path / "p")
    model = lenet()
    Trainer(strategy, model, dataset, HP, 0, out).run()
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["end", "init"]
    restored = lenet(seed=5)
    checkpoints.restore_weights(restored, os.path.join(out, "checkpoints"), "end")
    for a, b in zip(model.variables, restored.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_zero_step_phase_builds_no_input_pipeline(tmp_path, monkeypatch):
    dataset = data.build(SYNTH)
    strategy = tf.distribute.get_strategy()

    def no_training_data(*args, **kwargs):
        raise AssertionError("a phase of zero steps read the training stream")
    monkeypatch.setattr(dataset, "train_dataset", no_training_data)
    out = str(tmp_path / "p")
    model = lenet()
    final = Trainer(strategy, model, dataset, HP, 0, out, end_step=0).run()
    assert final["step"] == 0 and 0 <= final["test_accuracy"] <= 1
    assert sorted(os.listdir(out)) == ["checkpoints", "final.json"]
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["end", "init"]
