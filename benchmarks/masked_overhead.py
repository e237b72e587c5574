"""Training speed of masked vs unmasked models, measured alternately in one run.

    python benchmarks/masked_overhead.py [--rounds 7] [--models lenet_300_100,resnet_20]

For each model the same architecture is built twice from the same seed: once
plain, once wrapped with tflottery masks (80% of each kernel pruned, which
does not change the dense compute).  Each gets its own Trainer and compiled
training loop; rounds of N steps alternate between the two so that machine
noise hits both alike.  Printed: median steps/s of each and their ratio
(masked / unmasked; the goal is >= 0.97).
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tflottery  # noqa: E402,F401
import tensorflow as tf  # noqa: E402

from tflottery import data, masking, models  # noqa: E402
from tflottery.hparams import DatasetHparams, TrainingHparams  # noqa: E402
from tflottery.training.loop import Trainer  # noqa: E402

SETTINGS = {  # model -> (input shape, batch, optimizer hparams, steps per round)
    "lenet_300_100": ((28, 28, 1), 60, dict(optimizer="adam", lr=1.2e-3), 200),
    "resnet_20": ((32, 32, 3), 128, dict(optimizer="sgd", lr=0.1, momentum=0.9,
                                           weight_decay=1e-4), 4),
}


def random_npz(directory, shape, n=2048):
    rng = np.random.default_rng(0)
    path = os.path.join(directory, f"bench_{'x'.join(map(str, shape))}.npz")
    np.savez(path, x_train=rng.integers(0, 256, (n,) + shape, dtype=np.uint8),
             y_train=rng.integers(0, 10, n), x_test=rng.integers(0, 256, (64,) + shape,
                                                                    dtype=np.uint8),
             y_test=rng.integers(0, 10, 64))
    return path


def make_runner(model, dataset, train_hp, out_dir):
    trainer = Trainer(tf.distribute.get_strategy(), model, dataset, train_hp, data_seed=0,
                      out_dir=out_dir, writable=False)
    return trainer.make_train_fn(0)


def bench(name, rounds, tmp):
    shape, batch, opt, steps = SETTINGS[name]
    dataset = data.build(DatasetHparams(name="npz", data_dir=random_npz(tmp, shape),
                                        batch_size=batch))
    train_hp = TrainingHparams(training_steps="1000000it", **opt)
    plain = models.build(name, shape, 10, seed=0)
    masked = masking.wrap(models.build(name, shape, 10, seed=0))
    rng = np.random.default_rng(1)
    masking.set_mask(masked, {n: rng.random(v.shape) < 0.2
                              for n, v in masking.prunable_variables(masked).items()})
    runners = {"unmasked": make_runner(plain, dataset, train_hp, tmp),
               "masked": make_runner(masked, dataset, train_hp, tmp)}
    for run in runners.values():          # compile and warm up
        run(steps)
    rates = {k: [] for k in runners}
    for r in range(rounds):
        order = list(runners) if r % 2 == 0 else list(reversed(list(runners)))
        for key in order:
            start = time.perf_counter()
            runners[key](steps)
            rates[key].append(steps / (time.perf_counter() - start))
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratios = sorted(m / u for m, u in zip(rates["masked"], rates["unmasked"]))
    per_round = statistics.median(ratios)
    q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
    print(f"{name:14s} unmasked {med['unmasked']:8.1f} steps/s   masked {med['masked']:8.1f} "
          f"steps/s   ratio {med['masked'] / med['unmasked']:.3f} (median per-round ratio "
          f"{per_round:.3f}, quartiles {q1:.3f}-{q3:.3f}; {rounds} rounds of {steps} steps, "
          f"batch {batch})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--models", default="lenet_300_100,resnet_20")
    parser.add_argument("--threads", type=int, default=1,
                        help="TF intra-op threads (1 steadies the timings on a small noisy "
                             "machine; 0 lets TensorFlow choose)")
    args = parser.parse_args()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU(s); target ratio >= 0.97")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            bench(name, args.rounds, tmp)


if __name__ == "__main__":
    main()
