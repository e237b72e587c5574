"""LR schedules, warmup and dilation at chosen steps, against hand computation."""
import numpy as np
import pytest

from tflottery.errors import ConfigError
from tflottery.hparams import TrainingHparams
from tflottery.training.loop import build_schedule
from tflottery.training.schedules import LotterySchedule


def lr_at(schedule, step):
    return float(schedule(step))


def test_constant():
    s = LotterySchedule(1.2e-3, "constant", 1000)
    assert [lr_at(s, t) for t in (0, 500, 999)] == pytest.approx([1.2e-3] * 3)


def test_step_drops():
    s = LotterySchedule(0.1, "step", 63000, milestones=[32000, 48000], gamma=0.1)
    expected = {0: 0.1, 31999: 0.1, 32000: 0.01, 47999: 0.01, 48000: 0.001, 62999: 0.001}
    for step, lr in expected.items():
        assert lr_at(s, step) == pytest.approx(lr, rel=1e-6), step


def test_linear_decay():
    # Inception-v3 of the thesis: 0.03 decaying linearly to 0.005 over training.
    s = LotterySchedule(0.03, "linear", 1000, final_lr=0.005)
    assert lr_at(s, 0) == pytest.approx(0.03)
    assert lr_at(s, 500) == pytest.approx(0.03 + (0.005 - 0.03) * 0.5)
    assert lr_at(s, 1000) == pytest.approx(0.005)


def test_warmup_then_steps():
    s = LotterySchedule(0.4, "step", 90, milestones=[30, 60], gamma=0.1, warmup_steps=5)
    assert lr_at(s, 0) == pytest.approx(0.0)
    assert lr_at(s, 2) == pytest.approx(0.4 * 2 / 5)
    assert lr_at(s, 5) == pytest.approx(0.4)
    assert lr_at(s, 30) == pytest.approx(0.04)


def test_from_hparams_with_epochs_and_dilation():
    hp = TrainingHparams(lr=0.1, schedule="step", milestones=("30ep", "60ep"),
                         warmup="5ep", training_steps="90ep", dilation=0.5)
    # 10 iterations per epoch, dilation 0.5: training 450 it, milestones 150/300, warmup 25.
    s = build_schedule(hp, total_steps=450, iterations_per_epoch=10)
    assert s.milestones == [150, 300] and s.warmup_steps == 25
    assert lr_at(s, 10) == pytest.approx(0.1 * 10 / 25)
    assert lr_at(s, 149) == pytest.approx(0.1)
    assert lr_at(s, 150) == pytest.approx(0.01)


def test_bad_schedules():
    with pytest.raises(ConfigError, match="unknown schedule"):
        LotterySchedule(0.1, "cosine", 10)
    with pytest.raises(ConfigError, match="positive"):
        LotterySchedule(0.0, "constant", 10)
    hp = TrainingHparams(schedule="step", milestones=("20it",), training_steps="10it")
    with pytest.raises(ConfigError, match="past the end"):
        build_schedule(hp, 10, 5)


def test_schedule_is_traceable_with_tensor_step():
    import tensorflow as tf
    s = LotterySchedule(0.1, "step", 100, milestones=[50], warmup_steps=10)
    f = tf.function(lambda t: s(t))
    got = [float(f(tf.constant(t, tf.int64))) for t in (0, 5, 49, 50)]
    np.testing.assert_allclose(got, [0.0, 0.05, 0.1, 0.01], rtol=1e-6)
