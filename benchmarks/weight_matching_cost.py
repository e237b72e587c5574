"""Time of weight matching (analysis/align.py) with the objective updated step by
step against recomputing it whole after every step, for LeNet-300-100, ResNet-20
and VGG-16, alternating the two in rounds (this machine is noisy).

    python benchmarks/weight_matching_cost.py [--models lenet_300_100,resnet_20,vgg_16]
                                              [--rounds 3]

The two networks of a pair are the same architecture from two seeds, untrained:
the search's cost depends on the shapes and on how many steps it takes, which
for untrained networks is of the same order as for trained copies (the search
visits every group each round until none changes).  Both modes must find the
same permutations; the script says if they do not.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tflottery  # noqa: E402,F401
from tflottery import models  # noqa: E402
from tflottery.analysis import align, align_match  # noqa: E402

SHAPES = {"lenet_300_100": (28, 28, 1), "resnet_20": (32, 32, 3), "vgg_16": (32, 32, 3)}


def search(model_a, model_b, incremental: bool):
    """(seconds, permutations, steps) of one weight matching in the given mode."""
    spec_a, spec_b = align._pair_specs(model_a, model_b)
    axes = [w.axes for w in spec_a.weights if w.matched]
    arrays_a, arrays_b = align._matched_arrays(spec_a), align._matched_arrays(spec_b)
    start = time.perf_counter()
    perms, history = align_match.weight_matching(arrays_a, arrays_b, axes, spec_a.sizes,
                                                 incremental=incremental)
    return time.perf_counter() - start, perms, len(history) - 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="lenet_300_100,resnet_20,vgg_16")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'model':<16} {'steps':>6} {'whole (s)':>10} {'incremental (s)':>16} {'ratio':>6}")
    for name in args.models.split(","):
        shape = SHAPES[name]
        model_a = models.build(name, shape, 10, seed=0)
        model_b = models.build(name, shape, 10, seed=1)
        times = {True: [], False: []}
        found = {}
        for r in range(args.rounds):
            for incremental in ((True, False) if r % 2 == 0 else (False, True)):
                seconds, perms, steps = search(model_a, model_b, incremental)
                times[incremental].append(seconds)
                found[incremental] = (perms, steps)
        same = all(np.array_equal(p, q) for p, q in zip(found[True][0], found[False][0]))
        whole, incr = statistics.median(times[False]), statistics.median(times[True])
        print(f"{name:<16} {found[True][1]:>6} {whole:>10.2f} {incr:>16.2f} {incr / whole:>6.2f}"
              + ("" if same else "   (the two modes found different permutations)"),
              flush=True)


if __name__ == "__main__":
    main()
