"""The scoring batch in chunks: bounded memory for SNIP, iterative SNIP and GraSP.

The data-based scorers differentiate the mean loss of the whole scoring
batch (objective.py).  Ten examples per class are 100 CIFAR-10 images but
10,000 ImageNet images, far more than one forward/backward pass of ResNet-50
can hold, so the batch goes through the model in chunks of at most
`chunk_size` examples and the per-chunk results are combined:

    dL/dw = sum over chunks c of (n_c / n) * dL_c/dw

L_c the mean loss of chunk c, n_c its size, n the batch size.  When no layer
mixes the examples of a batch this is exactly the gradient of the mean loss
of the whole batch (the loss is a mean of per-example losses), whatever the
chunk sizes; the combination is summed in float64.  GraSP combines its
Hessian-gradient products the same way (grasp.py).

Chunks.  The n examples are split into m = ceil(n / chunk_size) chunks, chunk
c holding examples c, c + m, c + 2m, ... : no chunk has more than
chunk_size examples and their sizes differ by at most one, so there is no
small remainder chunk.  chunk_size=None, or chunk_size >= n, is one chunk:
the one-pass computation, exactly.

BatchNorm.  Scoring runs BatchNorm in training mode (objective.py), and a
chunk is normalised by its own statistics, so with BatchNorm the chunked
gradient is that of sum_c (n_c / n) L_c, each L_c under its chunk's
statistics -- what the references do with their data-loader batches ("Missing
the Mark" scores batch by batch; Wang et al.'s GraSP splits its batch into
halves) -- and it differs slightly from the one-pass gradient.  The strided
chunks matter only here: class_balanced_batch groups the examples by class,
and a strided chunk draws on classes from the whole batch, as a shuffled
data-loader batch would, rather than on a few consecutive classes.

Replicas.  Each chunk is one call of the device program (device.py), which
splits it across the strategy's replicas and sums their results: the
gradient of the chunk's mean loss.  The per-chunk results come back to the
host and are combined there in float64.
"""
from typing import Dict, List, Optional

import numpy as np

from tflottery.errors import ConfigError
from tflottery.scoring.host import check_context, outside_strategy
from tflottery.scoring.objective import check_batch
from tflottery.scoring.state import ScoringState

# Examples per forward/backward pass unless told otherwise (PaiHparams.chunk_size too).
DEFAULT_CHUNK_SIZE = 256


def check_chunk_size(chunk_size) -> Optional[int]:
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) \
            or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive integer or None (got {chunk_size!r})")
    return int(chunk_size)


def split(n: int, chunk_size: Optional[int]) -> List[slice]:
    """The chunks of a batch of n examples, as slices (see the module docstring)."""
    m = 1 if chunk_size is None or chunk_size >= n else -(-n // chunk_size)
    return [slice(c, None, m) for c in range(m)]


def accumulate(state: ScoringState, batch, function, *args) -> List[np.ndarray]:
    """sum over the chunks c of `batch` of (n_c / n) * function(chunk c, *args), in float64.

    `function` is one of the device program's traced functions (it returns
    the per-kernel results for the chunk's mean loss); state.chunk_size
    bounds n_c.
    """
    images, labels = batch
    n = len(labels)
    program = state.device()
    total = None
    for part in split(n, state.chunk_size):
        weight = len(labels[part]) / n
        out = program.run(function, images[part], labels[part], *args)
        values = [weight * value for value in out]
        total = values if total is None else [t + v for t, v in zip(total, values)]
    return total


def loss_gradient(state: ScoringState, batch, temperature: float = 1.0) -> Dict[str, np.ndarray]:
    """{name: dL/dw} (float64) of the mean loss of `batch` under state.mask, chunk by chunk.

    For a kept weight this is the gradient with respect to its effective
    weight w * m; for a pruned one it is 0 (the mask multiplies it).
    """
    program = state.device()
    grads = accumulate(state, batch, program.gradient_function, program.temperature(temperature))
    return dict(zip(program.names, grads))


def loss_gradients(model, batch, temperature: float = 1.0,
                   chunk_size: Optional[int] = DEFAULT_CHUNK_SIZE,
                   program=None) -> Dict[str, np.ndarray]:
    """{weight name: dL/dw} for the masked `model` on `batch` (for tests and analysis).

    program: a DeviceProgram to run on (default: the one cached with `model`).
    """
    chunk_size = check_chunk_size(chunk_size)
    check_context()
    batch = check_batch(batch, model)
    state = ScoringState(model, chunk_size=chunk_size, program=program)
    return outside_strategy(lambda: loss_gradient(state, batch, temperature))
