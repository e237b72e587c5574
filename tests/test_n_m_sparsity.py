"""N:M structured sparsity as a pruning scope (pruning/n_m.py).

Masks are checked with tensorflow-model-optimization's own M-by-N checker
(`pruning_utils.is_pruned_m_by_n`) and its own 2:4 mask generator, and against
plain NumPy loops written here.
"""
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_utils

from tflottery import masking, pruning, scoring
from tflottery.errors import ConfigError
from tflottery.keras_compat import keras
from tflottery.masking import Mask
from tflottery.pruning import n_m


def _tfmot_ok(keep, n=2, m=4) -> bool:
    """tfmot's checker on a kernel that is non-zero exactly where `keep` is True."""
    values = tf.constant(np.where(keep, 1.0, 0.0), tf.float32)
    return bool(pruning_utils.is_pruned_m_by_n(values, m_by_n=n_m.to_tfmot_m_by_n(n, m)))


def _loop_top_n(scores, n, m):
    """Keep the n largest scores of each block of m along axis -2 (NumPy loops, no ties)."""
    moved = np.moveaxis(scores, -2, -1)
    keep = np.zeros(moved.shape, bool)
    for row in np.ndindex(moved.shape[:-1]):
        for start in range(0, moved.shape[-1], m):
            block = moved[row][start:start + m]
            best = np.argsort(block)[::-1][:n]
            keep[row + (start + best,)] = True
    return np.moveaxis(keep, -1, -2)


def test_scope_syntax():
    assert pruning.select.check_scope("2:4") == "2:4"
    assert n_m.parse("1:8") == (1, 8)
    assert n_m.parse("global") is None
    for bad in ("4:2", "0:4", "4:4"):
        with pytest.raises(ConfigError, match="0 < N < M"):
            pruning.select.check_scope(bad)
    with pytest.raises(ConfigError, match="N:M pattern"):
        pruning.select.check_scope("blockwise")


def test_first_level_is_exactly_two_of_four_and_matches_tfmot_generator():
    rng = np.random.default_rng(0)
    # Dense [in=8, out=3], Conv2D [3, 3, in=6, out=5]: 6 is not a multiple of 4.
    weights = {"dense/kernel": rng.normal(size=(8, 3)), "conv/kernel": rng.normal(size=(3, 3, 6, 5))}
    mask = Mask({k: np.ones(v.shape, bool) for k, v in weights.items()})
    scores = {k: np.abs(v) for k, v in weights.items()}
    # fraction 0.2 asks for less than the pattern needs: the pattern wins.
    pruned = pruning.prune(scores, mask, 0.2, scope="2:4")
    for name, w in weights.items():
        assert _tfmot_ok(pruned[name])
        np.testing.assert_array_equal(pruned[name], _loop_top_n(scores[name], 2, 4))
        # tfmot's own 2:4 magnitude mask, in its TFLite layout and back.
        w32 = tf.constant(w, tf.float32)
        theirs = pruning_utils.m_by_n_sparsity_mask_prepare(
            pruning_utils.generate_m_by_n_mask(pruning_utils.weights_rearrange(w32), (2, 4)),
            w32.shape)
        np.testing.assert_array_equal(pruned[name], np.asarray(theirs) != 0)
    assert pruned["dense/kernel"].sum() == 8 * 3 // 2
    assert pruned["conv/kernel"].sum() == 3 * 3 * 5 * 4   # blocks of 4 and 2 keep 2 each


def test_later_levels_prune_within_the_pattern_and_count_exactly():
    rng = np.random.default_rng(1)
    scores = {"w": rng.random((16, 4))}
    mask = pruning.prune(scores, Mask({"w": np.ones((16, 4), bool)}), 0.2, scope="2:4")
    assert mask["w"].sum() == 32
    level2 = pruning.prune(scores, mask, 0.25, scope="2:4")
    assert level2["w"].sum() == 24 and _tfmot_ok(level2["w"])
    # The 8 removed are the lowest-scoring survivors (the pattern already holds).
    survivors = np.sort(scores["w"][mask["w"]])
    assert np.array_equal(np.sort(scores["w"][level2["w"]]), survivors[8:])


def test_over_quota_weights_go_first_then_lowest_scores():
    # One output unit, 8 inputs = 2 blocks; block 0 is dense, block 1 has 2 kept already.
    scores = {"w": np.array([[5.], [6.], [7.], [8.], [1.], [2.], [3.], [4.]])}
    current = Mask({"w": np.array([[1], [1], [1], [1], [1], [0], [1], [0]], bool)})
    out = pruning.prune(scores, current, 0.5, scope="2:4")   # asks 3 of 6: 2 over quota + 1
    # Over quota: 5 and 6 (block 0); then the lowest remaining score, 1 (block 1).
    assert out == Mask({"w": np.array([[0], [0], [1], [1], [0], [0], [1], [0]], bool)})
    inverted = pruning.prune(scores, current, 0.1, scope="2:4", invert=True)
    # invert keeps the LOWEST scores: in block 0 the two largest (7, 8) go.
    assert inverted == Mask({"w": np.array([[1], [1], [0], [0], [1], [0], [1], [0]], bool)})


def test_excluded_layer_is_untouched():
    scores = {"a": np.ones((4, 1)), "b": np.arange(4.).reshape(4, 1)}
    mask = Mask({"a": np.ones((4, 1), bool), "b": np.ones((4, 1), bool)})
    out = pruning.prune(scores, mask, 0.2, scope="2:4", layer_fractions={"a": 0.0})
    assert out["a"].all() and out["b"].ravel().tolist() == [False, False, True, True]


def test_pai_scorers_in_two_of_four_scope():
    inputs = keras.Input((12,))
    hidden = keras.layers.Dense(8, name="hidden")(inputs)
    outputs = keras.layers.Dense(4, name="out")(keras.layers.ReLU()(hidden))
    keras.utils.set_random_seed(3)
    model = masking.wrap(keras.Model(inputs, outputs))
    for method, iterations in (("magnitude", None), ("synflow", 4)):
        mask = scoring.prune_to_density(method, model, 0.3, scope="2:4", iterations=iterations)
        for name in mask:
            assert _tfmot_ok(mask[name]), (method, name)
        # layerwise: each layer keeps round(0.3 * size) (38 of 128 apportioned exactly: 29 + 9).
        assert mask["hidden/kernel"].sum() == 29 and mask["out/kernel"].sum() == 9, method
    weights = {n: np.abs(v.numpy()) for n, v in masking.prunable_variables(model).items()}
    mask = scoring.prune_to_density("magnitude", model, 0.5, scope="2:4")
    for name in mask:   # at exactly N/M the magnitude scorer's mask is the blockwise top 2
        np.testing.assert_array_equal(mask[name], _loop_top_n(weights[name], 2, 4))


@pytest.mark.parametrize("fraction,target", [(0.2, 0.5), (0.2, 0.6), (0.2, 0.9), (0.6, 0.6),
                                             (0.6, 0.9)])
def test_level_plan_for_a_target_counts_the_densities_two_of_four_reaches(fraction, target):
    """IMP pruned as the plan says, in scope '2:4': the last level reaches the target, the one
    before does not (the first level drops to 50% whatever the fraction asks)."""
    from tflottery.experiments.lottery import LevelPlan, PruningHparams
    plan = LevelPlan.from_hparams(PruningHparams(fraction=fraction, target_sparsity=target,
                                                 scope="2:4"))
    scores = {"w": np.random.default_rng(0).random((64, 32))}
    mask, densities = Mask({"w": np.ones((64, 32), bool)}), []
    for level_fraction in plan.fractions:
        mask = pruning.prune(scores, mask, level_fraction, scope="2:4")
        densities.append(mask.density)
    assert n_m.follows(mask["w"], 2, 4)
    assert densities[-1] <= 1 - target + 1e-9
    assert len(densities) == 1 or densities[-2] > 1 - target


@pytest.mark.parametrize("one_shot", [False, True])
def test_target_sparsity_below_what_two_of_four_reaches_is_refused(one_shot):
    from tflottery.experiments.lottery import LevelPlan, PruningHparams
    with pytest.raises(ConfigError, match=r"PruningHparams.target_sparsity 0.3 is below 0.5, .*"
                                          r"set PruningHparams.target_sparsity to at least 0.5"):
        LevelPlan.from_hparams(PruningHparams(target_sparsity=0.3, one_shot=one_shot,
                                              scope="2:4"))
    with pytest.raises(ConfigError, match="target sparsity 0.3 is below 0.5"):
        pruning.levels_for_sparsity(0.2, 0.3, scope="2:4")
