"""Grow scores of dynamic sparsity: which inactive connections to add back.

Dynamic sparse training (RigL, SET) and Dynamic IMP's growth variants add
connections to a sparse network.  Two criteria:

  'gradient'  RigL (Evci et al. 2020): |dL/dw| of the *dense* network on one
              batch, so a connection is grown where the loss would fall
              fastest if it existed.  Computed by the scoring device program
              (device.py: under the model's strategy, float32, the batch
              split across replicas) with an all-ones mask installed: the
              pruned weights are zero, so the network computes the same
              function, and the gradient at a pruned position is what it
              would be for a connection of value 0.  (The training step's
              own gradient is masked at pruned positions.)  L is the
              cross-entropy of objective.py, on the logits also for a model
              ending in softmax or sigmoid (head.py).
  'random'    SET (Mocanu et al. 2018): uniform scores from a seeded
              generator, the same for the same (seed, step).

Dynamic IMP's regrowth uses these host scores.  Experiment 'dst' (RigL,
SET) computes its own on the device with its update
(pruning/dynamic_device.py): RigL's the same dense gradient (the tests hold
the update to `dense_gradient` mask for mask), SET's from a counter-based
hash rather than NumPy's generator, so that the device and the host
reference give the same numbers.
"""
from typing import Callable, Dict

import numpy as np

from tflottery import masking
from tflottery.errors import ConfigError
from tflottery.scoring.chunks import DEFAULT_CHUNK_SIZE, loss_gradient
from tflottery.scoring.host import outside_strategy
from tflottery.scoring.objective import check_batch
from tflottery.scoring.state import ScoringState

CRITERIA = ("gradient", "random")


def check_criterion(what: str, criterion: str) -> str:
    if criterion not in CRITERIA:
        raise ConfigError(f"unknown {what} {criterion!r}; choose one of: {', '.join(CRITERIA)}")
    return criterion


def dense_gradient(model, batch, chunk_size=DEFAULT_CHUNK_SIZE) -> Dict[str, np.ndarray]:
    """{weight name: dL/dw} (float64) of the mean loss of `batch` as if every connection existed.

    `model`'s pruned weights must be zero (as they are during training).
    """
    state = ScoringState(model, chunk_size=chunk_size)
    state.mask = masking.Mask.ones_like(model)
    batch = check_batch(batch, model)
    return outside_strategy(lambda: loss_gradient(state, batch))


def training_batch(dataset, data_seed: int, step: int):
    """The global batch the training stream of `data_seed` gives at `step`, as NumPy arrays.

    RigL scores growth on the current batch; taking it from the stream by
    step (not from the training iterator) leaves the training data untouched
    and gives a resumed run the same batch.
    """
    images, labels = next(iter(dataset.train_dataset(data_seed, None, start_step=step)))
    return images.numpy(), labels.numpy()


def grow_scores(criterion: str, model, batch: Callable, seed) -> Dict[str, np.ndarray]:
    """{weight name: score} for growing: |dense gradient| or random (module docstring).

    batch: a no-argument function giving (images, labels), called only for
    'gradient'.  seed: an int or a sequence of ints (e.g. (seed, step)).
    """
    check_criterion("grow criterion", criterion)
    if criterion == "gradient":
        return {name: np.abs(g) for name, g in dense_gradient(model, batch()).items()}
    rng = np.random.default_rng(seed)
    return {name: rng.random(tuple(var.shape))
            for name, var in sorted(masking.prunable_variables(model).items())}
