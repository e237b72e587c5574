"""User-facing errors.

A `TfLotteryError` is a mistake in what the user asked for (a bad name, a bad
number, a file that does not fit).  The CLI prints its message as a single
line and exits non-zero, without a traceback, so the message itself must name
the problem and the fix.
"""
from typing import Iterable

SHOWN_IN_LISTS = 5
# In the one-line refusal of a run directory that another live process holds
# (runs/lock.py); sweeps recognise it without importing the lock (and TensorFlow).
RUN_DIR_IN_USE = "is in use by process"


def first_few(items: Iterable, limit: int = SHOWN_IN_LISTS) -> str:
    """`items` joined by commas, cut to the first `limit` and a count of the rest.

    For error messages that name many things (the missing weights of a
    ResNet's mask, the unwrapped layers of an application): the message
    stays one readable line, e.g. "'a', 'b', 'c', 'd', 'e' and 95 more
    (100 in all)".  Items are shown with str(); pass reprs for names.
    """
    items = [str(item) for item in items]
    if len(items) <= limit:
        return ", ".join(items)
    return f"{', '.join(items[:limit])} and {len(items) - limit} more ({len(items)} in all)"


class TfLotteryError(Exception):
    """A problem with the user's input that the user can fix."""


class ConfigError(TfLotteryError, ValueError):
    """A configuration value is invalid (unknown name, out-of-range number...)."""


class DataNotAvailableError(TfLotteryError):
    """A dataset cannot be read on this machine (e.g. offline, not prepared)."""


class UnknownSizeError(ConfigError):
    """A step in epochs needs the dataset's iterations per epoch, which are unknown
    (a dry run of a dataset of unknown size, tflottery/data/planning.py)."""


class MaskMismatchError(TfLotteryError, ValueError):
    """A mask does not fit a model (missing/extra weight names or wrong shapes)."""


class TrainingDivergedError(TfLotteryError):
    """The loss became NaN or infinite during training."""


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM stopped the run at a safe point (tflottery/stop.py);
    says where, and how to go on.

    A BaseException like KeyboardInterrupt, so no `except Exception` swallows
    it.  exit_code: 130 for Ctrl-C, 143 for SIGTERM (128 + the signal).
    """

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
