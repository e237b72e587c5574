"""Run names: `<experiment>_<hash of the non-default hyperparameters>`.

Only fields that differ from their defaults enter the hash, so adding an
option with a default later does not rename existing runs; the hash is over a
canonical JSON text (sorted keys, tuples as lists), so it is stable across
Python versions and machines.  tests/test_naming.py pins a few names.  The
directories inside a run are named by runs/layout.py.
"""
import dataclasses
import hashlib
import json
from typing import Iterable

from tflottery.hparams import non_default_fields


def canonical_config(hparams: Iterable) -> dict:
    """{ClassName: {field: value}} of the non-default fields of each dataclass."""
    out = {}
    for hp in hparams:
        if not dataclasses.is_dataclass(hp):
            raise TypeError(f"expected a hyperparameter dataclass, got {type(hp).__name__}")
        fields = non_default_fields(hp)
        if fields:
            out[type(hp).__name__] = fields
    return out


def config_hash(hparams: Iterable, length: int = 10) -> str:
    text = json.dumps(canonical_config(hparams), sort_keys=True, separators=(",", ":"),
                      default=list)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def run_name(experiment: str, hparams: Iterable) -> str:
    return f"{experiment}_{config_hash(hparams)}"

