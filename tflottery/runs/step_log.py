"""A per-step JSON-lines log that a resumed phase can write again without duplicates.

Mask hooks (gradual pruning, dynamic sparse training) log one record per
step at which they act.  A phase resumed from its last checkpoint repeats the
hook calls after that checkpoint, with the same results (the hooks are
deterministic), so the log keeps one record per step: a repeated step
replaces its record.  The file is rewritten whole and atomically, so a kill
never leaves half a line.
"""
import json
import os
from typing import List

from tflottery.runs import io


def read(path: str) -> List[dict]:
    """The records of `path`, in step order ([] if it does not exist)."""
    if not io.exists(path):
        return []
    records = {}
    for line in io.read_text(path).splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["step"]] = record
    return [records[step] for step in sorted(records)]


def write(path: str, record: dict) -> None:
    """Add `record` (which has a 'step') to the log at `path`, replacing one of the same step."""
    records = {r["step"]: r for r in read(path)}
    records[record["step"]] = record
    io.makedirs(os.path.dirname(path))
    io.atomic_write_text(path, "".join(json.dumps(records[s]) + "\n" for s in sorted(records)))
