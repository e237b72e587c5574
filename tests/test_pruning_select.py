"""Tests for tflottery.pruning.

Expected masks and counts are written by hand or computed here with plain
NumPy / exact fractions, independently of the code under test.
"""
from fractions import Fraction

import numpy as np
import pytest

from tflottery import pruning
from tflottery.errors import ConfigError
from tflottery.masking import Mask


def _ones(**shapes):
    return Mask({name: np.ones(shape, bool) for name, shape in shapes.items()})


def _kept_flat(mask, name):
    return set(np.flatnonzero(mask[name]).tolist())


# -- prune: scope ------------------------------------------------------------
def test_global_and_layerwise_differ_on_hand_example():
    scores = {"a": np.array([[1., 2.], [3., 4.]]), "b": np.array([10., 20., 30., 40.])}
    mask = _ones(a=(2, 2), b=(4,))

    glob = pruning.prune(scores, mask, 0.5, scope="global")
    assert glob == Mask({"a": [[False, False], [False, False]], "b": [True, True, True, True]})

    layer = pruning.prune(scores, mask, 0.5, scope="layerwise")
    assert layer == Mask({"a": [[False, False], [True, True]], "b": [False, False, True, True]})


def test_fraction_applies_to_remaining_weights_only():
    # 20 weights, the second half already pruned and given the largest scores.
    scores = {"w": np.concatenate([np.arange(10.)[::-1], np.full(10, 1000.)]).reshape(4, 5)}
    mask = Mask({"w": (np.arange(20) < 10).reshape(4, 5)})
    assert mask.sparsity == 0.5

    out = pruning.prune(scores, mask, 0.2)
    assert out.num_remaining == 8                   # 20% of the 10 remaining, not of 20
    assert _kept_flat(out, "w") == set(range(8))    # scores 9..2 kept; 1 and 0 (idx 8, 9) gone
    assert not out["w"].reshape(-1)[10:].any()      # high-scoring pruned entries not revived


def test_prune_does_not_modify_its_input():
    mask = _ones(w=(10,))
    pruning.prune({"w": np.arange(10.)}, mask, 0.5)
    assert mask["w"].all()


def test_zero_fraction_is_identity():
    mask = Mask({"w": [True, False, True]})
    assert pruning.prune({"w": np.zeros(3)}, mask, 0.0) == mask


def test_global_exclusion_leaves_layer_unchanged():
    rng = np.random.default_rng(0)
    scores = {"a": rng.random(10), "b": rng.random((2, 5)) * 0.01, "out": np.zeros(5)}
    mask = _ones(a=(10,), b=(2, 5), out=(5,))
    out = pruning.prune(scores, mask, 0.2, scope="global", layer_fractions={"out": 0})

    assert out["out"].all()                          # lowest scores, but excluded
    assert out.num_remaining == 25 - 4               # round(0.2 * 20) from a and b
    assert out["a"].all() and np.count_nonzero(out["b"]) == 6   # b holds the 4 smallest


def test_layerwise_per_layer_rates():
    rng = np.random.default_rng(1)
    shapes = {"conv": (2, 2, 10), "fc": (20,), "out": (20,)}
    scores = {name: rng.permutation(int(np.prod(s))).reshape(s).astype(float)
              for name, s in shapes.items()}
    mask = _ones(**shapes)
    out = pruning.prune(scores, mask, 0.2, scope="layerwise",
                        layer_fractions={"conv": 0.15, "out": 0.1})

    removed = {name: int(mask[name].sum() - out[name].sum()) for name in shapes}
    assert removed == {"conv": 6, "fc": 4, "out": 2}  # 15% of 40, 20% of 20, 10% of 20
    for name, n in removed.items():                   # scores are 0..size-1: drop 0..n-1
        assert np.array_equal(out[name], scores[name] >= n)


def test_layerwise_exclusion():
    mask = _ones(a=(10,), out=(4,))
    out = pruning.prune({"a": np.arange(10.), "out": np.arange(4.)}, mask, 0.5,
                        scope="layerwise", layer_fractions={"out": 0.0})
    assert out["out"].all() and _kept_flat(out, "a") == set(range(5, 10))


def test_counts_round_half_up():
    mask = _ones(w=(10,))
    scores = {"w": np.arange(10.)}
    assert pruning.prune(scores, mask, 0.35).num_remaining == 6   # 3.5 -> 4 removed
    assert pruning.prune(scores, mask, 0.25).num_remaining == 7   # 2.5 -> 3 removed
    assert pruning.prune({"w": np.zeros(2)}, _ones(w=(2,)), 0.25).num_remaining == 1


def test_ties_broken_by_position_deterministically():
    mask = _ones(a=(3,), b=(3,))
    scores = {"a": np.zeros(3), "b": np.zeros(3)}
    out = pruning.prune(scores, mask, 0.5)            # layers in name order, then flat index
    assert out == Mask({"a": [False, False, False], "b": [True, True, True]})
    out = pruning.prune(scores, mask, 0.5, invert=True)
    assert out == Mask({"a": [False, False, False], "b": [True, True, True]})
    assert pruning.prune(scores, mask, 0.5, scope="layerwise") == Mask(
        {"a": [False, False, True], "b": [False, False, True]})


def test_scores_used_raw_not_absolute():
    out = pruning.prune({"w": np.array([-5., 1., 2., 3.])}, _ones(w=(4,)), 0.25)
    assert _kept_flat(out, "w") == {1, 2, 3}


def test_float32_scores():
    scores = {"w": np.array([3, 1, 2, 0], np.float32)}
    assert _kept_flat(pruning.prune(scores, _ones(w=(4,)), 0.5), "w") == {0, 2}


# -- prune: invert -----------------------------------------------------------
@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_invert_keeps_lowest_scoring_remaining(scope):
    rng = np.random.default_rng(2)
    shapes = {"a": (6, 5), "b": (40,)}
    scores = {name: rng.random(s) for name, s in shapes.items()}
    mask = Mask({name: rng.random(s) < 0.7 for name, s in shapes.items()})

    normal = pruning.prune(scores, mask, 0.3, scope=scope)
    inverted = pruning.prune(scores, mask, 0.3, scope=scope, invert=True)
    assert inverted.num_remaining == normal.num_remaining

    groups = [["a", "b"]] if scope == "global" else [["a"], ["b"]]
    for group in groups:
        alive = [(scores[n].reshape(-1)[i], n, i) for n in group
                 for i in np.flatnonzero(mask[n])]
        alive.sort()
        k = sum(int(normal[n].sum()) for n in group)
        lowest = {(n, i) for _, n, i in alive[:k]}
        highest = {(n, i) for _, n, i in alive[len(alive) - k:]}
        assert {(n, i) for n in group for i in np.flatnonzero(inverted[n])} == lowest
        assert {(n, i) for n in group for i in np.flatnonzero(normal[n])} == highest


# -- one-shot ----------------------------------------------------------------
@pytest.mark.parametrize("target", [0.5, 0.1, 0.037, 0.8])
def test_one_shot_reaches_target_density(target):
    rng = np.random.default_rng(3)
    shapes = {"a": (20, 25), "b": (500,)}
    scores = {name: rng.random(s) for name, s in shapes.items()}
    mask = Mask({"a": np.ones((20, 25), bool), "b": np.arange(500) < 300})   # density 0.8
    fraction = pruning.fraction_for_density(mask.density, target)
    out = pruning.prune(scores, mask, fraction)
    assert out.num_remaining == int(np.floor(target * 1000 + 0.5))
    assert abs(out.density - target) <= 0.5 / 1000


def test_fraction_for_density_values():
    assert pruning.fraction_for_density(1.0, 0.2) == pytest.approx(0.8)
    assert pruning.fraction_for_density(0.5, 0.25) == pytest.approx(0.5)
    assert pruning.fraction_for_density(0.3, 0.3) == 0.0


# -- levels_for_sparsity -----------------------------------------------------
@pytest.mark.parametrize("fraction,sparsity,levels", [
    (0.2, 0.0, 0), (0.2, 0.2, 1), (0.2, 0.2000001, 2), (0.2, 0.36, 2), (0.2, 0.9, 11),
    (0.5, 0.75, 2), (0.5, 0.875, 3), (0.5, 0.8750001, 4), (0.1, 0.5, 7), (0.99, 0.99, 1),
])
def test_levels_for_sparsity_table(fraction, sparsity, levels):
    assert pruning.levels_for_sparsity(fraction, sparsity) == levels


def _levels_exact(fraction, sparsity):
    """Smallest L with 1 - (1 - f)^L >= s, f and s read as the decimals they were written as."""
    f, s = Fraction(str(fraction)), Fraction(str(sparsity))
    level = 0
    while 1 - (1 - f) ** level < s:
        level += 1
    return level


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75])
def test_levels_for_sparsity_matches_exact_arithmetic(fraction):
    for sparsity in [0.0, 0.01, 0.1, 0.2, 0.25, 0.36, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999]:
        assert pruning.levels_for_sparsity(fraction, sparsity) == \
            _levels_exact(fraction, sparsity), (fraction, sparsity)


# -- random masks ------------------------------------------------------------
def _template():
    rng = np.random.default_rng(4)
    return Mask({"a": rng.random((30, 20)) < 0.9,     # dense layer
                 "b": rng.random(600) < 0.1,          # sparse layer
                 "out": rng.random((10, 3)) < 0.5})


def test_random_mask_global_spreads_across_layers():
    template = _template()
    out = pruning.random_mask(template, seed=0, excluded=["out"])
    assert out["out"].tolist() == template["out"].tolist()
    kept = lambda m: int(m["a"].sum() + m["b"].sum())   # noqa: E731
    assert kept(out) == kept(template)
    total_density = kept(template) / 1200
    for name in ("a", "b"):        # about the total density, unlike the template (0.9 / 0.1)
        assert abs(out[name].mean() - total_density) < 0.08


def test_random_mask_layerwise_keeps_each_layer_count():
    template = _template()
    out = pruning.random_mask(template, seed=0, scope="layerwise", excluded=["out"])
    assert out["out"].tolist() == template["out"].tolist()
    for name in template:
        assert out[name].shape == template[name].shape
        assert out[name].sum() == template[name].sum()
    assert not np.array_equal(out["a"], template["a"])
    assert pruning.shuffle_within_layers(template, seed=0) == \
        pruning.random_mask(template, seed=0, scope="layerwise")


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_random_mask_deterministic_per_seed(scope):
    template = _template()
    assert pruning.random_mask(template, 7, scope) == pruning.random_mask(template, 7, scope)
    assert pruning.random_mask(template, 7, scope) != pruning.random_mask(template, 8, scope)
    # Insertion order of the template does not change the result.
    reordered = Mask({name: template[name] for name in reversed(list(template))})
    assert pruning.random_mask(reordered, 7, scope) == pruning.random_mask(template, 7, scope)


def test_random_mask_all_excluded_is_copy():
    template = _template()
    assert pruning.random_mask(template, 0, excluded=list(template)) == template


# -- errors ------------------------------------------------------------------
def _errors_for(**kwargs):
    mask = _ones(a=(2, 2), out=(3,))
    args = dict(scores={"a": np.zeros((2, 2)), "out": np.zeros(3)}, current=mask, fraction=0.2)
    args.update(kwargs)
    with pytest.raises(ConfigError) as info:
        pruning.prune(**args)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, float("nan"), True, "0.2"])
def test_prune_bad_fraction(fraction):
    assert "[0, 1)" in _errors_for(fraction=fraction)


def test_prune_unknown_scope():
    message = _errors_for(scope="per_layer")
    assert "per_layer" in message and "global" in message and "layerwise" in message


def test_prune_unknown_layer_fraction_name():
    message = _errors_for(layer_fractions={"outt": 0.0})
    assert "'outt'" in message and "a, out" in message


def test_prune_global_rejects_nonzero_layer_rates():
    message = _errors_for(layer_fractions={"out": 0.1})
    assert "'out'" in message and "layerwise" in message


def test_prune_bad_layer_fraction_value():
    assert "layer_fractions['out']" in _errors_for(scope="layerwise",
                                                   layer_fractions={"out": 1.0})


def test_prune_scores_missing_name():
    message = _errors_for(scores={"a": np.zeros((2, 2))})
    assert "'out'" in message and "missing" in message


def test_prune_scores_wrong_shape():
    message = _errors_for(scores={"a": np.zeros(4), "out": np.zeros(3)})
    assert "'a'" in message and "(4,)" in message and "(2, 2)" in message


def test_prune_scores_nan_at_remaining_weight():
    assert "NaN" in _errors_for(scores={"a": np.full((2, 2), np.nan), "out": np.zeros(3)})
    # NaN at an already-pruned position is irrelevant.
    mask = Mask({"w": [True, False]})
    assert pruning.prune({"w": np.array([1., np.nan])}, mask, 0.0) == mask


def test_prune_extra_scores_ignored():
    mask = _ones(w=(2,))
    out = pruning.prune({"w": np.array([2., 1.]), "bias": np.zeros(5)}, mask, 0.5)
    assert out == Mask({"w": [True, False]})


@pytest.mark.parametrize("current,target,needle", [
    (0.5, 0.6, "above the current density"), (1.0, 0.0, "target density"),
    (1.0, 1.5, "target density"), (0.0, 0.0, "current density"), (1.2, 0.5, "current density"),
])
def test_fraction_for_density_errors(current, target, needle):
    with pytest.raises(ConfigError, match=needle):
        pruning.fraction_for_density(current, target)


@pytest.mark.parametrize("fraction,sparsity,needle", [
    (0.0, 0.5, "pruning fraction"), (1.0, 0.5, "pruning fraction"),
    (0.2, 1.0, "target sparsity"), (0.2, -0.1, "target sparsity"),
])
def test_levels_for_sparsity_errors(fraction, sparsity, needle):
    with pytest.raises(ConfigError, match=needle):
        pruning.levels_for_sparsity(fraction, sparsity)


def test_random_mask_errors():
    template = _template()
    with pytest.raises(ConfigError, match="unknown pruning scope 'local'"):
        pruning.random_mask(template, 0, scope="local")
    with pytest.raises(ConfigError, match="'outt'.*valid names are: a, b, out"):
        pruning.random_mask(template, 0, excluded=["outt"])
