"""ImageNet (tfds 'imagenet2012') streamed from its record files, with the reference TPU ResNet-50 input.

ImageNet does not fit in host memory, so unlike `pipeline.Dataset` this
class reads the tfds records on the fly; it has the same interface (`info`,
`batch_size`, `iterations_per_epoch`, `train_dataset`, `eval_dataset`).
Preprocessing is in imagenet_preprocessing.py; normalisation uses the
ImageNet RGB mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) of
[0, 1] pixels (registry.IMAGENET_MEAN / IMAGENET_STD), or with
DatasetHparams.normalization = 'inception' scales pixels to [-1, 1].

Splits.  'test' is the 50,000-image validation set (tfds split
'validation'; tfds's own 'test' split has no labels).  'train' is the first
num_train_examples records of the tfds train split (all of them by default),
'holdout' its last round(holdout_fraction * N) records.  tfds shuffles
records when it prepares the data, so these are fixed, class-mixed subsets,
the same in every run (but not the permutation of splits.py).  `eval_dataset`
reads 'train' and 'holdout' with the evaluation preprocessing.

Sharding.  With an InputContext of P input pipelines, pipeline p reads the
p-th of P contiguous, nearly equal record ranges of the split (tfds split
slicing, so other ranges' files are not opened) and batches to the
per-replica batch size.

Training order.  Epoch e of pipeline p visits the records of its range in
this order: tfds reads its files in an order shuffled with a seed hashed
from (seed, e, p) (ReadConfig.shuffle_seed; 16 files interleaved), then the
stream is shuffled within consecutive windows of SHUFFLE_WINDOW records,
each by a stateless permutation seeded from (seed, e, p, window index) (a
shuffle buffer with no state to restore), and cut to iterations_per_epoch
* B / P records so that every pipeline's epochs end at the same global
step.  The augmentation of the record at position q of that epoch uses the
stateless seed pipeline.example_seed(seed, e, q * P + p).  Hence, for the
same prepared files, number of pipelines and batch size:
  * the same seed gives the same stream, bit for bit, whatever global seed
    tf.random.set_seed has set; a different seed gives a different order
    and augmentation;
  * unlike pipeline.Dataset, the stream depends on the number of input
    pipelines (each shuffles only its own range);
  * `start_step=s` starts at epoch s // iterations_per_epoch without reading
    the epochs before it, then skips the (s % iterations_per_epoch) * B / P
    records of that epoch already trained on.  The skip reads and discards
    their serialized bytes (no JPEG decoding): at worst one epoch's worth,
    about 140 GB / P of reading for ImageNet, typically a few minutes.  The
    resumed stream is then exactly the uninterrupted one.
Under tfds.testing.mock_data, whose reader ignores split slices, every
pipeline reads the same mock records; sharding needs real prepared files.

Evaluation.  Every record of the split is read exactly once over all
pipelines, in a fixed order, with the center-crop preprocessing.  Batches
have static shapes: each pipeline pads its stream with zero images labelled
-1 up to the same number of full batches (a multiple of its local replica
count, so every replica gets a full batch at every step).  Consumers ignore
labels < 0 (Trainer._replica_eval_step, tflottery.analysis).
"""
import dataclasses
import functools
import os
from typing import Callable, Dict, Optional, Tuple

import tensorflow as tf
import tensorflow_datasets as tfds

from tflottery.data import imagenet_preprocessing as prep
from tflottery.data import sources
from tflottery.data.batching import (_MAX_EPOCHS, AUTOTUNE, PADDING_LABEL, DatasetInfo, example_seed,
                                     full_batches_per_epoch, pad_to_full_batches, per_replica_batch,
                                     replicas_per_pipeline)
from tflottery.data.splits import split_sizes
from tflottery.errors import ConfigError, DataNotAvailableError

TFDS_NAME = "imagenet2012"
DEFAULT_IMAGE_SIZE = 224          # ResNet-50; Inception-v3 configs set DatasetHparams.image_size = 299
SHUFFLE_WINDOW = 1024             # records shuffled together after the file-level shuffle
READ_CYCLE_LENGTH = 16            # record files read in parallel (tfds's default)
_TFDS_SPLITS = {"train": "train", "test": "validation"}


@dataclasses.dataclass(frozen=True)
class Records:
    """The records [start, stop) of one tfds split."""

    split: str
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def shard(self, num_shards: int, index: int) -> "Records":
        """The index-th of num_shards contiguous ranges, sizes floor or ceil of len / num_shards."""
        n = len(self)
        return Records(self.split, self.start + index * n // num_shards, self.start + (index + 1) * n // num_shards)

    @property
    def spec(self) -> str:
        """The tfds split slice, e.g. 'train[0:640583]'."""
        return f"{self.split}[{self.start}:{self.stop}]"


# --- the tfds builder -------------------------------------------------------------------------

def prepared_builder(data_dir: Optional[str]):
    """The tfds imagenet2012 builder over prepared data, or one DataNotAvailableError line.

    As sources.load_tfds: offline failures of any type become one line.  A
    remote data_dir (gs://...) is probed first, because TF's GCS client retries
    for minutes before giving up on an unreachable host.  ImageNet cannot be
    downloaded by tfds (it needs the ILSVRC2012 tars), so an unprepared
    directory fails here unless under tfds.testing.mock_data.
    """
    where = data_dir or "the default tfds data_dir (~/tensorflow_datasets)"
    try:
        if data_dir and "://" in data_dir:
            sources._check_network()
        builder = tfds.builder(TFDS_NAME, data_dir=data_dir)
        if not builder.is_prepared():
            if os.environ.get("TFLOTTERY_TFDS_DOWNLOAD", "1") == "0":
                raise FileNotFoundError("not prepared and downloads are disabled")
            sources._check_network()
            builder.download_and_prepare()
    except Exception as e:  # noqa: BLE001 -- offline failures come in many types
        raise DataNotAvailableError(
            f"dataset {TFDS_NAME!r} is not prepared or not reachable in {where}: put ILSVRC2012_img_train.tar and "
            f"ILSVRC2012_img_val.tar in <data_dir>/downloads/manual, run `tfds build {TFDS_NAME} "
            f"--data_dir=<data_dir>` and set DatasetHparams.data_dir to <data_dir> [{type(e).__name__}]") from e
    return builder


def num_examples(builder, split: str) -> int:
    """Records in a tfds split, from the prepared metadata.

    Only tfds.testing.mock_data leaves a builder without any split metadata;
    then (and only then) the mock split is counted by reading it.
    """
    splits = builder.info.splits
    if split in splits:
        return int(splits[split].num_examples)
    if len(splits):
        raise DataNotAvailableError(
            f"{TFDS_NAME} in {builder.data_dir} has no {split!r} split (only {', '.join(sorted(splits))}): "
            f"prepare it from both ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar")
    ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


# --- the dataset ------------------------------------------------------------------------------

def window_shuffle(ds: tf.data.Dataset, window: int, seed: tf.Tensor) -> tf.data.Dataset:
    """Shuffle each run of `window` consecutive elements by a stateless permutation of (seed, run index)."""
    def shuffle(index, batch):
        run_seed = tf.random.experimental.stateless_fold_in(seed, index)
        order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(batch[1])[0]), seed=run_seed)
        return tuple(tf.gather(t, order) for t in batch)
    return ds.batch(window).enumerate().map(shuffle).unbatch()


class StreamingDataset:
    """ImageNet read from tfds records (see module docstring); the interface of pipeline.Dataset."""

    def __init__(self, info: DatasetInfo, builder, records: Dict[str, Records], batch_size: int,
                 augment: bool, image_size: int, normalise: Callable[[tf.Tensor], tf.Tensor],
                 infeed_dtype: str = "float32"):
        """infeed_dtype: the dtype of the images sent to the device.  'bfloat16'
        under mixed_bfloat16 halves the infeed (588 MB -> 294 MB for a batch
        of 1,024 images at 224x224) and computes the same: the model casts its
        float32 input to bfloat16 at the first layer anyway, and bfloat16 ->
        float32 -> bfloat16 is exact."""
        self.info = info
        self.infeed_dtype = tf.as_dtype(infeed_dtype)
        self.batch_size = batch_size
        self.iterations_per_epoch = full_batches_per_epoch(info, batch_size)
        self._builder = builder
        self._records = records
        self._augment = augment
        self._image_size = image_size
        self._normalise = normalise

    def _per_replica(self, input_context, batch_size: int) -> Tuple[int, int, int, int]:
        """(per-replica batch, number of pipelines, this pipeline's id, replicas fed by this pipeline)."""
        per_replica, pipelines, pipeline_id = per_replica_batch(input_context, batch_size)
        return per_replica, pipelines, pipeline_id, replicas_per_pipeline(input_context)

    def _read(self, records: Records, shuffle_seed: Optional[tf.Tensor] = None) -> tf.data.Dataset:
        """(JPEG bytes, int32 label) of `records`; files in a seeded random order when shuffle_seed is set."""
        read_config = tfds.ReadConfig(
            shuffle_seed=shuffle_seed, shuffle_reshuffle_each_iteration=False,
            interleave_cycle_length=READ_CYCLE_LENGTH, interleave_block_length=1,
            skip_prefetch=True, try_autocache=False)
        ds = self._builder.as_dataset(split=records.spec, shuffle_files=shuffle_seed is not None,
                                      decoders={"image": tfds.decode.SkipDecoding()}, read_config=read_config)
        return ds.map(lambda ex: (ex["image"], tf.cast(ex["label"], tf.int32)))

    def train_dataset(self, seed: int, input_context: Optional[tf.distribute.InputContext] = None,
                      start_step: int = 0) -> tf.data.Dataset:
        """The infinite training stream (images float32 [b,S,S,3], labels int32 [b]) from global step start_step."""
        if start_step < 0:
            raise ConfigError(f"start_step must be >= 0, got {start_step}")
        per_replica, num_pipelines, pipeline_id, local = self._per_replica(input_context, self.batch_size)
        ipe = self.iterations_per_epoch
        per_epoch = ipe * per_replica * local  # = ipe * B / P: this pipeline's share of an epoch
        start_epoch, skip = start_step // ipe, (start_step % ipe) * per_replica * local
        records = self._records["train"].shard(num_pipelines, pipeline_id)
        seed_t = tf.constant(seed, tf.int64)

        @tf.autograph.experimental.do_not_convert  # tfds's Python must run as is when flat_map traces this
        def one_epoch(epoch):
            # tfds shuffles the files with tf.data's seeded shuffle, which also mixes in
            # the graph-level seed that tf.random.set_seed leaves on this (traced)
            # function graph: clear it here, so the order depends on `seed` alone.
            tf.compat.v1.get_default_graph().seed = None
            epoch_seed = tf.random.experimental.stateless_fold_in(tf.stack([seed_t, epoch]), pipeline_id)
            file_seed = tf.random.stateless_uniform([], epoch_seed, minval=None, maxval=None, dtype=tf.int64)
            stream = window_shuffle(self._read(records, file_seed), SHUFFLE_WINDOW, epoch_seed).take(per_epoch)
            first = tf.where(epoch == start_epoch, tf.constant(skip, tf.int64), tf.constant(0, tf.int64))
            positions = tf.data.Dataset.range(first, per_epoch)
            return tf.data.Dataset.zip((stream.skip(first), positions)).map(
                lambda record, q: (record[0], record[1], epoch, q))

        size, augment = self._image_size, self._augment

        def load(image_bytes, label, epoch, position):
            if augment:
                image = prep.train_image(
                    image_bytes, example_seed(seed_t, epoch, position * num_pipelines + pipeline_id), size)
            else:
                image = prep.eval_image(image_bytes, size)
            return tf.cast(self._normalise(image), self.infeed_dtype), label

        ds = tf.data.Dataset.range(start_epoch, _MAX_EPOCHS).flat_map(one_epoch)
        ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
        return ds.batch(per_replica, drop_remainder=True).prefetch(AUTOTUNE)

    def eval_dataset(self, split: str = "test", input_context: Optional[tf.distribute.InputContext] = None,
                     batch_size: Optional[int] = None) -> tf.data.Dataset:
        """One pass over `split` ('test', 'train' or 'holdout'), center-cropped, padded to full batches.

        Padding examples are zero images with label -1, so every pipeline yields
        the same number of full batches; the real records are each seen once.
        """
        if split not in ("test", "train", "holdout"):
            raise ConfigError(f"unknown split {split!r}; choose one of: holdout, test, train")
        if split not in self._records:
            raise ConfigError("split 'holdout' is empty: set DatasetHparams.holdout_fraction > 0 to get one")
        default, num_pipelines, pipeline_id = per_replica_batch(input_context, self.batch_size)
        batch_size = batch_size or default
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        records = self._records[split]
        mine = records.shard(num_pipelines, pipeline_id)
        size = self._image_size
        real = None
        if len(mine):  # a pipeline whose block is empty reads nothing
            real = self._read(mine).take(len(mine)).map(
                lambda image_bytes, label: (tf.cast(self._normalise(prep.eval_image(image_bytes, size)),
                                                    self.infeed_dtype), label),
                num_parallel_calls=AUTOTUNE, deterministic=True)
        padding = (tf.zeros([size, size, 3], self.infeed_dtype), tf.constant(PADDING_LABEL, tf.int32))
        ds = pad_to_full_batches(real, len(mine), padding, len(records), input_context, batch_size)
        return ds.prefetch(AUTOTUNE)


def _image_size(hparams) -> int:
    image_size = DEFAULT_IMAGE_SIZE if hparams.image_size is None else hparams.image_size
    if image_size < 1:
        raise ConfigError(f"image_size must be >= 1 (or None for {DEFAULT_IMAGE_SIZE}), got {image_size}")
    return image_size


def _info(hparams, image_size: int, num_train_split: int, num_test: int, num_classes: int) -> DatasetInfo:
    """The DatasetInfo of a tfds train split of num_train_split records, after holdout and subset."""
    num_train, num_holdout = split_sizes(num_train_split, hparams.holdout_fraction, hparams.num_train_examples)
    return DatasetInfo(name=hparams.name, input_shape=(image_size, image_size, 3), num_classes=num_classes,
                       num_train=num_train, num_test=num_test, num_holdout=num_holdout)


def planned_info(hparams, source) -> DatasetInfo:
    """The DatasetInfo that `build` gives, from the registry's table of the tfds
    metadata (source.sizes) instead of the prepared data, which is not touched;
    the hparams are checked as `build` checks them (a dry run, data/planning.py)."""
    _normalisation(hparams.normalization, source)
    return _info(hparams, _image_size(hparams), source.sizes.num_train, source.sizes.num_test,
                 source.num_classes)


def build(hparams, source, infeed_dtype: str = "float32") -> StreamingDataset:
    """The StreamingDataset for a DatasetHparams naming 'imagenet2012' (called by data.build)."""
    image_size = _image_size(hparams)
    normalise = _normalisation(hparams.normalization, source)
    builder = prepared_builder(hparams.data_dir)
    total = num_examples(builder, _TFDS_SPLITS["train"])
    info = _info(hparams, image_size, total, num_examples(builder, _TFDS_SPLITS["test"]),
                 int(builder.info.features["label"].num_classes))
    records = {"train": Records(_TFDS_SPLITS["train"], 0, info.num_train),
               "test": Records(_TFDS_SPLITS["test"], 0, info.num_test)}
    if info.num_holdout:
        records["holdout"] = Records(_TFDS_SPLITS["train"], total - info.num_holdout, total)
    return StreamingDataset(info, builder, records, hparams.batch_size, hparams.augment, image_size,
                            normalise, infeed_dtype)


def _normalisation(name: Optional[str], source) -> Callable[[tf.Tensor], tf.Tensor]:
    """DatasetHparams.normalization -> image -> scaled image (see hparams.py)."""
    if name in (None, "mean_std"):
        return functools.partial(prep.normalise, mean=tuple(source.mean), std=tuple(source.std))
    if name == "inception":
        return prep.scale_symmetric
    raise ConfigError(f"unknown normalization {name!r}; choose one of: inception, mean_std "
                      f"(or leave it unset for mean_std)")
