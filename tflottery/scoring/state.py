"""`ScoringState`: what a scorer may read while one pruning is planned.

A scorer sees the user's model only through this object: the prunable
weights as they were when scoring started (NumPy copies), the mask being
refined round by round (`state.mask`, which is *not* the model's mask after
the first round), host copies of the model for scorers that need a
forward pass, and `chunk_size`, the most examples one forward/backward pass
of a data-based scorer may take (chunks.py).  Nothing here writes to the
user's model, which is how prune_to_density leaves its weights and mask
unchanged.
"""
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from tflottery import masking
from tflottery.scoring.host import HostCopy, compute_dtype


class ScoringState:
    """The model being scored, the mask the scores are for, and lazily built host copies.

    chunk_size: examples per forward/backward pass of the scoring batch
    (None: the whole batch at once); checked by the caller (chunks.py).
    """

    def __init__(self, model, rounds: int = 1, chunk_size: Optional[int] = None):
        self.model = model
        self.chunk_size = chunk_size
        # Trace scorer computations with tf.function only when they will be
        # reused: a one-shot score is as fast eagerly, and tracing a new
        # function per call would make repeated scoring retrace (and warn).
        self.compile = rounds > 1
        self.mask = masking.get_mask(model)
        self.weights: Dict[str, np.ndarray] = {
            name: np.asarray(var.numpy()) for name, var in masking.prunable_variables(model).items()}
        self._copies: Dict[Tuple[str, bool], HostCopy] = {}
        self.cache: Dict = {}   # scorer-private objects (e.g. traced functions), per copy key

    def masked_weights(self) -> Dict[str, np.ndarray]:
        """The weights as the network uses them under `self.mask` (pruned entries 0.0)."""
        return {name: np.where(self.mask[name], w, np.zeros((), w.dtype))
                for name, w in self.weights.items()}

    def host_copy(self, dtype: str = None, absolute: bool = False) -> HostCopy:
        """A host copy in `dtype` (default: float32, or float64 for a float64 model) with `self.mask` installed."""
        dtype = dtype or compute_dtype(self.model)
        key = (dtype, absolute)
        if key not in self._copies:
            self._copies[key] = HostCopy(self.model, dtype, absolute)
        copy = self._copies[key]
        copy.install(self.mask)
        return copy

    def function(self, fn):
        """`fn` traced with tf.function if this scoring runs several rounds, else `fn` itself."""
        return tf.function(fn) if self.compile else fn
