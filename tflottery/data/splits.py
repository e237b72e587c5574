"""Which training examples train, and which are held out.

Both choices use a FIXED seed, independent of the run's data seed: every
run and replicate of an experiment must train on the same examples and
validate on the same holdout, otherwise differences between runs would mix
"which data" with "which order".
"""
from typing import Optional, Tuple

import numpy as np

from tflottery.errors import ConfigError

SUBSET_SEED = 20190304  # fixed forever: changing it changes every holdout and subset


def split_sizes(num_examples: int, holdout_fraction: float,
                num_train_examples: Optional[int]) -> Tuple[int, int]:
    """(training examples, holdout examples) of a training split of num_examples.

    The one place the sizes are worked out: in-memory datasets
    (train_holdout_indices), the streamed ImageNet (imagenet.build) and the
    dry run's known sizes (planning.plan) all apply holdout_fraction and
    num_train_examples through it, so a plan's steps are a run's.  The holdout
    is round(holdout_fraction * num_examples); of the rest, num_train_examples
    train (all when None).
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise ConfigError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    num_holdout = int(round(holdout_fraction * num_examples))
    rest = num_examples - num_holdout
    if num_train_examples is not None:
        if not 1 <= num_train_examples <= rest:
            raise ConfigError(
                f"num_train_examples must be in [1, {rest}] (training examples left after the "
                f"holdout), got {num_train_examples}")
        rest = num_train_examples
    if rest == 0:
        raise ConfigError(f"holdout_fraction {holdout_fraction} leaves no training examples")
    return rest, num_holdout


def train_holdout_indices(num_examples: int, holdout_fraction: float,
                          num_train_examples: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
    """(train indices, holdout indices) into the full training arrays, each sorted.

    One permutation by np.random.default_rng(SUBSET_SEED): its first
    round(holdout_fraction * num_examples) entries are the holdout; of the rest
    (in permuted order) the first num_train_examples train (all when None).
    So the holdout does not depend on num_train_examples.  Sizes: split_sizes.
    """
    num_train, num_holdout = split_sizes(num_examples, holdout_fraction, num_train_examples)
    perm = np.random.default_rng(SUBSET_SEED).permutation(num_examples)
    return np.sort(perm[num_holdout:num_holdout + num_train]), np.sort(perm[:num_holdout])
