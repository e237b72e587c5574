"""The lottery experiment (IMP, rewinding, LRR, branches, summaries), run
in-process on small synthetic data and checked against NumPy computations
on the weights it saved."""
from conftest import SMALL_RUN, run_module, wait_for  # noqa: E402
import glob
import json
import os
import signal
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf

from tflottery import gin_files, masking, models, runner
from tflottery.errors import ConfigError
from tflottery.reporting import summary
from tflottery.training import checkpoints

BASE = SMALL_RUN + [
    "ExperimentHparams.name = 'lottery'",
    "PruningHparams.levels = 2",
]


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def run_lottery(root, *bindings):
    gin.clear_config()
    gin_files.parse([], BASE + list(bindings))
    result = runner.run(str(root))
    (run_dir,) = glob.glob(os.path.join(str(root), "lottery_*"))
    return run_dir, result


def weights_at(phase_dir, name="end"):
    """{weight name: array} of a named checkpoint of a phase (incl. biases)."""
    model = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=12345))
    checkpoints.restore_weights(model, os.path.join(phase_dir, "checkpoints"), name)
    out = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        for w in inner.weights:
            out[f"{inner.name}/{w.name.split('/')[-1].split(':')[0]}"] = w.numpy()
    return out


def numpy_global_prune(kernels, mask, fraction, invert=False):
    """Independent global magnitude pruning: drop round(f * remaining) lowest |w|."""
    names = sorted(mask)
    scores = np.concatenate([np.abs(kernels[n]).ravel() for n in names])
    alive = np.concatenate([mask[n].ravel() for n in names])
    idx = np.flatnonzero(alive)
    order = idx[np.argsort(-scores[idx] if invert else scores[idx], kind="stable")]
    k = int(np.floor(fraction * idx.size + 0.5))
    keep = alive.copy()
    keep[order[:k]] = False
    out, start = {}, 0
    for n in names:
        size = mask[n].size
        out[n] = keep[start:start + size].reshape(mask[n].shape)
        start += size
    return out


KERNELS = ("fc_1/kernel", "fc_2/kernel", "output/kernel")


def test_imp_with_rewinding_matches_numpy(tmp_path):
    run_dir, _ = run_lottery(tmp_path, "LotteryHparams.rewind_step = '8it'")
    rep = os.path.join(run_dir, "replicate_0")
    w_k = weights_at(os.path.join(rep, "pretrain"), "end")
    assert json.load(open(os.path.join(rep, "pretrain/checkpoints/end/info.json")))["step"] == 8
    mask = {n: np.ones_like(w_k[n], bool) for n in KERNELS}
    for level in (1, 2):
        trained_before = weights_at(os.path.join(rep, f"level_{level - 1}", "train"))
        expected = numpy_global_prune(trained_before, mask, 0.2)
        saved = masking.Mask.load(os.path.join(rep, f"level_{level}", "mask"))
        for n in KERNELS:
            np.testing.assert_array_equal(saved[n], expected[n])
        # 20% of the *remaining* weights per level.
        assert saved.num_remaining == int(np.floor(0.8 * sum(m.sum() for m in mask.values()) + 0.5))
        # Rewinding: the level starts from W_k under the new mask, at step k.
        start = weights_at(os.path.join(rep, f"level_{level}", "train"), "init")
        for n in KERNELS:
            np.testing.assert_array_equal(start[n], np.where(expected[n], w_k[n], 0.0))
        for n in ("fc_1/bias", "output/bias"):
            np.testing.assert_array_equal(start[n], w_k[n])
        metrics = [json.loads(l) for l in open(os.path.join(rep, f"level_{level}/train/metrics.jsonl"))]
        assert metrics[0]["step"] == 8
        mask = expected


def test_lrr_keeps_trained_weights_and_replays_schedule(tmp_path):
    run_dir, _ = run_lottery(tmp_path, "LotteryHparams.mode = 'lrr'", "PruningHparams.levels = 1")
    rep = os.path.join(run_dir, "replicate_0")
    trained = weights_at(os.path.join(rep, "level_0", "train"))
    mask = masking.Mask.load(os.path.join(rep, "level_1", "mask"))
    start = weights_at(os.path.join(rep, "level_1", "train"), "init")
    for n in KERNELS:
        np.testing.assert_array_equal(start[n], np.where(mask[n], trained[n], 0.0))
    metrics = [json.loads(l) for l in open(os.path.join(rep, "level_1/train/metrics.jsonl"))]
    assert metrics[0]["step"] == 0 and metrics[-1]["step"] == 24


def test_branches(tmp_path):
    run_dir, _ = run_lottery(
        tmp_path, "PruningHparams.levels = 1",
        "BranchHparams.names = ('random_reinit', 'random_prune_global', "
        "'random_prune_layerwise', 'inverted', 'retrain')",
        "BranchHparams.data_seed = 77")
    level = os.path.join(run_dir, "replicate_0", "level_1")
    imp_mask = masking.Mask.load(os.path.join(level, "mask"))
    w_0 = weights_at(os.path.join(run_dir, "replicate_0", "pretrain"), "end")

    def branch(name):
        return (masking.Mask.load(os.path.join(level, f"branch_{name}", "mask")),
                weights_at(os.path.join(level, f"branch_{name}", "train"), "init"))

    mask, start = branch("random_reinit")
    assert mask == imp_mask
    for n in KERNELS:   # same mask, new values
        np.testing.assert_array_equal(start[n] == 0, ~imp_mask[n])
        assert not np.allclose(start[n][imp_mask[n]], w_0[n][imp_mask[n]])

    mask, start = branch("random_prune_layerwise")
    for n in KERNELS:
        assert mask[n].sum() == imp_mask[n].sum()
        np.testing.assert_array_equal(start[n], np.where(mask[n], w_0[n], 0.0))
    assert mask != imp_mask

    mask, _ = branch("random_prune_global")
    assert mask.num_remaining == imp_mask.num_remaining and mask != imp_mask
    # Uniform over all weights: each layer near the total density (fc_1 has 16k weights).
    assert abs(mask["fc_1/kernel"].mean() - mask.density) < 0.02

    mask, _ = branch("inverted")
    trained = weights_at(os.path.join(level, "..", "level_0", "train"))
    expected = numpy_global_prune(trained, {n: np.ones_like(trained[n], bool) for n in KERNELS},
                                  0.2, invert=True)
    for n in KERNELS:
        np.testing.assert_array_equal(mask[n], expected[n])

    (retrain_dir,) = glob.glob(os.path.join(level, "branch_retrain_*"))
    assert masking.Mask.load(os.path.join(retrain_dir, "mask")) == imp_mask
    retrained = weights_at(os.path.join(retrain_dir, "train"))
    original = weights_at(os.path.join(level, "train"))
    assert not np.array_equal(retrained["fc_1/kernel"], original["fc_1/kernel"])

    table = json.load(open(os.path.join(run_dir, "summary.json")))
    assert set(table["levels"][1]["branches"]) == {
        "random_reinit", "random_prune_global", "random_prune_layerwise", "inverted",
        os.path.basename(retrain_dir)[len("branch_"):]}


def test_more_levels_extend_the_same_run(tmp_path):
    run_dir, _ = run_lottery(tmp_path, "PruningHparams.levels = 1")
    end = os.path.join(run_dir, "replicate_0", "level_1", "train", "final.json")
    before = os.stat(end).st_mtime_ns
    run_dir2, _ = run_lottery(tmp_path, "PruningHparams.levels = 2")
    assert run_dir2 == run_dir and os.stat(end).st_mtime_ns == before   # level 1 not retrained
    assert os.path.exists(os.path.join(run_dir, "replicate_0", "level_2", "train", "final.json"))
    run_dir3, _ = run_lottery(tmp_path, "PruningHparams.target_sparsity = 0.3")  # 2 levels
    assert run_dir3 == run_dir


def test_one_shot_and_layerwise_rates(tmp_path):
    run_dir, _ = run_lottery(tmp_path / "a", "PruningHparams.one_shot = True",
                             "PruningHparams.target_sparsity = 0.7")
    mask = masking.Mask.load(os.path.join(run_dir, "replicate_0", "level_1", "mask"))
    assert not os.path.exists(os.path.join(run_dir, "replicate_0", "level_2"))
    assert mask.density == pytest.approx(0.3, abs=1e-5)
    run_dir, _ = run_lottery(tmp_path / "b", "PruningHparams.levels = 1",
                             "PruningHparams.scope = 'layerwise'",
                             "PruningHparams.layer_fractions = {'output': 0.1, 'fc_2': 0.0}")
    mask = masking.Mask.load(os.path.join(run_dir, "replicate_0", "level_1", "mask"))
    assert mask["fc_1/kernel"].mean() == pytest.approx(0.8, abs=1e-4)
    assert mask["fc_2/kernel"].all()
    assert mask["output/kernel"].sum() == 1000 - 100   # 100x10 output kernel at 10%


@pytest.mark.parametrize("binding,message", [
    ("PruningHparams.target_sparsity = 1.0", "target_sparsity must be in [0, 1)"),
    ("PruningHparams.fraction = 1.0", "pruning fraction must be in [0, 1)"),
    ("LotteryHparams.rewind_step = '30it'", "rewind_step '30it'"),
    ("BranchHparams.names = ('nope',)", "unknown branch 'nope'"),
    ("BranchHparams.levels = (5,)", "branch level 5 has not run"),
    ("PruningHparams.layer_fractions = {'fc_9': 0.0}", "not a prunable layer"),
    ("PruningHparams.scope = '2:4'\nPruningHparams.target_sparsity = 0.3",
     "PruningHparams.target_sparsity 0.3 is below 0.5"),
])
def test_bad_inputs_change_nothing_on_disk(tmp_path, binding, message):
    extra = [binding]
    if "levels = (5" in binding:
        extra.append("BranchHparams.names = ('random_reinit',)")
    with pytest.raises(ConfigError) as err:
        run_lottery(tmp_path, *extra)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not any(tmp_path.iterdir())


def write_fake_level(rep, level, density, acc, branches=()):
    d = os.path.join(rep, f"level_{level}")
    os.makedirs(os.path.join(d, "mask"))
    os.makedirs(os.path.join(d, "train"))
    json.dump({"total": {"density": density}}, open(os.path.join(d, "mask", "sparsity.json"), "w"))
    json.dump({"test_accuracy": acc}, open(os.path.join(d, "train", "final.json"), "w"))
    for name, bacc in branches:
        os.makedirs(os.path.join(d, f"branch_{name}", "train"))
        json.dump({"test_accuracy": bacc},
                  open(os.path.join(d, f"branch_{name}", "train", "final.json"), "w"))


def test_summary_table_by_hand(tmp_path):
    # Two replicates; dense 0.980 and 0.984 -> mean 0.982, threshold 0.980 at 0.2 points.
    for r, (dense, l1, l2, rnd1, rnd2) in enumerate([(0.980, 0.985, 0.979, 0.975, 0.950),
                                                      (0.984, 0.981, 0.979, 0.983, 0.940)]):
        rep = str(tmp_path / f"replicate_{r}")
        write_fake_level(rep, 0, 1.0, dense)
        write_fake_level(rep, 1, 0.8, l1, [("random_prune_global", rnd1)])
        write_fake_level(rep, 2, 0.64, l2, [("random_prune_global", rnd2)])
    table = summary.summarize(str(tmp_path), matching_tolerance=0.2)
    assert table["dense_accuracy"] == pytest.approx(0.982)
    l1, l2 = table["levels"][1], table["levels"][2]
    assert l1["imp"]["mean"] == pytest.approx(0.983) and l1["imp"]["matching"]
    assert (l1["imp"]["min"], l1["imp"]["max"], l1["imp"]["n"]) == (0.981, 0.985, 2)
    assert not l2["imp"]["matching"]                            # 0.979 < 0.980
    assert l1["branches"]["random_prune_global"]["mean"] == pytest.approx(0.979)
    assert not l1["branches"]["random_prune_global"]["matching"]
    assert table["highest_matching_sparsity"] == pytest.approx(0.2)
    assert table["nontrivial_levels"] == [1]
    text = summary.to_markdown(table)
    assert "| 1 | 80.00 | 98.30 (98.10-98.50) ✓ | 97.90 (97.50-98.30) |" in text
    png = summary.plot_run(str(tmp_path))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # The report command rebuilds the same table from the directory.
    result = run_module("tflottery.report", str(tmp_path), timeout=120)
    assert result.returncode == 0, result.stderr[-1000:]
    assert "| 1 | 80.00 | 98.30 (98.10-98.50) ✓ |" in result.stdout
    assert json.load(open(tmp_path / "summary.json"))["nontrivial_levels"] == [1]


def run_cli(root, *bindings, wait=True):
    cmd = [sys.executable, "-m", "tflottery.main", f"--root_dir={root}", "--deterministic"]
    cmd += [f"--gin_bindings={b}" for b in BASE + list(bindings)]
    cmd += ["--gin_file=" + os.path.join(gin_files.CONFIG_DIR, "quickstart.gin")]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True,
                            cwd=os.path.dirname(gin_files.CONFIG_DIR))
    if wait:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
    return proc


def test_sigkill_mid_level_then_rerun_equals_uninterrupted(tmp_path):
    # gin parses quickstart.gin first, then the bindings, which win.
    # Levels long enough (about a second) that the poll below sees level 1's
    # rolling checkpoint, which exists only while the level trains.
    bindings = ["TrainingHparams.training_steps = '1600it'", "TrainingHparams.eval_every = '160it'",
                "TrainingHparams.steps_per_loop = 8", "PruningHparams.levels = 2",
                "BranchHparams.names = ('random_prune_layerwise',)",
                "SummaryHparams.matching_tolerance = 0.2"]
    run_cli(tmp_path / "straight", *bindings)
    proc = run_cli(tmp_path / "killed", *bindings, wait=False)
    wait_for(str(tmp_path / "killed" / "*" / "replicate_0" / "level_1" / "train" / "checkpoints"
                 / "latest" / "checkpoint"), proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (killed_dir,) = glob.glob(str(tmp_path / "killed" / "*"))
    assert not os.path.exists(os.path.join(killed_dir, "replicate_0", "level_1", "train",
                                           "final.json"))
    run_cli(tmp_path / "killed", *bindings)
    (straight_dir,) = glob.glob(str(tmp_path / "straight" / "*"))
    assert os.path.basename(straight_dir) == os.path.basename(killed_dir)
    for sub in ("level_0/train", "level_1/train", "level_2/train",
                "level_1/branch_random_prune_layerwise/train"):
        a = json.load(open(os.path.join(straight_dir, "replicate_0", sub, "final.json")))
        b = json.load(open(os.path.join(killed_dir, "replicate_0", sub, "final.json")))
        assert a == b, sub   # bit-for-bit: losses compared as exact floats
    for level in (1, 2):
        a = masking.Mask.load(os.path.join(straight_dir, "replicate_0", f"level_{level}", "mask"))
        b = masking.Mask.load(os.path.join(killed_dir, "replicate_0", f"level_{level}", "mask"))
        assert a == b
    wa = weights_at(os.path.join(straight_dir, "replicate_0", "level_2", "train"))
    wb = weights_at(os.path.join(killed_dir, "replicate_0", "level_2", "train"))
    for n in wa:
        np.testing.assert_array_equal(wa[n], wb[n])


def test_rewinding_with_dilation_resolves_steps_once(tmp_path):
    # Dilation 2: training 48 it, rewind step '1ep' (8 it) becomes 16 it.
    run_dir, _ = run_lottery(tmp_path, "TrainingHparams.dilation = 2.0",
                             "LotteryHparams.rewind_step = '1ep'", "PruningHparams.levels = 1")
    rep = os.path.join(run_dir, "replicate_0")
    assert json.load(open(os.path.join(rep, "pretrain/checkpoints/end/info.json")))["step"] == 16
    metrics = [json.loads(l) for l in open(os.path.join(rep, "level_1/train/metrics.jsonl"))]
    assert metrics[0]["step"] == 16 and metrics[-1]["step"] == 48
