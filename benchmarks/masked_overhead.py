"""Training speed of masked vs unmasked models, measured alternately in one run.

    python benchmarks/masked_overhead.py [--rounds 7] [--models lenet_300_100,resnet_20]

For each model the same architecture is built from the same seed, plain and
wrapped with tflottery masks (80% of each kernel pruned, which does not change
the dense compute), and each is trained with the optimizer update fused by XLA
(`TrainingHparams.xla_update=True`, the default) and with plain TensorFlow
ops.  Each of the four gets its own Trainer and compiled training loop; rounds
of N steps alternate between them so that machine noise hits all alike.
Printed: median steps/s, the masked/unmasked ratio for each update (the goal
is >= 0.97), and the speed-up of the fused update over plain ops.
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
    "lenet_300_100": ((28, 28, 1), 60, dict(optimizer="adam", lr=1.2e-3), 500),
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


def build_model(name, shape, masked):
    model = models.build(name, shape, 10, seed=0)
    if masked:
        model = masking.wrap(model)
        rng = np.random.default_rng(1)
        masking.set_mask(model, {n: rng.random(v.shape) < 0.2
                                 for n, v in masking.prunable_variables(model).items()})
    return model


def summarise(rates, masked, unmasked):
    """Median steps/s of each, ratio of medians, and quartiles of the per-round ratios."""
    ratios = sorted(m / u for m, u in zip(rates[masked], rates[unmasked]))
    q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
    med_m, med_u = statistics.median(rates[masked]), statistics.median(rates[unmasked])
    return med_m, med_u, med_m / med_u, statistics.median(ratios), q1, q3


def bench(name, rounds, tmp):
    """Four trainers (masked or not, XLA-fused optimizer update or plain ops),
    timed in rounds that alternate their order."""
    shape, batch, opt, steps = SETTINGS[name]
    dataset = data.build(DatasetHparams(name="npz", data_dir=random_npz(tmp, shape),
                                        batch_size=batch))
    runners = {}
    for xla in (True, False):
        train_hp = TrainingHparams(training_steps="1000000it", xla_update=xla, **opt)
        for masked in (False, True):
            runners[(xla, masked)] = make_runner(build_model(name, shape, masked), dataset,
                                                 train_hp, tmp)
    for run in runners.values():          # compile and warm up
        run(steps)
    rates = {k: [] for k in runners}
    for r in range(rounds):
        order = list(runners) if r % 2 == 0 else list(reversed(list(runners)))
        for key in order:
            start = time.perf_counter()
            runners[key](steps)
            rates[key].append(steps / (time.perf_counter() - start))
    for xla in (True, False):
        med_m, med_u, ratio, per_round, q1, q3 = summarise(rates, (xla, True), (xla, False))
        print(f"{name:14s} xla_update={str(xla):5s}  unmasked {med_u:8.1f} steps/s   masked "
              f"{med_m:8.1f} steps/s   ratio {ratio:.3f} (median per-round ratio {per_round:.3f}, "
              f"quartiles {q1:.3f}-{q3:.3f})", flush=True)
    for masked in (False, True):
        fused, plain, speedup, per_round, _, _ = summarise(rates, (True, masked), (False, masked))
        print(f"{name:14s} {'masked' if masked else 'unmasked':8s} XLA-fused update vs plain ops: "
              f"{speedup:.3f}x (median per-round {per_round:.3f})", flush=True)
    print(f"{name:14s} ({rounds} rounds of {steps} steps, batch {batch})", flush=True)


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
