"""Wall time of the expensive pruning-at-initialisation scorers on ResNet-20.

    python benchmarks/scoring_cost.py [--synflow_iterations 100] [--repeats 1]

ResNet-20 (CIFAR-10 shape 32x32x3, 10 classes) is built and wrapped; then
  * SynFlow: prune_to_density('synflow', model, 0.1) with 100 rounds, float64
    on the host CPU (building the float64 copy included);
  * GraSP: prune_to_density('grasp', model, 0.1) on a batch of 10 examples per
    class (100 random CIFAR-shaped images; the cost does not depend on the pixels);
  * SNIP the same way, for comparison.
Each is timed end to end (copy, tracing, computation, selection) and printed.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tflottery  # noqa: E402,F401
import tensorflow as tf  # noqa: E402

from tflottery import masking, models, scoring  # noqa: E402


def timed(label, fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        mask = fn()
        times.append(time.perf_counter() - start)
    print(f"{label:45s} {min(times):7.2f} s  (min of {repeats}; kept {mask.num_remaining}/"
          f"{mask.num_weights})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synflow_iterations", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU(s)")
    model = masking.wrap(models.build("resnet_20", (32, 32, 3), 10, seed=0))
    rng = np.random.default_rng(0)
    batch = (rng.normal(size=(100, 32, 32, 3)).astype(np.float32), np.repeat(np.arange(10), 10))
    timed(f"synflow, {args.synflow_iterations} iterations, float64",
          lambda: scoring.prune_to_density("synflow", model, 0.1,
                                           iterations=args.synflow_iterations), args.repeats)
    timed("grasp, 100 examples (10/class), T=200",
          lambda: scoring.prune_to_density("grasp", model, 0.1, batch=batch), args.repeats)
    timed("snip, 100 examples (10/class)",
          lambda: scoring.prune_to_density("snip", model, 0.1, batch=batch), args.repeats)


if __name__ == "__main__":
    main()
