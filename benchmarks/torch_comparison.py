"""A whole tflottery IMP job against a plain PyTorch script doing the same work.

Both are LeNet-300-100 on the real MNIST split (the 10,000 test images in
../shared/data/mnist, 8,000 train / 2,000 test, pixels scaled by the MNIST
mean and std), Adam at lr 1.2e-3, batch 60, L levels of S steps with 20%
of each layer's remaining weights pruned by magnitude after every level and
the survivors rewound to their initialisation; the test set is evaluated
once before level 0 (tflottery's step-0 phase) and at step 0, every E steps
and at the end of every level.  Each side runs as a fresh process, timed
whole (wall clock from launch to exit), rounds alternating (this machine is
noisy), each tflottery round in a fresh run directory; the median ratio is
printed with the load average, and the two sides' step, evaluation and
level counts are checked equal and their final accuracies printed side by
side (a sanity check, not a comparison: the seeds and data orders differ).

The tflottery side's own log (absl lines carry the wall-clock time) gives
where its seconds go: imports and flags to the strategy line, data and
model to the run directory line, the step-0 phase (checkpoints, the first
evaluation's trace), level 0 (with the training loop's trace), the later
levels, and from the last level's line to the exit (summary, figures).

    pip install torch --index-url https://download.pytorch.org/whl/cpu   # not a requirement
    python benchmarks/torch_comparison.py                       # cases 7x300@150, 4x3000@500
    python benchmarks/torch_comparison.py --cases 7x300@150 --rounds 5
    python benchmarks/torch_comparison.py --baseline_src /work/main   # that checkout too
    python benchmarks/torch_comparison.py --torch_threads 1      # torch on one thread

torch runs with OpenMP's default waiting, as a plain script would: on a quiet
machine that is the fair comparison.  On a loaded machine torch's spinning
threads slowed down tenfold (load 8, 2 cores); there, OMP_WAIT_POLICY=PASSIVE
in the environment is passed on, but it also slows torch on a quiet machine
(7x300: 20.05 s passive vs 9.74 s default), so ratios under it are not the
issue's.

Measured 2026-12-07 on the shared 2-core machine at load average 7-9 (other
agents running; NOT the quiet machine of the acceptance), 3 rounds each,
"tflottery" = branch d_fixed, "baseline" = main (81e0c53):
  7x300@150   median wall: tflottery 43.9 s, baseline 52.0 s (0.84x), torch
              37.5 s; tflottery/torch 1.17x, baseline/torch 1.39x
  4x3000@500  median wall: tflottery 84.7 s, baseline 92.5 s (0.92x), torch
              191 s (torch varied 85-215 s under this load: no ratio to it
              means anything here)
Quiet machine, same day (load 0.6-3.2, 3 rounds, "tflottery" = main after
#26's storage and start-up work, "baseline" = 81e0c53):
  7x300@150   tflottery 17.42 s, baseline 20.67 s (0.84x), torch 20.05 s
  4x3000@500  tflottery 43.68 s, baseline 42.00 s (1.04x), torch 73.21 s
  torch ran with OMP_WAIT_POLICY=PASSIVE there (then this script's default):
  with OpenMP's default, the same hour, 7x300@150 gave tflottery 17.08 s vs
  torch 9.74 s = 1.75x (rounds 1.45, 1.95, 1.68): the <=1.4x goal is not met.
2026-12-07 evening, no other agent running (load 1-2.4: the benchmark's own
processes; rounds still varied 14-29 s for the same job), tflottery with its
bytecode compiled once (bytecode_env), "tflottery" = main 585bd41 (garbage
collector thresholds, loops traced without autograph), "baseline" = 85a7047,
two sets of 3 and 5 rounds, pooled (8 rounds):
  7x300@150   median wall: tflottery 18.05 s, baseline 20.79 s (0.87x), torch
              12.86 s; tflottery/torch 1.40x (per-round median 1.39x; the two
              sets gave 1.46x and 1.31x), baseline/torch 1.62x
  4x3000@500  3 rounds: tflottery 47.12 s vs torch 42.09 s = 1.12x (per-round
              median 1.24x): the <=1.0x goal is not met; 9.34 s per later
              level (3.1 ms a step).  With TF_NUM_INTRAOP_THREADS=1 in the
              environment (tflottery's side only; it changes numerics: final
              accuracy 97.30% vs 96.95%), the next 3 rounds: 37.72 s vs torch
              50.99 s (per-round 1.06, 0.72, 0.64), torch itself 36-53 s
              across the two sets: no ratio here is steady to 10%.
2026-12-07 late evening, quiet (load 0.5-2: the benchmark's own processes;
torch itself ran twice as fast as the evening before), "tflottery" = main
98ed2ec (training stream as whole batches, 1-byte masks), "baseline" =
18a100d:
  7x300@150   3 rounds with the baseline: tflottery 9.71 s, baseline 8.92 s,
              torch 6.12 s (1.59x, 1.46x); then 6 rounds alone: 10.10 s vs
              torch 6.68 s = 1.51x (rounds 1.47-1.55 after a cold first one):
              the <=1.4x goal is not met.  Where the seconds go: 2.76 s to
              the strategy line (`import tensorflow` alone is ~3 s under
              -X importtime, torch's imports 0.98 s), 0.77 s to the first
              step, level 0 1.70 s (with the first trace), 0.71 s a later
              level, 0.62 s after the last.  Level 0 of main and the baseline
              alternated 3 more rounds: 1.27 s vs 1.81 s (noise both ways).
  4x3000@500  3 rounds: tflottery 22.34 s, baseline 23.39 s, torch 22.63 s:
              0.99x (rounds 0.99, 1.03, 0.94), baseline 1.03x; 4.37 s a
              later level vs the baseline's 4.73 s (0.92x).
2026-12-07 night, quiet (load 0.6-1.6), 6 rounds (the first of each side
cold), "tflottery" = main 0d4dd55 (the end-of-run report's imports warmed in
a background thread once training runs), "baseline" = 959fc06:
  7x300@150   tflottery 9.71 s, baseline 9.97 s, torch 6.57 s: 1.48x
              (per-round median 1.49x), baseline 1.52x (1.56x): the <=1.4x
              goal is not met.  Last level to exit 0.33 s vs 0.60 s; the
              rest as before: 2.78 s to the strategy line, 0.64 s to level
              0, level 0 1.57 s, 0.71 s a later level.
  4x3000@500  3 rounds (the first cold): tflottery 23.68 s, baseline 24.50 s,
              torch 24.23 s: 0.98x (baseline 1.01x); 0.29 s vs 0.60 s to exit.
2026-12-08 night, quiet (load 1.3-2.4: the benchmark's own processes),
"tflottery" = main after ml_dtypes<0.7 (0.7.0's import took 0.55 s), the
evaluation pass's weight*mask computed once, evaluation pipelines built once
and masks deflated at level 1; "baseline" = a6b5fd6 with ml_dtypes 0.7.0 in
its PYTHONPATH (what it installed); three sets each:
  7x300@150   6 rounds a set: tflottery/torch 1.32x, 1.38x, 1.35x (per-round
              medians 1.37x, 1.38x, 1.38x), baseline 1.45x and 1.44x (1.45x,
              1.46x): the <=1.4x goal is met, by a few hundredths.  First two
              sets: 2.19-2.30 s to the strategy line (baseline 2.91-2.93), 0.60-0.64 s to
              level 0, level 0 1.66-1.73 s, 0.68-0.69 s a later level
              (baseline 0.72), 0.33-0.36 s to exit.
  4x3000@500  3 rounds a set: tflottery/torch 1.14x, 0.91x, 1.02x (per-round
              medians 1.15x, 0.94x, 1.02x), baseline 0.96x, 0.98x, 1.27x:
              single runs of either tree jumped from 24 to 30 s at random
              (the first set's tflottery level 0 took 10.9 s in every round;
              run alone right after, 5.9 s, as the baseline's), so no ratio
              here is steady to 10%; pooled over the 9 rounds, 1.06x
              (baseline 1.03x), 0.98x without each set's cold first round
              (baseline 0.99x).  4.85-5.07 s a later level (baseline
              5.08-5.10).
2026-12-08 morning, quiet (load 1-2.6: the benchmark's own processes; torch
ran faster than the night before: 20.2-20.4 s and 5.6-5.8 s), "tflottery" =
main after its own tf.data functions and fused updates were traced without
autograph and the end-of-run figure warmed while training, "baseline" =
75d1d29; two sets of 4 rounds with the baseline, then 6 rounds alone:
  7x300@150   tflottery 7.74 s and 8.05 s vs torch 5.58 s and 5.78 s: 1.39x
              twice (per-round medians 1.37x, 1.38x), baseline 1.43x and
              1.41x (1.41x, 1.42x): the <=1.4x goal is met, by hundredths.
              1.93-1.95 s to the strategy line, 0.47-0.48 s to level 0 (0.51-0.54),
              level 0 1.27-1.49 s (1.38-1.45), 0.62-0.63 s a later level
              (the same), 0.22 s to exit (0.29).
  4x3000@500  tflottery/torch 1.10x, 1.07x and 1.05x (per-round medians 1.10x,
              1.07x, 1.05x; each set's first, cold round 1.27-1.43x), baseline
              1.05x and 1.09x: the <=1.0x goal is not met.  4.52-4.67 s a later
              level (baseline 4.29-4.75: the same steps, within noise), 0.19-0.20 s
              to exit (0.27-0.28).  A scratch whole-step XLA compile (jit_compile
              on the replica step; not kept) gave 3.90 s a later level against
              4.41 s but cost 1.3 s more in level 0, and made 7x300 1.44x.
The same work on both sides: 7 levels, 2,100 steps, 22 evaluations; 4
levels, 12,000 steps, 29 evaluations; final accuracies 96.70% / 96.25% and
96.95% / 96.90% (tflottery / torch).

A case is LxS@E: L levels (level 0 dense, then L-1 pruned) of S steps,
evaluating every E steps.  With --baseline_src, a second tflottery checkout
joins the rotation and both are compared with the same torch rounds.
"""
import argparse
import atexit
import datetime
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_DIR = os.environ.get("TFLOTTERY_MNIST_DIR",
                           os.path.normpath(os.path.join(HERE, "..", "shared", "data", "mnist")))

# The plain PyTorch job, run as its own process: argv levels steps eval_every mnist_dir
# threads (0: torch's default).
TORCH_SCRIPT = r'''
import time
T0 = time.time()
import gzip, json, sys
import numpy as np
import torch
from torch import nn
T_IMPORT = time.time()
levels, steps, every, mnist = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if int(sys.argv[5]):
    torch.set_num_threads(int(sys.argv[5]))

def idx(name):
    raw = gzip.open(f"{mnist}/{name}", "rb").read()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)

x = (idx("t10k-images-idx3-ubyte.gz").reshape(-1, 784) / 255.0 - 0.1307) / 0.3081
y = idx("t10k-labels-idx1-ubyte.gz").astype(np.int64)
x_train, y_train = torch.tensor(x[:8000], dtype=torch.float32), torch.tensor(y[:8000])
x_test, y_test = torch.tensor(x[8000:], dtype=torch.float32), torch.tensor(y[8000:])
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                      nn.Linear(100, 10))
for m in model:
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        nn.init.zeros_(m.bias)
init = {k: v.clone() for k, v in model.state_dict().items()}
weights = [m.weight for m in model if isinstance(m, nn.Linear)]
masks = [torch.ones_like(w) for w in weights]
loss_fn = nn.CrossEntropyLoss()
counts = {"steps": 0, "evaluations": 0, "levels": 0}

def evaluate():
    counts["evaluations"] += 1
    with torch.no_grad():
        return (model(x_test).argmax(1) == y_test).float().mean().item()

def batches():
    g = torch.Generator().manual_seed(1)
    while True:
        order = torch.randperm(len(x_train), generator=g)
        for i in range(0, len(order) - 59, 60):
            yield order[i:i + 60]

T_READY = time.time()
evaluate()                      # tflottery's step-0 phase evaluates W0 once
T_FIRST = None
accuracy = None
for level in range(levels):
    if level:
        for w, m in zip(weights, masks):        # 20% of each layer's remaining weights
            alive = w.detach().abs()[m.bool()]
            k = int(round(0.2 * alive.numel()))
            cut = alive.kthvalue(k).values
            m.mul_((w.detach().abs() > cut).float())
    model.load_state_dict(init)                 # rewind to the initialisation
    with torch.no_grad():
        for w, m in zip(weights, masks):
            w.mul_(m)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.2e-3)
    stream = batches()
    evaluate()
    for step in range(1, steps + 1):
        b = next(stream)
        optimizer.zero_grad()
        loss_fn(model(x_train[b]), y_train[b]).backward()
        optimizer.step()
        with torch.no_grad():
            for w, m in zip(weights, masks):
                w.mul_(m)
        counts["steps"] += 1
        if T_FIRST is None:
            T_FIRST = time.time()
        if step % every == 0 or step == steps:
            accuracy = evaluate()
    counts["levels"] += 1
T_END = time.time()
density = sum(m.sum().item() for m in masks) / sum(m.numel() for m in masks)
print("RESULT " + json.dumps(dict(counts, final_accuracy=accuracy, density=density, times={
    "imports": T_IMPORT - T0, "data_and_model": T_READY - T_IMPORT,
    "to_first_step": T_FIRST - T0, "training": T_END - T_READY})), flush=True)
'''

# The milestones of a tflottery run's log, in order: (name, pattern of the line).
MILESTONES = [
    ("strategy line", r"\] strategy: "),
    ("run directory line", r"\] run directory: "),
    ("level 0 training starts", r"\] level 0: training steps"),
    ("level 0 done", r"\] level 0: density [\d.]+%, test accuracy"),
    ("last level done", None),      # the last "level N: density ..., test accuracy" line
]
_ABSL_TIME = re.compile(r"^[IWEF]\d{4} (\d\d):(\d\d):(\d\d)\.(\d{6}) ")
_LEVEL_DONE = re.compile(r"\] level (\d+): density [\d.]+%, test accuracy")


def parse_case(text: str):
    """'7x300@150' -> (7, 300, 150); '4x3000' evaluates every 500 steps (or at S/2 if smaller)."""
    m = re.fullmatch(r"(\d+)x(\d+)(?:@(\d+))?", text.strip())
    if not m:
        raise SystemExit(f"error: case {text!r} is not LxS or LxS@E (e.g. 7x300@150)")
    levels, steps = int(m.group(1)), int(m.group(2))
    every = int(m.group(3)) if m.group(3) else min(500, max(1, steps // 2))
    if levels < 1 or steps < 1 or every < 1 or steps % every:
        raise SystemExit(f"error: case {text!r}: need L >= 1, S >= 1 and E dividing S")
    return levels, steps, every


def log_times(stderr: str, started: datetime.datetime) -> dict:
    """Seconds from the launch to each milestone of the tflottery log."""
    times, last_level = {}, None
    for line in stderr.splitlines():
        m = _ABSL_TIME.match(line)
        if not m:
            continue
        h, mi, s, us = (int(g) for g in m.groups())
        at = started.replace(hour=h, minute=mi, second=s, microsecond=us)
        if at < started - datetime.timedelta(hours=12):
            at += datetime.timedelta(days=1)        # the run crossed midnight
        t = (at - started).total_seconds()
        for name, pattern in MILESTONES:
            if pattern and name not in times and re.search(pattern, line):
                times[name] = t
        if _LEVEL_DONE.search(line):
            last_level = t
    if last_level is not None:
        times["last level done"] = last_level
    return times


_BYTECODE = {}


def bytecode_env(src: str) -> dict:
    """The environment of a tflottery process: with its bytecode compiled once, into a
    cache of this benchmark's own, as an installed package has it (pip compiles at
    install, as it did torch's).  Without this, an environment with
    PYTHONDONTWRITEBYTECODE (this machine's) compiles all of tflottery's source at
    every launch, 0.25-0.5 s of CPU that no user pays."""
    if src not in _BYTECODE:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="torch_comparison_pyc_")
        atexit.register(shutil.rmtree, env["PYTHONPYCACHEPREFIX"], True)
        subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(src, "tflottery")],
                       env=env, check=True)
        _BYTECODE[src] = env
    return _BYTECODE[src]


def run_tflottery(src: str, levels: int, steps: int, every: int) -> dict:
    """One tflottery job in a fresh run directory, timed whole; its counts from the run files."""
    bindings = [f"PruningHparams.levels = {levels - 1}", "PruningHparams.scope = 'layerwise'",
                "BranchHparams.names = ()", f"TrainingHparams.training_steps = '{steps}it'",
                f"TrainingHparams.eval_every = '{every}it'"]
    env = dict(bytecode_env(src), PYTHONPATH=src, TFLOTTERY_MNIST_DIR=MNIST_DIR)
    with tempfile.TemporaryDirectory(prefix="torch_comparison_") as root:
        cmd = [sys.executable, "-m", "tflottery.main", "--gin_file=lenet_mnist_local.gin",
               "--gin_file=imp.gin", f"--root_dir={root}"]
        cmd += [f"--gin_bindings={b}" for b in bindings]
        started = datetime.datetime.now()
        t = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=src, env=env)
        wall = time.perf_counter() - t
        if out.returncode != 0:
            raise SystemExit(f"tflottery in {src} failed:\n{out.stderr[-3000:]}")
        counts = count_work(root)
    times = log_times(out.stderr, started)
    times["exit"] = wall
    return dict(counts, wall=wall, times=times)


def count_work(root: str) -> dict:
    """Levels, trained steps, evaluations and the last level's accuracy, read from the run."""
    (run,) = [d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))]
    rep = os.path.join(root, run, "replicate_0")
    levels = sorted(int(d.split("_")[1]) for d in os.listdir(rep) if d.startswith("level_"))
    steps = evaluations = 0
    for level in levels:
        with open(os.path.join(rep, f"level_{level}", "train", "metrics.jsonl")) as f:
            records = [json.loads(line) for line in f]
        evaluations += sum("test_accuracy" in r for r in records)
        steps += max(r["step"] for r in records)
    evaluations += 1 if os.path.exists(os.path.join(rep, "pretrain", "final.json")) else 0
    with open(os.path.join(rep, f"level_{levels[-1]}", "train", "final.json")) as f:
        accuracy = json.load(f)["test_accuracy"]
    return {"levels": len(levels), "steps": steps, "evaluations": evaluations,
            "final_accuracy": accuracy}


def run_torch(levels: int, steps: int, every: int, threads: int = 0) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(TORCH_SCRIPT)
    try:
        t = time.perf_counter()
        env = dict(os.environ)     # OMP_WAIT_POLICY as the caller set it (module docstring)
        out = subprocess.run([sys.executable, f.name, str(levels), str(steps), str(every),
                              MNIST_DIR, str(threads)], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t
    finally:
        os.unlink(f.name)
    lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"the torch script failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(lines[-1][len("RESULT "):]), wall=wall)


def breakdown(runs, levels: int) -> list:
    """Median seconds of each stretch of the tflottery runs (from the log milestones)."""
    names = [name for name, _ in MILESTONES] + ["exit"]
    med = {n: statistics.median(r["times"][n] for r in runs) for n in names
           if all(n in r["times"] for r in runs)}
    rows, prev = [], ("launch", 0.0)
    for n in names:
        if n not in med:
            continue
        rows.append((f"{prev[0]} -> {n}", med[n] - prev[1]))
        prev = (n, med[n])
    if levels > 1 and "level 0 done" in med and "last level done" in med:
        rows.append(("  (per later level)", (med["last level done"] - med["level 0 done"])
                     / (levels - 1)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="7x300@150,4x3000@500")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline_src", default=None,
                        help="another tflottery checkout to time in the same rotation")
    parser.add_argument("--torch_threads", type=int, default=0,
                        help="torch.set_num_threads for the torch script (0: torch's default, "
                             "one per core)")
    args = parser.parse_args()
    if importlib.util.find_spec("torch") is None:
        print("torch is not installed: pip install torch --index-url "
              "https://download.pytorch.org/whl/cpu (skipped)")
        return
    if not os.path.exists(os.path.join(MNIST_DIR, "t10k-images-idx3-ubyte.gz")):
        print(f"no MNIST IDX files in {MNIST_DIR} (set TFLOTTERY_MNIST_DIR; skipped)")
        return
    sides = [("tflottery", HERE)] + ([("baseline", args.baseline_src)] if args.baseline_src else [])
    for case in args.cases.split(","):
        levels, steps, every = parse_case(case)
        results = {name: [] for name, _ in sides}
        results["torch"] = []
        jobs = [("torch", None)] + sides
        print(f"case {levels} levels x {steps} steps, evaluating every {every} "
              f"(load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})", flush=True)
        for i in range(args.rounds):
            order = jobs[i % len(jobs):] + jobs[:i % len(jobs)]
            line = []
            for name, src in order:
                r = run_torch(levels, steps, every, args.torch_threads) if src is None else \
                    run_tflottery(src, levels, steps, every)
                results[name].append(r)
                line.append(f"{name} {r['wall']:6.2f} s")
            print(f"  round {i + 1}: " + ", ".join(line) +
                  f"  (load {os.getloadavg()[0]:.2f})", flush=True)
        torch_med = statistics.median(r["wall"] for r in results["torch"])
        for name, _ in sides:
            med = statistics.median(r["wall"] for r in results[name])
            ratios = [a["wall"] / b["wall"] for a, b in zip(results[name], results["torch"])]
            print(f"  {name}: median {med:.2f} s vs torch {torch_med:.2f} s = "
                  f"{med / torch_med:.2f}x (per-round ratios "
                  f"{', '.join(f'{x:.2f}' for x in ratios)}; median {statistics.median(ratios):.2f}x)")
        for name, _ in sides + [("torch", None)]:
            last = results[name][-1]
            work = (last["levels"], last["steps"], last["evaluations"])
            print(f"  {name:9s} levels {work[0]}, steps {work[1]}, evaluations {work[2]}, "
                  f"final test accuracy {100 * last['final_accuracy']:.2f}%")
        expected = (levels, levels * steps, 1 + levels * (steps // every + 1))
        for name in results:
            for r in results[name]:
                got = (r["levels"], r["steps"], r["evaluations"])
                if got != expected:
                    print(f"  WARNING: {name} did (levels, steps, evaluations) {got}, "
                          f"expected {expected}: not the same work")
        t = statistics.median(r["times"]["imports"] for r in results["torch"])
        f = statistics.median(r["times"]["to_first_step"] for r in results["torch"])
        print(f"  torch: imports {t:.2f} s, launch to first step {f:.2f} s (in-process clocks)")
        for name, _ in sides:
            print(f"  {name} where the seconds go (median of {args.rounds}, from its log):")
            for label, seconds in breakdown(results[name], levels):
                print(f"    {label:45s} {seconds:6.2f} s")
        print(f"  (load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})", flush=True)


if __name__ == "__main__":
    main()
