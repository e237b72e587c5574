"""A dataset as `--dry_run` plans with it: its sizes, without its data.

`plan(DatasetHparams, infeed_dtype)` -> a PlannedDataset: the `info`,
`batch_size` and `iterations_per_epoch` of pipeline.Dataset, no pipelines,
and `notes`, one line each, for the plan's text.

* A dataset with sizes in the registry's table (Source.sizes: MNIST,
  CIFAR-10/100, ImageNet 2012, ...) is planned from the table, even when its
  data is at hand: the plan is the same with and without the data, reads and
  downloads nothing, and takes no time on ImageNet.  Holdout and subset go
  through splits.split_sizes as in a run, so its steps are a run's.
* A dataset without sizes (npz, a user's Source) is read as a run reads it
  (data.build) if it is at hand; give a Source of your own `sizes` to plan it
  without its data.  If it cannot be read (DataNotAvailableError), its size
  is unknown: `info` and `iterations_per_epoch` are None, with which steps in
  iterations resolve and steps in epochs raise UnknownSizeError
  (steps.Step.iterations), and a note says so.
* A local data_dir that does not exist is a note, not an error: the plan may
  be of a job for another machine (a TPU VM's disk).
"""
from typing import List, Optional

from tflottery.data.batching import DatasetInfo, full_batches_per_epoch
from tflottery.data.pipeline import build, check_data_dir, checked_source
from tflottery.data.splits import split_sizes
from tflottery.errors import ConfigError, DataNotAvailableError


class PlannedDataset:
    """`info`, `batch_size` and `iterations_per_epoch` as pipeline.Dataset has them
    (None when the size is unknown), and the plan's `notes` about the data."""

    def __init__(self, info: Optional[DatasetInfo], batch_size: int, notes: List[str]):
        self.info = info
        self.batch_size = batch_size
        self.iterations_per_epoch = None if info is None else full_batches_per_epoch(info, batch_size)
        self.notes = list(notes)


def plan(hparams, infeed_dtype: str = "float32") -> PlannedDataset:
    """The PlannedDataset of a DatasetHparams (see the module docstring)."""
    source = checked_source(hparams, infeed_dtype)
    missing = None          # why the data cannot be read here
    try:
        check_data_dir(hparams)
    except ConfigError as e:
        missing = e
    if source.sizes is not None:
        notes = [] if missing is None else [f"a run on this machine would stop: {missing}"]
        return PlannedDataset(_info_from_sizes(hparams, source), hparams.batch_size, notes)
    if missing is None:
        try:
            return PlannedDataset(build(hparams, infeed_dtype).info, hparams.batch_size, [])
        except DataNotAvailableError as e:
            missing = e
    reason = (str(missing).strip().splitlines() or [type(missing).__name__])[0]
    return PlannedDataset(None, hparams.batch_size, [
        f"the size of dataset {hparams.name!r} is unknown (no sizes in the registry, and it cannot "
        f"be read here: {reason}): steps are planned in iterations only, and layer names in the "
        f"settings are not checked (the network's input shape comes from the data)"])


def _info_from_sizes(hparams, source) -> DatasetInfo:
    if source.plan is not None:      # a streamed dataset: its own input shape and checks
        return source.plan(hparams, source)
    num_train, num_holdout = split_sizes(source.sizes.num_train, hparams.holdout_fraction,
                                         hparams.num_train_examples)
    return DatasetInfo(name=hparams.name, input_shape=tuple(source.sizes.input_shape),
                       num_classes=source.num_classes, num_train=num_train,
                       num_test=source.sizes.num_test, num_holdout=num_holdout)
