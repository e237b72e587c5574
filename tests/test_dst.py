"""Dynamic sparse training (experiment 'dst': RigL, SET), checked against NumPy.

The drop-and-grow update of one step is recomputed independently: the dense
gradient of LeNet-300-100 by hand-written backpropagation in NumPy, the
dropped and grown sets by sorting.  Whole runs check exact per-layer counts,
the update log and the cosine schedule; a SIGKILL mid-training then re-run
must give the uninterrupted run's results bit for bit.
"""
from conftest import SMALL_RUN, two_cpu_strategy, wait_for  # noqa: E402
import glob
import json
import math
import os
import signal
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf

from tflottery import data, gin_files, masking, models, runner
from tflottery.errors import ConfigError
from tflottery.experiments.dst import UPDATE_LOG, DropGrowHook
from tflottery.pruning.dynamic_device import DropGrowProgram, layer_key, random_scores
from tflottery.scoring.grow import grow_scores, training_batch
from tflottery.hparams import DatasetHparams, TrainingHparams
from tflottery.pruning import dynamic
from tflottery.training import checkpoints
from tflottery.training.optimizers import reset_slots, slot_variables
from tflottery.training.program import TrainingProgram

DST = SMALL_RUN + [
    "ExperimentHparams.name = 'dst'",
    "DstHparams.sparsity = 0.9",
    "DstHparams.update_every = '4it'",
    "TrainingHparams.steps_per_loop = 3",
]


pytestmark = pytest.mark.usefixtures("clean_gin")


def numpy_dense_gradient(kernels, biases, images, labels):
    """dL/dW of the mean cross-entropy of a ReLU MLP, by hand (every connection present)."""
    x = images.reshape(len(images), -1).astype(np.float64)
    names = ["fc_1", "fc_2", "output"]
    acts = [x]
    for i, name in enumerate(names):
        z = acts[-1] @ kernels[f"{name}/kernel"] + biases[name]
        acts.append(np.maximum(z, 0.0) if i < 2 else z)
    logits = acts[-1]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    delta = (p - np.eye(logits.shape[1])[labels]) / len(labels)
    grads = {}
    for i in reversed(range(3)):
        grads[f"{names[i]}/kernel"] = acts[i].T @ delta
        if i:
            delta = (delta @ kernels[f"{names[i]}/kernel"].T) * (acts[i] > 0)
    return grads


def numpy_drop_grow(mask, weights, scores, fraction):
    """The RigL update of one layer by sorting: drop floor(f n) smallest |w|, grow largest scores."""
    flat_mask, flat_w, flat_s = mask.ravel(), np.abs(weights.ravel()), scores.ravel()
    active = np.flatnonzero(flat_mask)
    k = math.floor(fraction * active.size)
    by_magnitude = active[np.argsort(flat_w[active], kind="stable")]
    kept = np.zeros_like(flat_mask)
    kept[by_magnitude[k:]] = True
    candidates = np.flatnonzero(~kept)
    grown = candidates[np.argsort(-flat_s[candidates], kind="stable")[:k]]
    new = kept.copy()
    new[grown] = True
    return new.reshape(mask.shape)


def small_program(strategy=None):
    strategy = strategy or tf.distribute.get_strategy()
    dataset = data.build(DatasetHparams(name="synthetic", batch_size=32))
    hp = TrainingHparams(optimizer="sgd", lr=0.05, momentum=0.9, training_steps="24it",
                         xla_update=False)
    with strategy.scope():
        model = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=3))
    return TrainingProgram(strategy, model, dataset, hp), dataset


def sparse_start(model, seed=0):
    shapes = {n: tuple(v.shape) for n, v in masking.prunable_variables(model).items()}
    densities = dynamic.layer_densities(shapes, 0.2, "erk")
    return dynamic.sparse_start_mask(shapes, densities, seed)


@pytest.mark.parametrize("grow, replicas", [("gradient", 1), ("random", 1), ("gradient", 2)])
def test_one_update_against_numpy(grow, replicas):
    # Two replicas: MirroredStrategy on two virtual CPUs (the dense gradient is
    # all-reduced, the optimizer slots are mirrored variables).
    program, dataset = small_program(two_cpu_strategy() if replicas == 2 else None)
    model = program.model
    start = sparse_start(model)
    masking.set_mask(model, start)
    masking.zero_pruned_weights(model)
    program.begin_phase(0)
    program.train_steps(program.train_iterator(0, 0), 5)   # momentum is now non-zero
    variables = masking.prunable_variables(model)
    before = {n: v.numpy() for n, v in variables.items()}
    slots_before = {n: slot_variables(program.optimizer, v)[0].numpy() for n, v in variables.items()}
    images, labels = training_batch(dataset, 0, 5)
    biases = {layer.layer.name: layer.layer.bias.numpy() for layer in model.layers
              if hasattr(layer, "layer")}
    hook = DropGrowHook(program, grow, 0.3, steps=[5], stop=20, seed=7,
                        batch=lambda step: training_batch(dataset, 0, step))
    fraction = dynamic.cosine_drop_fraction(5, 0.3, 20)
    assert fraction == pytest.approx(0.15 * (1 + math.cos(math.pi * 5 / 20)))
    reference = host_reference_update(model, grow, images, labels, (7, 5), fraction)
    hook(model, 5)
    after = masking.get_mask(model)
    # The device update is the host reference, mask for mask.
    assert after == reference
    if grow == "gradient":
        grads = numpy_dense_gradient(before, biases, images, labels)
        for name in start:
            expected = numpy_drop_grow(start[name], before[name], np.abs(grads[name]), fraction)
            # The device computes in float32: allow a near-tie at the boundary
            # to fall the other way (none did when this was written).
            assert (expected != after[name]).sum() <= 2, name
    for name in start:
        assert after[name].sum() == start[name].sum(), name          # exact count per layer
        dropped = start[name] & ~after[name]
        k = math.floor(fraction * start[name].sum())
        assert 0 < k and dropped.sum() <= k
        # Every active weight larger than the k-th smallest active one survives.
        threshold = np.sort(np.abs(before[name][start[name]]))[k - 1]
        assert np.all(after[name][start[name] & (np.abs(before[name]) > threshold)]), name
        kept_active = start[name] & after[name]
        new = after[name] & ~start[name]
        weight = variables[name].numpy()
        assert np.all(weight[new] == 0.0) and np.all(weight[~after[name]] == 0.0)
        slot = slot_variables(program.optimizer, variables[name])[0].numpy()
        assert np.all(slot[new] == 0.0), name                       # fresh optimizer state
        np.testing.assert_array_equal(slot[~new], slots_before[name][~new])
        np.testing.assert_array_equal(weight[kept_active], before[name][kept_active])
    # A mask update is variable assignments: training goes on without a new trace,
    # and a second update reuses the scoring program's trace.
    program.train_steps(program.train_iterator(0, 6), 2)
    reference = host_reference_update(model, grow, *training_batch(dataset, 0, 8), (7, 8),
                                      dynamic.cosine_drop_fraction(8, 0.3, 20))
    hook(model, 8)
    assert masking.get_mask(model) == reference
    assert program.tracing_counts()["train"] == 1
    # Both updates ran the one traced device update (not a host path).
    assert hook.device.tracing_count() == 1


def host_reference_update(model, grow, images, labels, seed, fraction):
    """The new mask by the host reference: scores on the host, then dynamic.drop_and_grow.

    RigL's scores are the scoring program's dense gradient (scoring/grow.py,
    what runs used before the update moved to the device); SET's are the
    seeded hash scores of dynamic_device.random_scores, computed in NumPy.
    """
    current = masking.get_mask(model)
    weights = {n: v.numpy() for n, v in masking.prunable_variables(model).items()}
    if grow == "gradient":
        scores = grow_scores("gradient", model, lambda: (images, labels), None)
    else:
        scores = {n: random_scores(np.array(seed), layer_key(n), weights[n].shape)
                  for n in weights}
    return masking.Mask({n: dynamic.drop_and_grow(current[n], weights[n], scores[n], fraction)[0]
                         for n in current})


def test_random_growth_is_seeded_by_step():
    program, dataset = small_program()
    model = program.model
    start = sparse_start(model)
    results = []
    for step in (4, 4, 8):
        masking.set_mask(model, start)
        DropGrowHook(program, "random", 0.3, steps=[step], stop=20, seed=1)(model, step)
        results.append(masking.get_mask(model))
    assert results[0] == results[1] and results[0] != results[2]


def test_update_program_refuses_drop_counts_and_masks_it_cannot_select_for():
    """Its selection orders each layer's top n (n the active count read when it was made)."""
    program, _ = small_program()
    model = program.model
    masking.set_mask(model, sparse_start(model))
    masking.zero_pruned_weights(model)
    update = DropGrowProgram(model, program.optimizer, "random")
    none = {n: 0 for n in update.names}
    with pytest.raises(ValueError, match=r"drop counts of fc_1/kernel not in \[0, active"):
        update(dict(none, **{"fc_1/kernel": update.active["fc_1/kernel"] + 1}), (1, 2))
    assert update(none, (1, 2)) == none
    shapes = {n: tuple(v.shape) for n, v in masking.prunable_variables(model).items()}
    masking.set_mask(model, dynamic.sparse_start_mask(shapes, {n: 0.5 for n in shapes}, 0))
    with pytest.raises(ValueError, match="active counts of fc_1/kernel, fc_2/kernel, "
                                         "output/kernel changed"):
        update(none, (1, 2))


def test_rigl_run_keeps_layer_counts_and_logs_updates(tmp_path):
    gin_files.parse([], DST)
    result = runner.run(str(tmp_path))
    (rep,) = glob.glob(str(tmp_path / "dst_*" / "replicate_0"))
    start = masking.Mask.load(os.path.join(rep, "mask_init"))
    final = masking.Mask.load(os.path.join(rep, "mask"))
    # ERK by hand for LeNet on 8x8 inputs: kernels 64x300, 300x100, 100x10.
    shapes = {"fc_1/kernel": (64, 300), "fc_2/kernel": (300, 100), "output/kernel": (100, 10)}
    total = sum(a * b for a, b in shapes.values())
    raw = {n: (a + b) / (a * b) for n, (a, b) in shapes.items()}
    eps = 0.1 * total / sum(raw[n] * a * b for n, (a, b) in shapes.items())
    for name, (a, b) in shapes.items():
        assert start[name].sum() == final[name].sum() == int(math.floor(eps * raw[name] * a * b
                                                                         + 0.5)), name
    # Updates at 0, 4, 8, 12, 16 (the reference's schedule from begin_step 0 to the
    # stop step, 75% of 24 = 18, inclusive), fractions on the cosine.
    log = [json.loads(l) for l in open(os.path.join(rep, "train", "mask_updates.jsonl"))]
    assert [r["step"] for r in log] == [0, 4, 8, 12, 16]
    assert saved_updates(rep) == 5
    for record in log:
        expected = 0.15 * (1 + math.cos(math.pi * record["step"] / 18))
        assert record["drop_fraction"] == pytest.approx(expected)
        assert record["density"] == pytest.approx(start.density)
    assert log[0]["changed"] > 0
    # The density summaries of the update steps (from the hook's counts, not
    # from masks read back) are the masks' densities.
    from test_tensorboard import _scalars
    scalars, _ = _scalars(os.path.join(rep, "train", "tensorboard", "train"))
    for step in (0, 4, 8, 12, 16):
        assert dict(scalars["density/total"])[step] == pytest.approx(start.density)
        for name in shapes:
            assert dict(scalars[f"density/{name}"])[step] == pytest.approx(
                start[name].sum() / start[name].size), (step, name)
    # The trained weights are exactly sparse under the final mask.
    model = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=0))
    checkpoints.restore_weights(model, os.path.join(rep, "train", "checkpoints"), "end")
    for name, variable in masking.prunable_variables(model).items():
        assert np.all(variable.numpy()[~final[name]] == 0.0)
    saved = json.load(open(os.path.join(rep, "dst.json")))
    assert saved["test_accuracy"] == result["test_accuracy"]
    assert 0 < saved["final_vs_start"]["new_not_in_previous"] < 1


def saved_updates(rep):
    return json.load(open(os.path.join(rep, "dst.json")))["updates"]


def test_begin_step_anneal_and_layers_outside_the_budget(tmp_path):
    gin_files.parse([], DST + [
        "DstHparams.distribution = 'uniform'",
        "DstHparams.begin_step = '2it'",
        "DstHparams.drop_fraction_anneal = 'exponential_2'",
        "DstHparams.layer_sparsities = {'fc_1': 0.5}",
        "DstHparams.dense_layers = ('output',)",
    ])
    runner.run(str(tmp_path))
    (rep,) = glob.glob(str(tmp_path / "dst_*" / "replicate_0"))
    start = masking.Mask.load(os.path.join(rep, "mask_init"))
    final = masking.Mask.load(os.path.join(rep, "mask"))
    # fc_1 at its own 50%, output dense, fc_2 at the whole 10% (both outside the budget).
    for name, kept in {"fc_1/kernel": 9600, "fc_2/kernel": 3000, "output/kernel": 1000}.items():
        assert start[name].sum() == final[name].sum() == kept, name
    assert final["output/kernel"].all()
    # begin 2, every 4, stop 18 (inclusive): 2, 6, 10, 14, 18; the fraction
    # 0.3 * (1 - (t - 2) / 16) ** 2.
    log = [json.loads(l) for l in open(os.path.join(rep, "train", "mask_updates.jsonl"))]
    assert [r["step"] for r in log] == [2, 6, 10, 14, 18]
    assert [r["drop_fraction"] for r in log] == pytest.approx(
        [0.3, 0.16875, 0.075, 0.01875, 0.0])
    assert log[0]["changed"] > 0 and log[-1]["changed"] == 0
    assert saved_updates(rep) == 5


def test_default_schedule_has_the_references_23_updates():
    """rigl.gin on LeNet's 3000 steps: 0, 100, ..., 2200 (the reference's begin 0,
    end 2250, frequency 100), 23 updates."""
    from types import SimpleNamespace
    from tflottery.experiments.dst import DstExperiment, DstHparams
    experiment = DstExperiment()
    experiment.hp = DstHparams()
    ctx = SimpleNamespace(total_steps=lambda: 3000, training_hp=TrainingHparams(),
                          dataset=SimpleNamespace(iterations_per_epoch=1000))
    steps, begin, stop = experiment.update_steps(ctx)
    assert steps == list(range(0, 2201, 100)) and len(steps) == 23
    assert (begin, stop) == (0, 2250)


class SkippingHook:
    """Records the weights and the iteration counter at each of its steps, where it
    takes the place of the weight update."""
    skips_training_step = True

    def __init__(self, steps, optimizer):
        self.steps, self.optimizer, self.seen = steps, optimizer, {}

    def __call__(self, model, step):
        self.seen[step] = ([v.numpy() for v in model.trainable_variables],
                           int(self.optimizer.iterations.numpy()))


def test_skipped_weight_update_trains_on_the_other_batches_only(tmp_path):
    """At a skipping hook's step t the batch of step t trains nothing; step t + 1
    trains on batch t + 1 (checked against plain SGD steps by GradientTape)."""
    from tflottery.training.loop import Trainer, read_metrics
    dataset = data.build(DatasetHparams(name="synthetic", batch_size=32))
    hp = TrainingHparams(optimizer="sgd", lr=0.05, training_steps="10it", eval_every="10it",
                         steps_per_loop=3, xla_update=False)
    strategy = tf.distribute.get_strategy()
    model = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=3))
    program = TrainingProgram(strategy, model, dataset, hp)
    hook = SkippingHook([0, 3, 5, 9], program.optimizer)
    Trainer(strategy, model, dataset, hp, 0, str(tmp_path), mask_hook=hook,
            program=program).run()

    def sgd(weights, batches):
        for v, w in zip(model.trainable_variables, weights):
            v.assign(w)
        for b in batches:
            images, labels = training_batch(dataset, 0, b)
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
                    labels, logits, from_logits=True))
            for v, g in zip(model.trainable_variables,
                            tape.gradient(loss, model.trainable_variables)):
                v.assign_sub(0.05 * g)
        return [v.numpy() for v in model.trainable_variables]

    end = [v.numpy() for v in model.trainable_variables]
    # Batches 0, 3, 5 and 9 train nothing: 1, 2 before the hook at 3, 4 before 5, 6-8 after.
    for since, until, batches in [(0, 3, [1, 2]), (3, 5, [4]), (5, 9, [6, 7, 8])]:
        expected = sgd(hook.seen[since][0], batches)
        for a, b in zip(hook.seen[until][0], expected):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(end, hook.seen[9][0]):
        np.testing.assert_array_equal(a, b)          # the last step (9) was skipped
    # The step counter moves on at a skipped step: the schedule and resuming read it.
    assert {t: it for t, (_, it) in hook.seen.items()} == {0: 0, 3: 3, 5: 5, 9: 9}
    assert int(program.optimizer.iterations.numpy()) == 10
    # No train record for the end step: nothing was trained after the record at 9.
    train_steps = [r["step"] for r in read_metrics(str(tmp_path)) if "train_loss" in r]
    assert train_steps == [3, 5, 9]


@pytest.mark.parametrize("crash_at, resumed_hooks", [(4, [7]), (7, [7]), (8, [])])
def test_resuming_around_a_skipped_step(tmp_path, monkeypatch, crash_at, resumed_hooks):
    """Skipping hooks at 0, 3, 7 and evaluations at 4, 8: no train record at 4 and 8
    (nothing trained since 3 and 7).  Killed after the checkpoint at 4 or 8, or at the
    hook's step 7 (saved before the hook acts, which then skips to the evaluation at
    8): the phase resumes there (no log set aside) and ends as a straight one."""
    from test_damaged_logs import SimulatedCrash, crash_after_checkpoint, end_weights
    from tflottery.training.loop import Trainer
    dataset = data.build(DatasetHparams(name="synthetic", batch_size=32))
    hp = TrainingHparams(optimizer="sgd", lr=0.05, training_steps="10it", eval_every="4it",
                         steps_per_loop=3, xla_update=False)
    strategy = tf.distribute.get_strategy()

    def run(out):
        model = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=3))
        program = TrainingProgram(strategy, model, dataset, hp)
        hook = SkippingHook([0, 3, 7], program.optimizer)
        Trainer(strategy, model, dataset, hp, 0, str(out), mask_hook=hook,
                program=program).run()
        return hook
    run(tmp_path / "straight")
    restore = crash_after_checkpoint(monkeypatch, crash_at)
    with pytest.raises(SimulatedCrash):
        run(tmp_path / "killed")
    restore()
    assert sorted(run(tmp_path / "killed").seen) == resumed_hooks   # resumed, not restarted
    assert not glob.glob(str(tmp_path / "killed" / "*.damaged-*"))
    metrics = {}
    for name in ("straight", "killed"):
        records = [json.loads(l) for l in open(tmp_path / name / "metrics.jsonl")]
        metrics[name] = [(r["step"], sorted(k for k in r if k.endswith("loss"))) for r in records]
    assert metrics["killed"] == metrics["straight"] == [
        (0, ["test_loss"]), (3, ["train_loss"]), (4, ["test_loss"]), (7, ["train_loss"]),
        (8, ["test_loss"]), (10, ["train_loss"]), (10, ["test_loss"])]
    assert end_weights(str(tmp_path / "killed")) == end_weights(str(tmp_path / "straight"))


def test_rigl_run_with_skip_weight_update(tmp_path):
    """The whole run: skip_weight_update reaches the loop (other end weights, the step
    counter at the end of training all the same), the update log is unchanged."""
    reps = {}
    for skip in (False, True):
        gin.clear_config()
        gin_files.parse([], DST + [f"DstHparams.skip_weight_update = {skip}"])
        runner.run(str(tmp_path / str(skip)))
        (reps[skip],) = glob.glob(str(tmp_path / str(skip) / "dst_*" / "replicate_0"))
    logs = {}
    for skip, rep in reps.items():
        logs[skip] = [json.loads(l) for l in open(os.path.join(rep, "train", UPDATE_LOG))]
        assert [r["step"] for r in logs[skip]] == [0, 4, 8, 12, 16]
        assert json.load(open(os.path.join(rep, "train", "final.json")))["step"] == 24
    # The first update sees the same weights either way; later ones do not.
    assert logs[False][0] == logs[True][0]
    ends = {}
    for skip, rep in reps.items():
        model = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=0))
        checkpoints.restore_weights(model, os.path.join(rep, "train", "checkpoints"), "end")
        ends[skip] = model.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(ends[False], ends[True]))


@pytest.mark.parametrize("binding, message", [
    ("DstHparams.sparsity = 1.0", "DstHparams.sparsity must be a number in"),
    ("DstHparams.drop_fraction = 0.0", r"drop_fraction must be in \(0, 1\)"),
    ("DstHparams.drop_fraction = 1.0", r"drop_fraction must be in \(0, 1\)"),
    ("DstHparams.grow = 'hebbian'", "unknown DstHparams.grow 'hebbian'"),
    ("DstHparams.distribution = 'normal'", "unknown density distribution 'normal'"),
    ("DstHparams.begin_step = '18it'", r"begin_step \('18it' = 18 it\) must come before the "
                                       r"stop step \(18 it"),
    ("DstHparams.update_every = '0it'", r"update_every \('0it'\) must be at least 1 it"),
    ("DstHparams.dense_layers = ('fc_9',)", "excluded layer 'fc_9'"),
    ("DstHparams.drop_fraction_anneal = 'linear'", "unknown drop fraction anneal 'linear'"),
    ("DstHparams.layer_sparsities = {'fc_9': 0.5}", r"layer_sparsities\['fc_9'\]: 'fc_9' is "
                                                   "not a prunable layer"),
    ("DstHparams.layer_sparsities = {'fc_1': 1.0}", r"layer_sparsities\['fc_1'\] must be a "
                                                   r"number in \[0, 1\)"),
    ("DstHparams.layer_sparsities = {'fc_1': 'half'}", r"layer_sparsities\['fc_1'\] must be "
                                                      "a number"),
    ("DstHparams.layer_sparsities = {'output': 0.5, 'output/kernel': 0.2}",
     "output/kernel already has a density"),
    ("DstHparams.erk_power_scale = -1.0", "DstHparams.erk_power_scale = -1.0: must not be "
                                          "negative"),
    ("DstHparams.erk_power_scale = 0.5\nDstHparams.distribution = 'er'",
     "erk_power_scale 0.5 applies to distribution 'erk' only"),
    ("DstHparams.custom_in_budget = 1", "DstHparams.custom_in_budget = 1 is not of type bool"),
    ("DstHparams.skip_weight_update = True\nDstHparams.update_every = '1it'",
     "skip_weight_update needs update_every of at least 2 it"),
    ("DstHparams.custom_in_budget = True\nDstHparams.distribution = 'uniform'\n"
     "DstHparams.sparsity = 0.99\nDstHparams.dense_layers = ('fc_2',)", "cannot be reached"),
])
def test_bad_settings_fail_before_writing(tmp_path, binding, message):
    gin_files.parse([], DST + binding.split("\n"))
    with pytest.raises(ConfigError, match=message):
        runner.run(str(tmp_path))
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("experiment, bindings, phase, files, masks", [
    # RigL: killed between two mask updates, resumed at the last one.
    ("dst", ["TrainingHparams.training_steps = '800it'", "DstHparams.update_every = '50it'"],
     "train", ["dst.json", "train/final.json", "train/mask_updates.jsonl"], ["mask"]),
    # Dynamic IMP: killed in phase 2's dense training, whose start (the
    # hybrid network) a new process rebuilds from phase 1's files.
    ("dynamic_imp", ["TrainingHparams.training_steps = '800it'",
                     "TrainingHparams.eval_every = '100it'"], "phase_2/dense",
     ["dynamic_imp.json", "phase_2/sparse/final.json"],
     ["phase_1/mask", "phase_2/mask", "phase_1/regrown"]),
    # SET: its random scores come from (seed, step), not from a generator's state.
    ("dst", ["TrainingHparams.training_steps = '800it'", "DstHparams.update_every = '50it'",
             "DstHparams.grow = 'random'"],
     "train", ["dst.json", "train/final.json", "train/mask_updates.jsonl"], ["mask"]),
])
def test_sigkill_mid_training_then_rerun_equals_uninterrupted(tmp_path, experiment, bindings,
                                                              phase, files, masks):
    config = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "gin_configs")
    bindings = [f"ExperimentHparams.name = '{experiment}'", "TrainingHparams.eval_every = '400it'",
                "TrainingHparams.steps_per_loop = 10"] + bindings

    def start(root):
        cmd = [sys.executable, "-m", "tflottery.main", f"--root_dir={root}", "--deterministic",
               f"--gin_file={os.path.join(config, 'quickstart.gin')}"]
        cmd += [f"--gin_bindings={b}" for b in bindings]
        return subprocess.Popen(cmd, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)

    def finish(proc):
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]

    finish(start(tmp_path / "straight"))
    proc = start(tmp_path / "killed")
    wait_for(str(tmp_path / "killed" / "*" / "replicate_0" / phase / "checkpoints" / "latest"
                 / "checkpoint"), proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finish(start(tmp_path / "killed"))
    (a,) = glob.glob(str(tmp_path / "straight" / "*" / "replicate_0"))
    (b,) = glob.glob(str(tmp_path / "killed" / "*" / "replicate_0"))
    for name in files:
        assert open(os.path.join(a, name)).read() == open(os.path.join(b, name)).read(), name
    for name in masks:
        assert masking.Mask.load(os.path.join(a, name)) == masking.Mask.load(os.path.join(b, name))


def test_reset_slots_zeroes_both_adam_moments_at_the_entries_only():
    dataset = data.build(DatasetHparams(name="synthetic", batch_size=32))
    hp = TrainingHparams(optimizer="adam", lr=1e-3, training_steps="24it", xla_update=False)
    model = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=3))
    program = TrainingProgram(tf.distribute.get_strategy(), model, dataset, hp)
    program.begin_phase(0)
    program.train_steps(program.train_iterator(0, 0), 3)
    kernel = masking.prunable_variables(model)["fc_2/kernel"]
    slots = slot_variables(program.optimizer, kernel)
    assert len(slots) == 2                          # Adam's m and v
    before = [s.numpy() for s in slots]
    entries = np.zeros(kernel.shape, bool)
    entries[::7, ::3] = True
    assert all(np.count_nonzero(b[entries]) > 0 for b in before)   # something to reset
    reset_slots(program.optimizer, kernel, entries)
    for slot, old in zip(slots, before):
        now = slot.numpy()
        assert np.all(now[entries] == 0.0)
        np.testing.assert_array_equal(now[~entries], old[~entries])
