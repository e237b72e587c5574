"""Instability analysis (thesis chapter 4; Frankle et al. 2020, Linear Mode Connectivity).

    from tflottery import analysis
    interp = analysis.Interpolator(strategy, model_a, model_b, model_mix, dataset)
    curves = interp.evaluate(analysis.alphas(30))          # {split: {alpha, loss, accuracy, error}}
    analysis.error_barrier(curves['test']['error'])        # the instability
    analysis.linear_barrier(curves['test']['error'], curves['test']['alpha'])  # above the line

    analysis.l2_distance(analysis.weight_vector(a), analysis.weight_vector(b))
    predict = analysis.PredictionLoop(strategy, a, dataset)   # one trace per split, reused
    pa, la = predict('test')                                  # predictions, per-example losses

Modules: interpolation (the curve and the barrier), batchnorm (recomputing
BN statistics at every point of the path), distances (weight- and
function-space distances between two networks).
"""
from tflottery.analysis.batchnorm import BatchNormRecomputer, batchnorm_layers
from tflottery.analysis.distances import (
    PredictionLoop, cosine_distance, disagreement, l2_distance, loss_distance, predictions_and_losses,
    weight_vector)
from tflottery.analysis.interpolation import (
    BN_MODES, MAX_ALPHAS, Interpolator, alphas, check_compatible, error_barrier,
    linear_barrier)

__all__ = [
    "BN_MODES", "MAX_ALPHAS", "BatchNormRecomputer", "Interpolator", "alphas", "batchnorm_layers",
    "check_compatible", "cosine_distance", "disagreement", "error_barrier", "l2_distance",
    "linear_barrier", "loss_distance", "PredictionLoop", "predictions_and_losses", "weight_vector",
]
