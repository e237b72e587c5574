"""JSON-lines logs read back strictly: every line a record with a step, or DamagedLog.

A run reads its logs again (metrics.jsonl when a phase resumes, a mask
hook's step log when it adds a record) and trusts what it finds.  Before
this module the readers skipped lines they could not parse, so a garbled
or truncated log was silently shorter; bytes that are not UTF-8 crashed
every re-run.  `read_lines` says exactly what is wrong instead, and the
caller sets the file aside and redoes the phase that writes it
(runs/damage.py).

One exception is allowed where the writer appends (metrics.jsonl): a kill
can cut the last line short, before its newline.  With `tail_may_be_cut`
such a last line is dropped; it lies past the checkpoint the phase resumes
from, so nothing it held is lost.
"""
import json
from typing import List

import tensorflow as tf


class DamagedLog(ValueError):
    """A log whose bytes or lines do not read back as step records."""


def record_of(line: str):
    """The record of one line: a JSON object with an integer 'step' (else ValueError)."""
    record = json.loads(line)
    if not isinstance(record, dict) or not isinstance(record.get("step"), int) or isinstance(
            record.get("step"), bool):
        raise ValueError("not a JSON object with an integer 'step'")
    return record


def read_lines(path: str, tail_may_be_cut: bool = False) -> List[str]:
    """The lines of `path` (without newlines), each a valid step record.

    Raises DamagedLog naming the file and the first bad line.  With
    `tail_may_be_cut`, a last line without its newline is dropped.
    """
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DamagedLog(f"{path}: byte {e.start} is not UTF-8") from None
    lines = text.split("\n")
    tail = lines.pop()      # "" when the file ends with its newline
    if tail and not tail_may_be_cut:
        raise DamagedLog(f"{path}: the last line is cut short (no newline)")
    for number, line in enumerate(lines, 1):
        try:
            record_of(line)
        except ValueError as e:
            raise DamagedLog(f"{path}: line {number} is not a step record ({e})") from None
    return lines


def read_records(path: str, tail_may_be_cut: bool = False) -> List[dict]:
    """The records of `path` in file order (see read_lines)."""
    return [json.loads(line) for line in read_lines(path, tail_may_be_cut)]
