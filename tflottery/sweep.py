"""Replicates and grid sweeps: every (grid point x replicate) job of `tflottery.main`.

    python -m tflottery.sweep --gin_file=lenet_mnist_local.gin --root_dir=runs \\
        --replicates=3 --grid="TrainingHparams.lr=1e-3,3e-3" \\
        --grid="LotteryHparams.rewind_step='0it','100it'"   # 3 x 2 x 2 = 12 jobs
    python -m tflottery.sweep ... --print_commands          # one shell command per job

A grid is `Key=v1,v2,...` with gin literals as values (strings quoted, tuples
in parentheses: `BranchHparams.levels=(0,2),(0,4)` is two values); several
grids make their product (tflottery/grid.py, which launch/sweep.py uses too;
here each value is also checked with gin's parser).  A job is `python -m tflottery.main` with the
sweep's gin files and bindings, then the grid point's bindings, and
`--replicate=r`.

Jobs run one after another as subprocesses, not in this process: each gets a
fresh gin configuration (gin is global state) and gives its TensorFlow
memory back when it exits (one that hangs in TensorFlow's shutdown after
its run directory says it finished is stopped, see _wait).  A failing job
does not stop the others (unless --fail_fast); the exit status is 1 if any
failed.  Several sweeps (or a sweep and a user's command) can share a root:
a job whose run directory another process holds (its lock, runs/lock.py)
is "running elsewhere", left for the end and then waited for; finished
there, it counts as finished, so each sweep exits 0 once every job is done,
whoever ran it.

Resuming: before running, every grid point's configuration is built (in a
child process) to learn its run directory and resolved hyperparameters; a
job is finished when its replicate directory holds a finished.json with
those hyperparameters (runs/finished.py), so running the same sweep again
skips it, and a job whose settings changed (more levels) runs again, its
finished phases skipped by the run itself.  Each job's output is kept in
<root_dir>/_sweep_jobs/<key>.log.  --print_commands output is for GNU
parallel or the launch/ scripts (jobs of one lottery run share its
directory, so run its first job alone before the others in parallel).

A sweep ends with a table (grid point x replicate: the final test accuracy
each job's finished.json records, and what it is of) and writes the report
of the whole root (`python -m tflottery.report ROOT`, in a child process;
`--no_report` skips it), printing the path of its report.html.
"""
import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import threading
import time
import tokenize
from typing import List, NamedTuple, Optional, Sequence, Tuple

from tflottery import grid as grid_module
from tflottery.errors import RUN_DIR_IN_USE, ConfigError
from tflottery.runs import layout

JOBS_DIRNAME = "_sweep_jobs"
EXIT_GRACE_SECONDS = 30.0
LOCK_POLL_SECONDS = 5.0     # how often a job running elsewhere is looked at


class Job(NamedTuple):
    index: int                      # 1-based position in the sweep
    replicate: int
    bindings: Tuple[str, ...]       # the grid point, as gin bindings
    argv: Tuple[str, ...]           # the full command
    replicate_dir: Optional[str] = None   # where the run writes finished.json (check_jobs)
    hparams: Optional[dict] = None        # the resolved hyperparameters it will record

    @property
    def description(self) -> str:
        return " ".join(self.bindings + (f"replicate={self.replicate}",))

    @property
    def command_line(self) -> str:
        return shlex.join(self.argv)


# ---- grids (tflottery/grid.py, shared with launch/sweep.py) ----
class _Literal:
    """Gin parser delegate that accepts references and macros as they are."""

    def configurable_reference(self, name, evaluate):
        return f"@{name}"

    def macro(self, name):
        return f"%{name}"


def check_binding(key: str, value: str) -> None:
    """ConfigError unless `key = value` is one gin binding (gin's own parser)."""
    from gin import config_parser
    try:
        statements = list(config_parser.ConfigParser(f"{key} = {value}\n", _Literal()))
    except (SyntaxError, ValueError, IndexError, StopIteration, tokenize.TokenError) as e:
        why = " ".join(str(e.msg if isinstance(e, SyntaxError) else e).split())
        why = why[why.find("Failed to parse"):] if "Failed to parse" in why else why
        raise ConfigError(f"{value!r} is not a gin value ({why})") from None
    if len(statements) != 1 or not isinstance(statements[0], config_parser.BindingStatement):
        raise ConfigError(f"{key} = {value} is not one gin binding")


def build_jobs(gin_file: Sequence[str], gin_bindings: Sequence[str], root_dir: str,
               replicates: int = 1, grid: Sequence[str] = (),
               python: str = sys.executable, extra_flags: Sequence[str] = ()) -> List[Job]:
    """Every job of the sweep, replicate by replicate (a full grid per replicate first)."""
    if replicates < 1:
        raise ConfigError(f"--replicates must be >= 1, got {replicates}")
    if not gin_file:
        raise ConfigError("no --gin_file given")
    grids = grid_module.parse_grids(grid, check_binding)
    jobs = []
    for replicate, pairs in grid_module.expand(grids, range(replicates)):
        point = tuple(f"{k}={v}" for k, v in pairs)
        argv = [python, "-m", "tflottery.main"]
        argv += [f"--gin_file={f}" for f in gin_file]
        argv += [f"--gin_bindings={b}" for b in tuple(gin_bindings) + point]
        argv += [f"--root_dir={root_dir}", f"--replicate={replicate}", *extra_flags]
        jobs.append(Job(len(jobs) + 1, replicate, point, tuple(argv)))
    return jobs


def check_jobs(gin_file: Sequence[str], gin_bindings: Sequence[str], jobs: Sequence[Job],
               root_dir: str, python: str = sys.executable) -> List[Job]:
    """Parse every grid point's configuration and build its hyperparameters before any job;
    return the jobs with the replicate directory and hyperparameters each will record.

    A misspelt configurable or field (`NoSuch.x=1,2`) or a value of the wrong
    type (`TrainingHparams.lr='a','b'`) then stops the sweep with one line,
    instead of failing in every job.  The check runs in a child process:
    it imports TensorFlow, whose start-up chatter on stderr (and import
    time) this process is spared.  Its last stdout line is a JSON list:
    per point, the run name and the resolved hyperparameters.
    """
    points = list(dict.fromkeys(job.bindings for job in jobs))
    payload = json.dumps({"gin_file": list(gin_file), "gin_bindings": list(gin_bindings),
                          "points": [list(p) for p in points]})
    code = "import sys, tflottery.sweep as s; s._check_points(sys.argv[1])"
    out = subprocess.run([python, "-c", code, payload], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        errors = [l for l in out.stderr.splitlines() if l.startswith("error: ")]
        raise ConfigError(errors[-1][len("error: "):] if errors else
                          f"checking the configuration failed: {out.stderr.strip()[-500:]}")
    configured = dict(zip(points, json.loads(out.stdout.strip().splitlines()[-1])))
    return [job._replace(
        replicate_dir=layout.replicate_dir(
            layout.run_dir(root_dir, configured[job.bindings]["run"]), job.replicate),
        hparams=configured[job.bindings]["hparams"]) for job in jobs]


def _check_points(payload: str) -> None:
    """The child of check_jobs: exit 2 with one `error:` line at the first bad point."""
    import gin
    from tflottery import gin_files, runner
    spec = json.loads(payload)
    configured = []
    for bindings in spec["points"]:
        gin.clear_config()
        try:
            gin_files.parse(spec["gin_file"], spec["gin_bindings"] + bindings)
            experiment, base = runner.build_hparams()
            name, record = runner.name_and_record(experiment, base)
        except ConfigError as e:
            point = f"grid point {', '.join(bindings)}: " if bindings else ""
            print(f"error: {point}{str(e).splitlines()[0]}", file=sys.stderr)
            sys.exit(2)
        configured.append({"run": name, "hparams": record["hparams"]})
    print(json.dumps(configured))


# ---- running ----
def job_key(job: Job, gin_file: Sequence[str]) -> str:
    """Names a job's log: its command (not the interpreter) and its gin files' text."""
    from tflottery import gin_files
    texts = []
    for f in gin_file:
        with open(gin_files.resolve(f), encoding="utf-8") as fh:
            texts.append(fh.read())
    blob = json.dumps({"argv": list(job.argv[1:]), "gin": texts})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def is_done(job: Job) -> bool:
    """True if the job's replicate directory says it finished with the job's settings
    (runs/finished.py); unknown (a job check_jobs has not seen) is not done."""
    from tflottery.runs.finished import is_finished
    return job.replicate_dir is not None and is_finished(job.replicate_dir, job.hparams)


def _wait(proc, done, grace: float) -> int:
    """The job's exit status.  TensorFlow can hang for ever while the interpreter
    shuts down (a tf.data iterator freed by the final garbage collection):
    a job whose run directory says it is finished (`done()`) and has not
    exited `grace` seconds later is stopped and counted as finished."""
    finished_at = None
    while True:
        try:
            return proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            if finished_at is not None or done():
                finished_at = finished_at or time.time()
                if time.time() - finished_at > grace:
                    proc.kill()
                    proc.wait()
                    return 0


def run_job(job: Job, log_path: str, stream: bool = False) -> Tuple[int, str]:
    """Run one job to its end, its output kept in `log_path`; returns (exit status,
    last error line or '')."""
    from tflottery.runs import io
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    proc = subprocess.Popen(job.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, env=env)
    lines = []

    def pump():
        for line in proc.stdout:
            lines.append(line)
            if stream:
                sys.stdout.write(line)
    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        status = _wait(proc, lambda: is_done(job), EXIT_GRACE_SECONDS)
    except KeyboardInterrupt:
        proc.terminate()    # the run resumes from its checkpoint next time
        proc.wait()
        raise
    reader.join(timeout=10)
    text = "".join(lines)
    io.atomic_write_text(log_path, text)
    errors = [l for l in text.splitlines() if l.startswith("error:")]
    error = errors[-1] if errors else (text.strip().splitlines() or [""])[-1][:300]
    return (0, "") if status == 0 else (status, error)


def held_elsewhere(job: Job) -> Optional[dict]:
    """The lock record of the live process (another sweep, a user's command) working in
    the job's run directory, or None (runs/lock.py)."""
    if job.replicate_dir is None:
        return None
    from tflottery.runs.lock import live_holder
    return live_holder(os.path.dirname(job.replicate_dir))


def run_sweep(jobs: Sequence[Job], gin_file: Sequence[str], root_dir: str,
              fail_fast: bool = False, stream: bool = False, out=None) -> dict:
    """Run the jobs in order, skipping finished ones; returns the outcome of each.

    A job whose run directory another live process holds (two sweeps on one
    root, or a user's command) is "running elsewhere": it is left for the
    end, then waited for; finished there, it counts as finished (outcome
    'elsewhere'); left unfinished (that process stopped), this sweep runs it.
    """
    out = out or sys.stdout
    jobs_dir = os.path.join(root_dir, JOBS_DIRNAME)
    outcome = {"succeeded": [], "skipped": [], "elsewhere": [], "failed": [], "not_run": []}
    n = len(jobs)

    def say(job, text):
        print(f"job {job.index}/{n}: {job.description}: {text}", file=out, flush=True)

    def run(job) -> bool:
        """Run the job; False if another process took its run directory first."""
        start = time.time()
        status, error = run_job(job, os.path.join(jobs_dir, job_key(job, gin_file) + ".log"),
                                stream)
        took = time.time() - start
        if status != 0 and RUN_DIR_IN_USE in error:
            return False
        if status == 0:
            say(job, f"done in {took:.0f} s")
            outcome["succeeded"].append(job)
        else:
            say(job, f"FAILED (exit {status}) after {took:.0f} s: {error}")
            outcome["failed"].append(job)
        return True

    later = []
    for job in jobs:
        if is_done(job):
            say(job, "finished before, skipped")
            outcome["skipped"].append(job)
            continue
        if fail_fast and outcome["failed"]:
            say(job, "not run (--fail_fast)")
            outcome["not_run"].append(job)
            continue
        holder = held_elsewhere(job)
        if holder is None:
            say(job, "running")
            if run(job):
                continue
            holder = held_elsewhere(job) or {}
        say(job, f"running elsewhere (process {holder.get('pid', '?')} on "
                 f"{holder.get('host', '?')}); coming back to it after the other jobs")
        later.append(job)
    for job in later:
        while True:
            if held_elsewhere(job) is not None:
                time.sleep(LOCK_POLL_SECONDS)
                continue
            if is_done(job):
                say(job, "finished elsewhere")
                outcome["elsewhere"].append(job)
                break
            say(job, "running (not finished elsewhere)")
            if run(job):
                break
            time.sleep(LOCK_POLL_SECONDS)   # a lock it needs (lmc: the lottery run's) is held
    return outcome


def summary_lines(outcome: dict, total: int) -> List[str]:
    elsewhere = len(outcome.get("elsewhere", ()))
    ok = len(outcome["succeeded"]) + len(outcome["skipped"]) + elsewhere
    lines = [f"sweep: {ok}/{total} jobs finished ({len(outcome['succeeded'])} run now, "
             f"{len(outcome['skipped'])} skipped as finished"
             + (f", {elsewhere} finished by another process" if elsewhere else "")
             + f"), {len(outcome['failed'])} failed"
             + (f", {len(outcome['not_run'])} not run (--fail_fast)" if outcome["not_run"] else "")]
    for job in outcome["failed"]:
        lines.append(f"  failed: job {job.index}: {job.description}")
        lines.append(f"    {job.command_line}")
    return lines


def results_table(jobs: Sequence[Job]) -> List[str]:
    """Markdown lines: per grid point and replicate, the headline result each job's
    finished.json records (final test accuracy and what it is of); '-' for a job
    that has not finished with its settings."""
    from tflottery.runs.finished import finished_record
    rows = []
    for job in jobs:
        found = (finished_record(job.replicate_dir, job.hparams)
                 if job.replicate_dir is not None else None)
        accuracy = (found or {}).get("test_accuracy")
        rows.append(["<br>".join(job.bindings) or "(the gin files)", str(job.replicate),
                     "-" if accuracy is None else f"{100 * accuracy:.2f}",
                     (found or {}).get("accuracy_of") or ""])
    header = ["grid point", "replicate", "final test accuracy %", "of"]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [
        line(r) for r in rows]


def write_report(root_dir: str, python: str = sys.executable) -> Optional[str]:
    """`python -m tflottery.report root_dir` in a child (this process stays free of
    TensorFlow); the path of its report.html, or None (its error is printed)."""
    out = subprocess.run([python, "-m", "tflottery.report", root_dir], capture_output=True,
                         text=True, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        print(f"report not written: {(out.stderr.strip().splitlines() or ['?'])[-1]}",
              flush=True)
        return None
    return os.path.join(root_dir, "report", "report.html")


# ---- command line ----
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tflottery.sweep", description=__doc__.split("\n")[0])
    p.add_argument("--gin_file", action="append", default=[], help="as for tflottery.main (repeatable)")
    p.add_argument("--gin_bindings", action="append", default=[], help="binding for every job (repeatable)")
    p.add_argument("--root_dir", default="runs", help="where the runs go (as for tflottery.main)")
    p.add_argument("--replicates", type=int, default=1, help="replicates 0..N-1 of every grid point")
    p.add_argument("--grid", action="append", default=[],
                   help="Class.field=v1,v2,... with gin literal values (repeatable: the product)")
    p.add_argument("--print_commands", action="store_true", help="print one shell command per job, run nothing")
    p.add_argument("--fail_fast", action="store_true", help="stop at the first failing job")
    p.add_argument("--stream", action="store_true", help="show each job's output as it runs")
    p.add_argument("--speed_report", action="store_true", help="removed (#23): says where the report is")
    p.add_argument("--no_report", action="store_true",
                   help="do not write the report of root_dir at the end")
    p.add_argument("--python", default=sys.executable, help="interpreter of the jobs")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.speed_report:
        from tflottery.reporting import speed
        print(f"error: {speed.MESSAGE}", file=sys.stderr)
        return 2
    try:
        jobs = build_jobs(args.gin_file, args.gin_bindings, args.root_dir, args.replicates,
                          args.grid, python=args.python)
        if not args.print_commands:
            from tflottery import gin_files
            for f in args.gin_file:
                gin_files.resolve(f)
            jobs = check_jobs(args.gin_file, args.gin_bindings, jobs, args.root_dir, args.python)
    except ConfigError as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    if args.print_commands:
        for job in jobs:
            print(job.command_line)
        return 0
    print(f"sweep: {len(jobs)} jobs ({len(jobs) // args.replicates} grid points x "
          f"{args.replicates} replicates) under {args.root_dir}", flush=True)
    # Whether a job finished is read through tf.io.gfile (a root may be on gs://):
    # TensorFlow is imported here, without its start-up lines on the sweep's stderr.
    from tflottery import tf_import
    tf_import.import_tensorflow()
    try:
        outcome = run_sweep(jobs, args.gin_file, args.root_dir, args.fail_fast, args.stream)
    except KeyboardInterrupt:
        print("sweep interrupted; run the same command again to continue", flush=True)
        return 130
    for line in summary_lines(outcome, len(jobs)):
        print(line, flush=True)
    print("\n".join(["", *results_table(jobs), ""]), flush=True)
    if not args.no_report and len(outcome["failed"]) < len(jobs):
        path = write_report(args.root_dir, args.python)
        if path:
            print(f"report (every run under {args.root_dir}): {path}", flush=True)
    return 1 if outcome["failed"] or outcome["not_run"] else 0


if __name__ == "__main__":
    sys.exit(main())
