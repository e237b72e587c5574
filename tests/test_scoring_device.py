"""SNIP, iterative SNIP and GraSP as device programs under tf.distribute (scoring/device.py).

Under MirroredStrategy on two virtual CPUs (conftest.two_cpu_strategy) the
scores of networks without BatchNorm must equal those of the same network
under the default strategy (one replica) and the NumPy references of
test_scoring.py -- float32 rtol 1e-5, atol 1e-6 of the largest value (1e-3
and 1e-4 against finite differences) -- also when a chunk does not divide
by the two replicas and is padded.  With BatchNorm each replica normalises
its own share, so the scores must equal the size-weighted sum of per-share
gradients taken by tf.GradientTape on the model itself.  The user's model
(weights, mask, BatchNorm statistics on every replica) must be unchanged.
One trace must serve later rounds, calls, weights, masks and models of the
same architecture, and the per-replica steps must compile with XLA.
"""
from conftest import two_cpu_strategy  # noqa: E402
import gc
import weakref

import numpy as np
import pytest
import tensorflow as tf

from test_scoring import (_conv_batch, _conv_bn, _mlp, _mlp_batch, _np_hessian_gradient,
                          _random_mask, _tape_gradients, np_mlp_grads)
from tflottery import masking, models, scoring
from tflottery.errors import ConfigError
from tflottery.scoring.grasp import hessian_gradient_product

DATA_SCORERS = ("snip", "grasp", "grasp_abs")


def _close(got, expected, rtol=1e-5, atol=1e-6, what=""):
    for n in expected:
        np.testing.assert_allclose(got[n], expected[n], rtol=rtol,
                                   atol=atol * np.abs(expected[n]).max(), err_msg=f"{what} {n}")


def _set_mask(model, mask):
    with model.distribute_strategy.scope():
        masking.set_mask(model, mask)


def _pair(build):
    """The same network built under the default strategy and under MirroredStrategy, same mask."""
    reference, mirrored = build(None), build(two_cpu_strategy())
    mask = _random_mask(reference, 0.8)
    _set_mask(reference, mask)
    _set_mask(mirrored, mask)
    return reference, mirrored, mask


def _tracing_counts(program):
    return (program.gradient_function.experimental_get_tracing_count(),
            program.hessian_function.experimental_get_tracing_count())


def _ran_on_two_replicas(model):
    program = scoring.program_for(model)
    assert program.replicas == 2 and program.gradient_function.experimental_get_tracing_count() >= 1


# -- equal to one replica and to NumPy without BatchNorm ----------------------------------------
@pytest.mark.parametrize("net", ["mlp", "conv"])
def test_mirrored_scores_equal_one_replica_without_batchnorm(net):
    # 15 examples: one chunk of 15 (8 + 7 and a padding example), chunks of
    # at most 4 (4, 4, 4, 3: the last one padded) and of at most 6 (5, 5, 5).
    if net == "mlp":
        reference, mirrored, mask = _pair(lambda s: _mlp([4, 6, 3], seed=13, strategy=s)[0])
        batch = _mlp_batch(n=15, classes=3, seed=14)
    else:
        reference, mirrored, mask = _pair(lambda s: _conv_bn(s, batchnorm=False))
        batch = _conv_batch(n_per_class=5)
    for chunk_size in (None, 4, 6):
        for name in DATA_SCORERS:
            expected = scoring.compute_scores(name, reference, batch, chunk_size=chunk_size)
            got = scoring.compute_scores(name, mirrored, batch, chunk_size=chunk_size)
            _close(got, expected, what=f"{name} chunk {chunk_size}")
            assert all((got[n][~mask[n]] == 0).all() for n in got)
        _close(hessian_gradient_product(mirrored, batch, chunk_size=chunk_size),
               hessian_gradient_product(reference, batch, chunk_size=chunk_size), what="Hg")
    with two_cpu_strategy().scope():          # inside the scope: the helper-thread path
        _close(scoring.compute_scores("snip", mirrored, batch),
               scoring.compute_scores("snip", reference, batch), what="in scope")
    _ran_on_two_replicas(mirrored)


def test_mirrored_snip_and_grasp_match_numpy():
    model, kernels, biases = _mlp([4, 5, 3], seed=4, strategy=two_cpu_strategy())
    mask = _random_mask(model, 0.7, seed=2)
    _set_mask(model, mask)
    x, y = _mlp_batch(n=13, classes=3, seed=3)           # chunks of at most 5: 5, 4, 4
    names = ["h1/kernel", "out/kernel"]
    masks = [mask[n].astype(np.float64) for n in names]
    eff = [k * m for k, m in zip(kernels, masks)]
    grads = dict(zip(names, np_mlp_grads(eff, biases, x, y)))
    hg_expected = dict(zip(names, _np_hessian_gradient(eff, biases, masks, x, y)))
    weights = dict(zip(names, eff))
    for chunk_size in (None, 5):
        snip = scoring.compute_scores("snip", model, (x, y), chunk_size=chunk_size)
        _close(snip, {n: np.abs(grads[n] * weights[n]) for n in names}, what="snip")
        hg = hessian_gradient_product(model, (x, y), chunk_size=chunk_size)
        _close(hg, hg_expected, rtol=1e-3, atol=1e-4, what="Hg")
        grasp = scoring.compute_scores("grasp", model, (x, y), chunk_size=chunk_size)
        _close(grasp, {n: -weights[n] * hg_expected[n] for n in names}, rtol=1e-3, atol=1e-4,
               what="grasp")
    _ran_on_two_replicas(model)


def test_mirrored_isnip_rounds_give_the_one_replica_masks():
    reference, mirrored, _ = _pair(lambda s: _mlp([4, 6, 3], seed=13, strategy=s)[0])
    batch = _mlp_batch(n=15, classes=3, seed=14)
    for chunk_size in (None, 4):
        expected = scoring.prune_to_density("isnip", reference, 0.2, batch=batch, iterations=5,
                                            chunk_size=chunk_size)
        got = scoring.prune_to_density("isnip", mirrored, 0.2, batch=batch, iterations=5,
                                       chunk_size=chunk_size)
        assert got == expected, chunk_size
    _ran_on_two_replicas(mirrored)


# -- BatchNorm: per-replica statistics, the user's model untouched -------------------------------
def _local_values(model):
    strategy = model.distribute_strategy
    return [v.numpy().copy() for var in model.weights
            for v in strategy.experimental_local_results(var)]


def test_mirrored_batchnorm_normalises_each_share_and_leaves_the_model_alone():
    reference, mirrored, mask = _pair(_conv_bn)
    x, y = _conv_batch(n_per_class=4)                    # 12 examples: shares of 6 and 6
    before = _local_values(mirrored)
    snip = scoring.compute_scores("snip", mirrored, (x, y), chunk_size=None)
    hg = hessian_gradient_product(mirrored, (x, y), chunk_size=None)
    padded = _conv_batch(n_per_class=5)                  # 15 in chunks 4, 4, 4, 3: padded
    for name in ("isnip", "grasp", "grasp_abs"):
        got = scoring.prune_to_density(name, mirrored, 0.5, batch=padded, chunk_size=4,
                                       iterations=3 if name == "isnip" else None)
        assert got.num_remaining == round(0.5 * mask.num_weights)
    after = _local_values(mirrored)
    assert len(after) > len(mirrored.weights)            # every replica's copy compared
    assert all(np.array_equal(a, b) for a, b in zip(before, after))   # weights, BN stats, masks
    assert masking.get_mask(mirrored) == mask

    shares = [(x[:6], y[:6]), (x[6:], y[6:])]

    def combined(**kwargs):
        per_share = [_tape_gradients(reference, sx, sy, **kwargs) for sx, sy in shares]
        return {n: 0.5 * (per_share[0][n] + per_share[1][n]) for n in mask}

    weights = {n: v.numpy().astype(np.float64)
               for n, v in masking.prunable_variables(reference).items()}
    g = combined()
    _close(snip, {n: np.abs(g[n] * weights[n]) for n in g}, what="snip")
    g = combined(temperature=200.0)
    _close(hg, combined(temperature=200.0, g=g), what="Hg")
    one = scoring.compute_scores("snip", reference, (x, y), chunk_size=None)
    assert not all(np.allclose(snip[n], one[n], rtol=1e-3) for n in one)  # the shares mattered
    _ran_on_two_replicas(mirrored)


# -- one trace -----------------------------------------------------------------------------------
def test_one_trace_serves_rounds_calls_new_weights_and_masks():
    model, kernels, biases = _mlp([4, 6, 3], seed=13, strategy=two_cpu_strategy())
    x, y = _mlp_batch(n=15, classes=3, seed=14)
    program = scoring.program_for(model)
    scoring.compute_scores("snip", model, (x, y))
    assert _tracing_counts(program) == (1, 0)
    # New weights and a new mask: the same trace gives the new scores.
    rng = np.random.default_rng(3)
    new = [rng.normal(size=k.shape).astype(np.float32) for k in kernels]
    with two_cpu_strategy().scope():
        for layer, k in zip(model.layers, new):
            layer.layer.kernel.assign(k)
    mask = _random_mask(model, 0.6, seed=9)
    _set_mask(model, mask)
    eff = [k.astype(np.float64) * mask[n] for k, n in zip(new, ["h1/kernel", "out/kernel"])]
    grads = np_mlp_grads(eff, biases, x, y)
    scores = scoring.compute_scores("snip", model, (x, y))
    _close(scores, {n: np.abs(g * w) for n, g, w in zip(["h1/kernel", "out/kernel"], grads, eff)})
    scoring.prune_to_density("isnip", model, 0.3, batch=(x, y), iterations=5)
    with two_cpu_strategy().scope():          # called from the helper thread: the same trace
        scoring.compute_scores("snip", model, (x, y))
    scoring.compute_scores("grasp", model, (x, y))       # its g pass: the same trace (T a tensor)
    scoring.prune_to_density("grasp_abs", model, 0.3, batch=(x, y), invert=True)
    assert scoring.program_for(model) is program
    assert _tracing_counts(program) == (1, 1)


def test_one_program_serves_models_of_one_architecture():
    # A caller that scores several model objects of one architecture (say a
    # method and its 'invert' ablation, each on a rebuilt model) holds one
    # program: it traces once for both.
    batch = _mlp_batch(n=15, classes=3, seed=14)
    a = _mlp([4, 6, 3], seed=13, strategy=two_cpu_strategy())[0]
    b = _mlp([4, 6, 3], seed=21, strategy=two_cpu_strategy())[0]
    program = scoring.DeviceProgram(a)
    got_a = scoring.prune_to_density("grasp", a, 0.3, batch=batch, program=program)
    got_b = scoring.prune_to_density("grasp", b, 0.3, batch=batch, program=program, invert=True)
    assert _tracing_counts(program) == (1, 1)
    assert got_a == scoring.prune_to_density("grasp", a, 0.3, batch=batch)
    assert got_b == scoring.prune_to_density("grasp", b, 0.3, batch=batch, invert=True)
    assert got_a != got_b
    other = _mlp([4, 5, 3], strategy=two_cpu_strategy())[0]
    with pytest.raises(ConfigError, match="only models of the architecture it was built for"):
        scoring.compute_scores("snip", other, batch, program=program)


def test_cached_programs_go_with_their_model():
    model = _mlp([4, 3, 2])[0]
    scoring.compute_scores("snip", model, _mlp_batch())
    program = weakref.ref(scoring.program_for(model))
    assert program() is not None
    del model
    gc.collect()
    assert program() is None


# -- XLA -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, shape", [("lenet_300_100", (28, 28, 1)), ("resnet_20", (8, 8, 3))])
def test_replica_steps_compile_with_xla(name, shape):
    model = masking.wrap(models.build(name, shape, 10, seed=0))
    mask = _random_mask(model, 0.5)
    masking.set_mask(model, mask)
    program = scoring.DeviceProgram(model)
    program.install(mask)
    rng = np.random.default_rng(0)
    args = (tf.constant(rng.normal(size=(6,) + shape), tf.float32),
            tf.constant(rng.integers(0, 10, 6), tf.int32),
            tf.fill([6], 1.0 / 6), program.temperature(200.0))
    steps = [(program.replica_gradient, ())]
    g = program.replica_gradient(*args)
    steps += [(program.replica_hessian_product, (None,)), (program.replica_hessian_product, (g,))]
    for step, extra in steps:
        eager = step(*args, *extra)
        got = tf.function(step, jit_compile=True)(*args, *extra)   # XLA or an error
        for n, e, c in zip(program.names, eager, got):
            np.testing.assert_allclose(c.numpy(), e.numpy(), rtol=1e-4,
                                       atol=1e-5 * np.abs(e.numpy()).max(), err_msg=n)
            assert (c.numpy()[~mask[n]] == 0).all(), n
