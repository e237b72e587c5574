"""hparams.json: the resolved hyperparameter dataclasses of a run, as data.

Written by the runner when a run starts, so that reports, sweeps and
TensorBoard's HParams dashboard read the settings a run used without parsing
gin files back.  It holds every dataclass the run was configured with
(also those not in the run's hash, such as BranchHparams), each field
resolved, and separately the non-default fields: what distinguishes the
run, which is also what its start-up line prints.

    {"experiment": "lottery", "run": "lottery_2fcb3142a5",
     "hparams": {"TrainingHparams": {"lr": 0.0012, ...}, ...},
     "non_default": {"TrainingHparams": {"lr": 0.0012}, ...}}
"""
import dataclasses
from typing import Dict, Iterable, List, Optional

from tflottery.hparams import Checked, non_default_fields
from tflottery.runs import io, layout

FILENAME = layout.HPARAMS


def resolved(base: Iterable, experiment) -> List:
    """The run's dataclasses, one per class: `base`, the experiment's own
    hyperparameter attributes as configured (PruningHparams with its real
    number of levels, BranchHparams, SummaryHparams...), then any other it
    hashes (hparams() may hash a reduced copy: lottery leaves out levels)."""
    out, seen = [], set()
    own = [v for v in vars(experiment).values() if isinstance(v, Checked)]
    for hp in list(base) + own + list(experiment.hparams()):
        if dataclasses.is_dataclass(hp) and not isinstance(hp, type) and \
                type(hp).__name__ not in seen:
            seen.add(type(hp).__name__)
            out.append(hp)
    return out


def _plain(value):
    """JSON-ready: tuples as lists, dicts and lists recursively."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def record(experiment_name: str, run: str, hparams: Iterable) -> dict:
    hparams = list(hparams)
    changed = {type(hp).__name__: non_default_fields(hp) for hp in hparams}
    return {"experiment": experiment_name, "run": run,
            "hparams": {type(hp).__name__: _plain(dataclasses.asdict(hp)) for hp in hparams},
            "non_default": {name: _plain(fields) for name, fields in changed.items() if fields}}


def flat(by_class: Dict[str, dict]) -> Dict[str, object]:
    """{'Class.field': value} of {'Class': {'field': value}}; lists read back as tuples
    (as gin writes them), so values compare equal to those parsed from config.gin."""
    def back(value):
        if isinstance(value, list):
            return tuple(back(v) for v in value)
        if isinstance(value, dict):
            return {k: back(v) for k, v in value.items()}
        return value
    return {f"{cls}.{field}": back(value)
            for cls, fields in by_class.items() for field, value in fields.items()}


def describe_non_default(rec: dict) -> List[str]:
    """'Class.field = value' lines of the non-default settings (the run's start-up lines)."""
    return [f"{key} = {value!r}" for key, value in sorted(flat(rec["non_default"]).items())]


def write(run_dir: str, rec: dict) -> None:
    io.atomic_write_json(layout.file(run_dir, FILENAME), rec)


def read(run_dir: str) -> Optional[dict]:
    """The run's record, or None if it has none (runs from before hparams.json)."""
    path = layout.file(run_dir, FILENAME)
    if not io.exists(path):
        return None
    rec = io.read_json(path)
    if not isinstance(rec, dict) or not isinstance(rec.get("non_default"), dict):
        raise ValueError(f"{path} is not a tflottery hparams record")
    return rec
