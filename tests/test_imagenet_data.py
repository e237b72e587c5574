"""Tests of the streamed ImageNet input (tflottery/data/imagenet.py).

Most tests read a tiny but real tfds 'imagenet2012': the tfds builder itself
prepares it from small ILSVRC2012-style tars written here (30 training
images of 3 synsets, 22 validation images, 4 record files per split), so
split slicing, file shuffling and the split sizes are tfds's own.
tfds.testing.mock_data cannot check sharding: its fake reader ignores split
slices.  Expected values come from outside the pipeline: labels read
straight from tfds, crops recomputed by hand, accuracies in NumPy.
"""
from conftest import two_cpu_strategy  # noqa: E402
import collections
import dataclasses
import io
import socket
import tarfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tflottery import analysis, data
from tflottery.data import imagenet, registry, sources
from tflottery.data import imagenet_preprocessing as prep
from tflottery.errors import ConfigError, DataNotAvailableError
from tflottery.hparams import DatasetHparams, TrainingHparams
from tflottery.keras_compat import keras
from tflottery.training.loop import Trainer

SIZE = 32          # model input side in these tests
NUM_TRAIN, NUM_VAL = 30, 22
SYNSETS = ("n01440764", "n01443537", "n01484850")  # labels 0, 1, 2
MEAN, STD = np.array(registry.IMAGENET_MEAN), np.array(registry.IMAGENET_STD)


def _tar_add(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A prepared tfds imagenet2012 of random JPEGs of random sizes."""
    root = tmp_path_factory.mktemp("imagenet")
    manual = root / "manual"
    manual.mkdir()
    rng = np.random.default_rng(0)

    def jpeg():
        shape = (int(rng.integers(20, 60)), int(rng.integers(20, 60)), 3)
        return tf.io.encode_jpeg(rng.integers(0, 256, shape, dtype=np.uint8)).numpy()

    with tarfile.open(manual / "ILSVRC2012_img_train.tar", "w") as outer:
        for synset in SYNSETS:
            inner_bytes = io.BytesIO()
            with tarfile.open(fileobj=inner_bytes, mode="w") as inner:
                for i in range(NUM_TRAIN // len(SYNSETS)):
                    _tar_add(inner, f"{synset}_{i}.JPEG", jpeg())
            _tar_add(outer, f"{synset}.tar", inner_bytes.getvalue())
    with tarfile.open(manual / "ILSVRC2012_img_val.tar", "w") as tar:
        for i in range(1, NUM_VAL + 1):
            _tar_add(tar, f"ILSVRC2012_val_{i:08d}.JPEG", jpeg())
    builder = tfds.builder("imagenet2012", data_dir=str(root / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual), num_shards=4))
    return str(root / "tfds")


def build(data_dir, infeed_dtype="float32", **kwargs):
    return data.build(DatasetHparams(**{"name": "imagenet2012", "data_dir": data_dir, "image_size": SIZE,
                                        "batch_size": 6, **kwargs}), infeed_dtype=infeed_dtype)


def split_labels(data_dir, split):
    ds = tfds.builder("imagenet2012", data_dir=data_dir).as_dataset(
        split=split, decoders={"image": tfds.decode.SkipDecoding()})
    return sorted(int(ex["label"]) for ex in ds)


def batches(ds, n):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds.take(n)])
    return np.stack(xs), np.stack(ys)


def context(pipelines, pipeline, replicas):
    return tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=pipeline,
                                      num_replicas_in_sync=replicas)


def real_examples(ds, split, ctx=None):
    """(images, labels) of the non-padding examples of one eval pass."""
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds.eval_dataset(split, ctx)])
    x, y = np.concatenate(xs), np.concatenate(ys)
    return x[y >= 0], y[y >= 0]


def keys(images):
    return [x.tobytes() for x in images]


# --- mock_data: shapes, dtypes, ranges ---------------------------------------------------------

def test_mock_data_batches(monkeypatch):
    # mock_data replaces the reader (random JPEGs of 5..50 pixels a side); our offline probe must not veto it.
    monkeypatch.setattr(sources, "_check_network", lambda: None)
    with tfds.testing.mock_data(num_examples=24):
        ds = data.build(DatasetHparams(name="imagenet2012", batch_size=8, image_size=64))
        assert ds.info == data.DatasetInfo("imagenet2012", (64, 64, 3), 1000, 24, 24, 0)
        x, y = batches(ds.train_dataset(0), 4)
        eval_sizes = [(tuple(x.shape), list(y.numpy() < 0)) for x, y in ds.eval_dataset("test", batch_size=10)]
    assert x.shape == (4, 8, 64, 64, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert 0 <= y.min() and y.max() <= 999
    lo, hi = (0 - MEAN) / STD, (1 - MEAN) / STD  # normalised black and white, per channel
    assert (x >= lo - 1e-5).all() and (x <= hi + 1e-5).all()
    assert x.std() > 0.3  # real pixels, not padding
    assert [s for s, _ in eval_sizes] == [(10, 64, 64, 3)] * 3
    assert sum(sum(p) for _, p in eval_sizes) == 6 and eval_sizes[-1][1] == [False] * 4 + [True] * 6


# --- training order -----------------------------------------------------------------------------

def test_info_from_the_builder(data_dir):
    ds = build(data_dir)
    assert ds.info == data.DatasetInfo("imagenet2012", (SIZE, SIZE, 3), 1000, NUM_TRAIN, NUM_VAL, 0)
    assert ds.iterations_per_epoch == 5
    assert build(data_dir, image_size=None).info.input_shape == (224, 224, 3)


def test_epochs_are_seeded_permutations(data_dir):
    ds = build(data_dir, augment=False)  # unaugmented: images identify the records
    train_x, _ = real_examples(ds, "train")
    ids = {k: i for i, k in enumerate(keys(train_x))}
    assert len(ids) == NUM_TRAIN
    x, y = batches(ds.train_dataset(1), 15)  # 3 epochs of 5 batches of 6: all 30 records each
    order = np.array([ids[k] for k in keys(x.reshape(-1, SIZE, SIZE, 3))]).reshape(3, NUM_TRAIN)
    for epoch in order:
        assert sorted(epoch) == list(range(NUM_TRAIN))
    assert len({tuple(e) for e in order}) == 3  # a new order every epoch
    x2, y2 = batches(ds.train_dataset(1), 15)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    tf.random.set_seed(123)  # a global TF seed must not change the stream
    try:
        np.testing.assert_array_equal(batches(ds.train_dataset(1), 5)[0], x[:5])
    finally:
        tf.random.set_seed(None)
    x3, _ = batches(ds.train_dataset(2), 5)
    assert [ids[k] for k in keys(x3.reshape(-1, SIZE, SIZE, 3))] != list(order[0])
    assert sorted(y[:5].reshape(-1)) == split_labels(data_dir, "train")


def test_augmented_stream_is_seeded_and_resumable(data_dir):
    ds = build(data_dir)
    full_x, full_y = batches(ds.train_dataset(5), 13)  # crosses two epoch boundaries
    again_x, _ = batches(ds.train_dataset(5), 13)
    np.testing.assert_array_equal(full_x, again_x)
    other_x, _ = batches(ds.train_dataset(6), 13)
    assert not np.array_equal(full_x, other_x)
    for start in (3, 5, 7):
        x, y = batches(ds.train_dataset(5, start_step=start), 13 - start)
        np.testing.assert_array_equal(x, full_x[start:])
        np.testing.assert_array_equal(y, full_y[start:])
    with pytest.raises(ConfigError, match="start_step"):
        ds.train_dataset(5, start_step=-1)


def test_two_pipelines_read_disjoint_halves(data_dir):
    ds = build(data_dir, augment=False)
    halves = []
    for p in range(2):
        ctx = context(2, p, 2)
        eval_x, _ = real_examples(ds, "train", ctx)  # the records of this pipeline's range
        x, y = batches(ds.train_dataset(3, ctx), 10)  # 2 epochs of 5 steps x 3 examples
        assert x.shape == (10, 3, SIZE, SIZE, 3) and y.shape == (10, 3)
        mine = set(keys(eval_x))
        assert len(mine) == NUM_TRAIN // 2
        for epoch in x.reshape(2, -1, SIZE, SIZE, 3):
            assert sorted(keys(epoch)) == sorted(mine)  # each epoch: exactly its own 15 records
        halves.append(mine)
    assert not halves[0] & halves[1]
    assert halves[0] | halves[1] == set(keys(real_examples(ds, "train")[0]))


# --- evaluation -----------------------------------------------------------------------------------

@pytest.mark.parametrize("pipelines,replicas,batch_size,per_pipeline_batches", [
    (1, 1, 8, 3),    # 22 = 8 + 8 + 6 real, 2 padding
    (2, 2, 8, 3),    # 11 per pipeline in batches of 4
    (1, 2, 10, 6),   # 22 in batches of 5: 5 batches, rounded up to whole steps of 2 replicas
    (2, 4, 24, 2),   # 11 per pipeline in batches of 6
])
def test_eval_sees_every_example_once(data_dir, pipelines, replicas, batch_size, per_pipeline_batches):
    ds = build(data_dir, batch_size=batch_size)
    xs, ys = [], []
    for p in range(pipelines):
        out = [(x.numpy(), y.numpy()) for x, y in ds.eval_dataset("test", context(pipelines, p, replicas))]
        assert len(out) == per_pipeline_batches
        assert all(x.shape == (batch_size // replicas, SIZE, SIZE, 3) for x, _ in out)
        xs += [x for x, _ in out]
        ys += [y for _, y in out]
    x, y = np.concatenate(xs), np.concatenate(ys)
    padding = y < 0
    assert (y[padding] == -1).all() and (x[padding] == 0).all()
    assert padding.sum() == len(y) - NUM_VAL
    assert sorted(y[~padding]) == split_labels(data_dir, "validation")
    assert len(set(keys(x[~padding]))) == NUM_VAL  # no record twice


def test_center_crop_geometry():
    h, w = 48, 80
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx * 3, yy * 5, xx + yy], axis=-1).astype(np.uint8)  # a known gradient
    # Full-resolution chroma: with 4:2:0 chroma, decode_and_crop_jpeg's upsampling at
    # the crop edge differs from cropping a full decode by a few levels.
    encoded = tf.io.encode_jpeg(image, quality=100, chroma_downsampling=False)
    side = int(np.float32(SIZE / (SIZE + 32)) * np.float32(min(h, w)))   # 24
    top, left = (h - side + 1) // 2, (w - side + 1) // 2                 # 12, 28
    assert (side, top, left) == (24, 12, 28)
    by_hand = tf.image.resize(tf.image.crop_to_bounding_box(tf.io.decode_jpeg(encoded), top, left, side, side),
                              [SIZE, SIZE], method="bicubic")
    by_hand = tf.clip_by_value(by_hand, 0.0, 255.0).numpy()
    np.testing.assert_allclose(prep.eval_image(encoded, SIZE).numpy(), by_hand, atol=1e-3)
    # The reference size: 0.875 of the shorter side of a 500 x 375 image, centred.
    np.testing.assert_array_equal(prep.center_crop_window(tf.constant([500, 375, 3]), 224).numpy(),
                                  [86, 24, 328, 328])


def test_training_crops_are_inception_style():
    # Red is the column and green the row, so an output's colour range reveals its crop box.
    h, w = 200, 256
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx, yy, np.full_like(xx, 128)], axis=-1).astype(np.uint8)
    encoded = tf.io.encode_jpeg(image, quality=100)
    crop = tf.function(lambda s: prep.train_image(encoded, s, SIZE))
    flips, areas = set(), []
    for i in range(40):
        out = crop(tf.constant([i, 7], tf.int64)).numpy()
        red = out[SIZE // 2, :, 0]
        flips.add(bool(red[0] > red[-1]))
        # Samples span the crop minus one output pixel: box = span / (1 - 1/SIZE).
        box_w = (out[..., 0].max() - out[..., 0].min()) / (1 - 1 / SIZE)
        box_h = (out[..., 1].max() - out[..., 1].min()) / (1 - 1 / SIZE)
        areas.append(box_w * box_h / (h * w))
        assert 0.75 - 0.08 <= box_w / box_h <= 4 / 3 + 0.08
    assert min(areas) >= 0.08 - 0.02 and max(areas) <= 1.02 and max(areas) - min(areas) > 0.3
    assert flips == {True, False}
    again = crop(tf.constant([3, 7], tf.int64)).numpy()
    np.testing.assert_array_equal(again, crop(tf.constant([3, 7], tf.int64)).numpy())


def test_padding_is_ignored_by_evaluation(data_dir, tmp_path):
    strategy = two_cpu_strategy()  # 1 pipeline, 2 replicas: per-replica batch 4, 3 steps, 2 padding examples
    ds = build(data_dir, batch_size=8)
    x, y = real_examples(ds, "test")
    with strategy.scope():
        model, copy_a, copy_b = (keras.Sequential([keras.layers.GlobalAveragePooling2D(input_shape=(SIZE, SIZE, 3)),
                                                   keras.layers.Dense(1000)]) for _ in range(3))
        kernel, bias = model.layers[1].get_weights()
        bias[y[0]] = 2.0  # the first label is predicted often: a non-zero accuracy
        for m in (model, copy_a, copy_b):
            m.layers[1].set_weights([np.random.default_rng(0).normal(0, 1, kernel.shape), bias])
    logits = model(x).numpy().astype(np.float64)
    log_p = logits - logits.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    want_loss, want_acc = -log_p[np.arange(len(y)), y].mean(), (logits.argmax(1) == y).mean()
    assert 0 < want_acc < 1

    hp = TrainingHparams(training_steps="1it", eval_every="1it")
    result = Trainer(strategy, model, ds, hp, data_seed=0, out_dir=str(tmp_path), writable=False).evaluate("test")
    assert result["accuracy"] == pytest.approx(want_acc, abs=1e-6)
    assert result["loss"] == pytest.approx(want_loss, rel=1e-5)
    mixed = analysis.Interpolator(strategy, model, copy_a, copy_b, ds).evaluate_current("test")
    assert mixed["accuracy"] == pytest.approx(want_acc, abs=1e-6)
    assert mixed["loss"] == pytest.approx(want_loss, rel=1e-5)
    preds, losses = analysis.predictions_and_losses(strategy, model, ds, "test")
    np.testing.assert_array_equal(preds, logits.argmax(1))
    np.testing.assert_allclose(losses, -log_p[np.arange(len(y)), y], rtol=1e-5)


# --- subsets and errors ---------------------------------------------------------------------------

def test_holdout_and_subset(data_dir):
    ds = build(data_dir, holdout_fraction=0.2, num_train_examples=12, augment=False)
    assert (ds.info.num_train, ds.info.num_holdout, ds.iterations_per_epoch) == (12, 6, 2)
    held, trained = (set(keys(real_examples(ds, s)[0])) for s in ("holdout", "train"))
    everything = set(keys(real_examples(build(data_dir), "train")[0]))
    assert len(held) == 6 and len(trained) == 12 and not held & trained and held | trained <= everything
    streamed = set(keys(batches(ds.train_dataset(0), 4)[0].reshape(-1, SIZE, SIZE, 3)))
    assert streamed == trained


@pytest.mark.parametrize("kwargs", [
    dict(), dict(holdout_fraction=0.2), dict(holdout_fraction=0.2, num_train_examples=12),
    dict(num_train_examples=7, batch_size=4), dict(image_size=None, holdout_fraction=0.1)])
def test_the_dry_run_plan_is_the_build(data_dir, kwargs, monkeypatch):
    """data.plan (a dry run: the registry's sizes, no data read) gives the info and
    iterations per epoch that data.build gives from the prepared records, given
    sizes that are these records' counts."""
    source = registry.DATASETS.get("imagenet2012")
    monkeypatch.setitem(registry.DATASETS._items, "imagenet2012", dataclasses.replace(
        source, sizes=registry.Sizes(NUM_TRAIN, NUM_VAL, None)))
    hp = DatasetHparams(**{"name": "imagenet2012", "data_dir": data_dir, "image_size": SIZE,
                           "batch_size": 6, **kwargs})
    planned, built = data.plan(hp), data.build(hp)
    assert (planned.info, planned.iterations_per_epoch, planned.notes) == \
        (built.info, built.iterations_per_epoch, [])


def test_inception_normalization_scales_pixels_to_minus_one_one(data_dir):
    """The same center crops as the default mean/std normalisation, mapped
    back to [0, 1] pixels by hand and then to [-1, 1]."""
    from tflottery.data import registry
    default, _ = real_examples(build(data_dir), "test")
    inception, labels = real_examples(build(data_dir, normalization="inception"), "test")
    pixels = default * np.asarray(registry.IMAGENET_STD) + np.asarray(registry.IMAGENET_MEAN)
    np.testing.assert_allclose(inception, 2.0 * pixels - 1.0, atol=1e-5)
    assert inception.min() >= -1.0 and inception.max() <= 1.0 and len(labels) == NUM_VAL
    same, _ = real_examples(build(data_dir, normalization="mean_std"), "test")
    np.testing.assert_array_equal(same, default)


def test_bfloat16_infeed_is_the_float32_stream_rounded(data_dir):
    """Under mixed_bfloat16 the images reach the device as bfloat16: the same
    crops, rounded once, padding included; labels unchanged."""
    full, low = build(data_dir), build(data_dir, infeed_dtype="bfloat16")
    (xa, ya), (xb, yb) = batches(full.train_dataset(3), 3), batches(low.train_dataset(3), 3)
    assert tf.as_dtype(xb.dtype) == tf.bfloat16
    np.testing.assert_array_equal(xb, tf.cast(xa, tf.bfloat16).numpy())
    np.testing.assert_array_equal(ya, yb)
    ev_full = list(full.eval_dataset("test", batch_size=4))
    ev_low = list(low.eval_dataset("test", batch_size=4))
    assert len(ev_full) == len(ev_low)
    for (xa, ya), (xb, yb) in zip(ev_full, ev_low):
        assert xb.dtype == tf.bfloat16
        np.testing.assert_array_equal(xb.numpy(), tf.cast(xa, tf.bfloat16).numpy())
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())
    with pytest.raises(ConfigError, match="infeed_dtype"):
        build(data_dir, infeed_dtype="float16")


@pytest.mark.parametrize("kwargs,match", [
    (dict(image_size=0), "image_size"),
    (dict(normalization="imagenet"), "unknown normalization 'imagenet'"),
    (dict(num_train_examples=31), "num_train_examples"),
    (dict(batch_size=31), "not even one batch"),
])
def test_config_errors(data_dir, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build(data_dir, **kwargs)


def test_usage_errors(data_dir):
    ds = build(data_dir, batch_size=8)
    with pytest.raises(ConfigError, match="not divisible by the 3 replicas"):
        ds.train_dataset(0, context(1, 0, 3))
    with pytest.raises(ConfigError, match="not divisible"):
        ds.eval_dataset("test", context(1, 0, 3))
    with pytest.raises(ConfigError, match="holdout_fraction"):
        ds.eval_dataset("holdout")
    with pytest.raises(ConfigError, match="unknown split"):
        ds.eval_dataset("validation")
    with pytest.raises(ConfigError, match="image_size applies only"):
        data.build(DatasetHparams(name="synthetic", image_size=32))
    with pytest.raises(ConfigError, match="normalization applies only"):
        data.build(DatasetHparams(name="synthetic", normalization="inception"))


@pytest.mark.parametrize("where", ["local", "remote"])
def test_unavailable_data_is_one_line(where, tmp_path, monkeypatch):
    if where == "local":
        monkeypatch.setenv("TFLOTTERY_TFDS_DOWNLOAD", "0")
        data_dir = str(tmp_path)
    else:  # an unreachable gs:// bucket: the network probe fails before TF's GCS client retries
        def offline():
            raise socket.gaierror("no network")
        monkeypatch.setattr(sources, "_check_network", offline)
        data_dir = "gs://tflottery-no-such-bucket/tfds"
    with pytest.raises(DataNotAvailableError) as err:
        data.build(DatasetHparams(name="imagenet2012", data_dir=data_dir))
    message = str(err.value)
    assert "\n" not in message and "'imagenet2012'" in message and data_dir in message
    assert "ILSVRC2012_img_train.tar" in message


def test_registered():
    assert "imagenet2012" in data.names()
    assert collections.Counter(imagenet.Records("train", 0, 10).shard(3, p).spec for p in range(3)) == \
        collections.Counter(["train[0:3]", "train[3:6]", "train[6:10]"])
