"""Loading cost of a wrapped model: load_model time of the wrapped model over
the same unwrapped model, in the same format, each load in a fresh process.

    python benchmarks/load_cost.py [--models resnet50,lenet] [--formats .keras,.h5]
        [--keras tf_keras|keras] [--rounds 3] [--src DIR]

ResNet-50 is `applications.ResNet50(weights=None)` on 32x32x3 inputs, 10
classes (the input size barely changes its weights); LeNet is
LeNet-300-100.  The wrapped model carries a random mask of density 0.1 (a
pruned model).  Rounds alternate wrapped and unwrapped loads (the first
kind alternates too); the machine is shared and noisy, so the script prints
per-round ratios and the ratio of medians, of wall time and of the loading
process's CPU time.  Only `load_model` is timed, not the imports.
`--src DIR` runs another checkout's tflottery (e.g. an export of main, for
a before/after); saving and loading both use it.  Each load's CPU time is
also split into reading the weights file into the built model and the rest
(mostly rebuilding the model from its config).

Measured 2026-12-07, tf_keras, before (18a100d: float32 masks) and after
masks became 1-byte bools, alternating before/after runs on 2 shared cores
(CPU ratios of medians).  Load average 1.1-1.8, 5 rounds: ResNet-50 `.h5`
before 1.13 and 1.14, after 1.11 and 1.15 (weights-file phase 1.17-1.25
either way: 0.38-0.41 s vs 0.32-0.36 s; the rest 1.11-1.14).  Load 2.7-5.1,
3 rounds: `.h5` before 1.46 and 1.21, after 1.33 and 1.10; `.keras` (masks
stored as bits either way) before 1.09 and 1.09, after 1.11 and 1.04.  The
`.h5` file: 188.9 MB before, 118.5 MB after, unwrapped 95.0 MB.  LeNet's
loads (0.12-0.23 s) are mostly noise.  Later, quiet (load 0.6-1.5, main
98ed2ec, 3 rounds, CPU ratios): ResNet-50 `.h5` 1.17 (rounds 1.14, 1.17,
1.29; reading the weights 1.24, the rest 1.14), `.keras` 1.09; LeNet `.h5`
1.20, `.keras` 1.21 (0.14 vs 0.12 s and 0.16 vs 0.13 s: building the
wrappers, 20-30 ms).
2026-12-07 night, quiet (load 0.6-1.6), 5 rounds a set, wall ratios of
medians.  Before (959fc06): ResNet-50 `.keras` 1.11, `.h5` 1.13; LeNet in
two sets alternating with the after: `.h5` 1.16 and 1.17, `.keras` 1.18 and
1.15.  After (e05f8a6: no mask ops in tf_keras' output-signature scratch
graph): ResNet-50 `.keras` 1.10, `.h5` 1.14 (the rest of the load 1.12,
from 1.16); LeNet in three sets `.h5` 1.12, 1.23, 1.12 (15 rounds pooled:
median 1.17), `.keras` 1.17, 1.18, 1.15 (pooled 1.18).  LeNet's wrapped and
unwrapped loads differ by 20-25 ms of 130, and nearly all of it is
TensorFlow's first use, in a process, of the ops of a bool variable
(creating, filling and assigning one): with those ops run once before the
load, both kinds load in 0.107-0.110 s.  It does not grow with the model.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# argv: keras module, model name, output directory, formats...
SAVE = textwrap.dedent("""
    import importlib, sys
    import numpy as np
    import tflottery
    from tflottery import masking
    K = importlib.import_module(sys.argv[1])
    name, out, formats = sys.argv[2], sys.argv[3], sys.argv[4:]
    K.utils.set_random_seed(0)
    if name == "resnet50":
        model = K.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)
    else:
        model = K.Sequential([K.Input((784,)), K.layers.Dense(300, activation="relu"),
                              K.layers.Dense(100, activation="relu"), K.layers.Dense(10)])
    for fmt in formats:
        model.save(f"{out}/plain{fmt}")
    wrapped = masking.wrap(model)
    rng = np.random.default_rng(0)
    masking.set_mask(wrapped, masking.Mask({n: rng.random(tuple(v.shape)) < 0.1
                                            for n, v in masking.prunable_variables(wrapped).items()}))
    for fmt in formats:
        wrapped.save(f"{out}/wrapped{fmt}")
""")

# argv: keras module, path.  Imports `masking` explicitly so that older
# checkouts (which needed it) load too.  Also times, apart, the phase that
# reads the weights file into the built model (the outermost call of the
# function named in WEIGHTS_PHASE, where the Keras has it); the rest of a
# load is mostly rebuilding the model from its config.
LOAD = textwrap.dedent("""
    import importlib, json, sys, time
    K = importlib.import_module(sys.argv[1])
    import tflottery
    from tflottery import masking
    spent, depth = [0.0], [0]

    def time_outermost(module, name):
        try:
            module = importlib.import_module(module)
        except ImportError:
            return
        inner = getattr(module, name, None)
        if inner is None:
            return

        def timed(*args, **kwargs):
            depth[0] += 1
            start = time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                depth[0] -= 1
                if not depth[0]:
                    spent[0] += time.process_time() - start
        setattr(module, name, timed)

    for module, name in json.loads(sys.argv[3]):
        time_outermost(sys.argv[1] + module, name)
    wall, cpu = time.perf_counter(), time.process_time()
    K.models.load_model(sys.argv[2])
    print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                      "weights_cpu": spent[0]}))
""")

# Where each format's loader reads the weights file into the built model
# (module under the Keras package, function).
WEIGHTS_PHASE = [(".src.saving.legacy.hdf5_format", "load_weights_from_hdf5_group"),
                 (".src.saving.saving_lib", "_load_state")]


def run(script, args, src):
    env = dict(os.environ, PYTHONPATH=src, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True,
                          text=True)
    if proc.returncode:
        sys.exit(f"subprocess failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def ratio_line(label, wrapped, plain):
    per_round = " ".join(f"{w / p:.2f}" for w, p in zip(wrapped, plain))
    return (f"  {label}: wrapped {statistics.median(wrapped):.2f} s, unwrapped "
            f"{statistics.median(plain):.2f} s, ratio of medians "
            f"{statistics.median(wrapped) / statistics.median(plain):.2f} (rounds: {per_round})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,lenet")
    parser.add_argument("--formats", default=".keras,.h5")
    parser.add_argument("--keras", default="tf_keras", choices=["tf_keras", "keras"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--src", default=HERE, help="checkout whose tflottery is measured")
    args = parser.parse_args()
    formats = args.formats.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            out = os.path.join(tmp, name)
            os.makedirs(out)
            run(SAVE, [args.keras, name, out, *formats], args.src)
            for fmt in formats:
                times = {"wrapped": [], "plain": []}
                for round_ in range(args.rounds):
                    order = ("wrapped", "plain") if round_ % 2 == 0 else ("plain", "wrapped")
                    for kind in order:
                        times[kind].append(json.loads(run(
                            LOAD, [args.keras, f"{out}/{kind}{fmt}", json.dumps(WEIGHTS_PHASE)],
                            args.src)))
                print(f"{name} {fmt} ({args.keras}, {args.rounds} rounds, src {args.src}):")
                for key in ("wall", "cpu"):
                    print(ratio_line(key, [t[key] for t in times["wrapped"]],
                                     [t[key] for t in times["plain"]]), flush=True)
                if all(t["weights_cpu"] for t in times["plain"]):
                    for label, part in (("cpu reading weights", lambda t: t["weights_cpu"]),
                                        ("cpu, the rest", lambda t: t["cpu"] - t["weights_cpu"])):
                        print(ratio_line(label, [part(t) for t in times["wrapped"]],
                                         [part(t) for t in times["plain"]]), flush=True)


if __name__ == "__main__":
    main()
