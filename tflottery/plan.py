"""The phases a run will train, for `--dry_run` and for the run's ETA.

An experiment that can list its phases up front has `plan(ctx)` returning
`Phase`s in the order it runs them.  Whether each is finished, half done or
still to run is read from its directory without changing anything (a dry
run writes nothing, so damaged files are not set aside here: the run itself
does that).
"""
import dataclasses
import os
from typing import List, Optional, Sequence

from tflottery.runs import io, layout
from tflottery.training import checkpoints


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str          # as the logs announce it: 'level 3', 'level 3 / random_reinit'
    directory: str     # the phase's out_dir (loop.py layout)
    start: int         # first and last step (iterations of the LR schedule)
    end: int

    @property
    def steps(self) -> int:
        return self.end - self.start

    def resume_step(self) -> Optional[int]:
        """The step its rolling checkpoint holds, if a killed attempt left one."""
        return checkpoints.latest_step(layout.checkpoints_dir(self.directory))

    def done(self) -> bool:
        return io.exists(layout.file(self.directory, layout.FINAL))

    def steps_left(self) -> int:
        if self.done():
            return 0
        resume = self.resume_step()
        return self.end - (resume if resume is not None else self.start)

    def status(self) -> str:
        if self.done():
            return "finished: skipped"
        resume = self.resume_step()
        if resume is not None:
            return f"resumes at step {resume}"
        return "nothing to train (evaluated once)" if self.steps == 0 else "to run"


def steps_left(phases: Sequence[Phase]) -> int:
    return sum(p.steps_left() for p in phases)


def describe(phases: Sequence[Phase], root: str) -> List[str]:
    """One line per phase: name, steps, directory (relative to `root`) and status."""
    if not phases:
        return ["  (this experiment lists no phases in advance)"]
    width = max(len(p.name) for p in phases)
    lines = []
    for p in phases:
        where = os.path.relpath(p.directory, root) if "://" not in root else p.directory
        lines.append(f"  {p.name:<{width}}  steps {p.start}..{p.end}  {where}  [{p.status()}]")
    lines.append(f"  {steps_left(phases)} training steps left of "
                 f"{sum(p.steps for p in phases)}")
    return lines
