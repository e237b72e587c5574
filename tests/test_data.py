"""Tests of tflottery.data: order, resumption, sharding, augmentation, sources.

Expected values are computed independently of the pipeline where possible:
examples are identified by their pixels (looked up in the unaugmented
training split), augmentations are re-done in NumPy, and MNIST labels are
read straight from the gzip file.
"""
from conftest import two_cpu_strategy  # noqa: E402
import gzip
import os
import socket
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tflottery import data
from tflottery.data import registry
from tflottery.data.pipeline import PADDING_LABEL
from tflottery.errors import ConfigError, DataNotAvailableError
from tflottery.hparams import DatasetHparams

SEED = 7


def batches(ds, n):
    """The first n batches of a tf.data.Dataset as two NumPy arrays [n, b, ...]."""
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds.take(n)])
    return np.stack(xs), np.stack(ys)


def eval_arrays(ds, split):
    """The real (not padding) examples of one unsharded evaluation pass."""
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds.eval_dataset(split)])
    x, y = np.concatenate(xs), np.concatenate(ys)
    return x[y >= 0], y[y >= 0]


def example_ids(ds, images):
    """Index in the unaugmented training split of each image in `images` [..., H, W, C]."""
    train_x, _ = eval_arrays(ds, "train")
    lookup = {x.tobytes(): i for i, x in enumerate(train_x)}
    assert len(lookup) == len(train_x), "training images must be distinct to identify them"
    flat = images.reshape((-1,) + images.shape[-3:])
    return np.array([lookup[x.tobytes()] for x in flat]).reshape(images.shape[:-3])


@pytest.fixture(scope="module")
def synthetic():
    # 256 examples, batch 48: 5 batches per epoch, 16 examples dropped per epoch.
    return data.build(DatasetHparams(name="synthetic", batch_size=48))


@pytest.fixture(scope="module")
def mock_cifar():
    # mock_data replaces the download; our offline probe must not veto it.
    from tflottery.data import sources
    real_probe = sources._check_network
    sources._check_network = lambda: None
    try:
        with tfds.testing.mock_data(num_examples=64):
            return data.build(DatasetHparams(name="cifar10", batch_size=8, augment=True))
    finally:
        sources._check_network = real_probe


# --- data order -----------------------------------------------------------------------------

def test_epochs_are_seeded_permutations(synthetic):
    ds, b, ipe = synthetic, synthetic.batch_size, synthetic.iterations_per_epoch
    assert (ipe, ds.info.num_train) == (5, 256)
    x, y = batches(ds.train_dataset(SEED), 3 * ipe)
    assert x.dtype == np.float32 and y.dtype == np.int32 and x.shape == (15, 48, 8, 8, 1)
    ids = example_ids(ds, x).reshape(3, ipe * b)
    for epoch in ids:
        assert len(set(epoch.tolist())) == ipe * b  # each example at most once, exactly ipe*b of them
    assert not np.array_equal(ids[0], ids[1]) and not np.array_equal(ids[1], ids[2])
    _, train_y = eval_arrays(ds, "train")
    np.testing.assert_array_equal(y.reshape(3, -1), train_y[ids])

    x2, y2 = batches(ds.train_dataset(SEED), 3 * ipe)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = batches(ds.train_dataset(SEED + 1), ipe)
    assert not np.array_equal(example_ids(ds, x3).reshape(-1), ids[0])


def test_epoch_order_is_the_documented_stateless_shuffle(synthetic):
    ds = synthetic
    x, _ = batches(ds.train_dataset(SEED, start_step=2 * ds.iterations_per_epoch), ds.iterations_per_epoch)
    perm = tf.random.experimental.stateless_shuffle(
        tf.range(ds.info.num_train, dtype=tf.int64), seed=[SEED, 2]).numpy()
    np.testing.assert_array_equal(example_ids(ds, x).reshape(-1), perm[:ds.iterations_per_epoch * ds.batch_size])


@pytest.mark.parametrize("name", ["synthetic", "cifar"])
def test_start_step_equals_skipping(name, synthetic, mock_cifar):
    ds = synthetic if name == "synthetic" else mock_cifar  # cifar: augmented, so augmentation resumes too
    total = 2 * ds.iterations_per_epoch + 3
    full_x, full_y = batches(ds.train_dataset(SEED), total)
    for start in (1, ds.iterations_per_epoch - 1, ds.iterations_per_epoch, ds.iterations_per_epoch + 2):
        x, y = batches(ds.train_dataset(SEED, start_step=start), total - start)
        np.testing.assert_array_equal(x, full_x[start:])
        np.testing.assert_array_equal(y, full_y[start:])


@pytest.mark.parametrize("name", ["synthetic", "cifar"])
def test_the_same_stream_is_built_once_and_replays_whole(name, synthetic, mock_cifar):
    """Every IMP level asks for the stream (seed, step 0) again: it gets the dataset already
    built, and a new pass over it is the stream from its start, augmentation included."""
    ds = synthetic if name == "synthetic" else mock_cifar
    total = ds.iterations_per_epoch + 2
    first = ds.train_dataset(SEED)
    x1, y1 = batches(first, total)
    again = ds.train_dataset(SEED)
    assert again is first
    x2, y2 = batches(again, total)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    other = ds.train_dataset(SEED + 1)
    assert other is not first
    assert not np.array_equal(batches(other, 1)[1], y1[:1])
    assert ds.train_dataset(SEED, start_step=1) is not first
    # The stream of a dataset built afresh from the same seed: the first one, replayed.
    fresh = ds.train_dataset(SEED, start_step=0)
    x3, _ = batches(fresh, total)
    np.testing.assert_array_equal(x3, x1)


# --- augmentation -----------------------------------------------------------------------------

def raw_cifar(x):
    """Undo the CIFAR normalisation: back to integer pixel values."""
    mean, std = np.array(registry.CIFAR10_MEAN), np.array(registry.CIFAR10_STD)
    return np.round((x * std + mean) * 255.0).astype(np.int64)


def test_cifar_augmentation_is_a_pad4_crop_flip(mock_cifar):
    ds = mock_cifar
    x, _ = batches(ds.train_dataset(SEED), 2)
    out = raw_cifar(x.reshape((-1, 32, 32, 3)))
    originals = raw_cifar(eval_arrays(ds, "train")[0])
    padded = np.pad(originals, [(0, 0), (4, 4), (4, 4), (0, 0)])  # zero (black) padding
    found = [None] * len(out)
    for dy in range(9):
        for dx in range(9):
            crop = padded[:, dy:dy + 32, dx:dx + 32]
            for flip in (False, True):
                candidates = crop[:, :, ::-1] if flip else crop
                for i, image in enumerate(out):
                    if found[i] is None and (candidates == image).all(axis=(1, 2, 3)).any():
                        found[i] = (dy, dx, flip)
    assert all(f is not None for f in found), found
    assert len(set(found)) > 1  # random, not one fixed transform

    again, _ = batches(ds.train_dataset(SEED), 2)
    np.testing.assert_array_equal(x, again)
    other, _ = batches(ds.train_dataset(SEED + 1), 2)
    assert not np.array_equal(x, other)


def test_a_registered_augmentation_may_branch_on_tensors(synthetic):
    """tflottery's own pipeline functions are traced without autograph (pipeline.py);
    a registered augmentation is still converted, as tf.data converts any function:
    here a Python `if` on a tensor.  Each example of the first batch is its source
    image flipped exactly where the same augmentation, run eagerly with that
    example's seed, flips it."""
    from tflottery.data.batching import epoch_permutation, example_seed
    from tflottery.data.pipeline import Dataset

    def flip_sometimes(image, seed):
        if tf.random.stateless_uniform([], seed) < 0.5:
            image = image[:, ::-1]
        return image
    source = registry.Source(pixel_scale=255.0, augment=flip_sometimes)
    train_x, _ = synthetic._splits["train"]
    ds = Dataset(synthetic.info, source, synthetic._splits, synthetic.batch_size, augment=True)
    x, _ = batches(ds.train_dataset(SEED), 1)
    order = epoch_permutation(tf.constant(SEED, tf.int64), tf.constant(0, tf.int64), len(train_x))
    seed, epoch = tf.constant(SEED, tf.int64), tf.constant(0, tf.int64)
    flipped = []
    for q, image in enumerate(x[0]):
        raw = train_x[int(order[q])]
        eager = flip_sometimes(tf.constant(raw), example_seed(seed, epoch, tf.constant(q, tf.int64)))
        np.testing.assert_array_equal(image, eager.numpy().astype(np.float32) / np.float32(255.0))
        flipped.append(not np.array_equal(eager.numpy(), raw))
    assert 0 < sum(flipped) < len(flipped)


def test_eval_is_unaugmented_and_ordered(mock_cifar):
    x1, y1 = eval_arrays(mock_cifar, "train")
    x2, y2 = eval_arrays(mock_cifar, "train")
    np.testing.assert_array_equal(x1, x2)
    assert len(x1) == mock_cifar.info.num_train
    labels = [y.numpy() for _, y in mock_cifar.eval_dataset("test", batch_size=30)]
    assert [len(y) for y in labels] == [30, 30, 30]  # the last batch padded, nothing dropped
    assert (labels[-1][:4] >= 0).all() and (labels[-1][4:] == PADDING_LABEL).all()


# --- distribution -----------------------------------------------------------------------------

def test_two_input_pipelines_split_each_global_batch(synthetic):
    ds, steps = synthetic, 7  # crosses the epoch boundary at step 5
    gx, gy = batches(ds.train_dataset(SEED, start_step=3), steps)
    shards = []
    for pipeline in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2)
        x, y = batches(ds.train_dataset(SEED, ctx, start_step=3), steps)
        assert x.shape[1] == 24 and y.shape[1] == 24  # per-replica batch from the context
        shards.append(x)
    ids = [example_ids(ds, s) for s in shards]
    for t in range(steps):
        assert not set(ids[0][t]) & set(ids[1][t])
    np.testing.assert_array_equal(np.concatenate(shards, axis=1), gx)


def test_eval_pipelines_read_contiguous_blocks(synthetic):
    full_x, full_y = eval_arrays(synthetic, "test")
    parts = []
    for pipeline in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=4)
        sizes = [len(y) for _, y in synthetic.eval_dataset("test", ctx)]
        # Per-replica batch 48 / 4: 32 of the 64 test examples fill 3 batches, padded
        # to 4, a whole number of steps for the pipeline's 2 replicas.
        assert sizes == [12, 12, 12, 12]
        y = np.concatenate([y.numpy() for _, y in synthetic.eval_dataset("test", ctx)])
        assert (y[32:] == PADDING_LABEL).all()
        parts.append(y[:32])
    np.testing.assert_array_equal(np.concatenate(parts), full_y)


def test_mirrored_replicas_get_the_global_batch_in_replica_order(synthetic):
    ds = synthetic
    strategy = two_cpu_strategy()
    dist = iter(strategy.distribute_datasets_from_function(lambda ctx: ds.train_dataset(SEED, ctx)))
    gx, gy = batches(ds.train_dataset(SEED), 6)
    for t in range(6):
        x, y = next(dist)
        xs = np.concatenate([v.numpy() for v in strategy.experimental_local_results(x)])
        ys = np.concatenate([v.numpy() for v in strategy.experimental_local_results(y)])
        np.testing.assert_array_equal(xs, gx[t])
        np.testing.assert_array_equal(ys, gy[t])



@pytest.fixture(scope="module")
def eval_kinds(mock_cifar, tmp_path_factory):
    """One in-memory dataset of each kind of source, all split sizes not divisible by the batch."""
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("npz") / "arrays.npz"  # float pixels: pixel_scale 1
    np.savez(path, x_train=rng.random((23, 5, 6, 2), dtype=np.float32), y_train=np.arange(23) % 3,
             x_test=rng.random((7, 5, 6, 2), dtype=np.float32), y_test=np.arange(7) % 3)
    return {
        "synthetic": data.build(DatasetHparams(name="synthetic", batch_size=30, holdout_fraction=0.25)),
        "digits": data.build(DatasetHparams(name="digits", batch_size=64)),      # pixel_scale 16
        "cifar10": mock_cifar,                                                    # 3 channels, augmented
        "npz": data.build(DatasetHparams(name="npz", data_dir=str(path), batch_size=4)),
    }


@pytest.mark.parametrize("kind,split,batch_size", [
    ("synthetic", "test", None),      # 64 in per-replica batches of 15: 3 steps, 26 padding
    ("synthetic", "train", None),     # 192: 7 steps
    ("synthetic", "holdout", None),   # 64
    ("digits", "test", None),         # 300 in batches of 32
    ("cifar10", "train", 7),          # 64, the batch_size argument (per replica) instead of 8 / 2
    ("cifar10", "test", None),        # 64 in batches of 4: divisible, no padding
    ("npz", "test", None),            # 7 in batches of 2
    ("npz", "train", 3),              # 23 in batches of 3
])
def test_mirrored_eval_gives_every_replica_a_full_batch(eval_kinds, kind, split, batch_size):
    """Under MirroredStrategy (one pipeline, two replicas) every replica gets a
    full batch of the same shape at every step, and the real examples
    (label >= 0) come out once each, in the split's order: the split's stored
    arrays normalised in NumPy.  Padding is zero images labelled -1."""
    ds = eval_kinds[kind]
    strategy = two_cpu_strategy()
    per_replica = batch_size or ds.batch_size // 2
    dist = strategy.distribute_datasets_from_function(lambda ctx: ds.eval_dataset(split, ctx, batch_size))
    xs, ys = [], []
    for x, y in dist:
        x, y = ([v.numpy() for v in strategy.experimental_local_results(t)] for t in (x, y))
        assert [v.shape for v in x] == [(per_replica,) + ds.info.input_shape] * 2
        assert [v.shape for v in y] == [(per_replica,)] * 2
        xs += x
        ys += y
    raw_x, raw_y = ds._splits[split]  # what the pipeline reads
    assert len(xs) == 2 * -(-len(raw_y) // (2 * per_replica))  # no step more than needed
    x, y = np.concatenate(xs), np.concatenate(ys)
    real = y >= 0
    assert (y[~real] == PADDING_LABEL).all() and (x[~real] == 0).all()
    assert real[:len(raw_y)].all() and not real[len(raw_y):].any()
    np.testing.assert_array_equal(y[real], raw_y)
    source = registry.DATASETS.get(kind)
    scale = source.pixel_scale or (255.0 if raw_x.dtype == np.uint8 else 1.0)
    want = (raw_x.astype(np.float64) / scale - np.asarray(source.mean)) / np.asarray(source.std)
    np.testing.assert_allclose(x[real], want, rtol=1e-5, atol=1e-5)

# --- holdout and subsets ------------------------------------------------------------------------

def test_holdout_is_fixed_disjoint_and_sized(synthetic):
    ds = data.build(DatasetHparams(name="synthetic", batch_size=48, holdout_fraction=0.25))
    assert (ds.info.num_holdout, ds.info.num_train) == (64, 192)
    hx, hy = eval_arrays(ds, "holdout")
    tx, _ = eval_arrays(ds, "train")
    full_x, _ = eval_arrays(synthetic, "train")
    held, kept, full = ({x.tobytes() for x in a} for a in (hx, tx, full_x))
    assert len(held) == 64 and not held & kept and held | kept == full
    trained_on = {x.tobytes() for s in (0, 1) for x in batches(ds.train_dataset(s), 8)[0].reshape(-1, 8, 8, 1)}
    assert not trained_on & held
    again = data.build(DatasetHparams(name="synthetic", batch_size=48, holdout_fraction=0.25))
    np.testing.assert_array_equal(eval_arrays(again, "holdout")[0], hx)


def test_num_train_examples_keeps_a_fixed_subset(synthetic):
    ds = data.build(DatasetHparams(name="synthetic", batch_size=10, num_train_examples=100))
    assert ds.info.num_train == 100 and ds.iterations_per_epoch == 10
    sub = {x.tobytes() for x in eval_arrays(ds, "train")[0]}
    assert len(sub) == 100 and sub <= {x.tobytes() for x in eval_arrays(synthetic, "train")[0]}


@pytest.mark.parametrize("kwargs", [
    dict(name="no_such_data"), dict(batch_size=0), dict(holdout_fraction=1.0), dict(holdout_fraction=-0.1),
    dict(num_train_examples=257), dict(num_train_examples=0), dict(batch_size=257),
])
def test_config_errors(kwargs):
    with pytest.raises(ConfigError) as err:
        data.build(DatasetHparams(**{"name": "synthetic", **kwargs}))
    if kwargs.get("name") == "no_such_data":
        assert "digits" in str(err.value) and "mnist_local" in str(err.value)


def test_holdout_split_requires_a_holdout(synthetic):
    with pytest.raises(ConfigError, match="holdout_fraction"):
        synthetic.eval_dataset("holdout")


# --- sources ----------------------------------------------------------------------------------

def test_registered_names():
    assert {"digits", "mnist", "mnist_local", "cifar10", "cifar100", "tiny_imagenet", "npz",
            "synthetic"} <= set(data.names())


def test_digits():
    ds = data.build(DatasetHparams(name="digits"))
    assert (ds.info.num_train, ds.info.num_test, ds.info.input_shape, ds.info.num_classes) == (1497, 300, (8, 8, 1), 10)
    for split in ("train", "test"):
        x, y = eval_arrays(ds, split)
        assert x.min() == 0.0 and x.max() == 1.0 and set(np.unique(y)) == set(range(10))


def test_mnist_local(mnist_dir):
    ds = data.build(DatasetHparams(name="mnist_local", data_dir=mnist_dir, batch_size=1000))
    assert (ds.info.num_train, ds.info.num_test, ds.info.input_shape) == (8000, 2000, (28, 28, 1))
    x, y = eval_arrays(ds, "train")
    assert y.min() == 0 and y.max() == 9
    assert abs(x.mean()) < 0.2 and 0.8 < x.std() < 1.2  # normalised with the MNIST mean/std
    with gzip.open(os.path.join(mnist_dir, "t10k-labels-idx1-ubyte.gz"), "rb") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    with gzip.open(os.path.join(mnist_dir, "t10k-images-idx3-ubyte.gz"), "rb") as f:
        first_image = np.frombuffer(f.read(), np.uint8, offset=16, count=784).reshape(28, 28, 1)
    assert y[0] == labels[0]
    np.testing.assert_array_equal(eval_arrays(ds, "test")[1], labels[8000:])
    np.testing.assert_allclose(x[0], (first_image / 255.0 - 0.1307) / 0.3081, atol=1e-5)


def test_mnist_local_missing_or_corrupt(tmp_path):
    with pytest.raises(DataNotAvailableError, match="t10k-images-idx3-ubyte.gz"):
        data.build(DatasetHparams(name="mnist_local", data_dir=str(tmp_path)))
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        with gzip.open(tmp_path / name, "wb") as f:
            f.write(b"\x00\x00\x08\x99" + bytes(100))
    with pytest.raises(DataNotAvailableError, match="magic number"):
        data.build(DatasetHparams(name="mnist_local", data_dir=str(tmp_path)))


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_with_mock_data(name, shape, monkeypatch):
    # mock_data replaces the download; our offline probe must not veto it.
    from tflottery.data import sources
    monkeypatch.setattr(sources, "_check_network", lambda: None)
    with tfds.testing.mock_data(num_examples=20):
        ds = data.build(DatasetHparams(name=name, batch_size=4))
    assert ds.info.input_shape == shape and ds.info.num_train == 20 and ds.info.num_classes == 10
    x, y = next(iter(ds.train_dataset(0)))
    assert x.shape == (4,) + shape and x.dtype == tf.float32 and y.dtype == tf.int32
    assert 0 <= y.numpy().min() and y.numpy().max() < 10


def _online() -> bool:
    try:
        socket.getaddrinfo("storage.googleapis.com", 443)
        return True
    except OSError:
        return False


@pytest.mark.parametrize("downloads", ["0", "1"])
def test_tfds_unprepared_fails_fast(downloads, tmp_path, monkeypatch):
    if downloads == "1" and _online():
        pytest.skip("online: tfds would really download cifar10")
    monkeypatch.setenv("TFLOTTERY_TFDS_DOWNLOAD", downloads)  # "1": let it try, and fail, to download
    start = time.time()
    with pytest.raises(DataNotAvailableError, match=r"'cifar10' is not available offline in .*tfds build cifar10"):
        data.build(DatasetHparams(name="cifar10", data_dir=str(tmp_path)))
    assert time.time() - start < 30


def test_npz_and_tiny_imagenet(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "arrays.npz"
    np.savez(path, x_train=rng.integers(0, 256, (20, 5, 6), dtype=np.uint8), y_train=np.arange(20) % 3,
             x_test=rng.integers(0, 256, (4, 5, 6), dtype=np.uint8), y_test=np.array([0, 1, 2, 4]))
    ds = data.build(DatasetHparams(name="npz", data_dir=str(path), batch_size=5))
    assert (ds.info.input_shape, ds.info.num_classes, ds.info.num_train) == ((5, 6, 1), 5, 20)
    x, _ = eval_arrays(ds, "test")
    assert 0.0 <= x.min() and x.max() <= 1.0
    with pytest.raises(DataNotAvailableError, match="tiny_imagenet.npz"):
        data.build(DatasetHparams(name="tiny_imagenet", data_dir=str(tmp_path)))
