"""User-facing errors.

A `TfLotteryError` is a mistake in what the user asked for (a bad name, a bad
number, a file that does not fit).  The CLI prints its message as a single
line and exits non-zero, without a traceback, so the message itself must name
the problem and the fix.
"""


class TfLotteryError(Exception):
    """A problem with the user's input that the user can fix."""


class ConfigError(TfLotteryError, ValueError):
    """A configuration value is invalid (unknown name, out-of-range number...)."""


class DataNotAvailableError(TfLotteryError):
    """A dataset cannot be read on this machine (e.g. offline, not prepared)."""


class MaskMismatchError(TfLotteryError, ValueError):
    """A mask does not fit a model (missing/extra weight names or wrong shapes)."""


class TrainingDivergedError(TfLotteryError):
    """The loss became NaN or infinite during training."""


class Terminated(BaseException):
    """Raised in the main thread by the CLI's SIGTERM handler (a TPU VM
    preemption sends SIGTERM), so a run unwinds as on Ctrl-C."""


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM stopped a training phase; says where, and how to go on.

    A BaseException like KeyboardInterrupt, so no `except Exception` swallows
    it.  exit_code: 130 for Ctrl-C, 143 for SIGTERM (128 + the signal).
    """

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
