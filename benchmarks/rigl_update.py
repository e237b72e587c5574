"""Wall time of one RigL mask update: on the host (before #24 item 2) against on the device.

    python benchmarks/rigl_update.py [--models lenet_300_100,resnet_20] [--rounds 7]
        [--replicas 1] [--grow gradient]

For each model (LeNet-300-100 on 28x28x1 with a batch of 60, ResNet-20 on
32x32x3 with a batch of 128; random data, 90% sparse ERK masks, SGD with
momentum) one update of every layer at drop fraction 0.3 is timed two ways,
in alternating rounds on the same model (so that both see the same machine
load), after one untimed warm-up update of each (tracing):

  host    what DropGrowHook did before: the dense gradient by the scoring
          program, brought to the host as NumPy; per layer the host
          reference dynamic.drop_and_grow; the optimizer slots of grown
          weights reset from the host; the masks set and the pruned weights
          zeroed from the host, and the masks read back for the density
          summary (training/loop.py).
  device  the run's update now (pruning/dynamic_device.py): the drop counts
          computed on the host, one traced function under the strategy
          doing gradient, selection and assignments; only the per-layer
          counts come back.

Printed: the median time per update of each, and device/host measured in
the same run.  On a CPU both run on the same processor, so the ratio shows
the cost of the host-side NumPy work and of the copies; on a TPU the host
path also pays transfers of every weight, gradient and mask each update.
"""
import argparse
import math
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tflottery  # noqa: E402,F401
import tensorflow as tf  # noqa: E402

from tflottery import data, masking, models  # noqa: E402
from tflottery.hparams import DatasetHparams, TrainingHparams  # noqa: E402
from tflottery.pruning import dynamic  # noqa: E402
from tflottery.pruning.dynamic_device import DropGrowProgram  # noqa: E402
from tflottery.scoring.grow import grow_scores  # noqa: E402
from tflottery.training.optimizers import reset_slots  # noqa: E402
from tflottery.training.program import TrainingProgram  # noqa: E402
from scoring_cost import strategy_for  # noqa: E402  (this folder: virtual CPUs as replicas)

SETTINGS = {"lenet_300_100": ((28, 28, 1), 60), "resnet_20": ((32, 32, 3), 128)}
FRACTION = 0.3


def host_update(program, model, grow, batch, seed):
    """The update as DropGrowHook and the Trainer did it before (module docstring)."""
    current = masking.get_mask(model)
    variables = masking.prunable_variables(model)
    scores = grow_scores(grow, model, lambda: batch, seed)
    new = {}
    for name in current:
        new[name], _ = dynamic.drop_and_grow(current[name], variables[name].numpy(),
                                             scores[name], FRACTION)
        reset_slots(program.optimizer, variables[name], new[name] & ~current[name])
    masking.set_mask(model, masking.Mask(new))
    masking.zero_pruned_weights(model)
    masking.get_mask(model)           # the density summary read the masks back


def setup(name, strategy, replicas):
    shape, batch_size = SETTINGS[name]
    dataset = data.build(DatasetHparams(name="synthetic", batch_size=batch_size))
    hp = TrainingHparams(optimizer="sgd", lr=0.1, momentum=0.9, training_steps="10it",
                         eval_every="10it")
    with strategy.scope():
        model = masking.wrap(models.build(name, shape, 10, seed=0))
    program = TrainingProgram(strategy, model, dataset, hp)
    shapes = {n: tuple(v.shape) for n, v in masking.prunable_variables(model).items()}
    densities = dynamic.layer_densities(shapes, 0.1, "erk")
    masking.set_mask(model, dynamic.sparse_start_mask(shapes, densities, 0))
    for v in program.optimizer.variables[1:]:
        v.assign(tf.fill(v.shape, tf.constant(0.01, v.dtype)))
    rng = np.random.default_rng(0)
    batch = (rng.normal(size=(batch_size,) + shape).astype(np.float32),
             rng.integers(0, 10, batch_size).astype(np.int32))
    return program, model, batch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lenet_300_100,resnet_20")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--grow", default="gradient", choices=["gradient", "random"])
    args = parser.parse_args()
    strategy = strategy_for(args.replicas)
    for name in args.models.split(","):
        program, model, batch = setup(name, strategy, args.replicas)
        device = DropGrowProgram(model, program.optimizer, args.grow)
        active = {n: int(m.sum()) for n, m in masking.get_mask(model).items()}
        drops = {n: int(math.floor(FRACTION * active[n])) for n in device.names}
        variants = {
            "host": lambda step: host_update(program, model, args.grow, batch, (1, step)),
            "device": lambda step: device(drops, (1, step),
                                          batch if args.grow == "gradient" else None),
        }
        times = {k: [] for k in variants}
        for round_ in range(args.rounds + 1):
            for label, update in variants.items():
                start = time.perf_counter()
                update(round_)
                if round_:                     # round 0 warms up (traces)
                    times[label].append(time.perf_counter() - start)
        host = statistics.median(times["host"])
        size = sum(int(np.prod(v.shape)) for v in masking.prunable_variables(model).values())
        print(f"{name} ({size} prunable weights, batch {len(batch[1])}, {args.grow}, "
              f"{args.replicas} replica(s), median of {args.rounds} alternating rounds):")
        for label in variants:
            t = statistics.median(times[label])
            print(f"  {label:7s} {1000 * t:9.2f} ms per update   {t / host:5.2f}x host",
                  flush=True)


if __name__ == "__main__":
    main()
