"""The scorer registry: a name picks a scoring function plus how it is used.

A scorer turns the state of a masked model (its weights, its current mask,
and for some scorers a batch of data) into one score per prunable weight.
Which weights survive is decided elsewhere (pruning.select), always as "keep
the highest scores" -- except for scorers marked `prune_highest` (GraSP),
whose paper removes the *highest* scores.  Iterative scorers (SynFlow,
iterative SNIP) are the same functions called once per round on the mask of
the previous round; `iterations` is their default number of rounds.
"""
import dataclasses
from typing import Callable, Dict

import numpy as np

from tflottery.registry import Registry

# fn(state, batch, seed, round_index) -> {weight name: float64 array of the weight's shape}
ScoreFn = Callable[..., Dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Scorer:
    """A registered scorer.

    fn: (state: scoring.state.ScoringState, batch or None, seed, round_index)
      -> scores.  `state.mask` is the mask the scores are for.
    needs_batch: True if fn reads the (images, labels) batch.
    iterations: default number of rounds of prune_to_density (1 = one-shot).
    prune_highest: remove the highest scores rather than the lowest.
    """

    name: str
    fn: ScoreFn
    needs_batch: bool = False
    iterations: int = 1
    prune_highest: bool = False


SCORERS: Registry[Scorer] = Registry("scorer")


def register(name: str, fn: ScoreFn, **options) -> Scorer:
    scorer = Scorer(name, fn, **options)
    SCORERS.register(name, scorer)
    return scorer
