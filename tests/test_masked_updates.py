"""Mask-respecting optimizer updates (training/masked_updates.py), with and
without XLA, against the SGD/momentum/Nesterov/Adam rules written in NumPy."""
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from tflottery import masking
from tflottery.hparams import TrainingHparams
from tflottery.keras_compat import keras
from tflottery.training.optimizers import build_optimizer

LR = 0.05


def tiny_model(seed=0):
    inputs = keras.Input((5,))
    outputs = keras.layers.Dense(4, name="fc")(inputs)
    model = masking.wrap(keras.Model(inputs, outputs))
    rng = np.random.default_rng(seed)
    kernel = masking.prunable_variables(model)["fc/kernel"]
    kernel.assign(rng.normal(size=(5, 4)).astype(np.float32))
    return model, kernel


def numpy_rule(optimizer, momentum=0.0, nesterov=False):
    """The update rules as tf_keras documents them, on NumPy float64 arrays."""
    state = {"m": None, "v": None, "t": 0}

    def step(w, g):
        if state["m"] is None:
            state["m"], state["v"] = np.zeros_like(w), np.zeros_like(w)
        state["t"] += 1
        if optimizer == "sgd":
            if not momentum:
                return w - LR * g
            state["m"] = momentum * state["m"] - LR * g
            return w + (momentum * state["m"] - LR * g if nesterov else state["m"])
        b1, b2, eps, t = 0.9, 0.999, 1e-7, state["t"]
        state["m"] += (g - state["m"]) * (1 - b1)
        state["v"] += (g * g - state["v"]) * (1 - b2)
        alpha = LR * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        return w - alpha * state["m"] / (np.sqrt(state["v"]) + eps)
    return step


RULES = [dict(optimizer="sgd"), dict(optimizer="sgd", momentum=0.9),
         dict(optimizer="sgd", momentum=0.9, nesterov=True), dict(optimizer="adam")]


def big_model(seed=0):
    """Dense 80 -> 64: a 5120-entry kernel, above XLA_MIN_ENTRIES (so the XLA
    path really compiles it), and a 64-entry bias below it."""
    inputs = keras.Input((80,))
    model = masking.wrap(keras.Model(inputs, keras.layers.Dense(64, name="fc")(inputs)))
    kernel = masking.prunable_variables(model)["fc/kernel"]
    kernel.assign(np.random.default_rng(seed).normal(size=(80, 64)).astype(np.float32))
    return model, kernel


@pytest.mark.parametrize("xla", [False, True])
@pytest.mark.parametrize("rule", RULES, ids=lambda r: "-".join(f"{v}" for v in r.values()))
def test_masked_update_equals_numpy_rule_and_keeps_pruned_at_zero(rule, xla):
    """Unpruned entries follow the rule exactly as if the gradient were masked
    (the rules are elementwise); pruned entries are exactly 0.0 every step."""
    model, kernel = big_model()
    rng = np.random.default_rng(1)
    keep = rng.random(kernel.shape) < 0.5
    masking.set_mask(model, {"fc/kernel": keep})
    optimizer = build_optimizer(TrainingHparams(lr=LR, **rule), LR, model, xla=xla)
    reference = numpy_rule(**rule)
    expected = kernel.numpy().astype(np.float64)
    with mock.patch.object(type(optimizer), "_fused_update_steps",
                           wraps=optimizer._fused_update_steps) as fused:
        for _ in range(4):
            # A dense gradient, non-zero at pruned entries too (as the fast
            # path produces): the weights must not move there.
            grad = rng.normal(size=kernel.shape)
            optimizer.apply_gradients([(tf.constant(grad, tf.float32), kernel)])
            expected = reference(expected, grad * keep)
            value = kernel.numpy()
            assert np.all(value[~keep] == 0.0)
    assert fused.call_count == (4 if xla else 0)
    # float32 against float64: Adam moves each weight ~0.2 here, so 1e-5 is tight.
    np.testing.assert_allclose(kernel.numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rule", [RULES[1], RULES[3]], ids=["momentum", "adam"])
def test_large_weights_update_as_one_xla_program_bit_for_bit_as_one_each(rule):
    """On one device every large weight's update is one XLA program, traced (and
    compiled) once; the weights and optimizer state equal, bit for bit, those of
    one program a weight, the path under a strategy (here a OneDeviceStrategy)."""
    values, calls = {}, {}
    for path in ("one program", "one each"):
        strategy = (tf.distribute.OneDeviceStrategy("/cpu:0") if path == "one each"
                    else tf.distribute.get_strategy())
        with strategy.scope():
            inputs = keras.Input((80,))
            hidden = keras.layers.Dense(64, name="fc1")(inputs)
            model = masking.wrap(keras.Model(inputs, keras.layers.Dense(72, name="fc2")(hidden)))
            rng = np.random.default_rng(3)
            for variable in model.trainable_variables:
                variable.assign(rng.normal(size=variable.shape).astype(np.float32))
            masking.set_mask(model, {name: rng.random(v.shape) < 0.5 for name, v
                                     in masking.prunable_variables(model).items()})
            masking.zero_pruned_weights(model)
            optimizer = build_optimizer(TrainingHparams(lr=LR, **rule), LR, model, xla=True)
            with mock.patch.object(type(optimizer), "_fused_update_steps",
                                   wraps=optimizer._fused_update_steps) as grouped, \
                    mock.patch.object(type(optimizer), "_fused_update_step",
                                      wraps=optimizer._fused_update_step) as each:
                for _ in range(3):
                    grads = [tf.constant(rng.normal(size=v.shape), tf.float32)
                             for v in model.trainable_variables]
                    strategy.run(lambda g: optimizer.apply_gradients(
                        zip(g, model.trainable_variables)), args=(grads,))
            calls[path] = (grouped.call_count, each.call_count)
            if path == "one program":
                assert optimizer._fused_update_steps.experimental_get_tracing_count() == 1
            values[path] = [v.numpy() for v in model.variables + optimizer.variables]
    assert calls == {"one program": (3, 0), "one each": (0, 6)}   # two kernels >= 4096 entries
    for a, b in zip(values["one program"], values["one each"]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rule", [RULES[1], RULES[3]], ids=["momentum", "adam"])
def test_weight_pruned_mid_phase_stays_zero_despite_optimizer_state(rule):
    """Gradual pruning changes a mask while momentum/Adam state is non-zero
    there; the next update must leave the newly pruned weights at 0.0."""
    model, kernel = tiny_model()
    optimizer = build_optimizer(TrainingHparams(lr=LR, **rule), LR, model, xla=True)
    rng = np.random.default_rng(2)
    for _ in range(3):
        optimizer.apply_gradients([(tf.constant(rng.normal(size=(5, 4)), tf.float32), kernel)])
    keep = np.ones((5, 4), bool)
    keep[0, :] = False
    masking.set_mask(model, {"fc/kernel": keep})
    assert np.any([np.any(s.numpy()[0] != 0) for s in optimizer.variables[1:]
                   if tuple(s.shape) == (5, 4)])   # the state really is non-zero there
    optimizer.apply_gradients([(tf.constant(rng.normal(size=(5, 4)), tf.float32), kernel)])
    assert np.all(kernel.numpy()[0] == 0.0)
    assert np.all(kernel.numpy()[1:] != 0.0)


def test_plain_model_and_unmasked_weights_get_the_plain_rule():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="d")(inputs))
    optimizer = build_optimizer(TrainingHparams(lr=LR, optimizer="sgd"), LR, model, xla=True)
    kernel, bias = model.layers[-1].kernel, model.layers[-1].bias
    before = kernel.numpy().copy()
    grad = np.arange(6, dtype=np.float32).reshape(3, 2)
    optimizer.apply_gradients([(tf.constant(grad), kernel), (tf.ones(2), bias)])
    np.testing.assert_allclose(kernel.numpy(), before - LR * grad, rtol=1e-6)
    np.testing.assert_allclose(bias.numpy(), -LR * np.ones(2), rtol=1e-6)


def test_masks_are_not_part_of_the_optimizer_checkpoint():
    model, kernel = tiny_model()
    optimizer = build_optimizer(TrainingHparams(lr=LR, optimizer="adam"), LR, model)
    optimizer.build([kernel])
    mask_var = masking.masked_layers(model)[0].mask_variable("kernel")
    tracked = tf.train.TrackableView(optimizer).descendants()
    assert all(t is not mask_var for t in tracked)
    assert all(v is not mask_var for v in optimizer.variables)
