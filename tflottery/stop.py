"""Stop requests: SIGTERM and Ctrl-C are remembered, and honoured at safe points.

A TPU VM preemption sends SIGTERM; a user presses Ctrl-C.  Raising an
exception from the signal handler (as Python does for Ctrl-C) lands it in
whatever code happens to run, and some of that code swallows it: a
TensorFlow `__del__` prints "Exception ignored ..." and the run goes on to
exit 0, the preemption notice lost.  So the handler installed by `install()`
only records the signal.  The training loop and the long host-side loops
(scoring rounds, alignment, interpolation, the lmc analyses, the runner's
stages) call `check(where)` at points where stopping leaves nothing
half-written; it raises `errors.Interrupted`, which the CLI turns into one
line and exit status 143 (SIGTERM) or 130 (Ctrl-C).  The CLI checks once
more after the run, so a request that arrives after the last safe point is
still reported, never dropped.

A second Ctrl-C while the first waits for a safe point raises
KeyboardInterrupt at once (Python's own behaviour): the hard abort of a user
who does not want to wait; the run then resumes as after a kill.
"""
import signal
from typing import Optional

from tflottery.errors import Interrupted

_EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}   # 128 + the signal number
_requested: Optional[int] = None     # the first signal received, set only by the handler


def _record(signum, frame) -> None:
    global _requested
    if _requested == signal.SIGINT and signum == signal.SIGINT:
        raise KeyboardInterrupt     # the second Ctrl-C: abort now
    if _requested is None:
        _requested = signum


def install() -> None:
    """Record SIGTERM and SIGINT from now on, in this (main) thread's process.

    SIGINT is left alone when it is ignored (a background job of a shell
    without job control): whoever started the process asked for that.
    """
    signal.signal(signal.SIGTERM, _record)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _record)


def requested() -> Optional[int]:
    """The signal number of the pending stop request, or None."""
    return _requested


def exit_code() -> int:
    """The exit status for the pending request (143 SIGTERM, 130 Ctrl-C); 130 if none."""
    return _EXIT_CODES.get(_requested, 130)


def interrupted(where: str) -> Interrupted:
    """The Interrupted error of a stop at `where` ('at step 40 of runs/x/level_1')."""
    return Interrupted(f"interrupted {where}; run the same command to continue", exit_code())


def check(where: str) -> None:
    """A safe point: raise Interrupted if a stop was requested (see module docstring)."""
    if _requested is not None:
        raise interrupted(where)


def take_pending() -> None:
    """Block SIGTERM and SIGINT from now on, and record one that is already pending.

    The CLI's last step: a signal that came after the last safe point, even one
    arriving while the exit status is being decided, is recorded here rather than
    lost to a handler that would run too late (or never: os._exit follows).
    """
    global _requested
    signals = set(_EXIT_CODES)
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    info = signal.sigtimedwait(signals, 0)      # consumes it; None when nothing is pending
    if info is not None and _requested is None:
        _requested = info.si_signo


def reset() -> None:
    """Forget a pending request (tests, and a process that runs several runs)."""
    global _requested
    _requested = None
