"""What a run costs on disk: bytes per finished phase against the float32 bytes of the
network's weights, and bytes per run (issue #26's baseline and its check).

    python benchmarks/run_storage.py [--cases quickstart,lenet_branches,resnet_20,resnet_50]
                                     [--rerun]

Each case is a real `python -m tflottery.main` run in a temporary root, as a
user would start it: the quickstart (lottery, LeNet-300-100 on digits, 7
levels and one branch), a LeNet IMP run with two branches, and one short
training phase of ResNet-20 and of ResNet-50 (SGD with momentum: one slot) on
random 32x32 images (storage does not depend on the data; ResNet-50's head
has 10 classes here, not 1,000).  A phase is a directory with a final.json;
its bytes are split into tensor files (checkpoints, masks) and the rest
(metrics, TensorBoard, JSON), and the weights are the model variables of its
'end' checkpoint that are neither masks nor optimizer slots.

Results (2026-12-07, 2 shared cores, load average 7-9; storage and bytes read do
not depend on the load), main at 81e0c53 before #26 -> after (phase/weights is
the median over the run's phases; re-run read with --rerun):

    case            phases  phase/weights   run tensor MB     re-run read (% of the run's bytes)
    quickstart          14   8.03 -> 1.07   23.42 -> 3.11     142%  -> 14.1%
    lenet_branches       8   8.03 -> 1.06   13.36 -> 1.75     171%  -> 12.7%
    resnet_20            1   6.04 -> 1.03    6.62 -> 1.12    3788%  -> 1.66%
    resnet_50            1   5.99 -> 1.00  564.90 -> 94.40    229%  -> 0.05%

(The lottery runs' remaining re-run reads are their levels' mask.npz, which
the lottery experiment loads on a re-run to repair a damaged one, and the
checkpoints' mask bits, which are hashed.)

--rerun runs each case's command a second time, when every phase is
finished, under strace, and counts the bytes it reads from files in the run's
root (every read and pread64 of the process and its threads): what checking
a finished run costs (#26 item 2: at most 5% of the run's bytes).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CASES = {
    "quickstart": ["--gin_file=quickstart.gin"],
    "lenet_branches": ["--gin_file=quickstart.gin", "--gin_bindings=PruningHparams.levels = 2",
                       "--gin_bindings=BranchHparams.names = "
                       "('random_reinit', 'random_prune_global')"],
}
RESNET_PHASE = ["ExperimentHparams.name = 'train'", "DatasetHparams.name = 'npz'",
                "DatasetHparams.data_dir = '{npz}'", "DatasetHparams.batch_size = 8",
                "ModelHparams.name = '{model}'", "TrainingHparams.optimizer = 'sgd'",
                "TrainingHparams.momentum = 0.9", "TrainingHparams.lr = 0.01",
                "TrainingHparams.training_steps = '2it'", "TrainingHparams.eval_every = '2it'"]
for _name in ("resnet_20", "resnet_50"):
    CASES[_name] = ["--gin_file={gin}"]


def random_npz(directory: str) -> str:
    rng = np.random.default_rng(0)
    path = os.path.join(directory, "random.npz")
    np.savez(path, x_train=rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
             y_train=np.arange(64) % 10, x_test=rng.integers(0, 256, (16, 32, 32, 3),
                                                             dtype=np.uint8),
             y_test=np.arange(16) % 10)
    return path


def tree_bytes(directory: str):
    """(tensor bytes, other bytes) of the files under `directory`."""
    tensors = other = 0
    for parent, _, files in os.walk(directory):
        for name in files:
            size = os.path.getsize(os.path.join(parent, name))
            if ".data-" in name or name.endswith((".index", ".npz")):
                tensors += size
            else:
                other += size
    return tensors, other


def weight_bytes(phase_dir: str) -> int:
    """float32 bytes of the model weights in the phase's 'end' checkpoint."""
    import tensorflow as tf
    prefix = os.path.join(phase_dir, "checkpoints", "end", "ckpt")
    reader = tf.train.load_checkpoint(prefix)
    count = 0
    for key, shape in reader.get_variable_to_shape_map().items():
        if (key.startswith("model/") and "OPTIMIZER_SLOT" not in key and "mask" not in key
                and key.endswith("VARIABLE_VALUE")):
            count += int(np.prod(shape))
    return 4 * count


_READ = re.compile(r"^(\d+)\s+(?:read|pread64)\((\d+)<(.*?)>,.*\)\s+=\s+(-?\d+)")
_UNFINISHED = re.compile(r"^(\d+)\s+(?:read|pread64)\((\d+)<(.*?)>,.*<unfinished \.\.\.>$")
_RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (?:read|pread64) resumed>.*\)\s+=\s+(-?\d+)")


def bytes_read_under(trace: str, root: str) -> int:
    """Bytes that reads in an `strace -f -y` log took from files below `root`."""
    root = os.path.realpath(root) + os.sep
    total, pending = 0, {}
    with open(trace) as f:
        for line in f:
            match = _READ.match(line)
            if match:
                path, count = match.group(3), int(match.group(4))
            elif _UNFINISHED.match(line):
                pid, _, path = _UNFINISHED.match(line).groups()
                pending[pid] = path
                continue
            elif _RESUMED.match(line):
                pid, count = _RESUMED.match(line).group(1), int(_RESUMED.match(line).group(2))
                path = pending.pop(pid, "")
            else:
                continue
            if count > 0 and path.startswith(root):
                total += count
    return total


def traced_run(argv, root: str, trace: str, cwd: str = HERE, env=None):
    """`python -m tflottery.main --root_dir=root argv...` under strace; returns
    (completed process, bytes read from files below `root`)."""
    out = subprocess.run(["strace", "-f", "-y", "-s", "0", "-e", "trace=read,pread64", "-o",
                          trace, sys.executable, "-m", "tflottery.main", f"--root_dir={root}",
                          *argv], capture_output=True, text=True, cwd=cwd, env=env)
    return out, bytes_read_under(trace, root)


def run_bytes(root: str) -> int:
    return sum(os.path.getsize(os.path.join(parent, name))
               for parent, _, files in os.walk(root) for name in files)


def measure(case: str, root: str, npz: str, rerun: bool = False) -> None:
    gin = os.path.join(os.path.dirname(npz), f"{case}.gin")
    with open(gin, "w") as f:
        f.write("\n".join(RESNET_PHASE).replace("{npz}", npz).replace("{model}", case) + "\n")
    argv = [a.replace("{gin}", gin) for a in CASES[case]]
    out = subprocess.run([sys.executable, "-m", "tflottery.main", f"--root_dir={root}", *argv],
                         capture_output=True, text=True, cwd=HERE)
    if out.returncode != 0:
        print(f"{case}: failed: {out.stderr.strip().splitlines()[-1]}", flush=True)
        return
    phases = sorted(parent for parent, _, files in os.walk(root) if "final.json" in files)
    ratios = []
    for phase in phases:
        tensors, _ = tree_bytes(phase)
        ratios.append(tensors / weight_bytes(phase))
    run_tensors, run_other = tree_bytes(root)
    weights = weight_bytes(phases[0])
    read = ""
    if rerun:
        total = run_bytes(root)
        again, count = traced_run(argv, root, os.path.join(os.path.dirname(npz), "trace.txt"))
        read = (f"{count / 1e6:>8.3f} of {total / 1e6:.2f} MB ({100 * count / total:.2f}%)"
                if again.returncode == 0 else "failed")
    print(f"{case:<15} {len(phases):>6} {weights / 1e6:>10.2f} {np.median(ratios):>14.2f} "
          f"{max(ratios):>10.2f} {run_tensors / 1e6:>12.2f} {run_other / 1e6:>10.2f}  {read}",
          flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--rerun", action="store_true",
                        help="also count the bytes a re-run of the finished run reads")
    args = parser.parse_args()
    sys.path.insert(0, HERE)
    from tflottery import tf_import
    tf_import.import_tensorflow()          # for reading checkpoints, without its banner
    print(f"{'case':<15} {'phases':>6} {'weights MB':>10} {'phase/weights':>14} "
          f"{'max':>10} {'run tensor MB':>12} {'other MB':>10}"
          + ("  re-run read" if args.rerun else ""))
    with tempfile.TemporaryDirectory() as tmp:
        npz = random_npz(tmp)
        for case in args.cases.split(","):
            measure(case, os.path.join(tmp, case), npz, args.rerun)


if __name__ == "__main__":
    main()
