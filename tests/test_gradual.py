"""Gradual magnitude pruning during training (Zhu & Gupta) on tfmot's schedule."""
from conftest import SMALL_RUN  # noqa: E402
import glob
import json
import os

import gin
import numpy as np
import pytest

from tflottery import gin_files, masking, models, runner
from tflottery.errors import ConfigError
from tflottery.training import checkpoints

GRADUAL = SMALL_RUN + [
    "ExperimentHparams.name = 'gradual'",
    "GradualHparams.final_sparsity = 0.8",
    "GradualHparams.begin_step = '4it'",
    "GradualHparams.end_step = '16it'",
    "GradualHparams.frequency = '4it'",
    "TrainingHparams.steps_per_loop = 3",
]


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def cubic(step, begin=4, end=16, final=0.8):
    """Zhu & Gupta's schedule, written out independently of tfmot."""
    t = min(max((step - begin) / (end - begin), 0.0), 1.0)
    return final * (1 - (1 - t) ** 3)


def test_sparsity_follows_the_cubic_schedule_and_checkpoint_is_sparse(tmp_path):
    gin_files.parse([], GRADUAL + ["GradualHparams.excluded_layers = ('output',)"])
    result = runner.run(str(tmp_path))
    (run_dir,) = glob.glob(str(tmp_path / "gradual_*"))
    rep = os.path.join(run_dir, "replicate_0")
    log = [json.loads(l) for l in open(os.path.join(rep, "train", "sparsity.jsonl"))]
    assert [r["step"] for r in log] == [4, 8, 12, 16]
    for record in log:
        assert record["target_sparsity"] == pytest.approx(cubic(record["step"]), abs=1e-6)
        # Layerwise rounding: within one weight per layer of the target.
        assert record["sparsity"] == pytest.approx(record["target_sparsity"], abs=0.01)
    # The final checkpoint is exactly sparse at the final sparsity, the
    # excluded output layer untouched, and the saved mask agrees.
    model = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=0))
    checkpoints.restore_weights(model, os.path.join(rep, "train", "checkpoints"), "end")
    mask = masking.Mask.load(os.path.join(rep, "mask"))
    weights = {n: v.numpy() for n, v in masking.prunable_variables(model).items()}
    for name, kept in mask.items():
        assert np.all(weights[name][~kept] == 0.0), name
        assert np.count_nonzero(weights[name]) <= kept.sum()
    assert mask["output/kernel"].all()
    pruned = [n for n in mask if n != "output/kernel"]
    for name in pruned:
        assert 1 - mask[name].mean() == pytest.approx(0.8, abs=0.005), name
    stats = json.load(open(os.path.join(rep, "mask", "statistics.json")))
    assert stats["layers"]["output/kernel"]["density"] == 1.0
    assert 0 < result["density"] < 1


def test_end_step_must_leave_training_at_the_final_sparsity(tmp_path):
    gin_files.parse([], GRADUAL + ["GradualHparams.end_step = '24it'"])
    with pytest.raises(ConfigError, match="end_step < the end of training"):
        runner.run(str(tmp_path))
    assert not os.listdir(tmp_path)


def test_a_crash_at_a_pruning_step_resumes_to_the_same_result(tmp_path, monkeypatch):
    """Killed right after the checkpoint of pruning step 12 (before the hook
    pruned there): the re-run restores step 12, prunes, and ends with the same
    weights and masks as an uninterrupted run."""
    from tflottery.experiments import gradual

    def final_state(root):
        (run_dir,) = glob.glob(str(root / "gradual_*"))
        rep = os.path.join(run_dir, "replicate_0")
        model = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=0))
        checkpoints.restore_weights(model, os.path.join(rep, "train", "checkpoints"), "end")
        log = [json.loads(l) for l in open(os.path.join(rep, "train", "sparsity.jsonl"))]
        return [w.numpy() for w in model.weights], log

    gin_files.parse([], GRADUAL)
    runner.run(str(tmp_path / "whole"))
    expected, expected_log = final_state(tmp_path / "whole")

    real_call = gradual.GradualPruningHook.__call__

    def crash_at_12(self, model, step):
        if step == 12:
            raise KeyboardInterrupt("simulated kill")
        return real_call(self, model, step)
    monkeypatch.setattr(gradual.GradualPruningHook, "__call__", crash_at_12)
    from tflottery.errors import Interrupted
    with pytest.raises(Interrupted, match="interrupted at step 12 of"):   # as Ctrl-C now ends
        runner.run(str(tmp_path / "resumed"))
    monkeypatch.setattr(gradual.GradualPruningHook, "__call__", real_call)
    runner.run(str(tmp_path / "resumed"))
    got, got_log = final_state(tmp_path / "resumed")
    assert got_log == expected_log
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
