"""N:M structured sparsity: at most N of every M consecutive weights kept.

Sparse tensor cores (NVIDIA Ampere and later) and TFLite's sparse kernels
speed up a layer only when its zeros follow a pattern: in every block of M
consecutive weights along the *input* dimension, at most N are non-zero
(2:4 is the common case).  Unstructured masks, however sparse, gain nothing
there, so tflottery offers the pattern as a pruning scope, written 'N:M'
(e.g. scope='2:4'), next to 'global' and 'layerwise'.

Conventions (tensorflow-model-optimization's, so tfmot's checker
`pruning_utils.is_pruned_m_by_n` accepts our masks):

* Blocks run along axis -2, which is the input axis of Dense [in, out],
  Conv1D/2D/3D [..., in, out], a separable convolution's pointwise kernel
  and an Embedding table [vocabulary, dim] (any rank >= 2); each output
  unit / filter position has its own row of blocks.  A last, shorter block
  (input size not a multiple of M) may also keep at most N.  Axis -2 is
  not the input axis of every kernel: a transposed convolution stores
  [..., out, in] and a depthwise kernel [..., channels, multiplier], so
  there the pattern holds along that axis but is not the one sparse
  hardware reads (tfmot's m_by_n does not take those layers either);
  exclude them from an N:M scope if that matters.
* 'N:M' names the weights KEPT (NVIDIA's usage).  tfmot's
  `sparsity_m_by_n=(a, b)` names the ZEROS: N:M is tfmot's (M - N, M); for
  2:4 both read the same.

How the scope prunes: it is layerwise pruning under the pattern.  In every
block, the remaining weights beyond the N best-ranked are "over quota" and
are removed first (lowest scores first); only then are in-quota weights
removed, lowest scores first within the layer.  A pruning call in an N:M
scope always removes at least the over-quota weights, so its result obeys
the pattern even when asked to remove fewer: from the first pruning on,
every pruned layer is at density <= N/M (an IMP level pruning 20% of a dense
layer in scope '2:4' leaves 50%; later levels go on removing 20% of the
remaining within the pattern).  Layers excluded from pruning keep their mask.
"""
import re
from typing import Optional, Tuple

import numpy as np

from tflottery.errors import ConfigError

_PATTERN = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse(scope) -> Optional[Tuple[int, int]]:
    """(N, M) for an 'N:M' scope such as '2:4'; None for any other value.

    A string of that shape that is not a valid pattern (N >= M, N = 0) is a
    ConfigError, so '4:2' is not silently taken for an unknown scope.
    """
    match = _PATTERN.match(scope) if isinstance(scope, str) else None
    if match is None:
        return None
    n, m = int(match.group(1)), int(match.group(2))
    if not 0 < n < m:
        raise ConfigError(
            f"N:M scope {scope!r} needs 0 < N < M (N weights kept of every M); e.g. '2:4'")
    return n, m


def to_tfmot_m_by_n(n: int, m: int) -> Tuple[int, int]:
    """tfmot's `sparsity_m_by_n` for the pattern N:M: (zeros per block, block size)."""
    return m - n, m


def _blocks(shape, m: int) -> np.ndarray:
    """Block id of every entry of a weight of `shape`, in flat (C) order.

    The input axis is axis -2; every position of the other axes starts a new
    row of blocks, so ids are (row, input index // M) numbered row by row.
    """
    if len(shape) < 2:
        raise ConfigError(
            f"an N:M scope needs weights with an input axis (rank >= 2); got shape "
            f"{tuple(shape)}; exclude this layer or use scope 'layerwise'")
    n_in = shape[-2]
    per_row = -(-n_in // m)
    index = np.indices(shape).reshape(len(shape), -1)
    inner = index[-2] // m
    row = np.ravel_multi_index(np.delete(index, -2, axis=0),
                               tuple(np.delete(np.asarray(shape), -2)))
    return row * per_row + inner


def over_quota(keys: np.ndarray, alive: np.ndarray, n: int, m: int) -> np.ndarray:
    """For the remaining entries (flat order), whether each is beyond its block's best N.

    `keys` ranks entries as pruning does: lower keys are removed first, and
    among equal keys the earlier entry (flat order) is removed first, so the
    N entries a block keeps are the last N of its removal order.
    """
    flat_alive = np.flatnonzero(alive)
    block = _blocks(alive.shape, m)[flat_alive]
    key = keys.reshape(-1)[flat_alive]
    # Removal order within each block: by block, then key, then position (lexsort is stable).
    order = np.lexsort((key, block))
    sorted_blocks = block[order]
    ends = np.searchsorted(sorted_blocks, sorted_blocks, side="right")
    rank_from_end = ends - 1 - np.arange(order.size)
    out = np.empty(order.size, np.bool_)
    out[order] = rank_from_end >= n
    return out


def follows(mask: np.ndarray, n: int, m: int) -> bool:
    """Whether a boolean (or numeric) weight mask keeps at most N in every block of M."""
    mask = np.asarray(mask) != 0
    counts = np.bincount(_blocks(mask.shape, m), weights=mask.reshape(-1).astype(np.int64))
    return bool(np.all(counts <= n))
