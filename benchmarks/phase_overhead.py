"""Per-phase overhead of IMP runs: wall time, training-step time, traces.

For each configuration, every training phase (IMP level, branch) is timed
from the outside: its wall time, the time spent inside its training-step
calls, and the difference (set-up, tracing, evaluation, checkpoints: the
overhead).  The first step call of a phase may include a trace, so the
"pure" step time of a phase is its step count times the median time per
step of its later calls.  Traces are counted over every tf.function the run
creates.  All of this patches only `Trainer.run`, `Trainer.make_train_fn`
and `tf.function` from outside, so the same child script measures an older
checkout too:

    python benchmarks/phase_overhead.py                       # this checkout
    git worktree add /tmp/old <commit>
    python benchmarks/phase_overhead.py --baseline_src /tmp/old --rounds 3

With --baseline_src, rounds alternate between the two checkouts (this
machine is noisy) and the medians are printed side by side with their
ratios.  Configurations: 'quickstart' (digits, 7 levels + 6 branches of 300
steps), 'mnist300' / 'mnist3000' (LeNet-300-100 on the real MNIST split in
../shared/data/mnist, 7 levels of 300 / 3,000 steps, no branches).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIGS = {
    "quickstart": (["quickstart.gin"], []),
    "mnist300": (["lenet_mnist_local.gin", "imp.gin"],
                 ["PruningHparams.levels = 6", "BranchHparams.names = ()",
                  "TrainingHparams.training_steps = '300it'",
                  "TrainingHparams.eval_every = '150it'"]),
    "mnist3000": (["lenet_mnist_local.gin", "imp.gin"],
                  ["PruningHparams.levels = 6", "BranchHparams.names = ()"]),
}


def child(src: str, config: str, root: str) -> None:
    """Run one configuration in this process with `src` first on the path; print JSON."""
    sys.path.insert(0, src)
    import tflottery  # noqa: F401
    import tensorflow as tf
    functions = []
    real_function = tf.function

    def counting_function(*args, **kwargs):
        fn = real_function(*args, **kwargs)
        if callable(fn) and hasattr(fn, "experimental_get_tracing_count"):
            functions.append(fn)
        return fn
    tf.function = counting_function

    from tflottery import gin_files, runner
    from tflottery.training import loop
    phases, current = [], {}
    real_run, real_make = loop.Trainer.run, loop.Trainer.make_train_fn

    def timed_make(self, start_step):
        fn = real_make(self, start_step)

        def timed(n):
            t = time.perf_counter()
            out = fn(n)
            current["calls"].append((n, time.perf_counter() - t))
            return out
        return timed

    def timed_run(self):
        current.clear()
        current["calls"] = []
        t = time.perf_counter()
        out = real_run(self)
        wall = time.perf_counter() - t
        calls = current["calls"]
        later = [s / n for n, s in calls[1:]] or [s / n for n, s in calls]
        steps = sum(n for n, _ in calls)
        pure = steps * statistics.median(later) if calls else 0.0
        phases.append({"phase": os.path.relpath(self.out_dir, root), "wall": wall,
                       "steps": steps, "step_time": pure, "overhead": wall - pure})
        return out
    loop.Trainer.run, loop.Trainer.make_train_fn = timed_run, timed_make

    files, bindings = CONFIGS[config]
    gin_files.parse(files, bindings)
    t = time.perf_counter()
    runner.run(root)
    total = time.perf_counter() - t
    traces = {}
    for fn in functions:
        name = getattr(fn, "__name__", "?")
        traces[name] = traces.get(name, 0) + fn.experimental_get_tracing_count()
    print("RESULT " + json.dumps({"phases": phases, "run_seconds": total, "traces": traces}))
    sys.stdout.flush()
    os._exit(0)


def measure(src: str, config: str) -> dict:
    # An older checkout elsewhere has no ../shared beside it: point it at ours.
    env = dict(os.environ)
    env.setdefault("TFLOTTERY_MNIST_DIR", os.path.join(HERE, "..", "shared", "data", "mnist"))
    with tempfile.TemporaryDirectory() as root:
        t = time.perf_counter()
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", src, config,
                              root], capture_output=True, text=True, cwd=src, env=env)
        wall = time.perf_counter() - t
    lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{config} in {src} failed:\n{out.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["process_seconds"] = wall
    return result


def summarize(results) -> dict:
    """Medians over rounds: per-level (levels after the first phase) wall, step time, overhead."""
    def med(key, pick):
        return statistics.median(statistics.median(pick(r, key)) for r in results)

    def later_phases(r, key):
        return [p[key] for p in r["phases"][1:] if p["steps"] > 0] or [0.0]
    return {"process_seconds": statistics.median(r["process_seconds"] for r in results),
            "run_seconds": statistics.median(r["run_seconds"] for r in results),
            "phase_wall": med("wall", later_phases),
            "phase_steps": med("step_time", later_phases),
            "phase_overhead": med("overhead", later_phases),
            "phases": len(results[0]["phases"]),
            "traces": results[-1]["traces"]}


def show(name, s):
    traced = ", ".join(f"{k} {v}" for k, v in sorted(s["traces"].items()) if v)
    print(f"  {name:9s} process {s['process_seconds']:6.1f} s  run {s['run_seconds']:6.1f} s  "
          f"per phase: wall {s['phase_wall']:.3f} s, steps {s['phase_steps']:.3f} s, "
          f"overhead {s['phase_overhead']:.3f} s  ({s['phases']} phases)")
    print(f"            traces: {traced}")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(*sys.argv[2:5])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="quickstart,mnist300,mnist3000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline_src", default=None,
                        help="an older checkout to compare with, rounds alternating")
    args = parser.parse_args()
    sources = [("current", HERE)] + ([("baseline", args.baseline_src)] if args.baseline_src else [])
    for config in args.configs.split(","):
        runs = {name: [] for name, _ in sources}
        for _ in range(args.rounds):
            for name, src in (sources if _ % 2 == 0 else sources[::-1]):
                runs[name].append(measure(src, config))
        print(f"{config} (median of {args.rounds} rounds)")
        summaries = {name: summarize(r) for name, r in runs.items()}
        for name, s in summaries.items():
            show(name, s)
        if args.baseline_src:
            cur, base = summaries["current"], summaries["baseline"]
            print(f"  current/baseline: process {cur['process_seconds'] / base['process_seconds']:.2f}, "
                  f"run {cur['run_seconds'] / base['run_seconds']:.2f}, per-phase overhead "
                  f"{cur['phase_overhead'] / max(base['phase_overhead'], 1e-9):.2f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
