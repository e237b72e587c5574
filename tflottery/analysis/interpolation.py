"""Linear interpolation between two trained networks (instability analysis).

Frankle et al. 2020 ("Linear Mode Connectivity and the Lottery Ticket
Hypothesis"; thesis chapter 4) train two copies of a network from one state
with different SGD noise, then evaluate (1-a)*thetaA + a*thetaB along the
segment.  The *instability* (error barrier) is the highest error on the path
minus the mean error of its two end points: 0 means A and B are linearly
mode connected.  Entezari et al. 2022 and Ainsworth et al. 2022 measure
from the straight line between the end points instead (`linear_barrier`);
the two differ when the end points' errors differ.

Design.  A third model, `model_mix`, of the same architecture receives the
interpolated weights, so A and B are never modified.  alpha is passed as a
tensor: one `tf.function` trace of the assignment and one of each split's
evaluation serve all alphas, which matters on TPU where a trace per alpha
would mean thirty compilations.
"""
from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

from tflottery import masking, models, stop
from tflottery.analysis.batchnorm import BatchNormRecomputer
from tflottery.errors import ConfigError
from tflottery.keras_compat import check_tf_keras_model
from tflottery.training.split_pass import SplitPass

BN_MODES = ("recompute", "interpolate")


# Every alpha costs an evaluation of the train and test sets (and a BatchNorm
# recomputation); past this many a run would take days, or a typo would
# allocate gigabytes for the list alone.
MAX_ALPHAS = 1000


def alphas(n: int = 30) -> np.ndarray:
    """n evenly spaced interpolation coefficients from 0 (model A) to 1 (model B)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 2 <= n <= MAX_ALPHAS:
        raise ConfigError(f"the number of alphas must be an integer from 2 (the two end points) "
                          f"to {MAX_ALPHAS}, got {n!r}")
    return np.linspace(0.0, 1.0, n)


def error_barrier(errors: Sequence[float]) -> float:
    """max(errors) - (errors[0] + errors[-1]) / 2: the instability of a path.

    errors[0] and errors[-1] must be the end points (alpha 0 and 1).
    """
    errors = [float(e) for e in errors]
    if not errors:
        raise ConfigError("error_barrier needs at least one error")
    return max(errors) - (errors[0] + errors[-1]) / 2.0


def linear_barrier(errors: Sequence[float], alphas: Sequence[float]) -> float:
    """max over the path of error(a) - ((1 - a) error(0) + a error(1)).

    The barrier above the straight line between the end points, as Entezari
    et al. 2022 and Ainsworth et al. 2022 define it; error_barrier (Frankle
    et al. 2020, the thesis) measures from the mean of the end points.  The
    two agree when the end points have equal error.  errors[0] and
    errors[-1] must be the end points (alpha 0 and 1).
    """
    errors, alphas = np.asarray(errors, np.float64), np.asarray(alphas, np.float64)
    if errors.size == 0 or errors.shape != alphas.shape:
        raise ConfigError(f"linear_barrier needs one error per alpha, got {errors.size} errors "
                          f"and {alphas.size} alphas")
    line = (1.0 - alphas) * errors[0] + alphas * errors[-1]
    return float(np.max(errors - line))


def _mask_variable_ids(model) -> set:
    return {id(w.mask_variable(attr)) for w in masking.masked_layers(model) for attr in w.prunable_attrs}


def check_compatible(model_a, model_b, model_mix) -> None:
    """ConfigError unless the three models have matching variables and A, B share a mask."""
    for model in (model_a, model_b, model_mix):
        check_tf_keras_model(model)
    mix_ids = {id(v) for v in model_mix.variables}
    if mix_ids & ({id(v) for v in model_a.variables} | {id(v) for v in model_b.variables}):
        raise ConfigError("model_mix shares variables with model_a or model_b; pass a separate "
                          "third model, built like them, to receive the interpolated weights")
    va, vb, vm = model_a.variables, model_b.variables, model_mix.variables
    if not len(va) == len(vb) == len(vm):
        raise ConfigError(
            f"models differ in architecture: {len(va)}, {len(vb)} and {len(vm)} variables "
            "(model_a, model_b, model_mix)")
    for a, b, m in zip(va, vb, vm):
        if not a.shape == b.shape == m.shape:
            raise ConfigError(
                f"models differ in architecture: variable {a.name} has shape {a.shape} in model_a, "
                f"{b.name} {b.shape} in model_b, {m.name} {m.shape} in model_mix")
    masks = [sorted(i for i, v in enumerate(model.variables) if id(v) in _mask_variable_ids(model))
             for model in (model_a, model_b, model_mix)]
    if not masks[0] == masks[1] == masks[2]:
        raise ConfigError("models differ in masking: wrap all three with masking.wrap, or none")
    for i in masks[0]:
        if not np.array_equal(va[i].numpy(), vb[i].numpy()):
            raise ConfigError(
                f"model_a and model_b have different masks ({va[i].name}): interpolating between "
                "different sparsity patterns is not supported; give both the same mask")


class Interpolator:
    """Evaluates the networks (1-alpha)*A + alpha*B for a list of alphas.

    Args:
      strategy: the tf.distribute strategy under whose scope the three
        models were built.
      model_a, model_b: the end points (not modified).
      model_mix: a third model of the same architecture; it is overwritten
        and holds the last alpha's network after `evaluate`.
      dataset: a `tflottery.data.Dataset` (eval_dataset/train_dataset).
      bn_mode: 'recompute' (default, as in the LMC paper): after setting the
        weights, BN moving statistics are measured on `bn_batches` training
        batches of `dataset.train_dataset(bn_seed)` (see batchnorm.py);
        'interpolate': moving statistics are interpolated like the weights.
      bn_batches, bn_seed: the batches used by 'recompute'.

    Every variable of model_mix (weights, BN statistics, masks) is matched
    by position with those of A and B.  Masks: A and B must have the same
    mask (else ConfigError), and the interpolation of a mask with itself is
    that mask, so model_mix gets exactly that mask.  It is copied rather
    than computed as (1-a)*m + a*m, which in float32 need not give exactly
    1.0.  Pruned weights are 0 in both A and B, hence 0 in every mix.
    """

    def __init__(self, strategy, model_a, model_b, model_mix, dataset, bn_mode: str = "recompute",
                 bn_batches: int = 10, bn_seed: int = 0):
        if bn_mode not in BN_MODES:
            raise ConfigError(f"unknown bn_mode {bn_mode!r}; choose one of: {', '.join(BN_MODES)}")
        check_compatible(model_a, model_b, model_mix)
        self.strategy = strategy
        self.models = (model_a, model_b, model_mix)
        self.dataset = dataset
        self.bn_mode = bn_mode
        mask_ids = _mask_variable_ids(model_a)
        triples = list(zip(model_a.variables, model_b.variables, model_mix.variables))
        self._masks = [(a, m) for a, _, m in triples if id(a) in mask_ids]
        self._mixed = [t for t in triples if id(t[0]) not in mask_ids]
        if bn_mode == "recompute":
            self._bn = BatchNormRecomputer(strategy, model_mix, dataset, bn_batches, bn_seed)
        else:  # the moving statistics are interpolated with everything else
            self._bn = None
        self.assign_fn = tf.function(self._assign_mix)
        self.eval_fns: Dict[str, tf.types.experimental.GenericFunction] = {}

    def _assign_mix(self, alpha):
        for a, b, m in self._mixed:
            dtype = a.dtype
            w = tf.cast(alpha, dtype)
            m.assign((1.0 - w) * tf.convert_to_tensor(a) + w * tf.convert_to_tensor(b))
        for a, m in self._masks:
            m.assign(tf.convert_to_tensor(a))

    def set_alpha(self, alpha: float) -> None:
        """Put (1-alpha)*A + alpha*B into model_mix (and recompute BN if asked)."""
        self.assign_fn(tf.constant(alpha, tf.float32))
        if self._bn is not None:
            self._bn.recompute()

    def _replica_eval(self, images, labels):
        """(sum of losses, number correct, number of examples) of one replica's batch."""
        logits = models.eval_logits(self.models[2], images)
        y = tf.cast(labels, tf.int32)
        # Labels < 0 are padding (evaluation datasets pad to full batches): not counted.
        real = tf.cast(y >= 0, tf.float32)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(y, 0), logits=logits)
        correct = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), y)
        return (tf.reduce_sum(loss * real), tf.reduce_sum(tf.cast(correct, tf.float32)),
                tf.reduce_sum(real))

    def _eval_fn(self, split: str):
        if split not in self.eval_fns:
            strategy = self.strategy
            split_pass = SplitPass(strategy, self.dataset, split)

            def body(images, labels, totals):
                # Sums, not means, per replica: padding then weighs nothing
                # and each real example exactly once.
                sums = strategy.run(self._replica_eval, args=(images, labels))
                sums = [strategy.reduce(tf.distribute.ReduceOp.SUM, s, axis=None) for s in sums]
                return tuple(t + s for t, s in zip(totals, sums))

            @tf.function
            def eval_fn():
                with masking.weights_masked_once(self.models[2], strategy):
                    return split_pass.for_each_batch(
                        body, (tf.constant(0.0), tf.constant(0.0), tf.constant(0.0)))
            self.eval_fns[split] = eval_fn
        return self.eval_fns[split]

    def evaluate_current(self, split: str) -> dict:
        """Loss, accuracy and error of model_mix as it is now on the whole split."""
        loss, correct, count = (float(t) for t in self._eval_fn(split)())
        if count == 0:
            raise ConfigError(f"split {split!r} is empty")
        accuracy = correct / count
        return {"loss": loss / count, "accuracy": accuracy, "error": 1.0 - accuracy}

    def evaluate(self, alphas: Sequence[float], splits: Sequence[str] = ("test", "train")) -> dict:
        """{split: {'alpha': [...], 'loss': [...], 'accuracy': [...], 'error': [...]}}."""
        # Masks could have been changed since construction: check again.
        check_compatible(*self.models)
        curves = {s: {"alpha": [], "loss": [], "accuracy": [], "error": []} for s in splits}
        for alpha in alphas:
            stop.check(f"interpolating at alpha {float(alpha):g}")
            self.set_alpha(float(alpha))
            for split in splits:
                result = self.evaluate_current(split)
                curves[split]["alpha"].append(float(alpha))
                for key, value in result.items():
                    curves[split][key].append(value)
        return curves
