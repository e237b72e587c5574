"""Atomic file writes through tf.io.gfile (so gs:// paths work too).

A file is written under a temporary name and renamed into place, so a killed
job leaves either the old file or the new one, never half of one.  Stages
decide whether they are done by the presence of such files.
"""
import json
import os
import uuid

import tensorflow as tf


def exists(path: str) -> bool:
    return tf.io.gfile.exists(path)


def makedirs(path: str) -> None:
    tf.io.gfile.makedirs(path)


def atomic_write_bytes(path: str, data: bytes) -> None:
    makedirs(os.path.dirname(path) or ".")
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def append_line(path: str, line: str) -> None:
    """Append one line to a log file (metrics.jsonl) without rewriting it.

    Local files are opened for appending: a kill can at worst cut the last
    line short, which the readers skip.  Object stores (gs://) cannot
    append, so there the file is rewritten whole, atomically.
    """
    if "://" in path:
        old = read_text(path) if exists(path) else ""
        atomic_write_text(path, old + line + "\n")
        return
    makedirs(os.path.dirname(path) or ".")
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def remove(path: str) -> None:
    """Delete a file or a directory tree."""
    if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
    else:
        tf.io.gfile.remove(path)


def read_text(path: str) -> str:
    with tf.io.gfile.GFile(path, "r") as f:
        return f.read()


def read_json(path: str):
    return json.loads(read_text(path))


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)
