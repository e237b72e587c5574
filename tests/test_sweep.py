"""Sweeps (`python -m tflottery.sweep`): grid expansion and quoting, the
printed commands, one-line errors for bad grids, and a real two-job sweep
that is resumed (the finished job skipped, the failing one reported)."""
import functools
import glob
import json
import os
import re
import shlex
import sys

import pytest

from conftest import SMALL_RUN, run_module
from tflottery import grid, sweep
from tflottery.errors import ConfigError


def run_sweep_cli(*args, timeout=300):
    return run_module("tflottery.sweep", *args, timeout=timeout)


def test_grid_product_bindings_order_and_quoting():
    jobs = sweep.build_jobs(["a.gin", "b.gin"], ["X.y = 1"], "/r", replicates=2,
                            grid=["TrainingHparams.lr=0.1,0.2,0.3",
                                  "LotteryHparams.rewind_step='0it','1ep, 2it'"],
                            python="py")
    assert len(jobs) == 3 * 2 * 2
    assert [j.index for j in jobs] == list(range(1, 13))
    # Replicate 0's whole grid first, grid points in product order.
    assert [j.replicate for j in jobs] == [0] * 6 + [1] * 6
    assert jobs[1].bindings == ("TrainingHparams.lr=0.1", "LotteryHparams.rewind_step='1ep, 2it'")
    assert jobs[6].bindings == ("TrainingHparams.lr=0.1", "LotteryHparams.rewind_step='0it'")
    assert list(jobs[1].argv) == [
        "py", "-m", "tflottery.main", "--gin_file=a.gin", "--gin_file=b.gin",
        "--gin_bindings=X.y = 1", "--gin_bindings=TrainingHparams.lr=0.1",
        "--gin_bindings=LotteryHparams.rewind_step='1ep, 2it'", "--root_dir=/r", "--replicate=0"]
    for job in jobs:   # the shell reads back exactly the argv
        assert shlex.split(job.command_line) == list(job.argv)
    assert jobs[1].description == ("TrainingHparams.lr=0.1 LotteryHparams.rewind_step='1ep, 2it' "
                                   "replicate=0")
    # No grid: one job per replicate.
    assert [j.bindings for j in sweep.build_jobs(["a.gin"], [], "/r", 3)] == [()] * 3


def test_values_split_outside_quotes_and_brackets():
    parse = functools.partial(grid.parse_grid, check_value=sweep.check_binding)
    assert parse("BranchHparams.levels=(0,2),(0, 4),None") == (
        "BranchHparams.levels", ["(0,2)", "(0, 4)", "None"])
    assert parse("""ModelHparams.options={'a': [1, 2]},{"b": 'x,y'}""")[1] == [
        "{'a': [1, 2]}", """{"b": 'x,y'}"""]
    assert parse("scope/TrainingHparams.lr = 1e-3 , 3e-3") == (
        "scope/TrainingHparams.lr", ["1e-3", "3e-3"])
    assert grid.split_values(r"'a\',b',c") == [r"'a\',b'", "c"]   # an escaped quote


@pytest.mark.parametrize("spec,message", [
    ("TrainingHparams.lr", "must look like 'Config.field=value1"),
    ("=0.1,0.2", "'' is not a gin binding name"),
    ("TrainingHparams.lr=0.1,", "has an empty value"),
    ("TrainingHparams.lr=0.1,0.1", "repeats a value"),
    ("TrainingHparams.lr=(0.1", "unclosed '('"),
    ("TrainingHparams.optimizer='sgd", "unclosed \"'\""),
    ("TrainingHparams.optimizer=sgd", "'sgd' is not a gin value"),
    ("Training Hparams.lr=0.1", "not a gin binding name"),
])
def test_bad_grid_is_an_error(spec, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        sweep.build_jobs(["a.gin"], [], "/r", grid=[spec])


def test_same_key_twice_is_an_error():
    with pytest.raises(ConfigError, match=r"given to --grid twice \(TrainingHparams.lr\)"):
        sweep.build_jobs(["a.gin"], [], "/r", grid=["TrainingHparams.lr=0.1",
                                                    "TrainingHparams.lr=0.2"])


def test_print_commands(capsys, tmp_path):
    root = str(tmp_path / "runs")
    status = sweep.main(["--gin_file=quickstart.gin", f"--root_dir={root}", "--replicates=2",
                         "--grid=TrainingHparams.optimizer='sgd','adam'", "--print_commands",
                         "--python=python"])
    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert shlex.split(lines[3]) == [
        "python", "-m", "tflottery.main", "--gin_file=quickstart.gin",
        "--gin_bindings=TrainingHparams.optimizer='adam'", f"--root_dir={root}", "--replicate=1"]
    assert not os.path.exists(root)   # nothing run


def test_bad_grid_cli_exit_2_one_line_nothing_run(tmp_path):
    root = tmp_path / "runs"
    result = run_sweep_cli("--gin_file=quickstart.gin", f"--root_dir={root}",
                           "--grid=TrainingHparams.lr=0.1,,0.2")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --grid 'TrainingHparams.lr=0.1,,0.2' has an empty value (a stray comma?)"]
    assert result.stdout == "" and not root.exists()
    missing = run_sweep_cli("--gin_file=no_such_config", f"--root_dir={root}")
    assert missing.returncode == 2 and missing.stderr.startswith("error: unknown gin file")
    assert not root.exists()


@pytest.mark.parametrize("grid, message", [
    ("NoSuch.x=1,2", "error: grid point NoSuch.x=1: bad gin configuration: No configurable "
                     "matching 'NoSuch'"),
    ("TrainingHparams.lr='a','b'", "error: grid point TrainingHparams.lr='a': "
                                   "TrainingHparams.lr = 'a' is not of type float"),
    ("TrainingHparams.lrr=0.1,0.2", "error: grid point TrainingHparams.lrr=0.1: bad gin "
                                    "configuration"),
])
def test_grid_naming_an_unknown_binding_or_wrong_type_stops_before_any_job(tmp_path, grid,
                                                                           message):
    root = tmp_path / "runs"
    result = run_sweep_cli("--gin_file=quickstart.gin", f"--root_dir={root}", f"--grid={grid}")
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert result.stdout == "" and not root.exists()


def test_fail_fast_and_finished_jobs(tmp_path, monkeypatch, capsys):
    """A fake job runner: job 2 fails; --fail_fast leaves job 3 unrun; a marker
    whose run directory has gone does not count as finished."""
    jobs = sweep.build_jobs(["quickstart.gin"], [], str(tmp_path), grid=["A.b=1,2,3"])
    ran = []

    def fake_run_job(job, log_path, stream=False):
        ran.append(job.index)
        return (2, "error: boom") if job.index == 2 else (0, "")
    monkeypatch.setattr(sweep, "run_job", fake_run_job)
    outcome = sweep.run_sweep(jobs, ["quickstart.gin"], str(tmp_path), fail_fast=True)
    assert ran == [1, 2]
    assert [[j.index for j in outcome[k]] for k in ("succeeded", "failed", "not_run")] == [
        [1], [2], [3]]
    out = capsys.readouterr().out
    assert "job 2/3: A.b=2 replicate=0: FAILED (exit 2) after 0 s: error: boom" in out
    assert "job 3/3: A.b=3 replicate=0: not run (--fail_fast)" in out
    assert sweep.summary_lines(outcome, 3)[0] == (
        "sweep: 1/3 jobs finished (1 run now, 0 skipped as finished), 1 failed, "
        "1 not run (--fail_fast)")
    # Finished means: the replicate directory's finished.json has the job's hyperparameters.
    from tflottery.runs.finished import write_finished
    job = jobs[0]._replace(replicate_dir=str(tmp_path / "run" / "replicate_0"),
                           hparams={"PruningHparams": {"levels": 2, "names": ("a",)}})
    assert not sweep.is_done(job)
    os.makedirs(job.replicate_dir)
    write_finished(job.replicate_dir, {"hparams": {"PruningHparams": {"levels": 1}}}, {})
    assert not sweep.is_done(job)             # the same run, fewer levels: not this job
    write_finished(job.replicate_dir, {"hparams": job.hparams}, {"test_accuracy": 0.5})
    assert sweep.is_done(job)
    assert not sweep.is_done(jobs[0])         # a job nobody checked is never done


def test_closing_table_gives_each_grid_point_and_replicate_its_result(tmp_path):
    """The table a sweep ends with: one row per job, its finished.json's accuracy (in %)
    and what it is of; '-' for a job not finished with its settings."""
    from tflottery.runs.finished import write_finished
    jobs = sweep.build_jobs(["quickstart.gin"], [], str(tmp_path), replicates=2,
                            grid=["TrainingHparams.lr=0.1,0.01"])
    jobs = [job._replace(replicate_dir=str(tmp_path / f"p{job.bindings[0][-4:]}" /
                                           f"replicate_{job.replicate}"),
                         hparams={"TrainingHparams": {"lr": job.bindings[0][-4:]}})
            for job in jobs]
    for job, accuracy in zip(jobs[:3], (0.9512, 0.5, 0.875)):
        os.makedirs(job.replicate_dir)
        write_finished(job.replicate_dir, {"hparams": job.hparams},
                       {"test_accuracy": accuracy, "accuracy_of": "level 2 (density 64.0%)"})
    lines = sweep.results_table(jobs)
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert cells[0] == ["grid point", "replicate", "final test accuracy %", "of"]
    assert sorted(cells[2:]) == sorted([
        [jobs[0].bindings[0], str(jobs[0].replicate), "95.12", "level 2 (density 64.0%)"],
        [jobs[1].bindings[0], str(jobs[1].replicate), "50.00", "level 2 (density 64.0%)"],
        [jobs[2].bindings[0], str(jobs[2].replicate), "87.50", "level 2 (density 64.0%)"],
        [jobs[3].bindings[0], str(jobs[3].replicate), "-", ""]])
    assert len({len(line) for line in lines}) == 1          # aligned columns


def test_job_hanging_after_its_result_is_stopped_and_counts_as_done(tmp_path, monkeypatch):
    """TensorFlow can hang in interpreter shutdown after the run is complete: once
    the run directory says so (finished.json), the job is stopped and counts as done."""
    import time
    monkeypatch.setattr(sweep, "EXIT_GRACE_SECONDS", 1.0)
    rep = tmp_path / "run" / "replicate_0"
    code = ("import json, os, sys, time; os.makedirs(sys.argv[1]); "
            "open(os.path.join(sys.argv[1], 'finished.json'), 'w').write("
            "json.dumps({'hparams': {'A': {'b': 1}}})); print('all done'); time.sleep(120)")
    job = sweep.Job(1, 0, (), (sys.executable, "-c", code, str(rep)), str(rep), {"A": {"b": 1}})
    start = time.time()
    assert sweep.run_job(job, str(tmp_path / "job.log")) == (0, "")
    assert time.time() - start < 30
    assert (tmp_path / "job.log").read_text() == "all done\n"
    failing = sweep.Job(2, 0, (), (sys.executable, "-c", "print('error: bad thing'); exit(2)"))
    assert sweep.run_job(failing, str(tmp_path / "bad.log")) == (2, "error: bad thing")


def test_two_sweeps_on_one_root_both_exit_0_and_train_each_job_once(tmp_path):
    """Sweep A runs job X; its job process is paused (SIGSTOP) while holding
    X's run lock.  Sweep B (jobs X, Y) finds X running elsewhere, runs Y, waits
    for X; once A's job goes on and finishes, both sweeps exit 0 and X was
    trained once."""
    import signal
    import subprocess
    from conftest import REPO, wait_for
    gin_file = tmp_path / "tiny.gin"
    gin_file.write_text("\n".join(SMALL_RUN + [
        "ExperimentHparams.name = 'lottery'", "PruningHparams.levels = 1",
        "BranchHparams.names = ()"]) + "\n")
    root = tmp_path / "runs"
    common = [sys.executable, "-m", "tflottery.sweep", f"--gin_file={gin_file}",
              f"--root_dir={root}"]

    def start(*args):
        return subprocess.Popen(common + list(args), cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    a = start("--grid=TrainingHparams.lr=0.05")
    (lock,) = wait_for(str(root / "lottery_*" / "lock.json"), a)
    holder = json.load(open(lock))["pid"]
    os.kill(holder, signal.SIGSTOP)
    try:
        assert os.path.exists(lock), "job X finished before it could be paused"
        b = start("--grid=TrainingHparams.lr=0.05,0.06")
        seen = []
        for line in b.stdout:          # B gets past X and finishes Y while X is paused
            seen.append(line)
            if "job 2/2" in line and ("done in" in line or "FAILED" in line):
                break
    finally:
        os.kill(holder, signal.SIGCONT)
    out_a, err_a = a.communicate(timeout=300)
    out_b, err_b = b.communicate(timeout=300)
    out_b = "".join(seen) + out_b
    assert a.returncode == 0, out_a + err_a[-2000:]
    assert b.returncode == 0, out_b + err_b[-2000:]
    assert "job 1/1: TrainingHparams.lr=0.05 replicate=0: done in" in out_a
    assert (f"job 1/2: TrainingHparams.lr=0.05 replicate=0: running elsewhere (process "
            f"{holder} on ") in out_b, out_b
    assert "job 2/2: TrainingHparams.lr=0.06 replicate=0: done in" in out_b
    assert "job 1/2: TrainingHparams.lr=0.05 replicate=0: finished elsewhere" in out_b
    assert ("sweep: 2/2 jobs finished (1 run now, 0 skipped as finished, 1 finished by "
            "another process), 0 failed") in out_b
    # X trained once: no phase's evaluations appended twice.
    metrics = glob.glob(os.path.join(os.path.dirname(lock), "**", "metrics.jsonl"),
                        recursive=True)
    assert len(metrics) >= 2
    for path in metrics:
        steps = [json.loads(l)["step"] for l in open(path) if "test_accuracy" in l]
        assert steps == sorted(set(steps)), (path, steps)


def test_job_taken_by_another_process_first_is_waited_for(tmp_path, monkeypatch, capsys):
    """The race: the lock was free when looked at, but another process took the run
    directory before the job did; the job's refusal is not a failure."""
    jobs = sweep.build_jobs(["quickstart.gin"], [], str(tmp_path), grid=["A.b=1,2"])
    jobs = [j._replace(replicate_dir=str(tmp_path / f"run{j.index}" / "replicate_0"))
            for j in jobs]
    done = set()

    def fake_run_job(job, log_path, stream=False):
        if job.index == 1 and not done:
            done.add(1)     # the other process finishes it meanwhile
            return 2, (f"error: run directory {tmp_path}/run1 is in use by process 7 on h "
                       f"since t; wait for it to finish")
        return 0, ""
    monkeypatch.setattr(sweep, "run_job", fake_run_job)
    monkeypatch.setattr(sweep, "is_done", lambda job: job.index in done)
    outcome = sweep.run_sweep(jobs, ["quickstart.gin"], str(tmp_path))
    assert [[j.index for j in outcome[k]] for k in ("succeeded", "elsewhere", "failed")] == [
        [2], [1], []]
    out = capsys.readouterr().out
    assert "job 1/2: A.b=1 replicate=0: running elsewhere (process ? on ?)" in out
    assert "job 1/2: A.b=1 replicate=0: finished elsewhere" in out


def test_real_sweep_resumes_and_reports_failures(tmp_path):
    """Two jobs of a tiny lottery run with the retrain branch (levels 0 and 1,
    holdout split): dilation 0.5 trains; dilation 0 fails with a one-line
    error without stopping the sweep.  Run again: the first is skipped."""
    gin_file = tmp_path / "tiny.gin"
    gin_file.write_text("\n".join(SMALL_RUN + [
        "ExperimentHparams.name = 'lottery'", "DatasetHparams.holdout_fraction = 0.25",
        "PruningHparams.levels = 1", "BranchHparams.names = ('retrain',)",
        "BranchHparams.levels = (0, 1)"]) + "\n")
    root = tmp_path / "runs"
    args = [f"--gin_file={gin_file}", f"--root_dir={root}",
            "--grid=BranchHparams.dilation=0.5,0.0"]
    first = run_sweep_cli(*args)
    assert first.returncode == 1, first.stdout + first.stderr[-2000:]
    out = first.stdout
    assert "job 1/2: BranchHparams.dilation=0.5 replicate=0: running" in out
    assert "job 1/2: BranchHparams.dilation=0.5 replicate=0: done in" in out
    assert ("job 2/2: BranchHparams.dilation=0.0 replicate=0: FAILED (exit 2)" in out and
            "error: BranchHparams.dilation must be > 0" in out)
    assert "sweep: 1/2 jobs finished (1 run now, 0 skipped as finished), 1 failed" in out
    (run_dir,) = glob.glob(str(root / "lottery_*"))
    rep = os.path.join(run_dir, "replicate_0")
    for level in (0, 1):
        (branch,) = [d for d in glob.glob(os.path.join(rep, f"level_{level}", "branch_retrain_*"))
                     if os.path.exists(os.path.join(d, "train", "final.json"))]
        assert json.load(open(os.path.join(branch, "branch.json"))) == {
            "name": "retrain", "level": level, "dilation": 0.5, "data_seed": None}
        metrics = [json.loads(l) for l in open(os.path.join(branch, "train", "metrics.jsonl"))]
        # 24 it x 0.5 = 12 it, evaluations every 8 x 0.5 = 4 it.
        assert [r["step"] for r in metrics if "test_accuracy" in r] == [0, 4, 8, 12]
    name = os.path.basename(run_dir)     # the training-speed figures: in the report page's
    for kind in ("early_stopping", "dilation"):
        assert os.path.exists(root / "report" / "figures" / f"speed_{name}_{kind}.png")
    assert len(glob.glob(str(root / sweep.JOBS_DIRNAME / "*.log"))) == 2
    # The closing table and the whole root's report.
    assert re.search(r"^\| BranchHparams.dilation=0.5 +\| 0 +\| \d+\.\d\d +\| the last IMP level "
                     r"\(level 1, 80\.00% of weights remaining\) \|$", out, re.M), out
    assert re.search(r"^\| BranchHparams.dilation=0.0 +\| 0 +\| - ", out, re.M)
    page = [l for l in out.splitlines() if l.startswith("report (every run under")]
    assert page and os.path.exists(page[0].split(": ", 1)[1])
    assert "InitializeLog" not in first.stderr and "cuda" not in first.stderr, first.stderr

    second = run_sweep_cli(*args, "--fail_fast")
    assert second.returncode == 1
    assert "job 1/2: BranchHparams.dilation=0.5 replicate=0: finished before, skipped" in second.stdout
    assert "job 2/2: BranchHparams.dilation=0.0 replicate=0: FAILED (exit 2)" in second.stdout
    assert "sweep: 1/2 jobs finished (0 run now, 1 skipped as finished), 1 failed" in second.stdout
    assert "failed: job 2: BranchHparams.dilation=0.0 replicate=0" in second.stdout
