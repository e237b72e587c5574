"""Wall time of the pruning-at-initialisation scorers.

    python benchmarks/scoring_cost.py [--model resnet_20] [--replicas 1]
        [--scorers synflow,grasp,snip] [--synflow_iterations 100] [--repeats 1]

The model (default ResNet-20, CIFAR-10 shape 32x32x3, 10 classes;
lenet_300_100 takes 28x28x1) is built and wrapped, under a MirroredStrategy
over `--replicas` virtual CPUs when that is more than 1 (the stand-in for a
TPU's replicas).  Then each scorer prunes to density 0.1:
  * synflow: `--synflow_iterations` rounds, float64 on the host CPU;
  * grasp, snip, isnip: on a batch of 10 examples per class (100 random
    images; the cost does not depend on the pixels).
Each call is timed end to end (copies, tracing, computation, selection).  The
first call of a scorer pays for building copies and tracing; later calls with
the same model reuse them, so `--repeats N` prints the first call and the
fastest of the other N - 1 separately.
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

SHAPES = {"resnet_20": (32, 32, 3), "lenet_300_100": (28, 28, 1)}


def timed(label, fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        mask = fn()
        times.append(time.perf_counter() - start)
    later = f", then {min(times[1:]):7.2f} s (min of {repeats - 1})" if repeats > 1 else ""
    print(f"{label:40s} first {times[0]:7.2f} s{later}  (kept {mask.num_remaining}/"
          f"{mask.num_weights})", flush=True)


def strategy_for(replicas: int):
    if replicas == 1:
        return tf.distribute.get_strategy()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)])
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet_20", choices=sorted(SHAPES))
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--scorers", default="synflow,grasp,snip")
    parser.add_argument("--synflow_iterations", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    strategy = strategy_for(args.replicas)
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU(s), {args.model}, "
          f"{strategy.num_replicas_in_sync} replica(s)")
    shape = SHAPES[args.model]
    with strategy.scope():
        model = masking.wrap(models.build(args.model, shape, 10, seed=0))
    rng = np.random.default_rng(0)
    batch = (rng.normal(size=(100,) + shape).astype(np.float32), np.repeat(np.arange(10), 10))
    for name in args.scorers.split(","):
        if name == "synflow":
            label = f"synflow, {args.synflow_iterations} iterations, float64"
            options = dict(iterations=args.synflow_iterations)
        else:
            rounds = scoring.SCORERS.get(name).iterations
            label = f"{name}, 100 examples" + (f", {rounds} rounds" if rounds > 1 else "")
            options = dict(batch=batch)
        timed(label, lambda: scoring.prune_to_density(name, model, 0.1, **options), args.repeats)


if __name__ == "__main__":
    main()
