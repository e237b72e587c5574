"""The mask arithmetic of dynamic sparse training, against hand computations."""
import math

import numpy as np
import pytest

from tflottery.errors import ConfigError
from tflottery.pruning import dynamic

SHAPES = {"conv": (3, 3, 4, 8), "dense": (8, 10), "output": (10, 2)}


def test_erk_densities_by_hand():
    # raw scores: conv 18/288, dense 18/80, output 12/20; sizes 288, 80, 20.
    # eps = 0.3 * 388 / (18 + 18 + 12) = 2.425 puts 'output' at 1.455 > 1, so it
    # is dense and eps = (116.4 - 20) / 36 for the others.
    got = dynamic.layer_densities(SHAPES, 0.3, "erk")
    eps = (0.3 * 388 - 20) / 36
    assert got == pytest.approx({"conv": eps * 18 / 288, "dense": eps * 18 / 80, "output": 1.0})
    kept = sum(got[n] * np.prod(s) for n, s in SHAPES.items())
    assert kept == pytest.approx(0.3 * 388)


def test_er_uses_fan_in_and_fan_out_only():
    got = dynamic.layer_densities(SHAPES, 0.5, "er")
    raw = {"conv": 12 / 32, "dense": 18 / 80, "output": 12 / 20}
    eps = 0.5 * 388 / sum(raw[n] * np.prod(s) for n, s in SHAPES.items())
    assert got == pytest.approx({n: eps * raw[n] for n in SHAPES})
    assert max(got.values()) < 1


def test_uniform_and_dense_layers():
    assert dynamic.layer_densities(SHAPES, 0.25, "uniform") == pytest.approx(
        {n: 0.25 for n in SHAPES})
    got = dynamic.layer_densities(SHAPES, 0.25, "uniform", dense=("output",))
    assert got["output"] == 1.0
    assert got["conv"] == got["dense"] == pytest.approx((0.25 * 388 - 20) / 368)


def test_cosine_drop_fraction_by_hand():
    assert dynamic.cosine_drop_fraction(0, 0.3, 1000) == pytest.approx(0.3)
    assert dynamic.cosine_drop_fraction(500, 0.3, 1000) == pytest.approx(0.15)
    assert dynamic.cosine_drop_fraction(250, 0.3, 1000) == pytest.approx(
        0.15 * (1 + math.sqrt(0.5)))
    assert dynamic.cosine_drop_fraction(1000, 0.3, 1000) == 0.0
    assert dynamic.cosine_drop_fraction(5000, 0.3, 1000) == 0.0


def test_drop_and_grow_by_hand():
    mask = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    weights = np.array([0.5, -0.1, 0.3, -0.05, 9, 9, 9, 9])
    grow = np.array([0, 0, 0, 0, 0.2, 0.9, 0.1, 0.5])
    # k = floor(0.5 * 4) = 2: drop -0.05 and -0.1; grow the two best inactive: 0.9, 0.5.
    new, grown = dynamic.drop_and_grow(mask, weights, grow, 0.5)
    assert np.flatnonzero(new).tolist() == [0, 2, 5, 7]
    assert np.flatnonzero(grown).tolist() == [5, 7]
    # A just-dropped weight can come back if its grow score is the best.
    grow[1] = 1.0
    new, grown = dynamic.drop_and_grow(mask, weights, grow, 0.5)
    assert np.flatnonzero(new).tolist() == [0, 1, 2, 5]
    assert np.flatnonzero(grown).tolist() == [1, 5]
    # floor(0.2 * 4) = 0: nothing changes.
    new, grown = dynamic.drop_and_grow(mask, weights, grow, 0.2)
    assert (new == mask).all() and not grown.any()


def test_drop_and_grow_matches_a_sorting_implementation():
    rng = np.random.default_rng(0)
    for _ in range(20):
        shape = (7, 9)
        mask = rng.random(shape) < 0.3
        weights, grow = rng.normal(size=shape), rng.normal(size=shape)
        fraction = rng.uniform(0.05, 0.9)
        new, grown = dynamic.drop_and_grow(mask, weights, grow, fraction)
        n = int(mask.sum())
        k = int(fraction * n)
        active = np.flatnonzero(mask)
        keep = active[np.argsort(-np.abs(weights.ravel()[active]), kind="stable")[:n - k]]
        after = np.zeros(mask.size, bool)
        after[keep] = True
        candidates = np.flatnonzero(~after)
        add = candidates[np.argsort(-grow.ravel()[candidates], kind="stable")[:k]]
        expected = after.copy()
        expected[add] = True
        assert (new.ravel() == expected).all()
        assert int(new.sum()) == n and set(np.flatnonzero(grown)) == set(add)


@pytest.mark.parametrize("call, message", [
    (lambda: dynamic.layer_densities(SHAPES, 0.3, "gaussian"), "unknown density distribution"),
    (lambda: dynamic.layer_densities(SHAPES, 1.5), "density must be in"),
    (lambda: dynamic.layer_densities(SHAPES, 0.01, "uniform", dense=("conv",)), "cannot be reached"),
    (lambda: dynamic.cosine_drop_fraction(0, 1.0, 10), "drop fraction must be in"),
    (lambda: dynamic.drop_and_grow(np.ones(3, bool), np.ones(3), np.ones(4), 0.5), "differ in shape"),
    (lambda: dynamic.drop_and_grow(np.ones(3, bool), np.ones(3), np.ones(3), 1.0), "drop fraction"),
])
def test_bad_settings_are_one_line_errors(call, message):
    with pytest.raises(ConfigError, match=message):
        call()
