"""Scoring weights for pruning at (and early after) initialisation (thesis chapter 5).

    from tflottery import scoring
    batch = scoring.class_balanced_batch(dataset, per_class=10, seed=0)
    mask = scoring.prune_to_density('snip', model, 0.1, batch=batch)
    masking.set_mask(model, mask)

Scorers (one module each; conventions in their docstrings):

    random                   U[0,1) from the seed                 random_scores.py
    magnitude                |w|                                  magnitude.py
    magnitude_unit_variance  |w| / std(layer kernel)              magnitude.py
    snip                     |dL/dw * w|, 10 examples/class       snip.py
    isnip                    snip rescored over 100 rounds        snip.py
    grasp                    -w * Hg, T=200; prunes the HIGHEST   grasp.py
    grasp_abs                |-w * Hg|                            grasp.py
    synflow                  |dR/dw * w| of the |.| network,
                             ones input, float64, 100 rounds      synflow.py

`model` is a masked (masking.wrap'd) Sequential or functional model, with
a logits, softmax or sigmoid output (the scorers work on its logits; a
one-unit output is binary; head.py),
tf_keras or Keras 3 (the scorers that differentiate -- SNIP, iterative
SNIP, GraSP, grasp_abs, SynFlow -- need Keras 3's TensorFlow backend;
keras_compat.py).  prune_to_density respects its current mask, never changes its
weights or mask, and returns a Mask keeping exactly
round(target_density * num_weights) weights (schedule.py: exclusions,
global/layerwise scope, the exponential schedule of iterative scorers).
SNIP, iterative SNIP and GraSP compute their gradients in float32 on a
private copy of the model on its devices, as traced programs under the
model's tf.distribute strategy with the batch split across replicas
(device.py; pass program=scoring.DeviceProgram(model) to reuse one trace
across several models of one architecture).  They take the batch in chunks
of at most `chunk_size` examples (default 256) per forward/backward pass,
which bounds their memory (chunks.py).  SynFlow needs no data and float64,
which TPUs lack: it runs on a host-CPU copy (host.py, synflow.py).
"""
from tflottery.scoring import grasp, magnitude, random_scores, snip, synflow  # noqa: F401  (register)
from tflottery.scoring.api import compute_scores, prune_to_density
from tflottery.scoring.batch import check_examples_per_class, class_balanced_batch
from tflottery.scoring.chunks import DEFAULT_CHUNK_SIZE
from tflottery.scoring.device import DeviceProgram, program_for
from tflottery.scoring.registry import SCORERS, Scorer

__all__ = ["DEFAULT_CHUNK_SIZE", "DeviceProgram", "SCORERS", "Scorer", "check_examples_per_class",
           "class_balanced_batch",
           "compute_scores", "names", "program_for", "prune_to_density"]


def names():
    """The registered scorer names, sorted."""
    return SCORERS.names()
