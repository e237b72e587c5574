"""Damaged stage outputs: moved aside, named in one line, and redone.

A run decides what is done by the files it finds (final.json, mask.npz,
checkpoints, instability.json ...).  A disk error, a full disk on another
writer, or a stray edit can leave such a file unreadable; before this module
every later re-run crashed on it with a long traceback that named neither
the file nor a fix.  Now a stage reads its outputs through `read_output`: a
file that cannot be read is renamed to `<name>.damaged-<time>` (never
deleted: it may be wanted for a post-mortem), a warning names it, and the
stage runs again from its own inputs, as if the file had never been
written.  Stages are deterministic functions of their inputs (bit-identical
under --deterministic), so the redone output equals the lost one.
"""
import datetime
import zipfile
from typing import Callable, Optional, TypeVar

import tensorflow as tf
from absl import logging

from tflottery.runs import io

# What reading a damaged file raises: JSON and NumPy parse errors
# (ValueError, incl. JSONDecodeError and UnicodeDecodeError), truncated
# archives, TensorFlow's checkpoint readers (OpError; a cut-short tensor
# file can also surface as IndexError), missing keys in a cut-short record.
DAMAGE_ERRORS = (ValueError, KeyError, IndexError, EOFError, OSError, zipfile.BadZipFile,
                 tf.errors.OpError)

T = TypeVar("T")


def set_aside(path: str, why: str = "unreadable") -> str:
    """Rename a damaged file or directory to `<path>.damaged-<time>`; return the new name.

    `why` says what is wrong with it (default: it does not read back).
    """
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S%f")
    target = f"{path}.damaged-{stamp}"
    tf.io.gfile.rename(path, target)
    logging.warning("%s is damaged (%s); moved it to %s and redoing the stage that "
                    "writes it", path, why, target)
    return target


def read_output(path: str, read: Callable[[str], T]) -> Optional[T]:
    """read(path), or None if there is no such file or it is damaged (then set aside)."""
    if not io.exists(path):
        return None
    try:
        return read(path)
    except DAMAGE_ERRORS:
        set_aside(path)
        return None
