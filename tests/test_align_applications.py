"""Weight matching on Keras applications nobody here wrote (#21 point 6, alignment part).

Two instances of one application (weights=None, 32x32 inputs, 10 classes):
B gets A's weights with every permutation group moved by a random
permutation (align.apply, by position), and weight matching must return the
inverse exactly -- the answer is known by construction -- after which
aligning B gives A's weights exactly and the permuted B computes A's
function.  Applications with a layer the graph walk does not model
(DepthwiseConv2D in MobileNetV2 and EfficientNetB0) must be refused in one
line naming that layer.  ResNet-50 (23.5M weights) is slow; the refusals
build the smallest variants and run in the default suite.
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


def application(k, name):
    apps = KERASES[k].applications
    options = dict(weights=None, input_shape=SHAPE, classes=10)
    if name == "MobileNetV2":
        options["alpha"] = 0.35
    return getattr(apps, name)(**options)


@pytest.mark.parametrize("k,name,layer", [
    ("tf_keras", "MobileNetV2", "expanded_conv_depthwise"),
    ("keras3", "MobileNetV2", "expanded_conv_depthwise"),
    pytest.param("tf_keras", "EfficientNetB0", "block1a_dwconv", marks=pytest.mark.slow),
    pytest.param("keras3", "EfficientNetB0", "block1a_dwconv", marks=pytest.mark.slow)])
def test_an_application_with_a_layer_align_cannot_handle_is_refused_naming_it(k, name, layer):
    model = application(k, name)
    for call in (lambda: align.groups(model), lambda: align.weight_matching(model, model),
                 lambda: align.random_permutation(model)):
        with pytest.raises(ConfigError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message
        assert repr(layer) in message and "DepthwiseConv2D" in message, message


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
