"""Datasets for tflottery: `data.build(DatasetHparams)` -> `data.Dataset`.

    ds = data.build(DatasetHparams(name='digits', batch_size=60))
    ds.info                      # DatasetInfo(name, input_shape, num_classes, num_train, num_test, num_holdout)
    ds.iterations_per_epoch      # num_train // batch_size
    ds.train_dataset(seed, input_context=None, start_step=0)   # infinite, seeded, resumable
    ds.eval_dataset('test' | 'train' | 'holdout', input_context=None, batch_size=None)
                                 # full batches: the split in order, then padding (label -1)

Modules: sources (read arrays: tfds, IDX, npz, sklearn digits, synthetic),
registry (name -> loader + preprocessing constants), splits (fixed-seed
holdout/subset), augment (stateless crop/flip), pipeline (the tf.data streams).

'imagenet2012' does not fit in memory: `build` returns an
imagenet.StreamingDataset (same interface) that reads the tfds records with
the reference TPU ResNet-50 preprocessing (imagenet_preprocessing; inputs
DatasetHparams.image_size, default 224).

`data.plan(DatasetHparams)` is what `--dry_run` plans with (planning.py):
the sizes from the registry's table (Source.sizes), nothing read or
downloaded; `info` None when a dataset without sizes cannot be read.

Evaluation batches of every dataset have static shapes: each input pipeline
pads its part of the split with zero images labelled -1 (PADDING_LABEL) to
the same number of full per-replica batches, so that a TPU compiles one
program and no replica gets a partial or empty batch.  Evaluation must give
labels < 0 weight 0.
"""
from tflottery.data.pipeline import Dataset, DatasetInfo, build  # noqa: F401
from tflottery.data.planning import PlannedDataset, plan  # noqa: F401
from tflottery.data.registry import DATASETS, Sizes, Source  # noqa: F401


def names():
    """The registered dataset names, sorted."""
    return DATASETS.names()
