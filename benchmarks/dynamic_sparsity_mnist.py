"""Dynamic sparsity on LeNet-300-100 and the real MNIST split, at 90% sparsity (#14).

Runs, through the CLI and lenet_mnist_local.gin (3,000 Adam steps), each for
several replicates:

  dynamic_imp            one change point at half of training (dynamic_imp.gin)
  dynamic_imp variants   regrown weights at zero / at their previous values;
                         regrowth by gradient / at random; m_1 random / |W0|
  rigl, set              rigl.gin, set.gin
  imp one-shot           one level to 90%, rewound to the change point (1500 it)
  imp one-shot reset     the same, reset to step 0
  pai magnitude          |W0| at step 0 (pai_magnitude.gin without ablations)

and prints one markdown table: test accuracy (mean and spread over the
replicates), mask overlap (Dynamic IMP: fraction of the second phase's mask
that the first phase had pruned; RigL/SET: fraction of the final mask not in
the starting one) and wall-clock time per run.

    python benchmarks/dynamic_sparsity_mnist.py [--replicates 3] [--root /tmp/dynsparse]
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DYNAMIC = ["--gin_file=dynamic_imp.gin"]
VARIANTS = {
    "dynamic_imp (fresh regrowth)": DYNAMIC,
    "dynamic_imp, regrown at zero": DYNAMIC + ["--gin_bindings=DynamicImpHparams.regrow_init = 'zero'"],
    "dynamic_imp, regrown at previous values":
        DYNAMIC + ["--gin_bindings=DynamicImpHparams.regrow_init = 'previous'"],
    "dynamic_imp, regrow 10% by gradient":
        DYNAMIC + ["--gin_bindings=DynamicImpHparams.regrow = 'gradient'"],
    "dynamic_imp, regrow 10% at random":
        DYNAMIC + ["--gin_bindings=DynamicImpHparams.regrow = 'random'"],
    "dynamic_imp, m_1 random": DYNAMIC + ["--gin_bindings=DynamicImpHparams.first_mask = 'random'"],
    "dynamic_imp, m_1 magnitude at init":
        DYNAMIC + ["--gin_bindings=DynamicImpHparams.first_mask = 'magnitude_init'"],
    "RigL (ERK)": ["--gin_file=rigl.gin"],
    "SET (ERK)": ["--gin_file=set.gin"],
    "one-shot IMP, rewound to 1500 it": [
        "--gin_bindings=ExperimentHparams.name = 'lottery'",
        "--gin_bindings=PruningHparams.one_shot = True",
        "--gin_bindings=PruningHparams.target_sparsity = 0.9",
        "--gin_bindings=LotteryHparams.rewind_step = '1500it'",
        "--gin_bindings=BranchHparams.names = ()"],
    "one-shot IMP, reset to 0": [
        "--gin_bindings=ExperimentHparams.name = 'lottery'",
        "--gin_bindings=PruningHparams.one_shot = True",
        "--gin_bindings=PruningHparams.target_sparsity = 0.9",
        "--gin_bindings=LotteryHparams.rewind_step = '0it'",
        "--gin_bindings=BranchHparams.names = ()"],
    "PaI magnitude at step 0": ["--gin_file=pai_magnitude.gin",
                                "--gin_bindings=PaiAblationHparams.names = ()"],
}


def result_of(run_dir: str, replicate: int) -> dict:
    """(test accuracy, density, overlap) of one finished replicate, from its files."""
    rep = os.path.join(run_dir, f"replicate_{replicate}")
    for name, read in (("dynamic_imp.json", lambda r: (
            r["test_accuracy"], r["density"],
            r["phases"][-1]["overlap_with_previous"]["new_not_in_previous"])),
                       ("dst.json", lambda r: (r["test_accuracy"], r["density"],
                                               r["final_vs_start"]["new_not_in_previous"])),
                       ("pai.json", lambda r: (r["test_accuracy"], r["density"], None))):
        path = os.path.join(rep, name)
        if os.path.exists(path):
            return read(json.load(open(path)))
    final = json.load(open(os.path.join(rep, "level_1", "train", "final.json")))
    sparsity = json.load(open(os.path.join(rep, "level_1", "mask", "sparsity.json")))
    return final["test_accuracy"], sparsity["total"]["density"], None


def run(name: str, args, root: str, replicate: int) -> tuple:
    directory = os.path.join(root, name.replace(" ", "_").replace(",", ""))
    cmd = [sys.executable, "-m", "tflottery.main", f"--root_dir={directory}",
           f"--replicate={replicate}", "--gin_file=lenet_mnist_local.gin"] + list(args)
    start = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), stdin=subprocess.DEVNULL)
    seconds = time.time() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-2000:]}")
    (run_dir,) = glob.glob(os.path.join(directory, "*_*"))
    return result_of(run_dir, replicate) + (seconds,)


def summary(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=3)
    parser.add_argument("--root", default="/tmp/dynamic_sparsity_mnist")
    parser.add_argument("--only", default="", help="run only the variants whose name contains this")
    args = parser.parse_args()
    rows = []
    for name, extra in VARIANTS.items():
        if args.only not in name:
            continue
        results = [run(name, extra, args.root, r) for r in range(args.replicates)]
        rows.append((name, results))
        print(f"{name}: {[round(100 * r[0], 2) for r in results]}", flush=True)
    print(f"\n| method ({args.replicates} replicates) | density (%) | test accuracy (%) | "
          f"mask overlap: new (%) | seconds per run |")
    print("|---|---|---|---|---|")
    for name, results in rows:
        acc, density, overlap, seconds = zip(*results)
        print(f"| {name} | {100 * density[0]:.2f} | {summary(acc)} | {summary(overlap)} | "
              f"{statistics.mean(seconds):.0f} |")


if __name__ == "__main__":
    main()
