"""Signal battery: SIGTERM / Ctrl-C at many random moments; is any signal lost?

    python benchmarks/signal_battery.py --signals=50 --work_dir=/tmp/battery
    python benchmarks/signal_battery.py --signals=5 --types=lottery,pai   # a quick look
    python benchmarks/signal_battery.py --minutes=40 --parallel=5         # as many as fit

For each experiment type (lottery, lmc, pai, dst, dynamic_imp; tiny
quickstart-like configurations on the 'digits' data) the battery

1. runs the configuration once without interruption (the reference) and
   times it (D seconds, start-up included);
2. then runs it again and again on a second root, each time sending SIGTERM
   (or, one time in four, SIGINT) after a random delay in [0, D) (in
   [f*D, D) with --min_fraction=f, to send most into the run rather than the
   seconds of start-up; the summary counts those honoured in start-up): a signalled
   process must exit 143 (130 for SIGINT) with a last line starting
   'interrupted', and must not print "Exception ignored";
3. when a process finishes before its signal is due, that chain of resumed
   runs is complete: its results (every final.json, sparsity.json,
   summary.json, instability.json, ..., finished.json without its time stamp)
   must equal the reference's bit for bit (--deterministic); the next signal
   starts a new chain on a fresh root.

Each signalled run is classified:
  honoured   exit 143/130, says 'interrupted', nothing swallowed
  early      killed by the signal itself before the CLI installed its handler
             (the first instants of the interpreter): stopped, not lost
  LOST       exit 0: the run went on as if no signal had come
  other      anything else (a traceback, another exit status): printed

The last line is the summary ('lost signals: N of M').  The exit status is 1
if a signal was lost, a run failed, or a chain's results differ.  Run it
with PYTHONPATH pointing at the checkout to measure (e.g. main vs a branch).
"""
import argparse
import concurrent.futures
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

BASE = ["--gin_file=quickstart.gin", "--deterministic",
        "--gin_bindings=TrainingHparams.training_steps = '40it'",
        "--gin_bindings=TrainingHparams.eval_every = '20it'",
        "--gin_bindings=TrainingHparams.steps_per_loop = 5"]

CONFIGS = {
    "lottery": ["--gin_bindings=PruningHparams.levels = 2"],
    "lmc": ["--gin_file=lmc.gin",
            "--gin_bindings=InstabilityHparams.rewind_steps = ('0it', '10it')",
            "--gin_bindings=InstabilityHparams.num_alphas = 4"],
    "pai": ["--gin_file=pai_isnip.gin", "--gin_bindings=PaiHparams.iterations = 10",
            "--gin_bindings=PaiAblationHparams.names = ('shuffle',)"],
    "dst": ["--gin_file=rigl.gin", "--gin_bindings=DstHparams.update_every = '10it'"],
    "dynamic_imp": ["--gin_file=dynamic_imp.gin"],
}

# Keys whose values are times, not results.
TIME_KEYS = {"finished", "started", "seconds", "steps_per_second", "wall_seconds"}


def _default_sigint():
    # A child of a shell without job control inherits SIGINT ignored; give
    # the run the disposition a terminal gives it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(root, args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([sys.executable, "-m", "tflottery.main", f"--root_dir={root}",
                             *BASE, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            preexec_fn=_default_sigint)


def _without_times(value):
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k not in TIME_KEYS}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def results(root):
    """{relative path: content} of every result file of the runs under `root`."""
    out = {}
    for path in sorted(glob.glob(os.path.join(root, "**", "*.json"), recursive=True)):
        name = os.path.basename(path)
        if name in ("lock.json", "hparams.json") or "_sweep_jobs" in path:
            continue
        with open(path) as f:
            out[os.path.relpath(path, root)] = _without_times(json.load(f))
    return out


def classify(sig, code, err):
    last = (err.strip().splitlines() or [""])[-1]
    swallowed = "Exception ignored" in err
    if code == -sig:
        return "early"
    if code == 0:
        return "LOST"
    if code == 128 + sig and last.startswith("interrupted") and not swallowed:
        return "honoured"
    return "other"


class TypeBattery:
    """The reference run and the signalled chains of one experiment type."""

    def __init__(self, name, work_dir, signals, seed, log, deadline=float("inf"),
                 min_fraction=0.0):
        self.name, self.args, self.deadline = name, CONFIGS[name], deadline
        self.min_fraction = min_fraction
        self.dir = os.path.join(work_dir, name)
        self.signals, self.rng, self.log = signals, random.Random(f"{seed}-{name}"), log
        self.counts = {"honoured": 0, "early": 0, "LOST": 0, "other": 0}
        self.in_start_up = 0    # honoured before the run started (imports, data, model)
        self.chains = {"identical": 0, "differ": 0, "failed": 0}

    def finish_chain(self, root, reference, proc_out=None):
        if proc_out is None:
            proc = start(root, self.args)
            _, err = proc.communicate(timeout=900)
            code = proc.returncode
        else:
            code, err = proc_out
        if code != 0:
            self.chains["failed"] += 1
            self.log(f"{self.name}: finishing {root} failed (exit {code}): {err[-1500:]}")
            return
        same = results(root) == reference
        self.chains["identical" if same else "differ"] += 1
        if not same:
            self.log(f"{self.name}: results of {root} differ from the reference")

    def run(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        t = time.time()
        proc = start(os.path.join(self.dir, "reference"), self.args)
        _, err = proc.communicate(timeout=900)
        duration = time.time() - t
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name}: the reference run failed: {err[-2000:]}")
        reference = results(os.path.join(self.dir, "reference"))
        self.log(f"{self.name}: reference run {duration:.1f} s, {len(reference)} result files")
        chain, sent = 0, 0
        root = os.path.join(self.dir, f"chain_{chain}")
        while sent < self.signals and time.time() < self.deadline:
            sig = signal.SIGINT if self.rng.random() < 0.25 else signal.SIGTERM
            delay = self.rng.uniform(self.min_fraction * duration, duration)
            proc = start(root, self.args)
            deadline = time.time() + delay
            while time.time() < deadline and proc.poll() is None:
                time.sleep(min(0.01, max(deadline - time.time(), 0)))
            if proc.poll() is not None:         # finished before the signal was due
                _, err = proc.communicate()
                self.finish_chain(root, reference, (proc.returncode, err))
                chain += 1
                root = os.path.join(self.dir, f"chain_{chain}")
                continue
            proc.send_signal(sig)
            sent += 1
            _, err = proc.communicate(timeout=900)
            kind = classify(sig, proc.returncode, err)
            self.counts[kind] += 1
            last = (err.strip().splitlines() or [""])[-1][:160]
            self.in_start_up += kind == "honoured" and "before the run started" in last
            self.log(f"{self.name}: signal {sent}: {signal.Signals(sig).name} after {delay:.1f} s:"
                     f" {kind}, exit {proc.returncode}: {last}")
            if kind in ("LOST", "other"):
                self.log(f"{self.name}: {kind}: {signal.Signals(sig).name} after {delay:.2f} s, "
                         f"exit {proc.returncode}: {err[-1500:]}")
        self.finish_chain(root, reference)
        return self


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--signals", type=int, default=50, help="signals per experiment type")
    p.add_argument("--types", default=",".join(CONFIGS), help="comma-separated subset of "
                   + ", ".join(CONFIGS))
    p.add_argument("--work_dir", default="/tmp/tflottery_signal_battery")
    p.add_argument("--parallel", type=int, default=2, help="experiment types at a time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minutes", type=float, default=float("inf"),
                   help="send no new signal after this many minutes (then finish the chains)")
    p.add_argument("--min_fraction", type=float, default=0.0,
                   help="signal after a delay in [f*D, D) instead of [0, D): f = 0.4 sends most "
                        "signals after the start-up (imports, data, model), into the run")
    args = p.parse_args(argv)
    names = [n for n in args.types.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or args.signals < 1:
        print(f"error: unknown type(s) {unknown} (known: {', '.join(CONFIGS)}) or --signals "
              f"< 1", file=sys.stderr)
        return 2
    lock = threading.Lock()

    def log(line):
        with lock:
            print(line, flush=True)
    t = time.time()
    deadline = t + 60 * args.minutes
    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        batteries = list(pool.map(lambda n: TypeBattery(n, args.work_dir, args.signals,
                                                         args.seed, log, deadline,
                                                         args.min_fraction).run(), names))
    total = {k: sum(b.counts[k] for b in batteries) for k in batteries[0].counts}
    chains = {k: sum(b.chains[k] for b in batteries) for k in batteries[0].chains}
    for b in batteries:
        print(f"{b.name:12s} signals {sum(b.counts.values()):4d}  {b.counts}  chains {b.chains}"
              f"  honoured in start-up {b.in_start_up}")
    sent = sum(total.values())
    print(f"total: {sent} signals {total} (honoured in start-up: "
          f"{sum(b.in_start_up for b in batteries)}); resumed chains {chains}; "
          f"{time.time() - t:.0f} s")
    print(f"lost signals: {total['LOST']} of {sent}")
    bad = total["LOST"] or total["other"] or chains["differ"] or chains["failed"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
