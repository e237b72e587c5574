"""The TPU stand-in: traces per run, and every device function compiled by XLA.

No TPU exists here.  A TPU compiles each trace of a tf.function as one whole
XLA program, so two properties matter and both can be checked on a CPU:

* the number of traces of a run must not grow with its levels, branches,
  LMC rewinding steps or PaI ablations (each trace would be a compilation);
* every function that runs on the device must compile with XLA as a whole
  (`tf.function(jit_compile=True)`), which rules out dynamic shapes and
  host-side ops in it.  Checked for LeNet-300-100, ResNet-20 and a small
  ResNet-50, in float32 and mixed_bfloat16, with a mask applied.
"""
import collections
import contextlib
import dataclasses
import math

import gin
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.eager.polymorphic_function import tracing_compilation
from tensorflow.python.framework import config as tf_config

from conftest import SMALL_RUN
from tflottery import analysis, data, gin_files, masking, models, runner, scoring
from tflottery.analysis.batchnorm import BatchNormRecomputer
from tflottery.experiments.context import set_precision_policy
from tflottery.hparams import DatasetHparams, TrainingHparams
from tflottery.masking.walk import masked_pairs
from tflottery.pruning import dynamic
from tflottery.pruning.dynamic_device import DropGrowProgram
from tflottery.training.optimizers import slot_variables
from tflottery.training.program import TrainingProgram


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()
    tf.keras.mixed_precision.set_global_policy("float32")


@contextlib.contextmanager
def counting_traces():
    """Counts every tf.function trace (a new concrete function) by function name."""
    counts = collections.Counter()
    real = tracing_compilation._create_concrete_function

    def counted(function_type, type_context, func_graph, tracing_options):
        counts[tracing_options.name] += 1
        return real(function_type, type_context, func_graph, tracing_options)
    tracing_compilation._create_concrete_function = counted
    try:
        yield counts
    finally:
        tracing_compilation._create_concrete_function = real


def traces_of_run(root, *bindings):
    """(device trace counts by function name, the run's context) of one in-process run.

    tf.data's own functions ('Dataset_*': each phase's input pipeline maps
    its seed and start step) run on the host, not on the device, and are
    left out.
    """
    gin.clear_config()
    gin_files.parse([], SMALL_RUN + ["TrainingHparams.steps_per_loop = 4"] + list(bindings))
    with counting_traces() as counts:
        experiment, ctx = runner.prepare(str(root))
        experiment.run(ctx)
    device = collections.Counter({k: v for k, v in counts.items() if not k.startswith("Dataset_")})
    return device, ctx


def program_counts(ctx):
    return [p.tracing_counts() for p in ctx.state.programs.values()]


@pytest.mark.parametrize("experiment, small, large", [
    ("lottery", ["PruningHparams.levels = 1"],
     ["PruningHparams.levels = 6",
      "BranchHparams.names = ('random_reinit', 'random_prune_layerwise')"]),
    ("lmc", ["InstabilityHparams.rewind_steps = ('8it',)", "InstabilityHparams.num_alphas = 3"],
     ["InstabilityHparams.rewind_steps = ('8it', '16it')", "InstabilityHparams.num_alphas = 3"]),
    ("pai", ["PaiHparams.method = 'snip'", "PaiHparams.examples_per_class = 2"],
     ["PaiHparams.method = 'snip'", "PaiHparams.examples_per_class = 2",
      "PaiAblationHparams.names = ('shuffle', 'invert')"]),
    # RigL: 2 mask updates against 10, each of them skipping its step's weight update.
    ("dst", ["DstHparams.update_every = '16it'"],
     ["DstHparams.update_every = '2it'", "DstHparams.skip_weight_update = True"]),
    # SET: 2 mask updates against 10 (the seed of each is a tensor).
    ("dst", ["DstHparams.grow = 'random'", "DstHparams.update_every = '16it'"],
     ["DstHparams.grow = 'random'", "DstHparams.update_every = '2it'"]),
])
def test_traces_per_run_do_not_grow_with_phases(tmp_path, experiment, small, large):
    name = [f"ExperimentHparams.name = '{experiment}'"]
    traces_of_run(tmp_path / "warm", *name, *small)   # one-time traces of the process
    few, _ = traces_of_run(tmp_path / "small", *name, *small)
    many, ctx = traces_of_run(tmp_path / "large", *name, *large)
    assert sum(many.values()) > 0, "the trace counter saw nothing"
    assert many == few
    # The training loop and the evaluation step: once each in the whole run.
    assert program_counts(ctx) == [{"train": 1, "eval_test": 1}]
    assert many["train_loop"] == 1 and many["eval_pass"] == 1
    if experiment == "dst":
        # Every drop and grow of the run is the one traced device update.
        assert many["dropgrow_update"] == 1


def test_phases_of_a_program_match_fresh_optimizers(tmp_path):
    """A program reused for a second phase trains it exactly as a new one would."""
    dataset = data.build(DatasetHparams(name="synthetic", batch_size=32))
    hp = TrainingHparams(optimizer="adam", lr=0.01, training_steps="24it", eval_every="8it",
                         steps_per_loop=4)
    strategy = tf.distribute.get_strategy()

    def lenet():
        return masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=3))

    from tflottery.training.loop import Trainer
    shared = TrainingProgram(strategy, lenet(), dataset, hp)
    Trainer(strategy, shared.model, dataset, hp, 0, str(tmp_path / "first"),
            program=shared).run()          # leaves trained weights and Adam slots behind
    shared.load_initial_weights()
    reused = Trainer(strategy, shared.model, dataset, hp, 1, str(tmp_path / "second"),
                     start_step=8, program=shared).run()
    fresh_model = lenet()
    fresh = Trainer(strategy, fresh_model, dataset, hp, 1, str(tmp_path / "fresh"),
                    start_step=8).run()
    assert reused == fresh
    for a, b in zip(shared.model.variables, fresh_model.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert shared.tracing_counts() == {"train": 1, "eval_test": 1}


# ---- every device function compiles as one XLA program ----------------------------------

def small_data(shape, n=48):
    rng = np.random.default_rng(0)
    return (rng.normal(size=(n,) + shape).astype(np.float32),
            rng.integers(0, 10, n).astype(np.int32))


NETWORKS = [("lenet_300_100", (8, 8, 1), {}),
            ("resnet_20", (16, 16, 3), {}),
            ("resnet_50", (32, 32, 3), {})]


@pytest.fixture
def without_op_determinism():
    """XLA has no deterministic max-pool gradient, and a TPU runs without the
    op-determinism switch the test session turns on (conftest.py)."""
    tf_config.disable_op_determinism()
    yield
    tf.config.experimental.enable_op_determinism()


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("name, shape, options", NETWORKS)
def test_device_functions_compile_with_xla(tmp_path, name, shape, options, precision,
                                           without_op_determinism):
    hp = TrainingHparams(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4,
                         training_steps="4it", eval_every="4it", xla_update=False,
                         mixed_precision=precision == "mixed_bfloat16")
    set_precision_policy(hp)
    x, y = small_data(shape)
    path = tmp_path / "data.npz"
    np.savez(path, x_train=(x * 40 + 128).clip(0, 255).astype(np.uint8), y_train=y,
             x_test=(x[:20] * 40 + 128).clip(0, 255).astype(np.uint8), y_test=y[:20])
    dataset = data.build(DatasetHparams(name="npz", data_dir=str(path), batch_size=8))
    strategy = tf.distribute.get_strategy()

    def build(seed):
        return masking.wrap(models.build(name, shape, 10, seed=seed, **options))

    program = TrainingProgram(strategy, build(0), dataset, hp)
    model = program.model
    mask = masking.Mask({k: np.random.default_rng(1).random(v.shape) > 0.5
                         for k, v in masking.prunable_variables(model).items()})
    masking.set_mask(model, mask)
    images, labels = (tf.constant(a) for a in small_data(shape, 8))
    padded = tf.concat([labels[:6], [-1, -1]], axis=0)   # evaluation batches carry padding

    def xla(fn, *args):
        return tf.function(fn, jit_compile=True)(*args)

    before = model.variables[0].numpy().copy()
    with masking.trusted_zero_pruned_weights():
        xla(program.replica_train_step, images, labels)
    assert not np.array_equal(before, model.variables[0].numpy()), "no training step ran"
    for weight, mask_var in masked_pairs(model).values():
        assert np.all(weight.numpy()[mask_var.numpy() == 0] == 0)
    xla(program.replica_eval_step, images, padded)
    assert 0 <= float(program.eval_acc.result()) <= 1

    mix, other = build(1), build(2)
    for m in (mix, other):
        masking.set_mask(m, mask)
    interp = analysis.Interpolator(strategy, model, other, mix, dataset, bn_mode="interpolate")
    xla(interp._assign_mix, tf.constant(0.5))
    loss, correct, count = xla(interp._replica_eval, images, padded)
    assert float(count) == 6
    recompute = BatchNormRecomputer(strategy, mix, dataset, num_batches=1)
    if recompute.layers:
        means, variances = xla(recompute._replica_stats, images)
        assert len(means) == len(recompute.layers)
    preds, losses = xla(analysis.PredictionLoop(strategy, model, dataset).replica_step,
                        images, padded)
    assert preds.shape == (8,) and losses.shape == (8,)

    # SNIP / iterative SNIP (gradient) and GraSP (Hessian-gradient product):
    # float32 even for a mixed-precision model (scoring/device.py).
    scorer = scoring.DeviceProgram(model)
    scorer.install(mask)
    weights = tf.fill([8], tf.constant(1 / 8, scorer.dtype))
    grads = xla(scorer.replica_gradient, images, labels, weights, scorer.temperature(1.0))
    hg = xla(scorer.replica_hessian_product, images, labels, weights,
             scorer.temperature(200.0), grads)
    for name, g, h in zip(scorer.names, grads, hg):
        assert g.dtype == tf.float32 and g.shape == h.shape
        assert np.all(g.numpy()[~mask[name]] == 0), name


@pytest.mark.parametrize("grow", ["gradient", "random"])
@pytest.mark.parametrize("name, shape, options", NETWORKS[:2])
def test_drop_and_grow_update_compiles_with_xla(name, shape, options, grow,
                                                without_op_determinism):
    """RigL/SET's mask update (pruning/dynamic_device.py) as one XLA program, equal to
    the host reference (dynamic.drop_and_grow) on the scores it computed, mask for mask."""
    dataset = data.build(DatasetHparams(name="synthetic", batch_size=8))
    hp = TrainingHparams(optimizer="sgd", lr=0.01, momentum=0.9, training_steps="4it",
                         eval_every="4it", xla_update=False)
    model = masking.wrap(models.build(name, shape, 10, seed=0, **options))
    program = TrainingProgram(tf.distribute.get_strategy(), model, dataset, hp)
    rng = np.random.default_rng(1)
    variables = masking.prunable_variables(model)
    mask = masking.Mask({k: rng.random(v.shape) < 0.3 for k, v in variables.items()})
    masking.set_mask(model, mask)
    for v in program.optimizer.variables[1:]:          # momentum everywhere
        v.assign(tf.ones(v.shape, v.dtype))
    update = DropGrowProgram(model, program.optimizer, grow)
    images, labels = (tf.constant(a) for a in small_data(shape, 8))
    weights = tf.fill([8], tf.constant(1 / 8, tf.float32))
    seed = tf.constant([5, 100], tf.int64)
    batch = (images, labels, weights) if grow == "gradient" else ()
    statistics = [v.numpy() for v in model.non_trainable_variables]

    def xla(fn, *args):
        return tf.function(fn, jit_compile=True)(*args)

    def scored_update(drop_counts, seed, *batch):
        # replica_update, returning the scores it used too: two XLA programs
        # may round a convolution's gradient differently.
        scores = update.replica_scores(seed, *batch)
        return scores, update.replica_select(drop_counts, scores)

    before = {n: v.numpy() for n, v in variables.items()}
    fraction = 0.3
    drops = [math.floor(fraction * mask[n].sum()) for n in update.names]
    scores, moved = xla(scored_update, tf.constant(drops), seed, *batch)
    expected = {n: dynamic.drop_and_grow(mask[n], before[n], s.numpy(), fraction)[0]
                for n, s in zip(update.names, scores)}
    after = masking.get_mask(model)
    for i, n in enumerate(update.names):
        np.testing.assert_array_equal(after[n], expected[n], err_msg=n)
        grown = after[n] & ~mask[n]
        assert int(moved[0][i]) == grown.sum() > 0 and int(moved[1][i]) == mask[n].sum()
        weight = variables[n].numpy()
        assert np.all(weight[~after[n]] == 0) and np.all(weight[grown] == 0)
        np.testing.assert_array_equal(weight[after[n] & mask[n]], before[n][after[n] & mask[n]])
        for slot in slot_variables(program.optimizer, variables[n]):
            assert np.all(slot.numpy()[grown] == 0) and np.all(slot.numpy()[~grown] == 1)
    # Scoring left BatchNorm's moving statistics (and the other masks) alone.
    for a, v in zip(statistics, model.non_trainable_variables):
        if not v.name.endswith("_mask:0"):
            np.testing.assert_array_equal(a, v.numpy(), err_msg=v.name)
    # The whole update as it runs (scores and selection in one program) compiles too.
    xla(update.replica_update, tf.constant(drops), seed + 1, *batch)
    again = masking.get_mask(model)
    assert all(again[n].sum() == mask[n].sum() for n in update.names)
    assert any((again[n] != after[n]).any() for n in update.names)
