"""Shapes of a batch stream shared by every dataset: the per-example seeds and
epoch orders, how a global batch splits over input pipelines and replicas,
and the padding that gives evaluation batches a static shape.

The in-memory pipelines (pipeline.py) and the streaming ImageNet dataset
(imagenet.py) both build on these; keeping them here, apart from
`pipeline.build`, lets imagenet.py use them without importing the module
that looks datasets up (which imports imagenet.py).
"""
import dataclasses
from typing import Optional, Tuple

import tensorflow as tf

from tflottery.errors import ConfigError

AUTOTUNE = tf.data.AUTOTUNE
_MAX_EPOCHS = 2 ** 62  # "infinite": more epochs than any run will reach
PADDING_LABEL = -1    # the label of the examples that fill evaluation batches (weighed 0 by consumers)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model and a training loop need to know about a dataset."""

    name: str
    input_shape: Tuple[int, int, int]
    num_classes: int
    num_train: int
    num_test: int
    num_holdout: int


def example_seed(seed: tf.Tensor, epoch: tf.Tensor, position: tf.Tensor) -> tf.Tensor:
    """The stateless seed of one example's augmentation: a hash of (run seed, epoch, position)."""
    return tf.random.experimental.stateless_fold_in(tf.stack([seed, epoch]), position)


def epoch_permutation(seed: tf.Tensor, epoch: tf.Tensor, num_examples: int) -> tf.Tensor:
    """The order in which epoch `epoch` visits the training examples (int64 indices)."""
    return tf.random.experimental.stateless_shuffle(
        tf.range(num_examples, dtype=tf.int64), seed=tf.stack([seed, epoch]))


def per_replica_batch(input_context, batch_size: int) -> Tuple[int, int, int]:
    """(per-replica batch, number of input pipelines, this pipeline's id) for an InputContext."""
    if input_context is None:
        return batch_size, 1, 0
    try:
        per_replica = input_context.get_per_replica_batch_size(batch_size)
    except ValueError as e:
        raise ConfigError(
            f"batch size {batch_size} is not divisible by the "
            f"{input_context.num_replicas_in_sync} replicas: {e}") from e
    return per_replica, input_context.num_input_pipelines, input_context.input_pipeline_id


def replicas_per_pipeline(input_context) -> int:
    """How many replicas one input pipeline feeds (1 without an InputContext)."""
    if input_context is None:
        return 1
    return max(1, input_context.num_replicas_in_sync // input_context.num_input_pipelines)


def pad_to_full_batches(real: Optional[tf.data.Dataset], num_real: int, padding, split_size: int,
                        input_context, batch_size: int) -> tf.data.Dataset:
    """This pipeline's `real` elements, then copies of `padding`, in full batches of `batch_size`.

    `real` holds the num_real examples of this pipeline's block of a split of
    split_size examples (None when the block is empty); `padding` is one
    element of the same structure standing for "no example".  Every pipeline
    yields the same number of batches: enough for the largest block
    (ceil(split_size / pipelines) examples), rounded up to a multiple of the
    replicas the pipeline feeds, so that tf.distribute, which hands a
    pipeline's consecutive batches to its replicas in turn, gives every
    replica one full batch at every step and all pipelines end together.
    """
    num_pipelines = 1 if input_context is None else input_context.num_input_pipelines
    local = replicas_per_pipeline(input_context)
    largest = -(-split_size // num_pipelines)
    batches = -(-largest // batch_size)
    batches = -(-batches // local) * local
    if not 0 <= num_real <= largest:
        raise ValueError(f"a pipeline's block of {num_real} examples is not within the {largest} "
                         f"of the largest block of {split_size} over {num_pipelines} pipelines")
    ds = tf.data.Dataset.from_tensors(padding).repeat(batches * batch_size - num_real)
    if real is not None:
        ds = real.concatenate(ds)
    return ds.batch(batch_size, drop_remainder=True)


def full_batches_per_epoch(info: DatasetInfo, batch_size: int) -> int:
    """Training iterations per epoch (the last partial batch is dropped); at least one."""
    iterations = info.num_train // batch_size
    if iterations < 1:
        raise ConfigError(
            f"batch_size {batch_size} is larger than the {info.num_train} training examples of "
            f"{info.name!r}: not even one batch per epoch")
    return iterations
