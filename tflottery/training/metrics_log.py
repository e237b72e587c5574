"""A phase's metrics.jsonl: which records it must hold, and whether it does.

The training loop appends one record per event (train loss at each event
step, test -- and holdout -- results at each evaluation), and reads the log
back in two places, both of which must not trust a damaged file:

* resuming from the rolling checkpoint at step S: every record up to S must
  be there (records past S are dropped and written again).  A log with a
  garbled line, bytes that are not UTF-8, or records missing (truncated)
  cannot be completed by training on from S, so the phase trains again
  from its start (`missing_before`).
* skipping a finished phase: final.json counts the log's records
  (COUNT_KEY), so a log cut short or garbled after the phase ended is found
  and the phase trained again (`problem_of_finished`).  A final.json from
  before the count was kept is checked by its last record instead.

Only a last line cut short by a kill (no newline) is allowed, on resume.
"""
from typing import Iterable, Optional, Set, Tuple

from tflottery.runs import io, jsonl, layout

FILENAME = layout.METRICS
# final.json's count of the records in metrics.jsonl when the phase ended.
COUNT_KEY = "metrics_records"

Key = Tuple[int, str]


def kind(record: dict) -> str:
    """'test', 'holdout' or 'train': what the loop wrote the record for."""
    for key, name in (("test_accuracy", "test"), ("holdout_accuracy", "holdout"),
                      ("train_loss", "train")):
        if key in record:
            return name
    return "other"


def keys(records: Iterable[dict]) -> Set[Key]:
    return {(r["step"], kind(r)) for r in records}


def path_of(out_dir: str) -> str:
    return layout.file(out_dir, FILENAME)


def count(out_dir: str) -> int:
    """The number of records in the phase's log (0 without one)."""
    path = path_of(out_dir)
    return len(jsonl.read_lines(path)) if io.exists(path) else 0


def missing_before(out_dir: str, expected: Set[Key], step: int) -> Optional[str]:
    """Why the log cannot be resumed at `step` (None: it holds every `expected` record).

    expected: the (step, kind) records the loop writes up to and including `step`.
    """
    path = path_of(out_dir)
    try:
        records = jsonl.read_records(path, tail_may_be_cut=True) if io.exists(path) else []
    except jsonl.DamagedLog as e:
        return str(e)
    missing = expected - keys(r for r in records if r["step"] <= step)
    if missing:
        steps = sorted({s for s, _ in missing})
        shown = ", ".join(map(str, steps[:8])) + (", ..." if len(steps) > 8 else "")
        return (f"{len(missing)} record(s) up to the checkpoint at step {step} missing, "
                f"at steps {shown}")
    return None


def problem_of_finished(out_dir: str, final: dict) -> Optional[str]:
    """Why the log of a finished phase (final.json = `final`) is damaged; None if whole."""
    path = path_of(out_dir)
    counted = final.get(COUNT_KEY)
    if not io.exists(path):
        return f"{path} is missing" if counted else None
    try:
        records = jsonl.read_records(path)
    except jsonl.DamagedLog as e:
        return str(e)
    if counted is not None and len(records) != counted:
        return f"{path} holds {len(records)} records, final.json counted {counted}"
    if counted is None and records and records[-1]["step"] != final.get("step"):
        return f"{path} ends at step {records[-1]['step']}, the phase at {final.get('step')}"
    return None
