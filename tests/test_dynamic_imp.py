"""One-shot Dynamic IMP (thesis Algorithm 5), checked against NumPy on the saved weights.

Every mask is recomputed from the checkpoints the run wrote: m_i is the top
10% of |w| of phase i's dense training, the sparse training starts from
m_i * H_(i-1), and H_i (the next phase's start) is S_i on m_i with the
regrown weights at their fresh, zero or previous values; the overlap numbers
are recounted by hand.
"""
from conftest import SMALL_RUN  # noqa: E402
import glob
import json
import math
import os
import shutil

import gin
import numpy as np
import pytest

from test_dst import numpy_dense_gradient
from test_dst import test_sigkill_mid_training_then_rerun_equals_uninterrupted as sigkill_then_rerun
from tflottery import gin_files, masking, models, runner
from tflottery.errors import ConfigError
from tflottery.experiments.dynamic_imp import (grown_set, magnitude_mask, regrown_set, seed_of,
                                               survivors)
from tflottery.masking.mask import Mask
from tflottery.scoring.grow import training_batch
from tflottery.training import checkpoints

DYNAMIC = SMALL_RUN + [
    "ExperimentHparams.name = 'dynamic_imp'",
    "DynamicImpHparams.sparsity = 0.9",
    "DynamicImpHparams.change_points = ('8it', '16it')",
]
NAMES = ("fc_1/kernel", "fc_2/kernel", "output/kernel")


pytestmark = pytest.mark.usefixtures("clean_gin")


def kernels_at(phase_dir, name):
    """{kernel name: array} and the mask of a named checkpoint of a phase."""
    model = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=12345))
    checkpoints.restore_weights(model, os.path.join(phase_dir, "checkpoints"), name)
    return ({n: v.numpy() for n, v in masking.prunable_variables(model).items()},
            masking.get_mask(model))


def numpy_top(kernels, count, allowed=None):
    """The `count` largest |w| over all kernels (among `allowed`), by one stable sort."""
    flat = np.concatenate([np.abs(kernels[n]).ravel() for n in NAMES])
    if allowed is not None:
        flat = np.where(np.concatenate([allowed[n].ravel() for n in NAMES]), flat, -1.0)
    keep = np.zeros(flat.size, bool)
    keep[np.argsort(-flat, kind="stable")[:count]] = True
    out, start = {}, 0
    for n in NAMES:
        out[n] = keep[start:start + kernels[n].size].reshape(kernels[n].shape)
        start += kernels[n].size
    return out


def run(tmp_path, *bindings):
    gin_files.parse([], DYNAMIC + list(bindings))
    result = runner.run(str(tmp_path))
    (rep,) = glob.glob(str(tmp_path / "dynamic_imp_*" / "replicate_0"))
    return rep, result


def test_masks_and_hybrids_of_algorithm_5(tmp_path):
    rep, result = run(tmp_path)
    total = 64 * 300 + 300 * 100 + 100 * 10
    keep = int(np.floor(0.1 * total + 0.5))
    previous_mask, hybrid_start = None, None
    for i in (1, 2, 3):
        phase = os.path.join(rep, f"phase_{i}")
        dense_start, ones = kernels_at(os.path.join(phase, "dense"), "init")
        assert all(ones[n].all() for n in NAMES)           # regrow='all': the hybrid is dense
        if hybrid_start is not None:
            for n in NAMES:
                np.testing.assert_array_equal(dense_start[n], hybrid_start[n])
        trained, _ = kernels_at(os.path.join(phase, "dense"), "end")
        mask = Mask.load(os.path.join(phase, "mask"))
        expected = numpy_top(trained, keep)
        for n in NAMES:
            np.testing.assert_array_equal(mask[n], expected[n])
        sparse_start, sparse_mask = kernels_at(os.path.join(phase, "sparse"), "init")
        assert sparse_mask == mask
        for n in NAMES:
            np.testing.assert_array_equal(sparse_start[n], np.where(mask[n], dense_start[n], 0))
        record = result["phases"][i - 1]
        if previous_mask is not None:
            added = sum(int((mask[n] & ~previous_mask[n]).sum()) for n in NAMES)
            assert record["overlap_with_previous"]["new_not_in_previous"] == added / keep
            assert record["overlap_with_previous"]["previous_not_in_new"] == added / keep
            assert record["regrown_kept"] == added / keep   # all pruned weights were regrown
            assert Mask.load(os.path.join(phase, "kept_regrown")) == Mask(
                {n: mask[n] & ~previous_mask[n] for n in NAMES})
        if i < 3:
            # H_i: S_i on m_i, a fresh sample of the initializer elsewhere.
            sparse_end, _ = kernels_at(os.path.join(phase, "sparse"), "end")
            fresh = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10,
                                              seed=seed_of(0, "fresh", i)))
            fresh = {n: v.numpy() for n, v in masking.prunable_variables(fresh).items()}
            hybrid_start = {n: np.where(mask[n], sparse_end[n], fresh[n]) for n in NAMES}
            assert Mask.load(os.path.join(phase, "regrown")) == Mask({n: ~mask[n] for n in NAMES})
        previous_mask = mask
    saved = json.load(open(os.path.join(rep, "dynamic_imp.json")))
    assert saved["test_accuracy"] == result["phases"][-1]["sparse_test_accuracy"]
    assert saved["change_points"] == [8, 16]


@pytest.mark.parametrize("first", ["random", "magnitude_init"])
def test_first_mask_without_dense_training(tmp_path, first):
    rep, _ = run(tmp_path, f"DynamicImpHparams.first_mask = '{first}'",
                 "DynamicImpHparams.change_points = ('12it',)")
    assert not os.path.exists(os.path.join(rep, "phase_1", "dense"))
    mask = Mask.load(os.path.join(rep, "phase_1", "mask"))
    w0 = {n: v.numpy() for n, v in masking.prunable_variables(
        masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=0))).items()}
    by_magnitude = numpy_top(w0, mask.num_remaining)
    assert mask.num_remaining == int(np.floor(0.1 * mask.num_weights + 0.5))
    same = all(np.array_equal(mask[n], by_magnitude[n]) for n in NAMES)
    assert same == (first == "magnitude_init")
    start, _ = kernels_at(os.path.join(rep, "phase_1", "sparse"), "init")
    for n in NAMES:
        np.testing.assert_array_equal(start[n], np.where(mask[n], w0[n], 0))


@pytest.mark.parametrize("how", ["zero", "previous"])
def test_regrown_weights_start_at_zero_or_previous_values(tmp_path, how):
    rep, _ = run(tmp_path, f"DynamicImpHparams.regrow_init = '{how}'",
                 "DynamicImpHparams.change_points = ('12it',)")
    mask = Mask.load(os.path.join(rep, "phase_1", "mask"))
    w0, _ = kernels_at(os.path.join(rep, "phase_1", "dense"), "init")
    sparse_end, _ = kernels_at(os.path.join(rep, "phase_1", "sparse"), "end")
    hybrid, _ = kernels_at(os.path.join(rep, "phase_2", "dense"), "init")
    for n in NAMES:
        regrown = w0[n] if how == "previous" else np.zeros_like(w0[n])
        np.testing.assert_array_equal(hybrid[n], np.where(mask[n], sparse_end[n], regrown))


def test_gradient_regrowth_against_numpy(tmp_path):
    rep, result = run(tmp_path, "DynamicImpHparams.regrow = 'gradient'",
                      "DynamicImpHparams.change_points = ('12it',)")
    mask = Mask.load(os.path.join(rep, "phase_1", "mask"))
    regrown = Mask.load(os.path.join(rep, "phase_1", "regrown"))
    # The dense gradient of S_1 on the training batch at the change point.
    from tflottery import data
    from tflottery.hparams import DatasetHparams
    model = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=1))
    checkpoints.restore_weights(model, os.path.join(rep, "phase_1", "sparse", "checkpoints"), "end")
    kernels = {n: v.numpy() for n, v in masking.prunable_variables(model).items()}
    biases = {layer.layer.name: layer.layer.bias.numpy() for layer in model.layers
              if hasattr(layer, "layer")}
    dataset = data.build(DatasetHparams(name="synthetic", batch_size=32))
    images, labels = training_batch(dataset, 0, 12)
    grads = numpy_dense_gradient(kernels, biases, images, labels)
    for n in NAMES:
        count = min(int(mask[n].sum()), int((~mask[n]).sum()))
        assert regrown[n].sum() == count and not (regrown[n] & mask[n]).any()
        scores = np.where(mask[n], -1.0, np.abs(grads[n])).ravel()
        expected = np.zeros(scores.size, bool)
        expected[np.argsort(-scores, kind="stable")[:count]] = True
        assert (expected != regrown[n].ravel()).sum() <= 2, n     # float32 near-ties
    # The next phase trains with mask m_1 | g_1 and keeps 10% of all weights from it.
    _, hybrid_mask = kernels_at(os.path.join(rep, "phase_2", "dense"), "init")
    assert hybrid_mask == Mask({n: mask[n] | regrown[n] for n in NAMES})
    second = Mask.load(os.path.join(rep, "phase_2", "mask"))
    assert second.num_remaining == mask.num_remaining
    assert all(not (second[n] & ~hybrid_mask[n]).any() for n in NAMES)
    kept = sum(int((regrown[n] & second[n]).sum()) for n in NAMES) / second.num_remaining
    assert result["phases"][1]["regrown_kept"] == kept


def test_mask_helpers_by_hand():
    current = Mask({"a": np.array([True, True, True, False]), "b": np.array([True, True])})
    weights = {"a": np.array([0.5, -3.0, 1.0, 9.0]), "b": np.array([2.0, -0.1])}
    # Global: keep round(0.5 * 6) = 3 of the allowed: |-3|, 2, 1 (9.0 is pruned already).
    m = magnitude_mask(weights, current, 0.5, "global")
    assert m == Mask({"a": np.array([False, True, True, False]), "b": np.array([True, False])})
    # Layerwise: a keeps 2 of 4, b keeps 1 of 2; 'b' excluded stays as it is.
    m = magnitude_mask(weights, current, 0.5, "layerwise", excluded=["b"])
    assert m == Mask({"a": np.array([False, True, True, False]), "b": np.array([True, True])})
    # Partial regrowth: as many as a layer keeps (1 here), the largest scores among its pruned.
    one = Mask({"a": np.array([True, False, False, False]), "b": np.array([True, False])})
    g = regrown_set(one, "random", {"a": np.array([0.9, 0.2, 0.3, 0.1]), "b": np.ones(2)},
                    excluded=["b"])
    assert g == Mask({"a": np.array([False, False, True, False]), "b": np.array([False, False])})
    assert regrown_set(m, "all") == Mask({n: ~m[n] for n in m})


def fresh_kernels(seed):
    model = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=seed))
    return {n: v.numpy() for n, v in masking.prunable_variables(model).items()}


def overlap_by_hand(previous, new):
    added = sum(int((new[n] & ~previous[n]).sum()) for n in NAMES)
    removed = sum(int((previous[n] & ~new[n]).sum()) for n in NAMES)
    return {"new_not_in_previous": added / sum(int(new[n].sum()) for n in NAMES),
            "previous_not_in_new": removed / sum(int(previous[n].sum()) for n in NAMES)}


@pytest.mark.parametrize("fraction", [0.5, 0.95])
def test_min_overlap_against_numpy(tmp_path, fraction):
    # The rule: of the k weights m_2 keeps, q = ceil(f k) are the largest |D_2| inside m_1,
    # the other k - q the largest |D_2| of all the rest (inside m_1 or not).
    rep, result = run(tmp_path, f"DynamicImpHparams.min_overlap = {fraction}",
                      "DynamicImpHparams.change_points = ('12it',)")
    first = Mask.load(os.path.join(rep, "phase_1", "mask"))
    second = Mask.load(os.path.join(rep, "phase_2", "mask"))
    trained, _ = kernels_at(os.path.join(rep, "phase_2", "dense"), "end")
    keep = first.num_remaining
    q = math.ceil(fraction * keep)
    from_first = numpy_top(trained, q, allowed=first)
    rest = numpy_top(trained, keep - q, allowed={n: ~from_first[n] for n in NAMES})
    for n in NAMES:
        np.testing.assert_array_equal(second[n], from_first[n] | rest[n])
    plain = numpy_top(trained, keep)
    shared = sum(int((plain[n] & first[n]).sum()) for n in NAMES)
    record = result["phases"][1]
    assert record["unconstrained_overlap_with_previous"] == overlap_by_hand(first, plain)
    assert record["overlap_with_previous"] == overlap_by_hand(first, second)
    assert 1 - record["overlap_with_previous"]["new_not_in_previous"] >= fraction
    if fraction == 0.95:
        assert shared < q              # the constraint changed the mask here
    else:
        assert shared >= q             # not binding: exactly the plain magnitude mask
        assert all(np.array_equal(second[n], plain[n]) for n in NAMES)
    assert result["min_overlap"] == fraction


@pytest.mark.parametrize("variant", ["grow_random", "grow_gradient", "recipe"])
def test_growth_instead_of_the_second_imp_phase_against_numpy(tmp_path, variant):
    # m_2 = the survivors of m_1 in S_1 (m_1 without the round(0.8 k) smallest |w|, over
    # all layers) | as many grown per layer as it dropped, outside the survivors; phase 2 has
    # no dense training: its sparse training starts at the change point from S_1's
    # survivors with the grown weights at a fresh sample of the initializer.
    if variant == "recipe":
        gin_files.parse(["dynamic_imp_recipe.gin"], SMALL_RUN)
        result = runner.run(str(tmp_path))
        (rep,) = glob.glob(str(tmp_path / "dynamic_imp_*" / "replicate_0"))
        assert not os.path.exists(os.path.join(rep, "phase_1", "dense"))
        w0 = fresh_kernels(0)
        total = sum(w0[n].size for n in NAMES)
        assert Mask.load(os.path.join(rep, "phase_1", "mask")) == Mask(
            numpy_top(w0, int(np.floor(0.1 * total + 0.5))))
    else:
        rep, result = run(tmp_path, f"DynamicImpHparams.next_mask = '{variant}'",
                          "DynamicImpHparams.change_points = ('12it',)")
    assert result["change_points"] == [12]
    assert not os.path.exists(os.path.join(rep, "phase_2", "dense"))
    first = Mask.load(os.path.join(rep, "phase_1", "mask"))
    second = Mask.load(os.path.join(rep, "phase_2", "mask"))
    grown = Mask.load(os.path.join(rep, "phase_1", "regrown"))
    sparse_end, _ = kernels_at(os.path.join(rep, "phase_1", "sparse"), "end")
    keep = first.num_remaining
    kept = numpy_top(sparse_end, keep - int(np.floor(0.8 * keep + 0.5)), allowed=first)
    if variant == "grow_gradient":
        from tflottery import data
        from tflottery.hparams import DatasetHparams
        model = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=1))
        checkpoints.restore_weights(model, os.path.join(rep, "phase_1", "sparse", "checkpoints"),
                                    "end")
        biases = {layer.layer.name: layer.layer.bias.numpy() for layer in model.layers
                  if hasattr(layer, "layer")}
        dataset = data.build(DatasetHparams(name="synthetic", batch_size=32))
        images, labels = training_batch(dataset, 0, 12)
        scores = {n: np.abs(g) for n, g in
                  numpy_dense_gradient(sparse_end, biases, images, labels).items()}
        slack = 2                                                  # float32 near-ties
    else:
        rng = np.random.default_rng(seed_of(0, "regrow", 1))       # SET's seeded scores
        scores = {n: rng.random(sparse_end[n].shape) for n in sorted(sparse_end)}
        slack = 0
    for n in NAMES:
        count = int(first[n].sum() - kept[n].sum())
        flat = np.where(kept[n], -1.0, scores[n]).ravel()
        expected = np.zeros(flat.size, bool)
        expected[np.argsort(-flat, kind="stable")[:count]] = True
        assert int(grown[n].sum()) == count and not (grown[n] & kept[n]).any()
        assert (expected != grown[n].ravel()).sum() <= slack, n
        np.testing.assert_array_equal(second[n], kept[n] | grown[n])
    assert second.num_remaining == keep                      # the density never changes
    start, start_mask = kernels_at(os.path.join(rep, "phase_2", "sparse"), "init")
    assert start_mask == second
    fresh = fresh_kernels(seed_of(0, "fresh", 1))
    for n in NAMES:
        np.testing.assert_array_equal(
            start[n], np.where(grown[n], fresh[n], np.where(second[n], sparse_end[n], 0)))
    record = result["phases"][1]
    assert record["dense_test_accuracy"] is None
    assert record["overlap_with_previous"] == overlap_by_hand(first, second)
    assert record["regrown_kept"] == grown.num_remaining / keep
    assert result["phases"][0]["regrown"] == grown.num_remaining
    saved = json.load(open(os.path.join(rep, "dynamic_imp.json")))
    assert saved["next_mask"] == ("grow_random" if variant == "recipe" else variant)
    assert saved["drop_fraction"] == 0.8


def test_growth_with_two_change_points_and_previous_values(tmp_path):
    # Phase 3 grows from phase 2's mask; 'previous' is H_(i-1): W0 for phase 1's growth,
    # H_1 (S_1's survivors and grown weights, the rest 0) for phase 2's.
    rep, result = run(tmp_path, "DynamicImpHparams.next_mask = 'grow_random'",
                      "DynamicImpHparams.regrow_init = 'previous'",
                      "DynamicImpHparams.drop_fraction = 0.5",
                      "DynamicImpHparams.scope = 'layerwise'")
    assert [p["phase"] for p in result["phases"]] == [1, 2, 3]
    assert not glob.glob(os.path.join(rep, "phase_[23]", "dense"))
    w0, _ = kernels_at(os.path.join(rep, "phase_1", "dense"), "init")
    hybrid_start = w0
    for i in (1, 2):
        mask = Mask.load(os.path.join(rep, f"phase_{i}", "mask"))
        nxt = Mask.load(os.path.join(rep, f"phase_{i + 1}", "mask"))
        grown = Mask.load(os.path.join(rep, f"phase_{i}", "regrown"))
        end, _ = kernels_at(os.path.join(rep, f"phase_{i}", "sparse"), "end")
        for n in NAMES:
            # Layerwise: each layer drops round(0.5 * its kept) of its smallest |w|.
            k = int(mask[n].sum())
            flat = np.where(mask[n], np.abs(end[n]), -1.0).ravel()
            kept = np.zeros(flat.size, bool)
            kept[np.argsort(-flat, kind="stable")[:k - int(np.floor(0.5 * k + 0.5))]] = True
            kept = kept.reshape(mask[n].shape)
            np.testing.assert_array_equal(nxt[n], kept | grown[n])
            assert int(grown[n].sum()) == k - int(kept.sum())
        start, _ = kernels_at(os.path.join(rep, f"phase_{i + 1}", "sparse"), "init")
        hybrid = {n: np.where(grown[n], hybrid_start[n], end[n]) for n in NAMES}
        for n in NAMES:
            np.testing.assert_array_equal(start[n], np.where(nxt[n], hybrid[n], 0))
        hybrid_start = hybrid


def test_growth_and_overlap_helpers_by_hand():
    weights = {"a": np.array([0.5, -3.0, 1.0, 9.0]), "b": np.array([2.0, -0.1])}
    everything = Mask({"a": np.ones(4, bool), "b": np.ones(2, bool)})
    previous = Mask({"a": np.array([True, False, False, False]), "b": np.array([False, True])})
    # Plain: keep 3 = 9, |-3|, 2; none of them in previous.
    plain = magnitude_mask(weights, everything, 0.5, "global")
    assert plain == Mask({"a": np.array([False, True, False, True]), "b": np.array([True, False])})
    # min_overlap 0.5: ceil(1.5) = 2 from previous (0.5 and |-0.1|), then 9.
    m = magnitude_mask(weights, everything, 0.5, "global", previous=previous, min_overlap=0.5)
    assert m == Mask({"a": np.array([True, False, False, True]), "b": np.array([False, True])})
    # 0.3: ceil(0.9) = 1 from previous (0.5), then 9 and |-3|.
    m = magnitude_mask(weights, everything, 0.5, "global", previous=previous, min_overlap=0.3)
    assert m == Mask({"a": np.array([True, True, False, True]), "b": np.array([False, False])})
    # Survivors: drop round(0.5 * 3) = 2 of plain's 3 globally (|-3| and 2), keep 9.
    kept = survivors(plain, weights, 0.5, "global")
    assert kept == Mask({"a": np.array([False, False, False, True]), "b": np.zeros(2, bool)})
    # Grow per layer as many as it dropped (a: 1, b: 1), outside the survivors.
    g = grown_set(plain, kept, {"a": np.array([0.1, 0.2, 0.9, 5.0]), "b": np.array([0.3, 0.4])})
    assert g == Mask({"a": np.array([False, False, True, False]), "b": np.array([False, True])})
    # Layerwise survivors: a drops round(1) of its 2, b round(0.5) = 1 of its 1.
    kept = survivors(plain, weights, 0.5, "layerwise", excluded=["b"])
    assert kept == Mask({"a": np.array([False, False, False, True]), "b": plain["b"]})


def test_a_rerun_of_a_deleted_phase_gives_the_same_results(tmp_path):
    # 0.5: half of the 24 training steps, the change point at 12 it.
    rep, first = run(tmp_path, "DynamicImpHparams.change_points = (0.5,)")
    assert first["change_points"] == [12]
    shutil.rmtree(os.path.join(rep, "phase_2"))
    os.remove(os.path.join(rep, "dynamic_imp.json"))
    gin.clear_config()
    _, second = run(tmp_path, "DynamicImpHparams.change_points = (0.5,)")
    assert first == second


@pytest.mark.parametrize("deleted", [("phase_2",), ("phase_2", "phase_1/regrown")])
def test_growth_rerun_of_a_deleted_phase_gives_the_same_results(tmp_path, deleted):
    bindings = ("DynamicImpHparams.next_mask = 'grow_gradient'",
                "DynamicImpHparams.change_points = ('12it',)")
    rep, first = run(tmp_path, *bindings)
    masks = {name: Mask.load(os.path.join(rep, name)) for name in ("phase_1/regrown",
                                                                   "phase_2/mask")}
    for name in deleted:
        shutil.rmtree(os.path.join(rep, name))
    os.remove(os.path.join(rep, "dynamic_imp.json"))
    gin.clear_config()
    _, second = run(tmp_path, *bindings)
    assert first == second
    for name, mask in masks.items():
        assert Mask.load(os.path.join(rep, name)) == mask


def test_growth_sigkill_in_the_grown_phase_then_rerun_equals_uninterrupted(tmp_path):
    # Killed in phase 2's sparse training, whose start (S_1's survivors and the grown
    # weights) a new process rebuilds from phase 1's files (test_dst.py's SIGKILL test).
    sigkill_then_rerun(tmp_path, "dynamic_imp",
                       ["TrainingHparams.training_steps = '800it'",
                        "TrainingHparams.eval_every = '100it'",
                        "DynamicImpHparams.first_mask = 'magnitude_init'",
                        "DynamicImpHparams.next_mask = 'grow_gradient'"], "phase_2/sparse",
                       ["dynamic_imp.json", "phase_2/sparse/final.json"],
                       ["phase_1/mask", "phase_2/mask", "phase_1/regrown"])
    (rep,) = glob.glob(str(tmp_path / "straight" / "*" / "replicate_0"))
    assert not os.path.exists(os.path.join(rep, "phase_2", "dense"))


@pytest.mark.parametrize("binding, message", [
    ("DynamicImpHparams.change_points = ('16it', '8it')", "must increase strictly"),
    ("DynamicImpHparams.change_points = ('24it',)", "before the end of training"),
    ("DynamicImpHparams.change_points = ('0it',)", "after step 0"),
    ("DynamicImpHparams.change_points = ()", "change_points is empty"),
    ("DynamicImpHparams.change_points = (1.5,)", "neither a step"),
    ("DynamicImpHparams.change_points = (0.25, '4it')", "must increase strictly"),
    ("DynamicImpHparams.sparsity = 1.0", "DynamicImpHparams.sparsity must be a number in"),
    ("DynamicImpHparams.regrow = 'hebbian'", "unknown DynamicImpHparams.regrow 'hebbian'"),
    ("DynamicImpHparams.first_mask = 'snip'", "unknown DynamicImpHparams.first_mask 'snip'"),
    ("DynamicImpHparams.regrow_init = 'ones'", "unknown DynamicImpHparams.regrow_init"),
    ("DynamicImpHparams.next_mask = 'grow'", "unknown DynamicImpHparams.next_mask 'grow'"),
    ("DynamicImpHparams.min_overlap = 1.5", "min_overlap must be a number in"),
    ("DynamicImpHparams.drop_fraction = 1.5", "drop_fraction must be a number in"),
    ("DynamicImpHparams.drop_fraction = 0.5", "drop_fraction applies to next_mask"),
    ("DynamicImpHparams.next_mask = 'grow_random'\nDynamicImpHparams.min_overlap = 0.5",
     "min_overlap applies to the next IMP phase"),
    ("DynamicImpHparams.next_mask = 'grow_random'\nDynamicImpHparams.regrow = 'gradient'",
     "regrow 'gradient' chooses what the next IMP phase trains"),
])
def test_bad_settings_fail_before_writing(tmp_path, binding, message):
    gin_files.parse([], DYNAMIC + binding.split("\n"))
    with pytest.raises(ConfigError, match=message):
        runner.run(str(tmp_path))
    assert not os.listdir(tmp_path)
