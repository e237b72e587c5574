"""Weight matching on Keras applications nobody here wrote (#21 point 6, alignment part;
#24 item 4: Concatenate, DepthwiseConv2D and squeeze-and-excite).

Two instances of one application (weights=None, 32x32 inputs -- 75x75 for
InceptionV3, its minimum --, 10 classes): B gets A's weights with every
permutation group moved by a random permutation (align.apply, by position),
and weight matching must return the inverse exactly -- the answer is known
by construction -- after which aligning B gives A's weights exactly and the
permuted B computes A's function.

The BatchNorm parameters and statistics are drawn at random first, per
channel, as training leaves them.  With Keras' initial ones (gamma 1, beta 0,
mean 0, variance 1) an untrained MobileNetV2's groups between two 1x1
convolutions are told apart by nothing but those two kernels, each read
through another permuted group, and coordinate descent from the identity
stops in a local optimum (0 of 25 groups right, objective 7604 against
8926 at the answer, for each of 8 visiting orders); and the outputs of an
untrained MobileNetV2 or InceptionV3 are then 0.1 for every class (the
activations vanish), which would make the function check empty.

An application with a layer the graph walk does not model (MobileNet with
depth_multiplier 2: its depthwise outputs c*2 + j are no group's channels)
must be refused in one line naming that layer.  MobileNetV2 (~12 s) runs in
the default suite; InceptionV3 (~1 min), EfficientNetB0 and ResNet-50
(23.5M weights, ~7 min) are slow.
"""
from conftest import SMALL_RUN  # noqa: F401  (sets up TF before the imports below)

import numpy as np
import pytest

import keras as keras3
from tflottery.analysis import align
from tflottery.errors import ConfigError
from tflottery.keras_compat import keras as tf_keras

KERASES = {"tf_keras": tf_keras, "keras3": keras3}
SHAPE = (32, 32, 3)
INCEPTION_SHAPE = (75, 75, 3)     # InceptionV3's smallest


def application(k, name):
    apps = KERASES[k].applications
    options = dict(weights=None, input_shape=INCEPTION_SHAPE if name == "InceptionV3" else SHAPE,
                   classes=10)
    if name == "MobileNetV2":
        options["alpha"] = 0.35
    return getattr(apps, name)(**options)


@pytest.mark.parametrize("k", list(KERASES))
def test_an_application_with_a_layer_align_cannot_handle_is_refused_naming_it(k):
    model = KERASES[k].applications.MobileNet(weights=None, input_shape=SHAPE, classes=10,
                                              alpha=0.25, depth_multiplier=2)
    for call in (lambda: align.groups(model), lambda: align.weight_matching(model, model),
                 lambda: align.random_permutation(model)):
        with pytest.raises(ConfigError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message
        assert "'conv_dw_1'" in message and "DepthwiseConv2D" in message, message
        assert "depth_multiplier 2" in message, message


def weights_equal(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


@pytest.mark.slow
@pytest.mark.parametrize("k", list(KERASES))
def test_weight_matching_recovers_a_random_permutation_of_resnet50(k):
    KERASES[k].utils.set_random_seed(0)
    a, b = application(k, "ResNet50"), application(k, "ResNet50")
    b.set_weights(a.get_weights())
    p = align.random_permutation(a, seed=1)
    align.apply(b, p, in_place=True)
    assert not weights_equal(a, b)
    x = np.random.default_rng(2).normal(size=(2,) + SHAPE).astype(np.float32)
    np.testing.assert_allclose(np.asarray(b(x, training=False)), np.asarray(a(x, training=False)),
                               rtol=1e-4, atol=1e-6)
    q = align.weight_matching(a, b)
    assert len(q) == len(p) == 37    # the stem, 4 residual streams, 2 groups in each of 16 blocks
    for (group, perm), found in zip(p.items(), q.values()):
        np.testing.assert_array_equal(found, np.argsort(perm), err_msg=group)
    assert weights_equal(align.apply(b, q), a)


def randomise_batchnorm(model, k, seed):
    """Per-channel BN parameters and statistics, as training leaves them (module docstring)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, KERASES[k].layers.BatchNormalization):
            for var in (layer.gamma, layer.beta, layer.moving_mean):
                if var is not None:                 # InceptionV3's BN has no gamma
                    var.assign(rng.normal(size=tuple(var.shape)))
            var = layer.moving_variance
            var.assign(rng.uniform(0.5, 2.0, size=tuple(var.shape)))


@pytest.mark.parametrize("k,name,groups", [
    ("tf_keras", "MobileNetV2", 25),
    ("keras3", "MobileNetV2", 25),
    pytest.param("tf_keras", "InceptionV3", 94, marks=pytest.mark.slow),
    pytest.param("keras3", "InceptionV3", 94, marks=pytest.mark.slow),
    pytest.param("tf_keras", "EfficientNetB0", 40, marks=pytest.mark.slow),
    pytest.param("keras3", "EfficientNetB0", 40, marks=pytest.mark.slow)])
def test_weight_matching_recovers_a_random_permutation_through_concatenations_and_depthwise(
        k, name, groups):
    """MobileNetV2: 25 groups (the stem, 6 residual streams, each block's expansion,
    its depthwise conv passing the expansion's group on); InceptionV3: 94 (every conv,
    concatenated by the mixed blocks); EfficientNetB0: 40 (also squeeze-and-excite)."""
    KERASES[k].utils.set_random_seed(0)
    a, b = application(k, name), application(k, name)
    randomise_batchnorm(a, k, seed=3)
    b.set_weights(a.get_weights())
    p = align.random_permutation(a, seed=1)
    align.apply(b, p, in_place=True)
    assert not weights_equal(a, b)
    shape = tuple(a.inputs[0].shape[1:])
    x = np.random.default_rng(2).normal(size=(2,) + shape).astype(np.float32)
    out_a, out_b = np.asarray(a(x, training=False)), np.asarray(b(x, training=False))
    assert np.ptp(out_a) > 1e-3                  # not the constant 0.1 of vanished activations
    np.testing.assert_allclose(out_b, out_a, rtol=1e-5, atol=1e-5)
    q = align.weight_matching(a, b)
    assert len(q) == len(p) == groups
    for (group, perm), found in zip(p.items(), q.values()):
        np.testing.assert_array_equal(found, np.argsort(perm), err_msg=group)
    assert weights_equal(align.apply(b, q), a)
