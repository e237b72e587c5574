"""What the phases of one run share for logging (kept in `ctx.state.run_log`).

A Trainer sees one phase; a reader wants to know how far the whole run is
and what it was configured with.  The runner makes one RunLog per run:

  hparams        {'Class.field': value} of the run (hparams.json), written
                 to each phase's TensorBoard directory for the HParams dashboard
  planned_steps  the training steps the run had left when it started (from
                 the experiment's plan; None if it has none), for the run's ETA

Trainers given a RunLog count their steps into it.  `when_training`, if set,
is called once, after the run's first trained steps: the runner starts
work there that should overlap training rather than its start (runner.py,
prepare_end_of_run).
"""
from typing import Callable, Dict, Optional


class RunLog:
    def __init__(self, hparams: Dict[str, object] = None, planned_steps: Optional[int] = None):
        self.hparams = dict(hparams or {})
        self.planned_steps = planned_steps
        self.trained_steps = 0
        self.when_training: Optional[Callable[[], None]] = None

    def add(self, steps: int) -> None:
        self.trained_steps += steps
        if steps and self.when_training is not None:
            hook, self.when_training = self.when_training, None
            hook()

    def eta_seconds(self, phase_rate: float) -> Optional[float]:
        """Seconds the run still needs at `phase_rate` steps/s (None if unknown)."""
        if self.planned_steps is None or phase_rate <= 0:
            return None
        return max(self.planned_steps - self.trained_steps, 0) / phase_rate


def duration(seconds: Optional[float]) -> str:
    """'1:02:03' / '2:03' / '7s'."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}" if minutes else f"{secs}s"
