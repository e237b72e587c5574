"""Alignment through Concatenate, DepthwiseConv2D, SeparableConv2D, LayerNormalization,
Reshape and nested sub-models (#24 item 4), in tf_keras and Keras 3.

For each, a small model with random normalisation parameters: B is A with
every permutation group moved by a random permutation (align.apply), so the
answer is known by construction.  B must compute A's function (inference
and training mode; float32 rounding only: the permuted sums run in another
order) and weight matching -- and activation matching -- must return the
inverse permutation exactly, after which aligning B gives A's weights
exactly; masks move with their weights (pieces of cut kernels included),
and a masked model's permutation fits its unmasked twin.  Before these
layers were modelled, every one of these models was refused with a
ConfigError naming the layer.  Keras applications built
from them are tests/test_align_applications.py.
"""
from conftest import SMALL_RUN  # noqa: F401  (sets up TF before the imports below)

import numpy as np
import pytest

import keras as keras3
from tflottery import masking
from tflottery.analysis import align
from tflottery.keras_compat import keras as tf_keras
from tflottery.masking.layer import MaskedMixin
from test_align_by_structure import one_line_error

KERASES = {"tf_keras": tf_keras, "keras3": keras3}
SAME_FUNCTION = dict(rtol=1e-5, atol=1e-5)


def inception_block(k):
    """Inception-style branches concatenated on the channels -- with a branch of fixed
    (input) channels among them -- then BatchNorm over the concatenation, a 1x1 conv
    reading it, and Flatten of a second concatenation into a Dense."""
    L = k.layers
    inputs = k.Input((6, 6, 3))
    stem = L.ReLU()(L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(inputs)))
    b1 = L.Conv2D(3, 1, activation="relu")(stem)
    b2 = L.BatchNormalization()(L.Conv2D(5, 3, padding="same", use_bias=False)(stem))
    b3 = L.Conv2D(2, 1)(L.AveragePooling2D(3, 1, padding="same")(stem))
    b4 = L.MaxPooling2D(3, 1, padding="same")(inputs)            # fixed channels
    x = L.Concatenate()([b1, b2, b3, b4, stem])
    x = L.BatchNormalization()(x)
    x = L.Conv2D(4, 1)(x)       # linear: a ReLU here may leave units dead for activation matching
    x = L.Concatenate(axis=-1)([x, b1])
    x = L.Flatten()(L.MaxPooling2D(2)(x))
    return k.Model(inputs, L.Dense(3)(x))


def concatenate_other_axes(k):
    """Concatenate along the rows ties its inputs' groups; an Add of two concatenations
    ties them segment by segment."""
    L = k.layers
    inputs = k.Input((4, 4, 2))
    a = L.Conv2D(3, 3, padding="same")(inputs)
    b = L.Conv2D(3, 3, padding="same")(inputs)
    rows = L.Concatenate(axis=1)([a, b])                          # (8, 4, 3): a, b tied
    c = L.Conv2D(2, 1)(rows)
    d = L.Conv2D(5, 1)(rows)
    e = L.Conv2D(2, 1)(rows)
    f = L.Conv2D(5, 1)(rows)
    x = L.Add()([L.Concatenate()([c, d]), L.Concatenate()([e, f])])    # c~e, d~f
    x = L.GlobalAveragePooling2D()(L.ReLU()(x))
    return k.Model(inputs, L.Dense(2)(x))


def depthwise_net(k):
    """A MobileNetV2 inverted residual (expand, depthwise, project, add), after a
    depthwise conv with multiplier 2 on the (fixed) input, then squeeze-and-excite
    (GlobalAveragePooling, Reshape to (1, 1, C), Multiply)."""
    L = k.layers
    inputs = k.Input((6, 6, 2))
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(inputs)     # fixed: 4
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(4, 1)(x)))
    y = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(6, 1, use_bias=False)(x)))
    y = L.DepthwiseConv2D(3, padding="same", use_bias=False)(y)
    y = L.ReLU(6.0)(L.BatchNormalization()(y))
    y = L.BatchNormalization()(L.Conv2D(4, 1, use_bias=False)(y))
    x = L.Add()([x, y])
    x = L.DepthwiseConv2D(3, strides=2, padding="same")(x)
    se = L.Reshape((1, 1, 4))(L.GlobalAveragePooling2D()(x))
    se = L.Conv2D(4, 1, activation="sigmoid")(L.Conv2D(2, 1, activation="relu")(se))
    x = L.Multiply()([x, se])
    return k.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(x)))


def separable_net(k):
    """SeparableConv2D with depth multiplier 2, and one reading a concatenation (its
    depthwise and pointwise kernels cut into one piece per segment)."""
    L = k.layers
    inputs = k.Input((6, 6, 2))
    x = L.SeparableConv2D(4, 3, depth_multiplier=2, padding="same")(inputs)
    x = L.ReLU()(L.BatchNormalization()(x))
    y = L.Conv2D(3, 1)(x)
    x = L.Concatenate()([x, y])
    x = L.SeparableConv2D(5, 3, depth_multiplier=3, padding="same", activation="relu")(x)
    x = L.SeparableConv1D(3, 2, padding="same")(L.Reshape((36, 5))(x))
    return k.Model(inputs, L.Dense(2)(L.GlobalAveragePooling1D()(x)))


def layernorm_net(k):
    """LayerNormalization over the channels, over (H, W, C), over H alone (no channel
    axis in its gamma), and over a flattened tensor (H*W repeats of the channels)."""
    L = k.layers
    inputs = k.Input((4, 4, 2))
    x = L.LayerNormalization()(L.Conv2D(3, 3, padding="same")(inputs))
    x = L.LayerNormalization(axis=[1, 2, 3])(L.Conv2D(4, 3, padding="same")(L.ReLU()(x)))
    x = L.LayerNormalization(axis=1)(L.Conv2D(5, 1)(x))
    x = L.LayerNormalization()(L.Flatten()(L.ReLU()(x)))
    x = L.LayerNormalization()(L.Dense(6, activation="relu")(x))
    return k.Model(inputs, L.Dense(2)(x))


def nested_net(k):
    """A Sequential inside a functional model inside a functional model; the inner
    Sequential's output is added to its input inside the middle model."""
    L = k.layers
    inner = k.Sequential([k.Input((4,)), L.Dense(5, activation="relu"),
                          L.BatchNormalization(), L.Dense(4)], name="inner")
    middle_in = k.Input((3,))
    d = L.Dense(4, activation="relu")(middle_in)
    middle = k.Model(middle_in, L.Dense(3)(L.Add()([d, inner(d)])), name="middle")
    inputs = k.Input((3,))
    x = L.Dense(3, activation="relu")(inputs)
    return k.Model(inputs, L.Dense(2)(L.ReLU()(middle(x))))


BUILDERS = {f.__name__: f for f in (inception_block, concatenate_other_axes, depthwise_net,
                                    separable_net, layernorm_net, nested_net)}


def all_layers(model, k):
    for layer in model.layers:
        if isinstance(layer, k.Model):
            yield from all_layers(layer, k)
        else:
            yield layer.layer if isinstance(layer, MaskedMixin) else layer


def build(k_name, name, masked=False, seed=0):
    """The model, its normalisation parameters random (per-channel values to tell the
    channels apart, as in a trained network), `masked`: wrapped with a random 70% mask."""
    k = KERASES[k_name]
    k.utils.set_random_seed(seed)
    model = BUILDERS[name](k)
    if masked:
        model = masking.wrap(model)
        rng = np.random.default_rng(seed + 1)
        masking.set_mask(model, {n: rng.random(tuple(v.shape)) < 0.7
                                 for n, v in masking.prunable_variables(model).items()})
    rng = np.random.default_rng(seed + 2)
    for layer in all_layers(model, k):
        if isinstance(layer, (k.layers.BatchNormalization, k.layers.LayerNormalization)):
            for attr in ("gamma", "beta", "moving_mean"):
                var = getattr(layer, attr, None)
                if var is not None:
                    var.assign(rng.normal(size=tuple(var.shape)))
            if isinstance(layer, k.layers.BatchNormalization):
                var = layer.moving_variance
                var.assign(rng.uniform(0.5, 2.0, size=tuple(var.shape)))
    return model


def inputs_for(model, n=6, seed=0):
    shape = tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).normal(size=(n,) + shape).astype(np.float32)


def weights_equal(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


def assert_same_function(a, b, training_too=True):
    x = inputs_for(a)
    for training in (False, True) if training_too else (False,):
        np.testing.assert_allclose(np.asarray(b(x, training=training)),
                                   np.asarray(a(x, training=training)), **SAME_FUNCTION)


def assert_inverse(found, permutation):
    assert len(found) == len(permutation)
    for (group, perm), got in zip(permutation.items(), found.values()):
        np.testing.assert_array_equal(got, np.argsort(perm), err_msg=group)


@pytest.mark.parametrize("masked", [False, True], ids=["dense", "masked"])
@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("k", list(KERASES))
def test_a_permuted_copy_keeps_the_function_and_weight_matching_recovers_it(k, name, masked):
    a = build(k, name, masked)
    p = align.random_permutation(a, seed=3)
    assert not p.is_identity()
    b = align.apply(a, p)
    assert not weights_equal(a, b)
    if masked:     # every mask moved with its weight (pieces of cut kernels included)
        assert masking.get_mask(a) != masking.get_mask(b)
        for wrapper in masking.masked_layers(b):
            for attr in wrapper.prunable_attrs:
                pruned = wrapper.mask_variable(attr).numpy() == 0
                assert np.all(getattr(wrapper.layer, attr).numpy()[pruned] == 0)
    q = align.weight_matching(a, b)
    assert_inverse(q, p)
    assert weights_equal(align.apply(b, q), a)
    # Last: a training-mode call updates BN moving statistics (in a and b alike).
    assert_same_function(a, b)


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("k", list(KERASES))
def test_a_permutation_of_the_masked_model_fits_the_unmasked_one(k, name):
    """Masks are no part of the architecture, also inside nested models."""
    plain, masked = build(k, name), build(k, name, masked=True)
    p = align.random_permutation(masked, seed=6)
    assert_same_function(align.apply(plain, p), plain, training_too=False)


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("k", list(KERASES))
def test_activation_matching_recovers_a_permuted_copy(k, name):
    """Also inside nested models, whose tensors live in their own graphs."""
    a = build(k, name)
    p = align.random_permutation(a, seed=4)
    b = align.apply(a, p)
    assert_inverse(align.activation_matching(a, b, inputs_for(a, n=128, seed=5)), p)
    assert_same_function(a, b, training_too=False)    # the probes changed nothing


def pieces(spec, layer):
    return {(w.attr, w.piece): tuple(spec.groups[g].name if g is not None else None
                                     for g in w.axes)
            for w in spec.weights if w.layer == layer}


def test_a_kernel_reading_a_concatenation_is_cut_into_one_piece_per_segment():
    L = tf_keras.layers
    inputs = tf_keras.Input((5, 5, 2))
    a = L.Conv2D(3, 1, name="a")(inputs)
    b = L.Conv2D(4, 1, name="b")(inputs)
    x = L.Concatenate()([a, inputs, b])                           # 3 + 2 (fixed) + 4
    x = L.BatchNormalization(name="bn")(x)
    x = L.Conv2D(6, 1, name="c")(x)
    x = L.Flatten()(L.Concatenate()([x, a]))                      # 25 x (6 + 3)
    model = tf_keras.Model(inputs, L.Dense(2, name="d")(x))
    spec = align.permutation_spec(model)
    assert [(g.name, g.size) for g in spec.groups] == [("a", 3), ("b", 4), ("c", 6)]
    kernel = {w.piece: w for w in spec.weights if w.label == "c/kernel"}
    assert {p: w.expanded for p, w in kernel.items()} == {
        (2, 0, 3): (1, 1, 9, 6), (2, 5, 9): (1, 1, 9, 6), (2, 3, 5): (1, 1, 9, 6)}
    assert pieces(spec, "c") == {("kernel", (2, 0, 3)): (None, None, "a", "c"),
                                 ("kernel", (2, 3, 5)): (None, None, None, "c"),
                                 ("kernel", (2, 5, 9)): (None, None, "b", "c"),
                                 ("bias", None): ("c",)}
    # The fixed segment's slice of BN's vectors has no permuted axis: left out.
    assert pieces(spec, "bn") == {(attr, piece): (group,) for attr in (
        "gamma", "beta", "moving_mean", "moving_variance")
        for piece, group in (((0, 0, 3), "a"), ((0, 5, 9), "b"))}
    assert pieces(spec, "d") == {("kernel", (1, 0, 6)): (None, "c", None),
                                 ("kernel", (1, 6, 9)): (None, "a", None)}
    assert {w.expanded for w in spec.weights if w.layer == "d"} == {(25, 9, 2)}


@pytest.mark.parametrize("k", list(KERASES))
def test_what_no_layout_describes_is_refused_in_one_line_naming_the_layer(k):
    keras = KERASES[k]
    L = keras.layers

    def model(body, shape=(4, 4, 2)):
        inputs = keras.Input(shape)
        return keras.Model(inputs, L.Dense(2)(L.Flatten()(body(inputs))))

    def multiplier(x):      # on a permuted group (on the input it is fine: depthwise_net)
        return L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(L.Conv2D(3, 1)(x))

    def flattened(x):
        return L.Concatenate(name="cat")([L.Flatten()(L.Conv2D(3, 1)(x)),
                                          L.Flatten()(L.Conv2D(2, 1)(x))])

    def channels(x):
        return L.Reshape((4, 8, 2), name="shape")(L.Conv2D(4, 1)(x))

    def mixed(x):       # a group would have to be cut in two
        cat = L.Concatenate()([L.Conv2D(2, 1)(x), L.Conv2D(3, 1)(x)])
        return L.Add(name="add")([cat, L.Conv2D(5, 1)(x)])

    def group_norm(x):
        return L.GroupNormalization(2, name="gn")(L.Conv2D(4, 1)(x))

    def twice(x):
        shared = keras.Sequential([keras.Input((4, 4, 3)), L.Conv2D(3, 1)], name="twice")
        y = L.Conv2D(3, 1)(x)
        return shared(shared(y))

    for body, fragments in ((multiplier, ("'dw'", "DepthwiseConv2D", "depth_multiplier 2")),
                            (flattened, ("'cat'", "concatenates flattened tensors")),
                            (channels, ("'shape'", "changes the last (channel) dimension")),
                            (mixed, ("'add'", "concatenated from different parts")),
                            (group_norm, ("'gn'", "GroupNormalization")),
                            (twice, ("'twice'", "nested model called 2 times"))):
        m = model(body)
        one_line_error(lambda: align.groups(m), *fragments)
