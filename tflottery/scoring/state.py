"""`ScoringState`: what a scorer may read while one pruning is planned.

A scorer sees the user's model only through this object: the prunable
weights as they were when scoring started (NumPy copies), the mask being
refined round by round (`state.mask`, which is *not* the model's mask after
the first round), the device program of the data-based scorers (device.py)
and host copies for SynFlow, both with `state.mask` installed, and
`chunk_size`, the most examples one forward/backward pass of a data-based
scorer may take (chunks.py).  Nothing here writes to the user's model,
which is how prune_to_density leaves its weights and mask unchanged.
"""
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from tflottery import masking
from tflottery.scoring.copies import ModelCopy
from tflottery.scoring.device import DeviceProgram, program_for
from tflottery.scoring.host import host_copy


class ScoringState:
    """The model being scored, the mask the scores are for, and lazily made copies.

    chunk_size: examples per forward/backward pass of the scoring batch
    (None: the whole batch at once); checked by the caller (chunks.py).
    program: the DeviceProgram to use (default: program_for(model), cached
    with the model).
    """

    def __init__(self, model, rounds: int = 1, chunk_size: Optional[int] = None,
                 program: Optional[DeviceProgram] = None):
        self.model = model
        self.chunk_size = chunk_size
        # SynFlow traces its host computation only when it will be reused:
        # a one-shot score is as fast eagerly (the host copy is per call).
        self.compile = rounds > 1
        self.mask = masking.get_mask(model)
        self.weights: Dict[str, np.ndarray] = {
            name: np.asarray(var.numpy()) for name, var in masking.prunable_variables(model).items()}
        self._program = program
        self._loaded = False
        self._copies: Dict[Tuple[str, bool], ModelCopy] = {}
        self.cache: Dict = {}   # scorer-private objects (e.g. traced functions), per copy key

    def masked_weights(self) -> Dict[str, np.ndarray]:
        """The weights as the network uses them under `self.mask` (pruned entries 0.0)."""
        return {name: np.where(self.mask[name], w, np.zeros((), w.dtype))
                for name, w in self.weights.items()}

    def device(self) -> DeviceProgram:
        """The device program with this model's weights (loaded once) and `self.mask` installed."""
        if self._program is None:
            self._program = program_for(self.model)
        if not self._loaded:
            self._program.load(self.model)
            self._loaded = True
        self._program.install(self.mask)
        return self._program

    def host_copy(self, dtype: str, absolute: bool = False) -> ModelCopy:
        """A host copy in `dtype` with `self.mask` installed (SynFlow)."""
        key = (dtype, absolute)
        if key not in self._copies:
            self._copies[key] = host_copy(self.model, dtype, absolute)
        copy = self._copies[key]
        copy.install(self.mask)
        return copy

    def function(self, fn):
        """`fn` traced with tf.function if this scoring runs several rounds, else `fn` itself."""
        return tf.function(fn) if self.compile else fn
