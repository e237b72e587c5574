"""Learning-rate schedules of the thesis, as one Keras schedule.

Every schedule is `base(step) * warmup(step)`: warmup is a linear ramp from 0
to 1 over `warmup_steps` (Goyal et al. 2017, used by the thesis for ResNet-50
and the '_warmup' CIFAR variants); base is constant, piecewise constant with a
x`gamma` drop at each milestone, or a linear decay to `final_lr` at the end.
All step values are in iterations, already resolved from Steps.
"""
from typing import Sequence

import tensorflow as tf

from tflottery.errors import ConfigError
from tflottery.keras_compat import keras

SCHEDULES = ("constant", "step", "linear")


class LotterySchedule(keras.optimizers.schedules.LearningRateSchedule):
    """LR as a function of the optimizer's iteration count."""

    def __init__(self, lr: float, kind: str = "constant", total_steps: int = 1,
                 milestones: Sequence[int] = (), gamma: float = 0.1,
                 final_lr: float = 0.0, warmup_steps: int = 0, offset=0):
        """offset: the schedule step of the optimizer's iteration 0, an int or an
        integer tf.Variable.  A training program that serves several phases
        (training/program.py) passes a variable and sets it per phase, so its
        traced training step reads the phase's offset instead of baking one in."""
        if kind not in SCHEDULES:
            raise ConfigError(f"unknown schedule {kind!r}; choose one of: {', '.join(SCHEDULES)}")
        if not lr > 0:
            raise ConfigError(f"learning rate must be positive, got {lr}")
        if warmup_steps < 0:
            raise ConfigError(f"warmup must not be negative, got {warmup_steps} steps")
        milestones = sorted(int(m) for m in milestones)
        if kind != "step" and milestones:
            raise ConfigError(f"milestones are only used by the 'step' schedule, not {kind!r}")
        self.lr = float(lr)
        self.kind = kind
        self.total_steps = int(total_steps)
        self.milestones = milestones
        self.gamma = float(gamma)
        self.final_lr = float(final_lr)
        self.warmup_steps = int(warmup_steps)
        self.offset = offset if isinstance(offset, tf.Variable) else int(offset)

    def __call__(self, step):
        """LR at `step` iterations of this phase, i.e. at schedule step offset + step."""
        step = tf.cast(step, tf.float32) + tf.cast(self.offset, tf.float32)
        if self.kind == "constant":
            lr = tf.constant(self.lr, tf.float32)
        elif self.kind == "step":
            drops = tf.zeros([], tf.float32)
            for milestone in self.milestones:
                drops += tf.cast(step >= milestone, tf.float32)
            lr = self.lr * tf.pow(tf.constant(self.gamma, tf.float32), drops)
        else:  # linear
            frac = tf.clip_by_value(step / max(self.total_steps, 1), 0.0, 1.0)
            lr = self.lr + (self.final_lr - self.lr) * frac
        if self.warmup_steps > 0:
            lr *= tf.minimum(1.0, step / self.warmup_steps)
        return lr

    def get_config(self):
        return dict(lr=self.lr, kind=self.kind, total_steps=self.total_steps,
                    milestones=list(self.milestones), gamma=self.gamma,
                    final_lr=self.final_lr, warmup_steps=self.warmup_steps,
                    offset=int(self.offset.numpy() if isinstance(self.offset, tf.Variable)
                               else self.offset))
