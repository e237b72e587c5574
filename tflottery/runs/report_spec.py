"""What reporting needs to know about an experiment, as data (#23).

An experiment declares one `ReportSpec` beside its code (its `REPORT`
attribute); the runner records it in the run directory (experiment.json,
runs/layout.py) and calls its end-of-run hook.  Reporting reads the record
and never imports experiment code, so a new experiment is reported by
declaring how its runs read, without editing a reporting module.  Runs
written before the record existed are read with reporting/legacy.py.

Settings are named as 'Class.field' gin bindings and looked up in the run's
configuration (defaults filled in by reporting/ginconfig.py).
"""
import dataclasses
import re
from typing import Dict, Optional, Tuple

from tflottery.runs import io, layout

_BINDING = re.compile(r"[A-Z]\w*\.\w+")


@dataclasses.dataclass(frozen=True)
class ReportSpec:
    """How the report reads and draws the runs of one experiment."""

    name: str                   # ExperimentHparams.name
    # Which of the report's tables and figures draw its runs: 'train', 'gradual', 'lottery',
    # 'lmc', 'pai' or 'dynamic' (a new experiment chooses the one its runs resemble).
    family: str = ""
    # The rows' method: a 'Class.field' whose value (renamed by method_names) names it, or
    # a fixed label; `variant` fields that differ from their defaults are added to it
    # ('dynamic_imp (regrow=gradient)') so that different variants are different methods.
    method: str = ""
    method_names: Dict[str, str] = dataclasses.field(default_factory=dict)
    variant: Tuple[str, ...] = ()
    target_sparsity: str = ""   # 'Class.field' of the sparsity the run aims at
    rewind_step: str = ""       # 'Class.field' of the rewinding step
    prune_step: str = ""        # 'Class.field' of the pruning step
    # 'pretrain': a row's k is the step its pretraining ended at; 'prune_step': the result
    # file's prune_step, else the pretraining's end, else 0 (no pretraining).
    k: str = ""
    result_file: str = ""       # per-replicate result (replicate_<r>/<result_file>)
    # Settings read from the result file when the configuration does not set them; with
    # any, the result file's 'density' (and its branches') are the phases' densities.
    result_settings: Tuple[str, ...] = ()
    dense: bool = False         # phases without a mask are dense (density 1)
    # 'module.function' the runner calls when the run ends: (run_dir, settings) -> the
    # run's summary (or None); settings are the run's resolved 'Class.field' values.
    end_of_run: str = ""

    def __post_init__(self):
        if not self.family:
            object.__setattr__(self, "family", self.name)

    def method_of(self, values: dict, lookup, variant_text) -> Optional[str]:
        """The method label of a run with these config values."""
        if not self.method:
            return None
        if _BINDING.fullmatch(self.method):
            value = lookup(values, self.method)
            method = self.method_names.get(value, value)
        else:
            method = self.method
        changed = [variant_text(values, key) for key in self.variant]
        changed = [c for c in changed if c]
        return f"{method} ({', '.join(changed)})" if changed else method


def to_record(spec: ReportSpec) -> dict:
    return dataclasses.asdict(spec)


def from_record(record: dict) -> ReportSpec:
    fields = {f.name for f in dataclasses.fields(ReportSpec)}
    known = {k: (tuple(v) if isinstance(v, list) else v) for k, v in record.items()
             if k in fields}
    return ReportSpec(**known)


def write(run_dir: str, spec: ReportSpec) -> None:
    io.atomic_write_json(layout.file(run_dir, layout.EXPERIMENT_RECORD), to_record(spec))


def read(run_dir: str) -> Optional[ReportSpec]:
    """The run's recorded spec; None for a run from before the record (ValueError if damaged)."""
    path = layout.file(run_dir, layout.EXPERIMENT_RECORD)
    if not io.exists(path):
        return None
    record = io.read_json(path)
    if not isinstance(record, dict) or "name" not in record:
        raise ValueError(f"{path} is not an experiment record")
    return from_record(record)
