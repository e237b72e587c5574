"""ResNet-50 (v1.5) and Inception-v3: counts, reference initialisation, training.

Parameter counts are derived by hand below from the architectures' layer
lists and compared with the published numbers, never with this package's
own helpers.  Counting needs no forward pass, so the count tests build
1000-class models at full resolution; the training tests use small images,
few classes and a batch of two per replica to stay fast on a CPU.
"""
from conftest import two_cpu_strategy  # noqa: E402

import numpy as np
import pytest
import tensorflow as tf

from tflottery import data, masking, models
from tflottery.errors import ConfigError
from tflottery.hparams import DatasetHparams, TrainingHparams
from tflottery.keras_compat import keras
from tflottery.training.loop import Trainer

TRUNCATION = 0.87962566103423978  # std of a unit normal truncated at +-2


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def total_count(model):
    return sum(int(np.prod(w.shape)) for w in model.weights)


# ---- Hand arithmetic -------------------------------------------------------------------

def resnet50_trainable(num_classes=1000):
    """Convs without bias, BN gamma + beta, FC with bias; v1.5 moves a stride, not weights."""
    total = 7 * 7 * 3 * 64 + 2 * 64                     # stem conv + BN
    c = 64
    for width, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3)):
        for b in range(blocks):
            total += c * width + 9 * width * width + width * 4 * width   # 1x1, 3x3, 1x1
            total += 2 * (width + width + 4 * width)                       # three BNs
            if b == 0:                                                     # projection
                total += c * 4 * width + 2 * 4 * width
            c = 4 * width
    return total + 2048 * num_classes + num_classes


# (in, out, kernel height, kernel width) of every conv + BN unit of Inception-v3,
# written out from Szegedy et al. (2016) Figure 5-7 / TF-slim's inception_v3.
def _block_a(c, pool):
    return [(c, 64, 1, 1), (c, 48, 1, 1), (48, 64, 5, 5), (c, 64, 1, 1), (64, 96, 3, 3),
            (96, 96, 3, 3), (c, pool, 1, 1)]


def _block_b(m):
    return [(768, 192, 1, 1), (768, m, 1, 1), (m, m, 1, 7), (m, 192, 7, 1),
            (768, m, 1, 1), (m, m, 7, 1), (m, m, 1, 7), (m, m, 7, 1), (m, 192, 1, 7),
            (768, 192, 1, 1)]


def _block_c(c):
    return [(c, 320, 1, 1), (c, 384, 1, 1), (384, 384, 1, 3), (384, 384, 3, 1),
            (c, 448, 1, 1), (448, 384, 3, 3), (384, 384, 1, 3), (384, 384, 3, 1),
            (c, 192, 1, 1)]


INCEPTION_UNITS = (
    [(3, 32, 3, 3), (32, 32, 3, 3), (32, 64, 3, 3), (64, 80, 1, 1), (80, 192, 3, 3)]
    + _block_a(192, 32) + _block_a(256, 64) + _block_a(288, 64)                  # 256, 288, 288
    + [(288, 384, 3, 3), (288, 64, 1, 1), (64, 96, 3, 3), (96, 96, 3, 3)]       # -> 768
    + _block_b(128) + _block_b(160) + _block_b(160) + _block_b(192)
    + [(768, 192, 1, 1), (192, 320, 3, 3), (768, 192, 1, 1), (192, 192, 1, 7),  # -> 1280
       (192, 192, 7, 1), (192, 192, 3, 3)]
    + _block_c(1280) + _block_c(2048))
AUX_UNITS = [(768, 128, 1, 1), (128, 768, 5, 5)]


def inception_counts(units, fc_in, num_classes=1000):
    """(trainable, total): kernels + BN beta (no gamma) + FC; total adds BN mean and variance."""
    kernels = sum(i * o * h * w for i, o, h, w in units)
    channels = sum(o for _, o, _, _ in units)
    fc = fc_in * num_classes + num_classes
    return kernels + channels + fc, kernels + 3 * channels + fc


def test_hand_arithmetic_matches_published_counts():
    # torchvision's resnet50 (also v1.5) and the TPU reference: 25,557,032.
    assert resnet50_trainable() == 25_557_032
    # Keras' InceptionV3 application (include_top, 1000 classes, BN scale=False,
    # no aux head): "Total params: 23,851,784; Trainable: 23,817,352" - the total
    # includes the non-trainable BN moving mean and variance (34,432 = 2 x 17,216).
    assert inception_counts(INCEPTION_UNITS, 2048) == (23_817_352, 23_851_784)
    aux_trainable, aux_total = inception_counts(AUX_UNITS, 768)
    assert (aux_trainable, aux_total) == (3_325_800, 3_327_592)


# ---- ResNet-50 -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet50():
    return models.build("resnet_50", (224, 224, 3), 1000, seed=0)


def test_resnet50_parameter_count(resnet50):
    assert trainable_count(resnet50) == resnet50_trainable() == 25_557_032


def test_resnet50_is_v15_with_fixed_padding(resnet50):
    block = "stage2_block1"
    assert resnet50.get_layer(f"{block}_conv_a").strides == (1, 1)
    assert resnet50.get_layer(f"{block}_conv_b").strides == (2, 2)   # v1.5: on the 3x3
    assert resnet50.get_layer(f"{block}_shortcut_conv").strides == (2, 2)
    assert resnet50.get_layer(f"{block}_conv_b_pad").padding == ((1, 1), (1, 1))
    assert resnet50.get_layer("stem_conv_pad").padding == ((3, 3), (3, 3))
    assert resnet50.get_layer("stem_pool").output.shape[1:] == (56, 56, 64)
    assert resnet50.get_layer("stage4_block3_relu").output.shape[1:] == (7, 7, 2048)
    assert all(layer.bias is None for layer in resnet50.layers
               if isinstance(layer, keras.layers.Conv2D))


def test_resnet50_reference_initialisation(resnet50):
    bns = [l for l in resnet50.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert all((l.momentum, l.epsilon) == (0.9, 1e-5) for l in bns)
    last = [l for l in bns if l.name.endswith("_bn_c")]
    assert len(last) == 3 + 4 + 6 + 3
    assert all(np.all(l.gamma.numpy() == 0) for l in last)
    assert all(np.all(l.gamma.numpy() == 1) for l in bns if l not in last)
    # Convolutions: fan-in truncated normal, scale 1.
    kernel = resnet50.get_layer("stage4_block1_conv_b").kernel.numpy()   # fan_in 9 * 512
    std = np.sqrt(1.0 / (9 * 512))
    assert kernel.std() == pytest.approx(std, rel=0.02)
    assert np.abs(kernel).max() <= 2 * std / TRUNCATION + 1e-7
    # Head: N(0, 0.01), untruncated, zero bias.
    head = resnet50.get_layer(models.OUTPUT_LAYER)
    assert head.kernel.numpy().std() == pytest.approx(0.01, rel=0.01)
    assert np.abs(head.kernel.numpy()).max() > 4 * 0.01
    assert not head.bias.numpy().any()


def test_cifar_resnets_keep_their_defaults():
    model = models.build("resnet_20", (32, 32, 3), 10)
    assert np.all(model.get_layer("stage1_block1_bn_b").gamma.numpy() == 1)
    assert models.options_of("resnet_20")["kernel_initializer"] == "kaiming_normal"
    assert models.options_of("resnet_50")["kernel_initializer"] == "lecun_normal"


# ---- Inception-v3 ----------------------------------------------------------------------

def test_inception_v3_parameter_counts_without_aux_head():
    """Total 23,851,784 = trainable 23,817,352 (conv kernels, BN beta - there is no
    BN gamma - and the 2048x1000 classifier with bias) + 34,432 non-trainable BN
    moving means and variances: the number Keras' InceptionV3 reports."""
    model = models.build("inception_v3", (299, 299, 3), 1000, aux_head=False)
    trainable, total = inception_counts(INCEPTION_UNITS, 2048)
    assert (trainable_count(model), total_count(model)) == (trainable, total)
    assert total == 23_851_784
    assert model.output.shape == (None, 1000)


def test_inception_v3_with_aux_head():
    """With the auxiliary head (the default): 27,179,376 in total, 27,143,152
    trainable; two float32 outputs, the main one from the layer 'output'."""
    model = models.build("inception_v3", (299, 299, 3), 1000)
    trainable, total = (a + b for a, b in zip(inception_counts(INCEPTION_UNITS, 2048),
                                              inception_counts(AUX_UNITS, 768)))
    assert (trainable_count(model), total_count(model)) == (trainable, total)
    assert (trainable, total) == (27_143_152, 27_179_376)
    assert model.output_names == [models.OUTPUT_LAYER, "aux_output"]
    assert [t.shape for t in model.outputs] == [(None, 1000), (None, 1000)]
    # Reference settings: BN decay 0.996, epsilon 1e-3, no gamma; aux-head initialisers.
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(bns) == len(INCEPTION_UNITS) + len(AUX_UNITS)
    assert all((l.momentum, l.epsilon, l.scale) == (0.996, 1e-3, False) for l in bns)
    aux_conv = model.get_layer("aux_2_conv").kernel.numpy()
    assert aux_conv.std() == pytest.approx(0.01 * TRUNCATION, rel=0.02)
    assert np.abs(aux_conv).max() <= 0.02
    aux_fc = model.get_layer("aux_output").kernel.numpy()
    assert aux_fc.std() == pytest.approx(0.001 * TRUNCATION, rel=0.02)
    # slim's variance_scaling_initializer(): truncated, std parameter sqrt(1.3 * 2 / fan_in).
    kernel = model.get_layer("mixed_7c_branch2_2_conv").kernel.numpy()   # fan_in 9 * 448
    param = np.sqrt(2.6 / (9 * 448))
    assert kernel.std() == pytest.approx(param * TRUNCATION, rel=0.02)
    assert np.abs(kernel).max() <= 2 * param + 1e-7


def test_inception_v3_rejects_small_images():
    with pytest.raises(ConfigError, match="at least 75x75 .107x107 with aux_head=True"):
        models.build("inception_v3", (74, 74, 3), 10, aux_head=False)
    with pytest.raises(ConfigError, match="at least 75x75 .107x107 with aux_head=True"):
        models.build("inception_v3", (299, 106, 3), 10)
    with pytest.raises(ConfigError, match="dropout_rate"):
        models.build("inception_v3", (299, 299, 3), 10, dropout_rate=1.0)


# ---- Both: precision, masking, one distributed training step ---------------------------

def test_float32_logits_under_mixed_bfloat16():
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        resnet = models.build("resnet_50", (32, 32, 3), 10)
        assert resnet.get_layer("stage1_block1_conv_b").compute_dtype == "bfloat16"
        assert resnet(np.zeros((1, 32, 32, 3), np.float32)).dtype == tf.float32
        inception = models.build("inception_v3", (107, 107, 3), 10)
        assert inception.get_layer("mixed_6e_branch0_1_conv").compute_dtype == "bfloat16"
        assert [t.dtype for t in inception.outputs] == [tf.float32, tf.float32]
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _npz_dataset(tmp_path, side, num_classes=3):
    rng = np.random.default_rng(0)
    path = tmp_path / "images.npz"
    np.savez(path, x_train=rng.integers(0, 256, (8, side, side, 3), dtype=np.uint8),
             y_train=np.arange(8) % num_classes,
             x_test=rng.integers(0, 256, (4, side, side, 3), dtype=np.uint8),
             y_test=np.arange(4) % num_classes)
    return data.build(DatasetHparams(name="npz", data_dir=str(path), batch_size=4, augment=False))


@pytest.mark.parametrize("name,side,must_change", [
    # Zero-initialised last gammas block the gradient into the residual
    # branches at the first step; the stem, shortcuts, head and those gammas move.
    ("resnet_50", 32, ["stem_conv/kernel", "stage3_block1_shortcut_conv/kernel",
                       "output/kernel", "stage2_block2_bn_c/gamma"]),
    # The auxiliary head's weights move only through the auxiliary loss.
    ("inception_v3", 107, ["conv_1a_conv/kernel", "mixed_7c_branch2_2_conv/kernel",
                           "output/kernel", "aux_2_conv/kernel", "aux_output/kernel"]),
])
def test_wrap_and_one_mirrored_training_step(tmp_path, name, side, must_change):
    strategy = two_cpu_strategy()
    dataset = _npz_dataset(tmp_path, side)
    with strategy.scope():
        plain = models.build(name, (side, side, 3), dataset.info.num_classes, seed=1)
        model = masking.wrap(plain)
    x = tf.random.stateless_uniform((2, side, side, 3), seed=(3, 4))
    expected, got = plain(x, training=False), model(x, training=False)
    assert isinstance(got, list) == (name == "inception_v3")
    for e, g in zip(tf.nest.flatten(expected), tf.nest.flatten(got)):
        # Two models (the wrapper multiplies by the mask): equal up to float32 rounding.
        np.testing.assert_allclose(e.numpy(), g.numpy(), rtol=1e-5, atol=1e-5)

    hp = TrainingHparams(optimizer="sgd", lr=0.01, training_steps="1it", eval_every="1it")
    trainer = Trainer(strategy, model, dataset, hp, data_seed=0, out_dir=str(tmp_path / "run"))

    def values():
        named = {f"{l.name}/gamma": l.gamma for l in model.layers
                 if isinstance(l, keras.layers.BatchNormalization) and l.scale}
        named.update(masking.prunable_variables(model))
        return {n: v.numpy().copy() for n, v in named.items()}
    before = values()
    trainer.make_train_fn(0)(1)
    after = values()
    assert np.isfinite(float(trainer.train_loss.result()))
    for weight in must_change:
        assert not np.array_equal(before[weight], after[weight]), weight


def test_auxiliary_loss_is_weighted_by_aux_loss_weight(tmp_path):
    """One SGD step of a two-output model: the aux classifier moves by
    aux_loss_weight times its cross-entropy gradient, the main one by its own
    gradient only, and the train metrics are the main classifier's."""
    dataset = data.build(DatasetHparams(name="synthetic", batch_size=32))
    strategy = tf.distribute.get_strategy()

    def step(aux_loss_weight):
        inputs = keras.Input((8, 8, 1))
        x = keras.layers.Flatten()(inputs)
        outputs = [keras.layers.Dense(10, name=name, kernel_initializer=keras.initializers
                                      .RandomNormal(seed=seed))(x)
                   for seed, name in enumerate(["output", "aux_output"])]
        model = masking.wrap(keras.Model(inputs, outputs))
        start = {n: v.numpy().copy() for n, v in masking.prunable_variables(model).items()}
        hp = TrainingHparams(lr=0.1, training_steps="1it", eval_every="1it",
                             aux_loss_weight=aux_loss_weight)
        trainer = Trainer(strategy, model, dataset, hp, 0, str(tmp_path / str(aux_loss_weight)))
        trainer.make_train_fn(0)(1)
        deltas = {n: v.numpy() - start[n] for n, v in masking.prunable_variables(model).items()}
        return deltas, float(trainer.train_loss.result())

    (full, loss_full), (weighted, loss_weighted) = step(1.0), step(0.4)
    np.testing.assert_allclose(weighted["aux_output/kernel"], 0.4 * full["aux_output/kernel"],
                               rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(weighted["output/kernel"], full["output/kernel"], rtol=1e-6)
    assert np.abs(full["aux_output/kernel"]).max() > 0
    assert loss_weighted == pytest.approx(loss_full, rel=1e-6)


def test_evaluation_of_a_two_output_model_uses_the_main_classifier(tmp_path):
    """Trainer.evaluate on a model with an auxiliary head: loss and accuracy of
    the main logits only, checked against NumPy on the model's own outputs."""
    dataset = data.build(DatasetHparams(name="synthetic", batch_size=32))
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    outputs = [keras.layers.Dense(10, name=name, kernel_initializer=keras.initializers
                                  .RandomNormal(stddev=0.5, seed=seed))(x)
               for seed, name in enumerate(["output", "aux_output"])]
    model = masking.wrap(keras.Model(inputs, outputs))
    trainer = Trainer(tf.distribute.get_strategy(), model, dataset,
                      TrainingHparams(training_steps="1it", eval_every="1it"), 0,
                      str(tmp_path / "run"))
    result = trainer.evaluate("test")
    images, labels = zip(*dataset.eval_dataset("test"))
    images, labels = np.concatenate(images), np.concatenate(labels)
    main, aux = (o.numpy().astype(np.float64) for o in model(images, training=False))
    log_p = main - main.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    assert result["accuracy"] == pytest.approx(np.mean(main.argmax(1) == labels))
    assert result["loss"] == pytest.approx(-log_p[np.arange(len(labels)), labels].mean(), rel=1e-5)
    assert np.mean(aux.argmax(1) == labels) != pytest.approx(result["accuracy"])
