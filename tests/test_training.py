"""The training loop: strategies agree, resumption is exact, masks hold, the
loss and weight decay are what the docs say (checked against NumPy)."""
from conftest import two_cpu_strategy  # noqa: E402
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from tflottery import data, masking, models
from tflottery.errors import ConfigError, TrainingDivergedError
from tflottery.hparams import DatasetHparams, TrainingHparams
from tflottery.keras_compat import keras
from tflottery.training import checkpoints
from tflottery.training.loop import Trainer, read_metrics

SYNTH = DatasetHparams(name="synthetic", batch_size=32)


def lenet(strategy, seed=0, input_shape=(8, 8, 1)):
    with strategy.scope():
        return masking.wrap(models.build("lenet_300_100", input_shape, 10, seed=seed))


def weights(model):
    return [w.copy() for w in model.get_weights()]


def mirrored():
    return two_cpu_strategy()


def test_mirrored_matches_default(tmp_path):
    dataset = data.build(SYNTH)
    hp = TrainingHparams(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3,
                         training_steps="30it", eval_every="10it", steps_per_loop=7)
    results = []
    for i, strategy in enumerate([tf.distribute.get_strategy(), mirrored()]):
        model = lenet(strategy)
        final = Trainer(strategy, model, dataset, hp, data_seed=3,
                        out_dir=str(tmp_path / str(i))).run()
        results.append((weights(model), final))
    (w_default, f_default), (w_mirror, f_mirror) = results
    # Two replicas sum their halves of the batch in a different order than one
    # device does: agreement to float32 round-off over 30 steps, not bit-equality.
    for a, b in zip(w_default, w_mirror):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert f_default["test_accuracy"] == pytest.approx(f_mirror["test_accuracy"], abs=1e-6)
    assert not np.allclose(w_default[0], lenet(tf.distribute.get_strategy()).get_weights()[0])


class SimulatedCrash(Exception):
    pass


def test_resume_from_checkpoint_gives_same_final_weights(tmp_path, monkeypatch):
    dataset = data.build(SYNTH)
    strategy = tf.distribute.get_strategy()
    hp = TrainingHparams(optimizer="sgd", lr=0.05, momentum=0.9, training_steps="40it",
                         eval_every="10it", steps_per_loop=4)
    straight = lenet(strategy)
    Trainer(strategy, straight, dataset, hp, data_seed=5, out_dir=str(tmp_path / "a")).run()

    original = checkpoints.Checkpointer.save_latest

    def crash_at_20(self, step):
        original(self, step)
        if step == 20:
            raise SimulatedCrash()

    monkeypatch.setattr(checkpoints.Checkpointer, "save_latest", crash_at_20)
    first = lenet(strategy)
    with pytest.raises(SimulatedCrash):
        Trainer(strategy, first, dataset, hp, data_seed=5, out_dir=str(tmp_path / "b")).run()
    monkeypatch.setattr(checkpoints.Checkpointer, "save_latest", original)
    assert checkpoints.latest_step(str(tmp_path / "b" / "checkpoints")) == 20
    assert not os.path.exists(tmp_path / "b" / "final.json")

    resumed = lenet(strategy, seed=99)   # different init: everything must come from the checkpoint
    Trainer(strategy, resumed, dataset, hp, data_seed=5, out_dir=str(tmp_path / "b")).run()
    for a, b in zip(weights(straight), weights(resumed)):
        np.testing.assert_array_equal(a, b)
    steps = [r["step"] for r in read_metrics(str(tmp_path / "b")) if "test_accuracy" in r]
    assert steps == [0, 10, 20, 30, 40]


def test_finished_phase_is_not_retrained(tmp_path):
    dataset = data.build(SYNTH)
    strategy = tf.distribute.get_strategy()
    hp = TrainingHparams(lr=0.05, training_steps="8it", eval_every="4it")
    out = str(tmp_path / "p")
    first = Trainer(strategy, lenet(strategy), dataset, hp, 0, out).run()
    model = lenet(strategy, seed=7)
    before = weights(model)
    second = Trainer(strategy, model, dataset, hp, 0, out).run()
    assert first == second
    for a, b in zip(before, weights(model)):
        np.testing.assert_array_equal(a, b)


def test_pruned_weights_stay_exactly_zero(tmp_path):
    dataset = data.build(SYNTH)
    strategy = mirrored()
    model = lenet(strategy)
    rng = np.random.default_rng(0)
    mask = {name: rng.random(v.shape) < 0.3 for name, v in masking.prunable_variables(model).items()}
    masking.set_mask(model, masking.Mask(mask))
    hp = TrainingHparams(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-3,
                         training_steps="50it", eval_every="25it")
    before = {n: v.numpy().copy() for n, v in masking.prunable_variables(model).items()}
    Trainer(strategy, model, dataset, hp, 0, str(tmp_path)).run()
    for name, var in masking.prunable_variables(model).items():
        value = var.numpy()
        assert np.all(value[~mask[name]] == 0.0), name
        assert not np.array_equal(value[mask[name]], before[name][mask[name]]), name
        # Each replica's copy (the optimizer masks every device's update).
        copies = [c.numpy() for c in var.values]
        assert len(copies) == 2 and all(np.array_equal(c, value) for c in copies), name
    # The stored checkpoint is exactly sparse too.
    reloaded = lenet(tf.distribute.get_strategy(), seed=1)
    checkpoints.restore_weights(reloaded, str(tmp_path / "checkpoints"), "end")
    for name, var in masking.prunable_variables(reloaded).items():
        assert np.all(var.numpy()[~mask[name]] == 0.0)


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_one_sgd_step_matches_numpy(tmp_path, label_smoothing):
    """One step of plain SGD on a linear softmax model with weight decay on the
    kernel and bias but not on BatchNorm: new weights computed by hand."""
    dataset = data.build(SYNTH)
    strategy = tf.distribute.get_strategy()
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.BatchNormalization(name="bn", center=True, scale=True)(x)
    logits = keras.layers.Dense(10, name="dense",
                                kernel_initializer=keras.initializers.RandomNormal(seed=1))(x)
    model = masking.wrap(keras.Model(inputs, logits))
    bn = model.get_layer("bn")
    bn.set_weights([np.full(64, 1.5, np.float32), np.full(64, 0.25, np.float32),
                    np.zeros(64, np.float32), np.ones(64, np.float32)])
    dense_vars = masking.prunable_variables(model)
    kernel0 = dense_vars["dense/kernel"].numpy().copy()
    bias_var = [v for v in model.trainable_variables if "bias" in v.name and "bn" not in v.name][0]
    bias0 = bias_var.numpy().copy()

    lr, wd = 0.1, 0.01
    hp = TrainingHparams(optimizer="sgd", lr=lr, weight_decay=wd, training_steps="1it",
                         eval_every="1it", label_smoothing=label_smoothing)
    images, labels = next(iter(dataset.train_dataset(seed=4)))
    images = images.numpy().reshape(len(labels), -1)
    labels = labels.numpy()
    Trainer(strategy, model, dataset, hp, data_seed=4, out_dir=str(tmp_path)).run()

    # BatchNorm in training mode: batch statistics (biased variance), eps 1e-3.
    mean, var = images.mean(0), images.var(0)
    h = 1.5 * (images - mean) / np.sqrt(var + 1e-3) + 0.25
    p = _softmax(h @ kernel0 + bias0)
    target = np.eye(10)[labels] * (1 - label_smoothing) + label_smoothing / 10
    dlogits = (p - target) / len(labels)
    kernel1 = kernel0 - lr * (h.T @ dlogits + wd * kernel0)
    bias1 = bias0 - lr * (dlogits.sum(0) + wd * bias0)
    np.testing.assert_allclose(dense_vars["dense/kernel"].numpy(), kernel1, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bias_var.numpy(), bias1, rtol=1e-4, atol=1e-6)
    # BatchNorm's gamma gets no weight decay: its step is the cross-entropy gradient only.
    gamma1 = bn.gamma.numpy()
    dh = dlogits @ kernel0.T
    xhat = (images - mean) / np.sqrt(var + 1e-3)
    np.testing.assert_allclose(gamma1, 1.5 - lr * (dh * xhat).sum(0), rtol=1e-3, atol=1e-6)


def test_nan_loss_raises_and_leaves_no_final(tmp_path):
    dataset = data.build(SYNTH)
    strategy = tf.distribute.get_strategy()
    hp = TrainingHparams(lr=1e30, training_steps="20it", eval_every="10it", steps_per_loop=5)
    with pytest.raises(TrainingDivergedError, match="loss became"):
        Trainer(strategy, lenet(strategy), dataset, hp, 0, str(tmp_path)).run()
    assert not os.path.exists(tmp_path / "final.json")


def test_named_checkpoints_and_bad_steps(tmp_path):
    dataset = data.build(SYNTH)   # 256 examples / 32 = 8 iterations per epoch
    strategy = tf.distribute.get_strategy()
    hp = TrainingHparams(lr=0.05, training_steps="2ep", eval_every="1ep",
                         checkpoint_steps=("3it", "1ep1it"))
    model = lenet(strategy)
    Trainer(strategy, model, dataset, hp, 0, str(tmp_path)).run()
    names = sorted(os.path.basename(os.path.dirname(p))
                   for p in glob.glob(str(tmp_path / "checkpoints" / "*" / "info.json")))
    assert names == ["end", "init", "step_3", "step_9"]
    info = checkpoints.restore_weights(lenet(strategy, seed=3), str(tmp_path / "checkpoints"),
                                       "step_9")
    assert (info["step"], info["epoch"], info["iteration_in_epoch"]) == (9, 1, 1)
    with pytest.raises(ConfigError, match="past the end of training"):
        Trainer(strategy, model, dataset, TrainingHparams(training_steps="2ep",
                checkpoint_steps=("3ep",)), 0, str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="training_steps must be positive"):
        Trainer(strategy, model, dataset, TrainingHparams(training_steps="0it"), 0,
                str(tmp_path / "y"))
    with pytest.raises(ConfigError, match="does not fit"):
        Trainer(strategy, model, dataset, TrainingHparams(training_steps="2ep"), 0,
                str(tmp_path / "z"), start_step="3ep")


def test_fast_path_equals_forward_multiply(tmp_path, monkeypatch):
    """The training step skips the forward multiply (masking/fast_path.py); it
    must train exactly as the always-multiply path does, even when a pruned
    weight was overwritten after set_mask (the trainer re-zeroes it)."""
    from tflottery.masking import fast_path
    dataset = data.build(SYNTH)
    strategy = tf.distribute.get_strategy()
    hp = TrainingHparams(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3,
                         training_steps="20it", eval_every="10it")
    results = []
    for use_fast_path in (True, False):
        monkeypatch.setattr(fast_path, "active", lambda: False) if not use_fast_path else None
        model = lenet(strategy)
        rng = np.random.default_rng(0)
        mask = {n: rng.random(v.shape) < 0.5 for n, v in masking.prunable_variables(model).items()}
        masking.set_mask(model, mask)
        kernel = masking.prunable_variables(model)["fc_1/kernel"]
        kernel.assign(kernel.numpy() + 1.0)   # a user writes into pruned entries
        Trainer(strategy, model, dataset, hp, 0, str(tmp_path / str(use_fast_path))).run()
        results.append({n: v.numpy() for n, v in masking.prunable_variables(model).items()})
        for name, value in results[-1].items():
            assert np.all(value[~mask[name]] == 0.0)
    for name in results[0]:
        np.testing.assert_allclose(results[0][name], results[1][name], rtol=1e-5, atol=1e-6)


def test_bfloat16_mixed_precision_trains(tmp_path):
    dataset = data.build(SYNTH)
    strategy = tf.distribute.get_strategy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = lenet(strategy)
        assert model.get_layer("masked_fc_1").compute_dtype == "bfloat16"
        hp = TrainingHparams(lr=0.05, training_steps="16it", eval_every="8it",
                             mixed_precision=True)
        final = Trainer(strategy, model, dataset, hp, 0, str(tmp_path)).run()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(final["test_loss"]) and final["test_accuracy"] > 0.2
    assert all(v.dtype == tf.float32 for v in model.trainable_variables)


def test_eval_interval_past_end_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="eval_every '5ep'.*past the end"):
        Trainer(tf.distribute.get_strategy(), lenet(tf.distribute.get_strategy()),
                data.build(SYNTH), TrainingHparams(training_steps="2ep", eval_every="5ep"), 0,
                str(tmp_path))


def test_phase_from_step_k_counts_optimizer_steps_from_zero(tmp_path):
    """A rewound phase gets a fresh optimizer (Adam's bias correction starts
    afresh) while the LR schedule continues from k."""
    dataset = data.build(SYNTH)
    strategy = tf.distribute.get_strategy()
    hp = TrainingHparams(optimizer="adam", lr=0.01, schedule="step", milestones=("12it",),
                         gamma=0.5, training_steps="24it", eval_every="8it")
    trainer = Trainer(strategy, lenet(strategy), dataset, hp, 0, str(tmp_path), start_step=8)
    assert float(trainer.schedule(0)) == pytest.approx(0.01)      # schedule step 8
    assert float(trainer.schedule(4)) == pytest.approx(0.005)     # schedule step 12
    trainer.run()
    assert int(trainer.optimizer.iterations.numpy()) == 16


class _Plain(keras.Model):
    """A user's subclassed model: flatten, then one dense layer."""

    def __init__(self):
        super().__init__()
        self.flat = keras.layers.Flatten()
        self.dense = keras.layers.Dense(10)

    def call(self, x, training=None):
        return self.dense(self.flat(x))


class _Branching(_Plain):
    """The same model with a branch on a tensor (never taken on these data)."""

    def call(self, x, training=None):
        h = self.flat(x)
        if tf.reduce_max(tf.abs(h)) > 1e9:      # autograph makes this a tf.cond
            h = h * 0.0
        return self.dense(h)


def test_a_user_model_that_branches_on_tensors_trains(tmp_path):
    """The training loop and evaluation are traced without autograph (program.py), but
    the model is still called with it: a tensor `if` in a user's model works, and
    trains and evaluates as the model without it."""
    dataset = data.build(SYNTH)
    hp = TrainingHparams(optimizer="sgd", lr=0.05, training_steps="20it", eval_every="20it")
    strategy = tf.distribute.get_strategy()
    trained = []
    for cls in (_Plain, _Branching):
        model = cls()
        model(np.zeros((1, 8, 8, 1), np.float32))
        if trained:
            model.set_weights(trained[0][0])
        start = weights(model)
        trainer = Trainer(strategy, model, dataset, hp, 0, str(tmp_path / cls.__name__),
                          writable=False)
        trainer.make_train_fn(0)(20)
        trained.append((start, weights(model), trainer.evaluate("test")))
    (start_a, end_a, eval_a), (start_b, end_b, eval_b) = trained
    assert all(np.array_equal(a, b) for a, b in zip(start_a, start_b))
    assert not all(np.array_equal(a, b) for a, b in zip(start_a, end_a))
    assert all(np.array_equal(a, b) for a, b in zip(end_a, end_b))
    assert eval_a == eval_b and eval_a["loss"] > 0
