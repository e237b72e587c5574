"""The end-of-run report's imports, warmed in a background thread once training runs.

runner.prepare_end_of_run imports the hook's module and calls its prepare()
(the summary's: matplotlib) off the main thread, started by the RunLog after
the run's first trained steps; the hook itself still runs after the experiment.
"""
from conftest import SMALL_RUN  # noqa: E402
import os
import sys
import threading
import types

import pytest

from tflottery import gin_files, runner
from tflottery.reporting import summary
from tflottery.runs import report_spec
from tflottery.training import run_log
from tflottery.training.run_log import RunLog

pytestmark = pytest.mark.usefixtures("clean_gin")


def test_when_training_is_called_once_after_the_first_trained_steps():
    calls = []
    log = RunLog()
    log.when_training = lambda: calls.append(log.trained_steps)
    log.add(0)
    assert calls == []
    log.add(8)
    log.add(8)
    assert calls == [8] and log.trained_steps == 16


def _fake_hook_module(monkeypatch, prepare):
    module = types.ModuleType("fake_end_of_run_hook")
    module.prepare = prepare
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return report_spec.ReportSpec("fake", end_of_run=f"{module.__name__}.end_of_run")


def test_prepare_runs_in_another_thread_and_its_failure_is_not_raised(monkeypatch):
    threads, done = [], threading.Event()

    def prepare():
        threads.append(threading.current_thread())
        done.set()
        raise RuntimeError("left for the hook's own call")

    runner.prepare_end_of_run(_fake_hook_module(monkeypatch, prepare))
    assert done.wait(30)
    assert threads[0] is not threading.main_thread()
    runner.prepare_end_of_run(report_spec.ReportSpec("no_hook"))   # nothing to warm: no error


def test_a_lottery_run_warms_the_summary_while_it_trains(tmp_path, monkeypatch):
    """In a real run the summary's prepare() runs in a background thread after steps were
    trained (not during the first trace), and the run's summary.png is still written."""
    seen = []
    real = summary.prepare

    def prepare():
        seen.append(threading.current_thread() is not threading.main_thread())
        real()

    monkeypatch.setattr(summary, "prepare", prepare)
    started = []

    class Recorded(RunLog):
        def add(self, steps):
            if steps and self.when_training is not None:
                started.append(self.trained_steps + steps)
            super().add(steps)

    monkeypatch.setattr(run_log, "RunLog", Recorded)
    gin_files.parse([], SMALL_RUN + ["ExperimentHparams.name = 'lottery'",
                                     "PruningHparams.levels = 1", "BranchHparams.names = ()"])
    runner.run(str(tmp_path))
    assert started and started[0] > 0
    assert seen == [True]
    (run_dir,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert os.path.exists(run_dir / "summary.png")


def test_the_hook_waits_for_prepare(tmp_path, monkeypatch):
    """prepare() draws with matplotlib's global state, as the hook does: the hook is
    called only once prepare() has returned, however long it takes."""
    import time
    events = []
    real_prepare, real_hook = summary.prepare, summary.end_of_run

    def slow_prepare():
        time.sleep(1.0)         # longer than the rest of this tiny run
        real_prepare()
        events.append("prepared")

    def hook(*args, **kwargs):
        events.append("hook")
        return real_hook(*args, **kwargs)

    monkeypatch.setattr(summary, "prepare", slow_prepare)
    monkeypatch.setattr(summary, "end_of_run", hook)
    gin_files.parse([], SMALL_RUN + ["ExperimentHparams.name = 'lottery'",
                                     "PruningHparams.levels = 0", "BranchHparams.names = ()"])
    runner.run(str(tmp_path))
    assert events == ["prepared", "hook"]


def test_warm_saves_a_figure_in_both_formats_without_leaving_it_open():
    from tflottery.reporting.figures import style
    plt = style.pyplot()
    before = plt.get_fignums()
    style.warm()
    assert plt.get_fignums() == before
