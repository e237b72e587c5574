"""Scorers on models whose output applies softmax or sigmoid (#21 point 4; scoring/head.py).

The expected SNIP scores are written out here in NumPy: the forward pass of
a one-hidden-layer ReLU network, the cross-entropy of its probabilities
(softmax head) or the binary cross-entropy of its sigmoid output, and the
backward pass by hand.  The probability-head model must also score exactly
as the same network with a logits head under every gradient scorer (float32
on both sides, rtol 1e-5), and the user's model must keep its head.
"""
from conftest import SMALL_RUN  # noqa: F401  (sets up TF before the imports below)

import numpy as np
import pytest

import keras as keras3
from tflottery import masking, scoring
from tflottery.errors import ConfigError
from tflottery.keras_compat import keras as tf_keras
from tflottery.scoring.grow import dense_gradient

KERASES = {"tf_keras": tf_keras, "keras3": keras3}
N_IN, N_HIDDEN = 4, 5


def build(k, head, units=3, sequential=False, nested=False, seed=0):
    """Input(4) -> Dense(5, relu) 'hidden' -> Dense(units) 'out' -> `head`, masked, fixed weights.

    head: 'logits' (no activation), 'dense_softmax' / 'dense_sigmoid' (the
    Dense applies it), 'activation_softmax' (an Activation layer after it),
    'softmax_layer' (a Softmax layer after it).  nested: the network is
    itself the last layer of a functional model (as a keras.applications
    model is when a user wraps one).
    """
    rng = np.random.default_rng(seed)
    kernels = [rng.normal(0, 1, (N_IN, N_HIDDEN)), rng.normal(0, 1, (N_HIDDEN, units))]
    biases = [rng.normal(0, 0.1, N_HIDDEN), rng.normal(0, 0.1, units)]
    activation = head.split("_")[1] if head.startswith("dense_") else None
    layers = [k.layers.Dense(N_HIDDEN, activation="relu", name="hidden"),
              k.layers.Dense(units, activation=activation, name="out")]
    if head == "activation_softmax":
        layers.append(k.layers.Activation("softmax"))
    elif head == "softmax_layer":
        layers.append(k.layers.Softmax())
    if sequential:
        model = k.Sequential([k.Input((N_IN,))] + layers)
    else:
        inputs = k.Input((N_IN,))
        x = inputs
        for layer in layers:
            x = layer(x)
        model = k.Model(inputs, x)
    for name, kernel, bias in zip(("hidden", "out"), kernels, biases):
        model.get_layer(name).set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    if nested:
        inputs = k.Input((N_IN,))
        model = k.Model(inputs, model(inputs))
    kernels = [np.asarray(w, np.float64) for w in (kernels[0].astype(np.float32),
                                                   kernels[1].astype(np.float32))]
    biases = [np.asarray(b.astype(np.float32), np.float64) for b in biases]
    return masking.wrap(model), kernels, biases


def batch(classes, n=8, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, N_IN)).astype(np.float32),
            (np.arange(n) % classes).astype(np.int32))


def np_snip(kernels, biases, images, labels, binary=False):
    """SNIP |dL/dW * W| of the 'hidden' and 'out' kernels, forward and backward by hand.

    Softmax head: L = mean -log softmax(z)[y].  Binary (one sigmoid unit):
    L = mean -(y log s + (1 - y) log(1 - s)), s = sigmoid(z), so dL/dz = (s - y) / n.
    """
    x = images.astype(np.float64)
    n = len(x)
    pre = x @ kernels[0] + biases[0]
    h = np.maximum(pre, 0.0)
    z = h @ kernels[1] + biases[1]
    if binary:
        s = 1.0 / (1.0 + np.exp(-z[:, 0]))
        dz = ((s - labels) / n)[:, None]
    else:
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        onehot = np.eye(z.shape[1])[labels]
        dz = (p - onehot) / n
    d_out = h.T @ dz
    dh = (dz @ kernels[1].T) * (pre > 0)
    d_hidden = x.T @ dh
    return {"hidden/kernel": np.abs(d_hidden * kernels[0]),
            "out/kernel": np.abs(d_out * kernels[1])}


def assert_scores(actual, expected):
    assert sorted(actual) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-5,
                                   atol=1e-7 * np.abs(expected[name]).max(), err_msg=name)


@pytest.mark.parametrize("k,head,sequential,nested", [
    ("tf_keras", "dense_softmax", False, False), ("tf_keras", "dense_softmax", True, False),
    ("tf_keras", "activation_softmax", False, False), ("tf_keras", "activation_softmax", True, False),
    ("tf_keras", "softmax_layer", False, False), ("tf_keras", "dense_softmax", True, True),
    ("keras3", "dense_softmax", False, False), ("keras3", "activation_softmax", True, False),
    ("keras3", "softmax_layer", False, False)])
def test_snip_of_a_softmax_head_is_the_cross_entropy_of_its_probabilities(k, head, sequential,
                                                                          nested):
    model, kernels, biases = build(KERASES[k], head, sequential=sequential, nested=nested)
    images, labels = batch(3)
    scores = scoring.compute_scores("snip", model, batch=(images, labels))
    assert_scores(scores, np_snip(kernels, biases, images, labels))


@pytest.mark.parametrize("k", ["tf_keras", "keras3"])
@pytest.mark.parametrize("head", ["dense_sigmoid", "logits"])
def test_snip_of_a_one_unit_head_is_binary_cross_entropy(k, head):
    model, kernels, biases = build(KERASES[k], head, units=1)
    images, labels = batch(2)
    scores = scoring.compute_scores("snip", model, batch=(images, labels))
    assert_scores(scores, np_snip(kernels, biases, images, labels, binary=True))


def _scores(kind, model, data):
    if kind == "rigl_gradient":
        return dense_gradient(model, data)
    return scoring.compute_scores(kind, model, batch=data)


@pytest.mark.parametrize("kind", ["snip", "grasp", "synflow", "rigl_gradient"])
@pytest.mark.parametrize("k,head", [("tf_keras", "dense_softmax"),
                                    ("tf_keras", "activation_softmax"),
                                    ("keras3", "softmax_layer")])
def test_probability_head_scores_as_the_same_network_with_a_logits_head(kind, k, head):
    data = batch(3)
    softmax_model, _, _ = build(KERASES[k], head)
    logits_model, _, _ = build(KERASES[k], "logits")
    assert_scores(_scores(kind, softmax_model, data), _scores(kind, logits_model, data))
    # The user's model keeps its head: its outputs are still probabilities.
    outputs = np.asarray(softmax_model(data[0]))
    np.testing.assert_allclose(outputs.sum(1), 1.0, rtol=1e-5)


def test_multi_unit_sigmoid_and_one_unit_softmax_are_refused_in_one_line():
    for units, words in ((3, ("'out'", "sigmoid to 3 units", "activation='softmax'")),
                         (1, ("'out'", "softmax to one unit", "activation='sigmoid'"))):
        model, _, _ = build(tf_keras, "dense_sigmoid" if units == 3 else "dense_softmax",
                            units=units)
        with pytest.raises(ConfigError) as info:
            scoring.prune_to_density("snip", model, 0.5, batch=batch(2))
        message = str(info.value)
        assert "\n" not in message
        for word in words:
            assert word in message


@pytest.mark.slow
@pytest.mark.parametrize("k", ["tf_keras", "keras3"])
def test_a_keras_application_with_its_softmax_classifier_scores_as_with_logits(k):
    """MobileNetV2's classifier_activation is softmax by default; None gives the logits."""
    apps = KERASES[k].applications
    KERASES[k].utils.set_random_seed(0)
    options = dict(weights=None, input_shape=(32, 32, 3), classes=4, alpha=0.35)
    softmax_model = apps.MobileNetV2(**options)
    logits_model = apps.MobileNetV2(classifier_activation=None, **options)
    logits_model.set_weights(softmax_model.get_weights())
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(8, 32, 32, 3)).astype(np.float32), np.arange(8) % 4)
    scores = [scoring.compute_scores("snip", masking.wrap(m), batch=data)
              for m in (softmax_model, logits_model)]
    assert_scores(*scores)
