"""Tests of the model zoo: shapes, trainability, parameter counts, seeding, naming.

Parameter counts are checked against numbers derived by hand below (and
published by open_lth's own tests), never against this package's output.
"""
import random

import numpy as np
import pytest
import tensorflow as tf

from tflottery import models
from tflottery.errors import ConfigError
from tflottery.keras_compat import keras

ALL_NAMES = models.names()
# ResNet-101/152 are ResNet-50's builder with more blocks; building each twice
# in every per-model test below would cost most of a minute on a CPU, so they
# are checked by their parameter counts only (test_deep_imagenet_resnet_counts).
PER_MODEL_NAMES = [n for n in ALL_NAMES if n not in ("resnet_101", "resnet_152")]


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def kernel_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights if "kernel" in w.name)


# ---- Hand arithmetic -------------------------------------------------------------------

def conv_params(c_in, c_out, k, bias):
    return k * k * c_in * c_out + (c_out if bias else 0)


def bn_params(c):
    return 2 * c  # gamma, beta (moving statistics are not trainable)


def resnet_params(stage_widths, stage_blocks, num_classes=10, c_in=3):
    """He-style basic-block ResNet with 1x1 conv + BN projection shortcuts."""
    total = conv_params(c_in, stage_widths[0], 3, False) + bn_params(stage_widths[0])
    c = stage_widths[0]
    for width, blocks in zip(stage_widths, stage_blocks):
        for _ in range(blocks):
            total += conv_params(c, width, 3, False) + conv_params(width, width, 3, False)
            total += 2 * bn_params(width)
            if c != width:
                total += conv_params(c, width, 1, False) + bn_params(width)
            c = width
    return total + c * num_classes + num_classes


def bottleneck_resnet_params(stage_blocks, num_classes=1000, c_in=3):
    """ImageNet ResNet: 7x7 stem conv + BN, bottleneck blocks (1x1, 3x3, 1x1 at 4x
    width, a BN after each) of widths 64..512, projection shortcut in each
    stage's first block, FC with bias."""
    total = conv_params(c_in, 64, 7, False) + bn_params(64)
    c = 64
    for width, blocks in zip((64, 128, 256, 512), stage_blocks):
        for b in range(blocks):
            total += (conv_params(c, width, 1, False) + conv_params(width, width, 3, False)
                      + conv_params(width, 4 * width, 1, False))
            total += 2 * bn_params(width) + bn_params(4 * width)
            if b == 0:
                total += conv_params(c, 4 * width, 1, False) + bn_params(4 * width)
            c = 4 * width
    return total + c * num_classes + num_classes


def conv_net_kernels(stage_widths, image=32, c_in=3):
    """Kernel weights (no biases) of Frankle & Carbin's Conv-N nets, FC 256-256-10."""
    total, c = 0, c_in
    for w in stage_widths:
        total += 9 * c * w + 9 * w * w
        c, image = w, image // 2
    flat = image * image * c
    return total + flat * 256 + 256 * 256 + 256 * 10


def test_hand_arithmetic_matches_published_counts():
    # open_lth models/test/test_cifar_resnet.py: 272,474 / 1,730,714 / 11,093,130.
    assert resnet_params((16, 32, 64), (3, 3, 3)) == 272_474
    assert resnet_params((16, 32, 64), (18, 18, 18)) == 1_730_714
    assert resnet_params((128, 256, 512), (2, 2, 2)) == 11_093_130
    # pytorch-cifar's ResNet18 (3x3 stem, no max-pool), 10 classes: 11,173,962.
    assert resnet_params((64, 128, 256, 512), (2, 2, 2, 2)) == 11_173_962


def test_lenet_parameter_count_on_mnist():
    model = models.build("lenet_300_100", (28, 28, 1), 10)
    expected = 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert expected == 266_610
    assert trainable_count(model) == expected


@pytest.mark.parametrize("name,depth,width", [
    ("resnet_20", 20, 1), ("resnet_110", 110, 1), ("wrn_14_8", 14, 8), ("wrn_32_2", 32, 2)])
def test_cifar_resnet_parameter_counts(name, depth, width):
    n = (depth - 2) // 6
    expected = resnet_params(tuple(width * w for w in (16, 32, 64)), (n, n, n))
    assert trainable_count(models.build(name, (32, 32, 3), 10)) == expected


@pytest.mark.parametrize("name,blocks,published", [
    # torchvision's resnet101 / resnet152 (also v1.5, same parameters as v1)
    ("resnet_101", (3, 4, 23, 3), 44_549_160), ("resnet_152", (3, 8, 36, 3), 60_192_808)])
def test_deep_imagenet_resnet_counts(name, blocks, published):
    assert bottleneck_resnet_params(blocks) == published
    assert trainable_count(models.build(name, (224, 224, 3), 1000)) == published


def test_resnet18_parameter_count_tinyimagenet():
    model = models.build("resnet_18", (64, 64, 3), 200)
    assert trainable_count(model) == resnet_params((64, 128, 256, 512), (2, 2, 2, 2), 200)


@pytest.mark.parametrize("name,expected", [
    # open_lth models/test/test_cifar_vgg.py (convs with bias, BN, one Dense 512->10)
    ("vgg_11", 9_231_114), ("vgg_16", 14_728_266)])
def test_vgg_parameter_counts(name, expected):
    assert trainable_count(models.build(name, (32, 32, 3), 10)) == expected


@pytest.mark.parametrize("name,stage_widths,paper_millions", [
    ("conv_2", (64,), 4.3), ("conv_4", (64, 128), 2.4), ("conv_6", (64, 128, 256), None)])
def test_conv_net_kernel_counts(name, stage_widths, paper_millions):
    expected = conv_net_kernels(stage_widths)
    assert kernel_count(models.build(name, (32, 32, 3), 10)) == expected
    if paper_millions is not None:  # Figure 2 of Frankle & Carbin (2019), rounded
        assert round(expected / 1e6, 1) == paper_millions
    # Conv-6: the paper says 1.7M, but its own layer list gives 2.26M (see models/conv.py).


# ---- Every registered model: forward pass and one training step ------------------------

# Every model is tried on small images: 32x32, except Inception-v3, whose
# auxiliary head needs at least 107x107 (the ImageNet models' parameter counts
# at full resolution are in tests/test_imagenet_models.py).
SMALL_INPUT = {"inception_v3": (107, 107, 3)}


def small_input_shape(name):
    return SMALL_INPUT.get(name, (32, 32, 3))


# The ImageNet ResNets start each block's last BN gamma at 0, which by design
# stops the first step's gradient at the residual branches; switch that off
# here so that "every kernel gets a gradient" can be checked for them too.
STEP_OPTIONS = {name: {"zero_init_last_bn_gamma": False}
                for name in ALL_NAMES if models.options_of(name).get("zero_init_last_bn_gamma")}


@pytest.mark.parametrize("name", PER_MODEL_NAMES)
def test_forward_and_one_sgd_step(name):
    shape = small_input_shape(name)
    model = models.build(name, shape, 10, seed=0, **STEP_OPTIONS.get(name, {}))
    x = tf.random.stateless_uniform((2,) + shape, seed=(1, 2))
    y = tf.constant([3, 7])
    outputs = tf.nest.flatten(model(x, training=False))   # [logits] or [logits, aux_logits]
    for out in outputs:
        assert out.shape == (2, 10)
        assert out.dtype == tf.float32
        assert np.all(np.isfinite(out.numpy()))

    before = [w.numpy().copy() for w in model.trainable_weights]
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = tf.add_n([loss_fn(y, out) for out in tf.nest.flatten(model(x, training=True))])
    grads = tape.gradient(loss, model.trainable_weights)
    keras.optimizers.SGD(0.1).apply_gradients(zip(grads, model.trainable_weights))
    assert np.isfinite(loss.numpy())
    kernel_changed = [not np.array_equal(b, w.numpy())
                      for b, w in zip(before, model.trainable_weights) if "kernel" in w.name]
    assert all(kernel_changed)


def test_lenet_accepts_small_grayscale_images():
    assert models.build("lenet_300_100", (8, 8, 1), 10)(np.zeros((1, 8, 8, 1))).shape == (1, 10)


# ---- Seeding ---------------------------------------------------------------------------

def weights_of(name, seed, **options):
    return [w.numpy() for w in models.build(name, (32, 32, 3), 10, seed=seed, **options).weights]


@pytest.mark.parametrize("name", ["lenet_300_100", "resnet_20"])
def test_same_seed_same_weights_different_seed_different_weights(name):
    a, b, c = weights_of(name, 0), weights_of(name, 0), weights_of(name, 1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    random_ones = [i for i, x in enumerate(a) if x.std() > 0]  # kernels, not zero biases
    assert random_ones
    assert all(not np.array_equal(a[i], c[i]) for i in random_ones)


def test_layers_of_one_model_get_different_values():
    model = models.build("conv_4", (32, 32, 3), 10)
    k3, k4 = model.get_layer("conv_3").kernel.numpy(), model.get_layer("conv_4").kernel.numpy()
    assert not np.array_equal(k3, k4)


def test_uniform_bn_gamma_is_seeded():
    a = weights_of("resnet_20", 0, bn_gamma_initializer="uniform")
    b = weights_of("resnet_20", 0, bn_gamma_initializer="uniform")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    gamma = models.build("resnet_20", (32, 32, 3), 10, bn_gamma_initializer="uniform") \
        .get_layer("stem_bn").gamma.numpy()
    assert 0 <= gamma.min() and gamma.max() <= 1 and gamma.std() > 0


def _draw_global_randoms():
    return (tf.random.uniform((3,)).numpy(), np.random.rand(3), random.random())


def test_building_does_not_touch_global_random_state():
    tf.random.set_seed(123), np.random.seed(123), random.seed(123)
    expected = _draw_global_randoms()
    tf.random.set_seed(123), np.random.seed(123), random.seed(123)
    models.build("resnet_20", (32, 32, 3), 10, seed=5)
    models.build("lenet_300_100", (32, 32, 3), 10, seed=5, kernel_initializer="kaiming_normal")
    got = _draw_global_randoms()
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)


def test_kaiming_normal_is_untruncated_with_he_variance():
    model = models.build("resnet_20", (32, 32, 3), 10, seed=3)
    kernel = model.get_layer("stage3_block1_conv_b").kernel.numpy()  # fan_in 9*64
    std = np.sqrt(2.0 / (9 * 64))
    assert kernel.std() == pytest.approx(std, rel=0.02)
    assert np.abs(kernel).max() > 2.5 * std  # a truncated normal stops at 2 std


# ---- Errors and names ------------------------------------------------------------------

def test_unknown_name():
    with pytest.raises(ConfigError, match="unknown model 'resnet_21'.*resnet_20"):
        models.build("resnet_21", (32, 32, 3), 10)


def test_unknown_option_lists_valid_options():
    with pytest.raises(ConfigError, match="'bn_momentun'.*resnet_20.*bn_momentum.*bn_epsilon"):
        models.build("resnet_20", (32, 32, 3), 10, bn_momentun=0.99)
    with pytest.raises(ConfigError, match="'bn_momentum'.*lenet_300_100.*kernel_initializer"):
        models.build("lenet_300_100", (28, 28, 1), 10, bn_momentum=0.9)


def test_bad_option_values_and_arguments():
    with pytest.raises(ConfigError, match="kernel_initializer.*glorot_normal"):
        models.build("conv_2", (32, 32, 3), 10, kernel_initializer="xavier")
    with pytest.raises(ConfigError, match="bn_momentum"):
        models.build("vgg_11", (32, 32, 3), 10, bn_momentum=1.5)
    with pytest.raises(ConfigError, match="input_shape"):
        models.build("conv_2", (32, 32), 10)
    with pytest.raises(ConfigError, match="at least 16x16"):
        models.build("conv_8", (8, 8, 1), 10)
    with pytest.raises(ConfigError, match="seed"):
        models.build("conv_2", (32, 32, 3), 10, seed=-1)


def test_options_are_applied():
    model = models.build("vgg_11", (32, 32, 3), 10, bn_momentum=0.99, bn_epsilon=1e-3,
                         conv_bias=False)
    bn = model.get_layer("bn_1")
    assert (bn.momentum, bn.epsilon) == (0.99, 1e-3)
    assert model.get_layer("conv_1").bias is None


@pytest.mark.parametrize("name", PER_MODEL_NAMES)
def test_layer_names_unique_stable_and_output_named(name):
    model = models.build(name, small_input_shape(name), 10)
    first = [layer.name for layer in model.layers]
    second = [layer.name for layer in models.build(name, small_input_shape(name), 10, seed=1).layers]
    assert first == second
    assert len(set(first)) == len(first)
    # The (first) output comes from the classifier 'output'; a second output
    # (Inception's auxiliary classifier) may be listed after it.
    assert model.output_names[0] == models.OUTPUT_LAYER
    assert first[-1] in model.output_names


def test_mixed_bfloat16_policy_gives_float32_logits():
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        model = models.build("resnet_20", (32, 32, 3), 10)
        assert model.get_layer("stage1_block1_conv_a").compute_dtype == "bfloat16"
        out = model(np.zeros((2, 32, 32, 3), np.float32))
        assert out.dtype == tf.float32
        assert model.output.dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_eval_logits_is_a_static_inference_mode_graph():
    """eval_logits traces to the model alone, with no cond on the batch size
    (a TPU needs static programs; evaluation batches are padded instead, see
    tests/test_data.py), and gives the float32 inference-mode logits."""
    model = models.build("resnet_20", (8, 8, 3), 10, seed=0)
    step = tf.function(lambda x: models.eval_logits(model, x, 10))
    graph = step.get_concrete_function(tf.TensorSpec([None, 8, 8, 3], tf.float32)).graph
    control_flow = {"If", "StatelessIf", "While", "StatelessWhile", "Switch", "Merge", "Case"}
    assert not {op.type for op in graph.get_operations()} & control_flow
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 3)).astype(np.float32)
    logits = step(tf.constant(x))
    assert logits.dtype == tf.float32 and logits.shape == (3, 10)
    # A traced graph and an eager call may fuse ops differently (oneDNN: 8e-6 apart on a
    # Xeon without AVX-512), so equal up to float32 rounding, not bit for bit.
    np.testing.assert_allclose(logits.numpy(), model(x, training=False).numpy(),
                               rtol=1e-5, atol=1e-4)
    # Training mode (BN batch statistics) is far outside that tolerance.
    assert np.abs(logits.numpy() - model(x, training=True).numpy()).max() > 0.1