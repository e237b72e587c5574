"""What a training phase writes to TensorBoard besides losses and accuracies.

    train/learning_rate, train/steps_per_second   at every training record
    density/total, density/<weight name>           at the phase's start and whenever a
                                                   mask hook changes the masks (masks
                                                   change only then, so that is all)
    the run's hyperparameters                      once per phase, through TensorBoard's
                                                   HParams plugin (its dashboard compares
                                                   phases and runs by their settings)

The writer of a phase with nothing to train is a no-op writer: no event
file is made for it.
"""
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from tflottery import masking


def _hparam_value(value):
    """The plugin takes bool, int, float and str; anything else as its repr."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def write_start(writer, step: int, model, hparams: dict) -> None:
    with writer.as_default(step=step):
        hparams_api.hparams({k: _hparam_value(v) for k, v in hparams.items()},
                            trial_id=str(hparams.get("phase", "")) or None)
    write_density(writer, step, model)


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


def write_train(writer, step: int, record: dict, learning_rate: float) -> None:
    with writer.as_default(step=step):
        tf.summary.scalar("train/loss", record["train_loss"])
        tf.summary.scalar("train/accuracy", record["train_accuracy"])
        tf.summary.scalar("train/learning_rate", learning_rate)
        tf.summary.scalar("train/steps_per_second", record["steps_per_second"])
