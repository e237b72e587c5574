"""finished.json: a replicate's "this configuration ran to its end".

The runner writes it into replicate_<r>/ when the experiment returns, with
the resolved hyperparameters (hparams.json's "hparams") the run had, and
its headline result.  A later invocation of the same run directory with
other unhashed settings (more IMP levels, another branch) is a different
job: its hyperparameters differ, so `is_finished` is False for it until it
has run.  Sweeps decide from this file whether a job is done.
"""
import json
import time
from typing import Optional

from tflottery.runs import io, layout

FILENAME = layout.FINISHED


def _normal(value):
    """The value as it reads back from JSON (tuples as lists)."""
    return json.loads(json.dumps(value))


def write_finished(replicate_dir: str, record: dict, result) -> None:
    result = result if isinstance(result, dict) else {}
    io.atomic_write_json(layout.file(replicate_dir, FILENAME), {
        "hparams": _normal(record["hparams"]), "finished": time.time(),
        "test_accuracy": result.get("test_accuracy"), "accuracy_of": result.get("accuracy_of")})


def read_finished(replicate_dir: str) -> Optional[dict]:
    path = layout.file(replicate_dir, FILENAME)
    if not io.exists(path):
        return None
    try:
        found = io.read_json(path)
    except ValueError:      # cut short: not finished
        return None
    return found if isinstance(found, dict) else None


def finished_record(replicate_dir: str, hparams: dict) -> Optional[dict]:
    """finished.json if the replicate finished with exactly these resolved
    hyperparameters, else None."""
    found = read_finished(replicate_dir)
    return found if found is not None and found.get("hparams") == _normal(hparams) else None


def is_finished(replicate_dir: str, hparams: dict) -> bool:
    """True if the replicate finished with exactly these resolved hyperparameters."""
    return finished_record(replicate_dir, hparams) is not None
