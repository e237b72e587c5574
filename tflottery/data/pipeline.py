"""The seeded tf.data pipelines over in-memory arrays.

The data order is an explicit function, not the state of a shuffle buffer:
epoch e visits the training examples in the permutation
stateless_shuffle(range(N), seed=[seed, e]), truncated to
iterations_per_epoch * batch_size examples, and the augmentation of the
example at position q of epoch e uses the stateless seed
fold_in([seed, e], q).  Hence:
  * the same seed gives the same stream, bit for bit;
  * `start_step=s` rebuilds exactly the stream after s global batches without
    generating the skipped epochs (a restored checkpoint continues with the
    data it would have seen);
  * the global stream does not depend on how many replicas or hosts read it.

Distribution.  The global batch of step t is positions [t*B, (t+1)*B) of
that stream.  With an InputContext of P input pipelines, pipeline p takes the
contiguous block [p*B/P, (p+1)*B/P) of every global batch and batches it to
the per-replica size.  tf.distribute hands consecutive per-replica batches of
one pipeline to its local replicas in order, so the per-replica batches of
one global step, concatenated in replica order, are exactly the unsharded
global batch (checked in tests/test_data.py under MirroredStrategy).

Evaluation batches have static shapes (`pad_to_full_batches`, shared with
the streaming ImageNet dataset): a TPU compiles one program for one batch
shape, and under MirroredStrategy a partial last batch would leave some
replica a smaller or empty batch.  Each pipeline appends zero images
labelled PADDING_LABEL (-1) to its block of the split until it yields the
same number of full per-replica batches as every other pipeline, a multiple
of the replicas it feeds, so every replica gets a full batch at every step.
Every consumer weighs examples with label < 0 by 0 (Trainer's evaluation,
tflottery.analysis), so results are over exactly the real examples.

No autograph.  tf.data converts every function it is given with autograph
unless told not to.  These never branch on tensors, so the traced graphs are
the same either way, and converting them was most of a LeNet run's first
pipeline building (0.19 s with, 0.07 s without) and 0.04 s of its first
evaluation.  A registered augmentation is still converted (autograph_status.py).
"""
import os
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from tflottery.autograph_status import autograph_on
from tflottery.data.batching import (_MAX_EPOCHS, AUTOTUNE, PADDING_LABEL,  # noqa: F401  (re-exported)
                                     DatasetInfo, epoch_permutation, example_seed,
                                     full_batches_per_epoch, pad_to_full_batches, per_replica_batch)
from tflottery.data.registry import Source
from tflottery.data.splits import train_holdout_indices
from tflottery.errors import ConfigError


class Dataset:
    """One dataset's splits in memory plus the pipelines that read them.

    splits maps 'train', 'test' and (if any) 'holdout' to (images, labels).
    """

    def __init__(self, info: DatasetInfo, source: Source, splits: Dict[str, Tuple[np.ndarray, np.ndarray]],
                 batch_size: int, augment: bool):
        self.info = info
        self.batch_size = batch_size
        self.iterations_per_epoch = full_batches_per_epoch(info, batch_size)
        self._splits = splits
        self._augment = source.augment if augment else None
        x = splits["train"][0]
        scale = source.pixel_scale or (255.0 if x.dtype == np.uint8 else 1.0)
        self._scale = np.float32(scale)
        self._mean = np.asarray(source.mean, np.float32)
        self._std = np.asarray(source.std, np.float32)
        self._last_train = None     # (key, tf.data.Dataset) of the last train_dataset call

    # --- helpers ---------------------------------------------------------------------------

    def _normalise(self, raw: tf.Tensor) -> tf.Tensor:
        return (tf.cast(raw, tf.float32) / self._scale - self._mean) / self._std

    # --- pipelines -------------------------------------------------------------------------

    def train_dataset(self, seed: int, input_context: Optional[tf.distribute.InputContext] = None,
                      start_step: int = 0) -> tf.data.Dataset:
        """The infinite training stream (images float32 [b,H,W,C], labels int32 [b]) from global step start_step."""
        if start_step < 0:
            raise ConfigError(f"start_step must be >= 0, got {start_step}")
        global_batch, ipe = self.batch_size, self.iterations_per_epoch
        per_replica, num_pipelines, pipeline_id = per_replica_batch(input_context, global_batch)
        # Every IMP level trains on the same stream (seed, step 0): the stream is a
        # function of its arguments alone (module docstring), so a new iterator over
        # the last dataset built is that stream again, without building (and tracing)
        # the pipeline anew and copying the training split into it each level.
        key = (int(seed), int(start_step), per_replica, num_pipelines, pipeline_id)
        if self._last_train is not None and self._last_train[0] == key:
            return self._last_train[1]
        images, labels = (tf.constant(a) for a in self._splits["train"])
        num_train = self.info.num_train
        per_epoch = ipe * global_batch
        start_epoch, skip = start_step // ipe, (start_step % ipe) * global_batch
        seed_t = tf.constant(seed, tf.int64)

        # This pipeline's block of every global batch (all of it with one pipeline);
        # a multiple of per_replica: replicas split evenly over pipelines.
        share = global_batch // num_pipelines
        lo, hi = pipeline_id * share, (pipeline_id + 1) * share

        @tf.autograph.experimental.do_not_convert       # the module docstring's "No autograph"
        def one_epoch(epoch):
            # An epoch (and a resumed one's skipped part) is whole global batches, so
            # its positions form a matrix with a global batch a row; the pipeline's
            # per-replica batches are its block of each row, cut into rows.  Whole
            # batches leave tf.data: one element a batch, not one an example (about
            # a quarter of the pipeline's CPU for LeNet's 60-example batches).
            order = epoch_permutation(seed_t, epoch, num_train)
            first = tf.where(epoch == start_epoch, tf.constant(skip, tf.int64), tf.constant(0, tf.int64))
            positions = tf.reshape(tf.range(first, per_epoch, dtype=tf.int64), [-1, global_batch])
            positions = tf.reshape(positions[:, lo:hi], [-1, per_replica])
            return tf.data.Dataset.from_tensor_slices(
                (tf.gather(order, positions), tf.fill(tf.shape(positions), epoch), positions))

        ds = tf.data.Dataset.range(start_epoch, _MAX_EPOCHS).flat_map(one_epoch)

        augment = self._augment

        @tf.autograph.experimental.do_not_convert       # the module docstring's "No autograph"
        def load(index, epoch, position):
            raw = tf.gather(images, index)
            if augment is not None:
                with autograph_on():        # a registered augmentation may branch on tensors
                    raw = tf.map_fn(lambda a: augment(a[0], example_seed(seed_t, a[1], a[2])),
                                    (raw, epoch, position), fn_output_signature=raw.dtype)
            return self._normalise(raw), tf.gather(labels, index)

        ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)
        self._last_train = (key, ds)
        return ds

    def eval_dataset(self, split: str = "test", input_context: Optional[tf.distribute.InputContext] = None,
                     batch_size: Optional[int] = None) -> tf.data.Dataset:
        """One pass over `split` ('test', 'train' or 'holdout') in file order, unaugmented, padded to full batches.

        With P input pipelines, pipeline p reads the p-th of P contiguous,
        nearly equal blocks of the split (np.array_split), so the real
        examples (label >= 0) of the pipelines' outputs, concatenated in
        pipeline order, are the whole split in order.  Each block is followed
        by zero images labelled PADDING_LABEL up to the same number of full
        batches in every pipeline (see pad_to_full_batches).  batch_size
        overrides the per-replica batch size of the InputContext.
        """
        if split not in ("test", "train", "holdout"):
            raise ConfigError(f"unknown split {split!r}; choose one of: holdout, test, train")
        if split not in self._splits:
            raise ConfigError("split 'holdout' is empty: set DatasetHparams.holdout_fraction > 0 to get one")
        default, num_pipelines, pipeline_id = per_replica_batch(input_context, self.batch_size)
        batch_size = batch_size or default
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        x, y = self._splits[split]
        block = np.array_split(np.arange(len(x)), num_pipelines)[pipeline_id]
        # One extra all-zero example labelled PADDING_LABEL at index len(block):
        # padding gathers it, so that even an empty block gathers from a non-empty array.
        raw = np.zeros((len(block) + 1,) + x.shape[1:], x.dtype)
        raw[:len(block)] = x[block]
        images = tf.constant(raw)
        labels = tf.constant(np.append(y[block], PADDING_LABEL).astype(y.dtype))

        @tf.autograph.experimental.do_not_convert       # the module docstring's "No autograph"
        def load(index):
            label = tf.gather(labels, index)
            image = self._normalise(tf.gather(images, index))
            # Zero after normalisation, like the streaming dataset's padding.
            return tf.where(tf.reshape(label >= 0, [-1, 1, 1, 1]), image, 0.0), label

        ds = pad_to_full_batches(tf.data.Dataset.range(len(block)), len(block),
                                 tf.constant(len(block), tf.int64), len(x), input_context, batch_size)
        return ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)


def checked_source(hparams, infeed_dtype: str = "float32") -> Source:
    """The registered Source of a DatasetHparams, after the checks of the
    hparams that need no data (shared by build and the dry run's plan)."""
    from tflottery.data.registry import DATASETS

    source = DATASETS.get(hparams.name)
    if hparams.batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {hparams.batch_size}")
    if not 0.0 <= hparams.holdout_fraction < 1.0:
        raise ConfigError(f"holdout_fraction must be in [0, 1), got {hparams.holdout_fraction}")
    if infeed_dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"infeed_dtype must be 'float32' or 'bfloat16', got {infeed_dtype!r}")
    if source.build is None:
        if hparams.image_size is not None:
            raise ConfigError(f"image_size applies only to streamed datasets (imagenet2012); {hparams.name!r} "
                              f"keeps its stored size, so leave DatasetHparams.image_size unset")
        if hparams.normalization is not None:
            raise ConfigError(f"normalization applies only to streamed datasets (imagenet2012); "
                              f"{hparams.name!r} has its own, so leave DatasetHparams.normalization unset")
    return source


def check_data_dir(hparams) -> None:
    """A local DatasetHparams.data_dir must exist, also when the data set ignores it
    (digits): a mistyped path is refused, not ignored."""
    data_dir = hparams.data_dir
    if data_dir is not None and "://" not in data_dir and not os.path.exists(data_dir):
        raise ConfigError(f"DatasetHparams.data_dir {data_dir!r} does not exist; fix the path "
                          f"or leave data_dir unset")


def build(hparams, infeed_dtype: str = "float32") -> Dataset:
    """Load the dataset named by a DatasetHparams and split off its holdout / subset.

    A registry entry with a `build` (ImageNet) makes its own streaming dataset
    instead; it sends its images to the device as `infeed_dtype` ('bfloat16'
    under mixed_bfloat16 halves the infeed, as Google's reference TPU code
    does).  In-memory datasets are small and stay float32.
    """
    source = checked_source(hparams, infeed_dtype)
    check_data_dir(hparams)
    if source.build is not None:
        return source.build(hparams, source, infeed_dtype=infeed_dtype)
    arrays = source.load(hparams.data_dir)
    train_idx, holdout_idx = train_holdout_indices(
        len(arrays.x_train), hparams.holdout_fraction, hparams.num_train_examples)
    splits = {"train": (arrays.x_train[train_idx], arrays.y_train[train_idx]),
              "test": (arrays.x_test, arrays.y_test)}
    if len(holdout_idx):
        splits["holdout"] = (arrays.x_train[holdout_idx], arrays.y_train[holdout_idx])
    num_classes = source.num_classes or int(max(arrays.y_train.max(initial=0), arrays.y_test.max(initial=0))) + 1
    info = DatasetInfo(
        name=hparams.name, input_shape=tuple(int(d) for d in arrays.x_train.shape[1:]), num_classes=num_classes,
        num_train=len(train_idx), num_test=len(arrays.x_test), num_holdout=len(holdout_idx))
    return Dataset(info, source, splits, hparams.batch_size, hparams.augment)
