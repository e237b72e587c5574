"""The mask arithmetic of dynamic sparse training, against hand computations.

`dynamic.drop_and_grow` (host arrays) is the specification of one layer's
update; runs use its device twin (pruning/dynamic_device.py), held to it here
mask for mask, ties included.
"""
import math

import numpy as np
import pytest
import tensorflow as tf

from tflottery.errors import ConfigError
from tflottery.pruning import dynamic, dynamic_device

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
    # The reference: a dense layer is outside the budget, the others keep 25%.
    got = dynamic.layer_densities(SHAPES, 0.25, "uniform", dense=("output",))
    assert got == {"conv": 0.25, "dense": 0.25, "output": 1.0}
    # custom_in_budget: the whole network at 25%, the others make up for 'output'.
    got = dynamic.layer_densities(SHAPES, 0.25, "uniform", dense=("output",),
                                  custom_in_budget=True)
    assert got["output"] == 1.0
    assert got["conv"] == got["dense"] == pytest.approx((0.25 * 388 - 20) / 368)


LENET_MNIST = {"fc_1": (784, 300), "fc_2": (300, 100), "output": (100, 10)}


def test_lenet_uniform_10_percent_with_a_dense_output():
    # The review's case: 10% uniform with the output dense is 10% per other layer
    # (the reference); counting the output in the budget gave (26620 - 1000) / 265200.
    got = dynamic.layer_densities(LENET_MNIST, 0.1, "uniform", dense=("output",))
    assert got == {"fc_1": 0.1, "fc_2": 0.1, "output": 1.0}
    inside = dynamic.layer_densities(LENET_MNIST, 0.1, "uniform", dense=("output",),
                                     custom_in_budget=True)
    assert inside["fc_1"] == pytest.approx(25620 / 265200)
    assert round(100 * inside["fc_1"], 2) == 9.66


# The reference's sparse_utils_test.py masks: var1 (2, 3), var2 (2, 3), var3 (1, 1, 3).
@pytest.mark.parametrize("default_sparsity", [0.0, 0.4, 0.9])
def test_reference_custom_sparsity_uniform(default_sparsity):
    """testSparsityDictRandom: var1 at its custom 0.8, the others at the default."""
    shapes = {"var1": (2, 3), "var2": (2, 3), "var3": (1, 1, 3)}
    got = dynamic.layer_densities(shapes, 1.0 - default_sparsity, "uniform",
                                  custom={"var1": 1.0 - 0.8})
    assert got == pytest.approx({"var1": 0.2, "var2": 1.0 - default_sparsity,
                                 "var3": 1.0 - default_sparsity})


@pytest.mark.parametrize("default_sparsity", [0.1, 0.4, 0.9])
def test_reference_custom_sparsity_erdos_renyi(default_sparsity):
    """testSparsityDictErdosRenyiCustom: var3 keeps its custom 0.8; the others share the
    default density of their own size (the custom layer is outside the budget)."""
    shapes = {"var1": (2, 4), "var2": (2, 3), "var3": (1, 1, 3)}
    got = dynamic.layer_densities(shapes, 1.0 - default_sparsity, "er",
                                  custom={"var3": 1.0 - 0.8})
    assert got["var3"] == pytest.approx(0.2)
    # By hand: raw ER scores 6/8 and 5/6; eps over var1 and var2 only (14 weights).
    d = 1.0 - default_sparsity
    eps = d * 14 / (6 + 5)
    if eps * 5 / 6 > 1.0:                  # var2 saturates: dense, var1 gets the rest
        assert got["var2"] == 1.0 and got["var1"] == pytest.approx((d * 14 - 6) / 8)
    else:
        assert got["var1"] == pytest.approx(eps * 6 / 8)
        assert got["var2"] == pytest.approx(eps * 5 / 6)
    assert got["var1"] * 8 + got["var2"] * 6 == pytest.approx(d * 14)


def reference_erdos_renyi(shapes, sparsity, custom_sparsity, include_kernel, power=1.0):
    """The reference's get_sparsities_erdos_renyi rewritten in NumPy: custom layers left
    out, the layer(s) of the largest raw probability made dense one round at a time;
    the budget without its per-layer floor() (this package does not round it)."""
    dense = set()
    while True:
        rhs, divisor, raw = 0.0, 0.0, {}
        for name, shape in shapes.items():
            n = float(np.prod(shape))
            if name in dense:
                rhs -= sparsity * n
            elif name not in custom_sparsity:
                rhs += (1.0 - sparsity) * n
                dims = shape if include_kernel else shape[-2:]
                raw[name] = (np.sum(dims) / np.prod(dims)) ** (power if include_kernel else 1)
                divisor += raw[name] * n
        eps = rhs / divisor
        top = max(raw.values())
        if top * eps <= 1:
            break
        dense.update(name for name, p in raw.items() if p == top)
    out = {}
    for name in shapes:
        if name in custom_sparsity:
            out[name] = 1.0 - custom_sparsity[name]
        elif name in dense:
            out[name] = 1.0
        else:
            out[name] = eps * raw[name]
    return out


@pytest.mark.parametrize("seed", range(6))
def test_erk_with_custom_layers_and_power_matches_the_reference_algorithm(seed):
    rng = np.random.default_rng(seed)
    shapes = {f"l{i}": tuple(int(d) for d in rng.integers(1, 40, size=rng.choice([2, 4])))
              for i in range(6)}
    shapes["l0"] = (3, 3, 3, 64)       # a first conv kept dense (custom sparsity 0)
    sparsity = float(rng.uniform(0.5, 0.95))
    custom = {"l0": 0.0, "l3": float(rng.uniform(0.2, 0.9))}
    power = float(rng.choice([1.0, 0.5, 0.0]))
    got = dynamic.layer_densities(shapes, 1.0 - sparsity, "erk",
                                  custom={n: 1.0 - s for n, s in custom.items()},
                                  erk_power_scale=power)
    assert got == pytest.approx(reference_erdos_renyi(shapes, sparsity, custom, True, power))
    rest = [n for n in shapes if n not in custom]
    kept = sum(got[n] * np.prod(shapes[n]) for n in rest)
    assert kept == pytest.approx((1.0 - sparsity) * sum(np.prod(shapes[n]) for n in rest))
    er = dynamic.layer_densities(shapes, 1.0 - sparsity, "er",
                                 custom={n: 1.0 - s for n, s in custom.items()})
    assert er == pytest.approx(reference_erdos_renyi(shapes, sparsity, custom, False))


def test_erk_power_scale_by_hand():
    # Power 0.5 on SHAPES at density 0.3: raw sqrt(18/288), sqrt(18/80), sqrt(12/20).
    raw = {"conv": math.sqrt(18 / 288), "dense": math.sqrt(18 / 80), "output": math.sqrt(0.6)}
    eps = 0.3 * 388 / (raw["conv"] * 288 + raw["dense"] * 80 + raw["output"] * 20)
    assert max(eps * r for r in raw.values()) < 1
    got = dynamic.layer_densities(SHAPES, 0.3, "erk", erk_power_scale=0.5)
    assert got == pytest.approx({n: eps * r for n, r in raw.items()})
    # Power 0 is uniform.
    assert dynamic.layer_densities(SHAPES, 0.3, "erk", erk_power_scale=0.0) == pytest.approx(
        {n: 0.3 for n in SHAPES})


def test_cosine_drop_fraction_by_hand():
    assert dynamic.cosine_drop_fraction(0, 0.3, 1000) == pytest.approx(0.3)
    assert dynamic.cosine_drop_fraction(500, 0.3, 1000) == pytest.approx(0.15)
    assert dynamic.cosine_drop_fraction(250, 0.3, 1000) == pytest.approx(
        0.15 * (1 + math.sqrt(0.5)))
    assert dynamic.cosine_drop_fraction(1000, 0.3, 1000) == 0.0
    assert dynamic.cosine_drop_fraction(5000, 0.3, 1000) == 0.0


# The reference's sparse_optimizers_test.py schedules (begin, end, frequency) and the
# mask update steps they give: testMaskNonUpdateIterations / testUpdateIterations
# (1, 4, 2), and the steps where testApplyGradients sees no increment of the
# global step (its is_incremented lists: a 0 marks a mask update).
@pytest.mark.parametrize("begin, end, every, is_incremented", [
    (1, 4, 2, None),
    (3, 7, 2, [1, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1]),
    (1, 5, 3, [1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1]),
    (0, 4, 1, [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1]),
])
def test_update_schedule_of_the_reference_tests(begin, end, every, is_incremented):
    expected = [1, 3] if is_incremented is None else []
    if is_incremented is not None:     # replay the reference's global step
        step = 0
        for incremented in is_incremented:
            if incremented:
                step += 1
            else:
                expected.append(step)
    assert dynamic.update_schedule(begin, end, every, total=100) == expected
    # None at or after the end of training.
    assert dynamic.update_schedule(begin, end, every, total=end) == [
        t for t in expected if t < end]


def test_drop_fraction_anneals_by_hand():
    # constant: alpha at every update.
    assert dynamic.drop_fraction(0, 0.3, "constant", 0, 100) == 0.3
    assert dynamic.drop_fraction(100, 0.3, "constant", 0, 100) == 0.3
    # cosine, begin 0: RigL's f_decay.
    assert dynamic.drop_fraction(25, 0.3, "cosine", 0, 100) == pytest.approx(
        0.15 * (1 + math.sqrt(0.5)))
    # cosine, begin 20, end 100: the reference's cosine_decay(alpha, global_step,
    # end - begin) counts t from step 0: 0.15 (1 + cos(pi * t / 80)), 0 from step 80.
    assert dynamic.drop_fraction(20, 0.3, "cosine", 20, 100) == pytest.approx(
        0.15 * (1 + math.cos(math.pi / 4)))
    assert dynamic.drop_fraction(40, 0.3, "cosine", 20, 100) == pytest.approx(0.15)
    assert dynamic.drop_fraction(90, 0.3, "cosine", 20, 100) == 0.0
    # exponential_<p>: alpha (1 - (t - begin) / (end - begin)) ** p.
    assert dynamic.drop_fraction(20, 0.3, "exponential_3", 20, 100) == pytest.approx(0.3)
    assert dynamic.drop_fraction(60, 0.3, "exponential_3", 20, 100) == pytest.approx(0.0375)
    assert dynamic.drop_fraction(40, 0.3, "exponential_0.5", 20, 100) == pytest.approx(
        0.3 * math.sqrt(0.75))
    assert dynamic.drop_fraction(60, 0.3, "exponential", 20, 100) == pytest.approx(0.15)
    assert dynamic.drop_fraction(100, 0.3, "exponential", 20, 100) == 0.0


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
    (lambda: dynamic.layer_densities(SHAPES, 0.01, "uniform", dense=("conv",),
                                     custom_in_budget=True), "cannot be reached"),
    (lambda: dynamic.layer_densities(SHAPES, 0.3, "er", erk_power_scale=0.5),
     "erk_power_scale 0.5 applies to distribution 'erk' only"),
    (lambda: dynamic.parse_anneal("linear"), "unknown drop fraction anneal 'linear'"),
    (lambda: dynamic.parse_anneal("exponential_x"), "unknown drop fraction anneal"),
    (lambda: dynamic.parse_anneal("exponential_0"), "unknown drop fraction anneal"),
    (lambda: dynamic.drop_fraction(5, 0.3, "cosine", 10, 10), "must end after it begins"),
    (lambda: dynamic.update_schedule(0, 10, 0, 20), "at least 1 step apart"),
    (lambda: dynamic.cosine_drop_fraction(0, 1.0, 10), "drop fraction must be in"),
    (lambda: dynamic.drop_and_grow(np.ones(3, bool), np.ones(3), np.ones(4), 0.5), "differ in shape"),
    (lambda: dynamic.drop_and_grow(np.ones(3, bool), np.ones(3), np.ones(3), 1.0), "drop fraction"),
])
def test_bad_settings_are_one_line_errors(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


# ---- the device update (pruning/dynamic_device.py) against the host reference ----

def layer_case(rng, shape, density, ties):
    """(mask, weights, scores) of one layer; with ties, few distinct values (zeros too)."""
    size = int(np.prod(shape))
    flat = np.zeros(size, bool)
    flat[:max(1, int(round(density * size)))] = True
    mask = rng.permutation(flat).reshape(shape)
    if ties:
        weights = rng.integers(-2, 3, shape) * 0.25     # |w| in {0, 0.25, 0.5}
        scores = rng.integers(0, 3, shape) * 0.5
    else:
        weights, scores = rng.normal(size=shape), np.abs(rng.normal(size=shape))
    return mask, weights.astype(np.float32), scores.astype(np.float32)


@pytest.mark.parametrize("jit, bounded", [(False, False), (True, False), (False, True),
                                          (True, True)])
def test_device_drop_and_grow_equals_the_host_reference(jit, bounded):
    """Mask for mask, on several shapes, densities and drop fractions, with and without ties;
    ordering the whole layer (sort) or its top n (the active count known)."""
    rng = np.random.default_rng(0)
    function = tf.function(dynamic_device.drop_and_grow, jit_compile=jit)

    def update(mask, weights, scores, k):
        n = int(np.count_nonzero(mask.numpy())) if bounded else None
        return function(mask, weights, scores, k, n)
    checked = 0
    for shape in [(50,), (7, 9), (64, 30), (3, 3, 4, 8)]:
        for density in (0.05, 0.3, 0.8):
            for fraction in (0.0, 0.1, 0.3, 0.5, 0.9):
                for ties in (False, True):
                    mask, weights, scores = layer_case(rng, shape, density, ties)
                    k = int(math.floor(fraction * mask.sum()))
                    expected, _ = dynamic.drop_and_grow(mask, weights, scores, fraction)
                    new, kept = update(tf.constant(mask), tf.constant(weights),
                                       tf.constant(scores), tf.constant(k, tf.int32))
                    np.testing.assert_array_equal(new.numpy(), expected,
                                                  err_msg=f"{shape} {density} {fraction} {ties}")
                    assert int(kept.numpy().sum()) == mask.sum() - k
                    checked += 1
    # Everything tied: the earliest indices win, both for keeping and for growing.
    mask = np.array([0, 1, 1, 0, 1, 1, 0, 0], bool)
    new, _ = update(tf.constant(mask), tf.ones(8), tf.zeros(8), tf.constant(2))
    assert np.flatnonzero(new.numpy()).tolist() == [0, 1, 2, 3]    # keep 1, 2; grow 0, 3
    assert checked == 120


def test_device_largest_breaks_ties_by_index_for_every_count():
    rng = np.random.default_rng(1)
    largest = tf.function(dynamic_device.largest, jit_compile=True)
    for _ in range(5):
        scores = (rng.integers(0, 4, 40) * 0.5).astype(np.float32)   # many equal scores
        candidates = rng.random(40) < 0.6
        for count in range(int(candidates.sum()) + 1):
            expected = dynamic.largest(scores.astype(np.float64), candidates, count)
            # Ordering all 40 values, or only the top `bound` (any bound >= count).
            for bound in (None, count, count + 3, 40, 50):
                got = largest(tf.constant(scores), tf.constant(candidates), tf.constant(count),
                              bound)
                np.testing.assert_array_equal(got.numpy(), expected, err_msg=f"{count} {bound}")


def test_set_scores_are_seeded_and_the_same_under_xla_and_in_numpy():
    seed = tf.constant([3, 8], tf.int64)
    eager = dynamic_device.random_scores(seed, 1, (20, 30)).numpy()
    xla = tf.function(lambda s: dynamic_device.random_scores(s, 1, (20, 30)),
                      jit_compile=True)(seed).numpy()
    host = dynamic_device.random_scores(np.array([3, 8]), 1, (20, 30))
    np.testing.assert_array_equal(eager, xla)
    np.testing.assert_array_equal(eager, host)
    assert eager.dtype == np.float32 and 0 <= eager.min() and eager.max() < 1
    assert 0.45 < eager.mean() < 0.55 and len(np.unique(eager)) > 590
    big = np.array([2 ** 32 - 1, 2 ** 31 + 5])      # seeds and keys use all 32 bits
    np.testing.assert_array_equal(
        dynamic_device.random_scores(tf.constant(big), 2 ** 32 - 1, (7,)).numpy(),
        dynamic_device.random_scores(big, 2 ** 32 - 1, (7,)))
    # A layer's key comes from its name (sha256: first 4 bytes, little-endian), not
    # from its position among the updated layers.
    assert dynamic_device.layer_key("fc_2/kernel") == 168204503
    assert dynamic_device.layer_key("fc_2/kernel") != dynamic_device.layer_key("fc_1/kernel")
    other = dynamic_device.random_scores(seed, 2, (20, 30)).numpy()   # another layer
    later = dynamic_device.random_scores(tf.constant([3, 9], tf.int64), 1, (20, 30)).numpy()
    assert not np.array_equal(eager, other) and not np.array_equal(eager, later)


def python_fmix32(h):
    """MurmurHash3's fmix32 on a Python int (mod 2**32), written from its definition."""
    m = 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & m
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & m
    return h ^ (h >> 16)


def test_set_scores_are_the_documented_hash():
    """random_scores(seed, key) at position i, in plain Python integers (f: fmix32):
    mixed = f(s0 ^ f(s1 ^ f(key + golden))),
    score = (f(f(i ^ mixed) + mixed * golden) >> 8) / 2**24, all mod 2**32."""
    golden, m = 0x9E3779B9, 0xFFFFFFFF
    seed, key = (2 ** 32 - 7, 123456), 3_000_000_000
    mixed = python_fmix32(seed[0] ^ python_fmix32(seed[1] ^ python_fmix32((key + golden) & m)))
    expected = [(python_fmix32((python_fmix32(i ^ mixed) + mixed * golden) & m) >> 8) / 2 ** 24
                for i in range(12)]
    for got in (dynamic_device.random_scores(np.array(seed), key, (3, 4)),
                dynamic_device.random_scores(tf.constant(seed, tf.int64), key, (3, 4)).numpy()):
        assert got.ravel().tolist() == expected
