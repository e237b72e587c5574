"""Run names: `<experiment>_<hash of the non-default hyperparameters>`.

Only fields that differ from their defaults enter the hash, so adding an
option with a default later does not rename existing runs; the hash is over a
canonical JSON text (sorted keys, tuples as lists), so it is stable across
Python versions and machines.  tests/test_naming.py pins a few names.
"""
import dataclasses
import hashlib
import json
from typing import Iterable, Optional

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


def retrain_branch_dir(data_seed: Optional[int], dilation: Optional[float]) -> Optional[str]:
    """The directory of a lottery level's 'retrain' branch: `branch_retrain_<tag>`, the tag a
    hash of the settings it changes (None when it changes none).  Named here, apart from the
    experiment, so that reporting can find the branch of given settings without importing
    experiment code."""
    settings = {k: v for k, v in (("data_seed", data_seed), ("dilation", dilation))
                if v is not None}
    if not settings:
        return None
    tag = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"branch_retrain_{tag}"
