"""What a training phase writes to TensorBoard, laid out as Keras' TensorBoard
callback lays out its runs: one subdirectory (a TensorBoard run) per kind of
data, the same tag in each, so TensorBoard overlays train and test curves in
one chart.

    <phase>/tensorboard/              the run's hyperparameters, once per phase,
                                      through TensorBoard's HParams plugin (its
                                      dashboard finds the metrics of train/ and
                                      test/ below and compares phases by them)
    <phase>/tensorboard/train/        loss, accuracy, learning_rate and
                                      steps_per_second at every training record;
                                      density/total, density/<weight name> at the
                                      phase's start and whenever a mask hook changes
                                      the masks (masks change only then)
    <phase>/tensorboard/test/         loss, accuracy at every evaluation (the
                                      test split: that is what a phase evaluates)
    <phase>/tensorboard/holdout/      loss, accuracy, if the dataset has a holdout

Accuracy is in percent (0-100), as the console, the logs and the reports
show it; metrics.jsonl and final.json keep fractions (0-1).

The writers of a phase with nothing to train are no-op writers: no event
file is made for it.
"""
import tensorflow as tf
# The HParams plugin's summary writer (its `api` module re-exports it but also imports a
# Keras callback tflottery does not use: 10 ms of every run's start).
from tensorboard.plugins.hparams import summary_v2 as hparams_summary

from tflottery import masking
from tflottery.runs import layout

TRAIN, TEST, HOLDOUT = "train", "test", "holdout"     # the runs (subdirectories)
ACCURACY_UNIT = "percent"


class Writers:
    """The summary writers of one phase's tensorboard/ directory: `root` (the
    hyperparameters) and one per run, each made when first asked for (no
    holdout/ without a holdout split).  `directory` None: all no-op."""

    def __init__(self, directory):
        self._directory = directory
        self._writers = {}

    def _get(self, run):
        if run not in self._writers:
            self._writers[run] = (
                tf.summary.create_noop_writer() if self._directory is None else
                tf.summary.create_file_writer(layout.join(self._directory, *run)))
        return self._writers[run]

    @property
    def root(self):
        return self._get(())

    def __getitem__(self, run: str):
        return self._get((run,))

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()


def _hparam_value(value):
    """The plugin takes bool, int, float and str; anything else as its repr."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def write_start(writers: Writers, step: int, model, hparams: dict) -> None:
    with writers.root.as_default(step=step):
        hparams_summary.hparams({k: _hparam_value(v) for k, v in hparams.items()},
                            trial_id=str(hparams.get("phase", "")) or None)
    write_density(writers[TRAIN], step, model)


def write_density(writer, step: int, model, counts=None) -> None:
    """Fraction of weights kept, overall and per masked weight.

    counts: {weight name: (kept, size)} if the caller knows them (a mask hook
    that keeps per-layer counts), so that no mask is read back from the device.
    """
    if counts is None:
        mask = masking.get_mask(model)
        counts = {name: (int(mask[name].sum()), int(mask[name].size)) for name in mask.keys()}
    total = sum(size for _, size in counts.values())
    with writer.as_default(step=step):
        tf.summary.scalar("density/total",
                          sum(kept for kept, _ in counts.values()) / total if total else 1.0)
        for name, (kept, size) in counts.items():
            tf.summary.scalar(f"density/{name}", float(kept) / max(size, 1))


def write_metrics(writer, step: int, loss: float, accuracy: float) -> None:
    """A run's loss and accuracy (a fraction, written in percent) at `step`."""
    with writer.as_default(step=step):
        tf.summary.scalar("loss", loss)
        tf.summary.scalar("accuracy", 100 * accuracy, description=f"in {ACCURACY_UNIT}")


def write_train(writers: Writers, step: int, record: dict, learning_rate: float) -> None:
    writer = writers[TRAIN]
    write_metrics(writer, step, record["train_loss"], record["train_accuracy"])
    with writer.as_default(step=step):
        tf.summary.scalar("learning_rate", learning_rate)
        tf.summary.scalar("steps_per_second", record["steps_per_second"])
