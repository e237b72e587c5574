"""The scoring batch: a fixed number of training examples of every class.

SNIP and GraSP score with "10 examples per class" (Lee et al. 2019; Wang et
al. 2020; Frankle et al. 2021), so that no class dominates the gradient.

In-memory datasets (tflottery.data.Dataset).  The training split's labels
are visited in the order of a permutation drawn from
np.random.default_rng(seed); the first `per_class` examples of each class
are taken, then returned grouped by class (class 0 first), each class in
permutation order.  Images are normalised exactly as the pipelines
normalise them (the dataset's own `_normalise`) and NOT augmented, as in
"Missing the Mark" (do_not_augment=True).  Deterministic for the seed.

Streaming datasets (anything with `info.num_classes` and
`train_dataset(seed)` but no in-memory splits).  Batches of
`train_dataset(seed)` are read in order and each class takes its first
`per_class` examples, until every class is full or `max_batches` batches
have been read (default: enough batches for 20 times the examples needed,
at least 10 batches), after which it is a ConfigError.  These examples
are whatever the stream yields, augmentation included.
"""
import math
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from tflottery.errors import ConfigError

STREAM_OVERSAMPLING = 20   # read up to this many times the examples needed
MIN_STREAM_BATCHES = 10


def _check_per_class(per_class) -> int:
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise ConfigError(f"per_class must be a positive integer (got {per_class!r})")
    return int(per_class)


def _short_class_error(counts, per_class, where: str) -> ConfigError:
    short = {int(c): int(n) for c, n in enumerate(counts) if n < per_class}
    listed = ", ".join(f"class {c} has {n}" for c, n in sorted(short.items())[:5])
    more = f" (and {len(short) - 5} more classes)" if len(short) > 5 else ""
    return ConfigError(f"cannot take {per_class} examples per class from {where}: "
                       f"{listed}{more}; lower per_class")


def check_examples_per_class(dataset, per_class) -> None:
    """ConfigError unless `dataset` can give `per_class` training examples of every class.

    Reads labels only (in-memory datasets) or the sizes (streams), so
    experiments call it before anything is written.
    """
    per_class = _check_per_class(per_class)
    num_classes = dataset.info.num_classes
    splits = getattr(dataset, "_splits", None)
    if splits is not None and "train" in splits:
        labels = np.asarray(splits["train"][1]).astype(np.int64).reshape(-1)
        counts = np.bincount(labels, minlength=num_classes)[:num_classes]
        if (counts < per_class).any():
            raise _short_class_error(counts, per_class, "the training split")
    elif per_class * num_classes > dataset.info.num_train:
        raise ConfigError(f"cannot take {per_class} examples per class of {num_classes} classes "
                          f"from {dataset.info.num_train} training examples; lower per_class")


def _from_arrays(dataset, per_class: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    images, labels = dataset._splits["train"]
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    num_classes = dataset.info.num_classes
    counts = np.bincount(labels, minlength=num_classes)
    if (counts[:num_classes] < per_class).any():
        raise _short_class_error(counts[:num_classes], per_class, "the training split")
    order = np.random.default_rng(seed).permutation(len(labels))
    chosen = []
    for c in range(num_classes):
        in_class = order[labels[order] == c]
        chosen.append(in_class[:per_class])
    index = np.concatenate(chosen)
    x = dataset._normalise(tf.constant(images[index])).numpy().astype(np.float32)
    return x, labels[index].astype(np.int32)


def _from_stream(dataset, per_class: int, seed: int, max_batches: Optional[int]):
    num_classes = dataset.info.num_classes
    taken = [[] for _ in range(num_classes)]
    counts = np.zeros(num_classes, np.int64)
    batches = 0
    limit = max_batches
    for images, labels in dataset.train_dataset(seed):
        images, labels = images.numpy(), labels.numpy().reshape(-1)
        if limit is None:
            needed = STREAM_OVERSAMPLING * per_class * num_classes
            limit = max(MIN_STREAM_BATCHES, math.ceil(needed / max(len(labels), 1)))
        for image, label in zip(images, labels):
            label = int(label)
            if 0 <= label < num_classes and counts[label] < per_class:
                taken[label].append(image)
                counts[label] += 1
        batches += 1
        if (counts >= per_class).all():
            break
        if batches >= limit:
            raise _short_class_error(counts, per_class,
                                     f"the first {batches} batches of the training stream")
    else:
        if not (counts >= per_class).all():
            raise _short_class_error(counts, per_class, "the whole training stream")
    x = np.stack([image for per in taken for image in per]).astype(np.float32)
    y = np.repeat(np.arange(num_classes, dtype=np.int32), per_class)
    return x, y


def class_balanced_batch(dataset, per_class: int = 10, seed: int = 0,
                         max_batches: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(images float32 [n,H,W,C], labels int32 [n]), n = per_class * num_classes, from the training data.

    See the module docstring for how examples are chosen; `max_batches` only
    applies to streaming datasets.
    """
    per_class = _check_per_class(per_class)
    if max_batches is not None and (isinstance(max_batches, bool) or int(max_batches) < 1):
        raise ConfigError(f"max_batches must be a positive integer (got {max_batches!r})")
    if getattr(dataset, "_splits", None) is not None and "train" in dataset._splits:
        return _from_arrays(dataset, per_class, seed)
    if not hasattr(dataset, "train_dataset") or not hasattr(dataset, "info"):
        raise ConfigError("class_balanced_batch needs a tflottery data.Dataset (or an object with "
                          "`info.num_classes` and `train_dataset(seed)`)")
    return _from_stream(dataset, per_class, seed, max_batches)
