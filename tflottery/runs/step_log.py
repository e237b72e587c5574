"""A per-step JSON-lines log that a resumed phase can write again without duplicates.

Mask hooks (gradual pruning, dynamic sparse training) log one record per
step at which they act.  A phase resumed from its last checkpoint repeats the
hook calls after that checkpoint, with the same results (the hooks are
deterministic), so the log keeps one record per step: a repeated step
replaces its record.  The file is rewritten whole and atomically, so a kill
never leaves half a line, and any line that does not read back is damage:
`read` raises jsonl.DamagedLog, and the training loop, which checks the log
before it resumes or skips a finished phase (`missing_steps`), sets the file
aside and trains the phase again from its start.
"""
import json
import os
from typing import Iterable, List

from tflottery.runs import io, jsonl


def read(path: str) -> List[dict]:
    """The records of `path`, in step order ([] if it does not exist).

    Raises jsonl.DamagedLog if a byte or a line of it does not read back.
    """
    if not io.exists(path):
        return []
    records = {r["step"]: r for r in jsonl.read_records(path)}
    return [records[step] for step in sorted(records)]


def missing_steps(path: str, steps: Iterable[int]) -> List[int]:
    """Which of `steps` have no record in the log at `path` (raises jsonl.DamagedLog)."""
    present = {r["step"] for r in read(path)}
    return sorted(set(steps) - present)


def write(path: str, record: dict) -> None:
    """Add `record` (which has a 'step') to the log at `path`, replacing one of the same step."""
    records = {r["step"]: r for r in read(path)}
    records[record["step"]] = record
    io.makedirs(os.path.dirname(path))
    io.atomic_write_text(path, "".join(json.dumps(records[s]) + "\n" for s in sorted(records)))
