"""Training speed (thesis 3.3.6): the Trainer records holdout metrics (the data of the
early-stopping metric); the report of early stopping and dilation was removed (#23), and
whoever asks for it is told in one line how to make it."""
from conftest import run_module, two_cpu_strategy  # noqa: F401,E402  (conftest sets up TensorFlow)
import glob
import os

import tensorflow as tf

from tflottery import data, masking, models, sweep
from tflottery.hparams import DatasetHparams, TrainingHparams
from tflottery.reporting import speed
from tflottery.training.loop import Trainer, read_metrics


# ---- the Trainer records the holdout ----
def test_trainer_records_holdout_metrics(tmp_path):
    dataset = data.build(DatasetHparams(name="synthetic", batch_size=32, holdout_fraction=0.25))
    strategy = tf.distribute.get_strategy()
    with strategy.scope():
        model = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=0))
    hp = TrainingHparams(optimizer="sgd", lr=0.05, training_steps="16it", eval_every="8it")
    Trainer(strategy, model, dataset, hp, data_seed=0, out_dir=str(tmp_path)).run()
    records = read_metrics(str(tmp_path))
    holdout = [r for r in records if "holdout_loss" in r]
    assert [r["step"] for r in holdout] == [0, 8, 16]
    assert all(set(r) == {"step", "holdout_loss", "holdout_accuracy"} for r in holdout)
    assert all(0.0 <= r["holdout_accuracy"] <= 1.0 and r["holdout_loss"] > 0 for r in holdout)
    assert [r["step"] for r in records if "test_accuracy" in r] == [0, 8, 16]
    tags = set()     # (run, tag): the holdout is a TensorBoard run beside train and test
    for path in glob.glob(str(tmp_path / "tensorboard" / "*" / "events.out.tfevents.*")):
        run = os.path.basename(os.path.dirname(path))
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update((run, v.tag) for v in event.summary.value)
    assert {("holdout", "loss"), ("holdout", "accuracy"), ("test", "loss")} <= tags


# ---- the removed report says how to make it ----
def test_the_removed_speed_report_says_how_to_make_it(tmp_path, capsys):
    result = run_module("tflottery.reporting.speed", str(tmp_path), timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and lines == [f"error: {speed.MESSAGE}"]
    assert "git worktree add /tmp/tflottery-speed 85a7047" in lines[0]
    # The sweep's --speed_report: the same line, before any job is planned or run.
    assert sweep.main([f"--root_dir={tmp_path / 'runs'}", "--grid=A.b=1,2",
                       "--speed_report"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {speed.MESSAGE}"]
    assert not (tmp_path / "runs").exists()
