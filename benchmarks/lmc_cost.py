"""Cost of the instability analysis: evaluating the linear path at 30 alphas
(test + train sets, BatchNorm statistics recomputed) relative to training
one copy, for LeNet-300-100 and ResNet-20 (short training), in one run.

    python benchmarks/lmc_cost.py [--lenet_steps 3000] [--resnet_steps 100]

LeNet uses the real MNIST digits (../shared/data/mnist, 8,000 / 2,000) when
present, else random 28x28 data; ResNet-20 uses 2,048 random 32x32 images
(speed does not depend on the pixels).
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tflottery  # noqa: E402,F401
import tensorflow as tf  # noqa: E402

from tflottery import analysis, data, masking, models  # noqa: E402
from tflottery.hparams import DatasetHparams, TrainingHparams  # noqa: E402
from tflottery.training.loop import Trainer  # noqa: E402
from tflottery.training.program import TrainingProgram  # noqa: E402


def random_npz(directory, shape, n=2048, n_test=512):
    rng = np.random.default_rng(0)
    path = os.path.join(directory, "bench.npz")
    np.savez(path, x_train=rng.integers(0, 256, (n,) + shape, dtype=np.uint8),
             y_train=rng.integers(0, 10, n), y_test=rng.integers(0, 10, n_test),
             x_test=rng.integers(0, 256, (n_test,) + shape, dtype=np.uint8))
    return path


def measure(name, dataset, hp, tmp):
    strategy = tf.distribute.get_strategy()
    shape, classes = tuple(dataset.info.input_shape), dataset.info.num_classes

    def build():
        return masking.wrap(models.build(name, shape, classes, seed=0))

    # As the lmc experiment does: both copies trained through one training
    # program (one trace), each then loaded into a model of its own.
    copies = [build(), build()]
    start = time.perf_counter()
    program = TrainingProgram(strategy, build(), dataset, hp)
    for seed, copy in zip((1, 2), copies):
        program.load_initial_weights()
        Trainer(strategy, program.model, dataset, hp, seed, os.path.join(tmp, name, str(seed)),
                writable=False, program=program).run()
        for target, source in zip(copy.variables, program.model.variables):
            target.assign(source)
    train_seconds = (time.perf_counter() - start) / 2
    interp = analysis.Interpolator(strategy, copies[0], copies[1], build(), dataset)
    start = time.perf_counter()
    curves = interp.evaluate(analysis.alphas(30), splits=("test", "train"))
    eval_seconds = time.perf_counter() - start
    print(f"{name:14s} one copy's training {train_seconds:7.1f} s   30 alphas (test+train, "
          f"BN recomputed) {eval_seconds:7.1f} s   ratio {eval_seconds / train_seconds:.2f}   "
          f"test instability {100 * analysis.error_barrier(curves['test']['error']):.2f} points",
          flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lenet_steps", type=int, default=3000)
    parser.add_argument("--resnet_steps", type=int, default=100)
    args = parser.parse_args()
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU(s)")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            lenet_data = data.build(DatasetHparams(name="mnist_local", batch_size=60))
        except tflottery.errors.TfLotteryError:
            lenet_data = data.build(DatasetHparams(
                name="npz", data_dir=random_npz(tmp, (28, 28, 1), 8000, 2000), batch_size=60))
        steps = args.lenet_steps
        measure("lenet_300_100", lenet_data,
                TrainingHparams(optimizer="adam", lr=1.2e-3, training_steps=f"{steps}it",
                                eval_every=f"{steps}it", steps_per_loop=100), tmp)
        steps = args.resnet_steps
        resnet_data = data.build(DatasetHparams(name="npz", batch_size=128,
                                                data_dir=random_npz(tmp, (32, 32, 3))))
        measure("resnet_20", resnet_data,
                TrainingHparams(lr=0.1, momentum=0.9, weight_decay=1e-4,
                                training_steps=f"{steps}it", eval_every=f"{steps}it",
                                steps_per_loop=20), tmp)


if __name__ == "__main__":
    main()
