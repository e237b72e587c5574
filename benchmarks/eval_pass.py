"""One evaluation pass with weight*mask per batch against once per pass (masking/eval_path.py).

LeNet-300-100, wrapped by masking.wrap, evaluated on the real MNIST split
(../shared/data/mnist: 2,000 test images, batches of 60) through the same
SplitPass and metrics (mean loss, accuracy) as TrainingProgram.evaluate,
traced three ways in one process:
  every    Masked.call multiplies weight by mask at every batch (the default
           outside a pass);
  once     masking.weights_masked_once around the pass's loop;
  trusted  masking.trusted_zero_pruned_weights (no multiply at all: the
           training step's fast path, a floor, not usable for evaluation).
The three are timed in alternating rounds (this machine is noisy) and their
losses checked equal; the medians and the ratios to 'every' are printed.

    python benchmarks/eval_pass.py [--rounds 7] [--passes 10]

Measured 2026-12-08 (2 cores, quiet), 7 rounds of 10 passes: every 27.27 ms,
once 19.15 ms (0.70), trusted 19.15 ms (0.70).  An earlier scratch A/B of the
same passes: 30.30, 21.89 (0.72) and 21.12 ms.
"""
import argparse
import os
import statistics
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TFLOTTERY_MNIST_DIR",
                      os.path.normpath(os.path.join(HERE, "..", "shared", "data", "mnist")))

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from tflottery import masking, models  # noqa: E402
from tflottery.data.pipeline import build  # noqa: E402
from tflottery.hparams import DatasetHparams  # noqa: E402
from tflottery.training.split_pass import SplitPass  # noqa: E402

CONTEXTS = {"every": None, "once": "once", "trusted": "trusted"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--passes", type=int, default=10)
    args = parser.parse_args()

    strategy = tf.distribute.get_strategy()
    dataset = build(DatasetHparams(name="mnist_local", batch_size=60))
    model = masking.wrap(models.build("lenet_300_100", (28, 28, 1), 10, seed=0))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
    mean_loss, accuracy = keras.metrics.Mean(), keras.metrics.SparseCategoricalAccuracy()
    split_pass = SplitPass(strategy, dataset, "test")

    def step(images, labels):
        labels = tf.cast(labels, tf.int32)
        real = labels >= 0
        labels = tf.where(real, labels, tf.zeros_like(labels))
        logits, weight = model(images, training=False), tf.cast(real, tf.float32)
        mean_loss.update_state(loss_fn(labels, logits), sample_weight=weight)
        accuracy.update_state(labels, logits, sample_weight=weight)

    def body(images, labels, state):
        strategy.run(step, args=(images, labels))
        return state

    def traced(kind):
        def one_pass():
            if kind == "once":
                with masking.weights_masked_once(model, strategy):
                    split_pass.for_each_batch(body)
            elif kind == "trusted":
                with masking.trusted_zero_pruned_weights():
                    split_pass.for_each_batch(body)
            else:
                split_pass.for_each_batch(body)
        return tf.function(one_pass, autograph=False)

    passes = {kind: traced(kind) for kind in CONTEXTS}
    losses = {}
    for kind, fn in passes.items():
        mean_loss.reset_state()
        fn()
        losses[kind] = float(mean_loss.result())
    print("loss of one pass:", losses)
    if len(set(losses.values())) != 1:
        raise SystemExit("the three passes disagree")
    times = {kind: [] for kind in passes}
    for _ in range(args.rounds):
        for kind, fn in passes.items():
            start = time.perf_counter()
            for _ in range(args.passes):
                mean_loss.reset_state()
                accuracy.reset_state()
                fn()
            times[kind].append((time.perf_counter() - start) / args.passes)
    base = statistics.median(times["every"])
    for kind in passes:
        median = statistics.median(times[kind])
        print(f"{kind:8s} {1000 * median:7.2f} ms a pass  ({median / base:.2f} of 'every')")


if __name__ == "__main__":
    main()
