"""The 'pai' experiment: prune at (or early after) initialisation, train, ablate.

Run in-process on the small synthetic set; masks and starting weights are
checked against NumPy computations on the checkpoints the run saved."""
from conftest import SMALL_RUN  # noqa: E402
import glob
import json
import os

import gin
import numpy as np
import pytest

from test_lottery import KERNELS, numpy_global_prune, weights_at
from tflottery import gin_files, masking, models, runner
from tflottery.errors import ConfigError

PAI = SMALL_RUN + [
    "ExperimentHparams.name = 'pai'",
    "PaiHparams.method = 'magnitude'",
    "PaiHparams.target_sparsity = 0.75",
]


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def run_pai(root, *bindings):
    gin.clear_config()
    gin_files.parse([], PAI + list(bindings))
    result = runner.run(str(root))
    (run_dir,) = glob.glob(os.path.join(str(root), "pai_*"))
    return os.path.join(run_dir, "replicate_0"), result


def ones(weights):
    return {n: np.ones_like(weights[n], bool) for n in KERNELS}


def test_magnitude_at_init_with_ablations(tmp_path):
    rep, result = run_pai(tmp_path, "PaiAblationHparams.names = ('shuffle', 'reinit', 'invert')")
    mask = masking.Mask.load(os.path.join(rep, "mask"))
    # W0 is a pure function of the model seed (the replicate, 0): rebuild it
    # and prune it with an independent NumPy global magnitude ranking.
    plain = models.build("lenet_300_100", (8, 8, 1), 10, seed=0)
    w0 = {f"{l.name}/kernel": l.kernel.numpy() for l in plain.layers if hasattr(l, "kernel")}
    expected = numpy_global_prune(w0, ones(w0), 0.75)
    for n in KERNELS:
        np.testing.assert_array_equal(mask[n], expected[n])
    start = weights_at(os.path.join(rep, "train"), "init")
    for n in KERNELS:
        np.testing.assert_array_equal(start[n], np.where(mask[n], w0[n], 0.0))
    total = sum(mask[n].size for n in KERNELS)
    assert mask.num_remaining == int(np.floor(0.25 * total + 0.5))
    # 'invert' keeps the lowest-ranked weights, as many.
    inv_mask = masking.Mask.load(os.path.join(rep, "branch_invert", "mask"))
    expected_inv = numpy_global_prune(w0, ones(w0), 0.75, invert=True)
    for n in KERNELS:
        np.testing.assert_array_equal(inv_mask[n], expected_inv[n])

    shuffled = masking.Mask.load(os.path.join(rep, "branch_shuffle", "mask"))
    for n in KERNELS:
        assert shuffled[n].sum() == mask[n].sum()
    assert shuffled != mask
    w_shuffle = weights_at(os.path.join(rep, "branch_shuffle", "train"), "init")
    for n in KERNELS:   # W0 under the shuffled mask
        np.testing.assert_array_equal(w_shuffle[n], np.where(shuffled[n], w0[n], 0.0))

    reinit = masking.Mask.load(os.path.join(rep, "branch_reinit", "mask"))
    assert reinit == mask
    w_reinit = weights_at(os.path.join(rep, "branch_reinit", "train"), "init")
    for n in KERNELS:
        assert not np.allclose(w_reinit[n][mask[n]], w0[n][mask[n]])

    # Trained networks stay exactly sparse; results and statistics are recorded.
    w_end = weights_at(os.path.join(rep, "train"), "end")
    for n in KERNELS:
        assert np.all(w_end[n][~mask[n]] == 0)
    saved = json.load(open(os.path.join(rep, "pai.json")))
    assert saved["method"] == "magnitude" and saved["prune_step"] == 0
    assert saved["density"] == pytest.approx(mask.density)
    assert set(saved["branches"]) == {"shuffle", "reinit", "invert"}
    assert saved["test_accuracy"] == result["test_accuracy"]
    stats = json.load(open(os.path.join(rep, "mask", "statistics.json")))
    assert stats["density"] == pytest.approx(mask.density)
    assert os.path.exists(os.path.join(rep, "branch_shuffle", "mask", "statistics.json"))


def test_pruning_at_step_k_replays_or_continues_the_schedule(tmp_path):
    rep, _ = run_pai(tmp_path / "replay", "PaiHparams.prune_step = '8it'")
    w_k = weights_at(os.path.join(rep, "pretrain"), "end")
    mask = masking.Mask.load(os.path.join(rep, "mask"))
    expected = numpy_global_prune(w_k, ones(w_k), 0.75)
    for n in KERNELS:
        np.testing.assert_array_equal(mask[n], expected[n])
    start = weights_at(os.path.join(rep, "train"), "init")
    for n in KERNELS:
        np.testing.assert_array_equal(start[n], np.where(mask[n], w_k[n], 0.0))
    steps = [json.loads(l)["step"] for l in open(os.path.join(rep, "train", "metrics.jsonl"))]
    assert steps[0] == 0 and steps[-1] == 24          # the whole schedule, replayed

    rep, _ = run_pai(tmp_path / "continue", "PaiHparams.prune_step = '8it'",
                     "PaiHparams.schedule = 'continue'")
    steps = [json.loads(l)["step"] for l in open(os.path.join(rep, "train", "metrics.jsonl"))]
    assert steps[0] == 8 and steps[-1] == 24          # T - k steps


def test_rerun_reuses_finished_work(tmp_path):
    rep, first = run_pai(tmp_path)
    mtime = os.path.getmtime(os.path.join(rep, "train", "final.json"))
    _, second = run_pai(tmp_path)
    assert second["test_accuracy"] == first["test_accuracy"]
    assert os.path.getmtime(os.path.join(rep, "train", "final.json")) == mtime


def test_chunk_size_reaches_the_scorer(tmp_path, monkeypatch):
    # SNIP on LeNet (no BatchNorm): the batch (10 examples x 10 classes) in
    # chunks of at most 7 gives the same mask as in one pass; the spy shows
    # the value really reached prune_to_density.
    from tflottery import scoring
    seen, real = [], scoring.prune_to_density

    def spy(*args, **kwargs):
        seen.append(kwargs.get("chunk_size"))
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "prune_to_density", spy)
    masks = {}
    for chunk in ("7", "None"):
        rep, _ = run_pai(tmp_path / chunk, "PaiHparams.method = 'snip'",
                         f"PaiHparams.chunk_size = {chunk}")
        masks[chunk] = masking.Mask.load(os.path.join(rep, "mask"))
    assert seen == [7, None]
    assert masks["7"] == masks["None"]


@pytest.mark.parametrize("binding, message", [
    ("PaiHparams.method = 'snipp'", "unknown scorer 'snipp'"),
    ("PaiHparams.target_sparsity = 1.0", "target_sparsity must be a number in"),
    ("PaiHparams.prune_step = '24it'", "is not before the end of training"),
    ("PaiHparams.schedule = 'restart'", "unknown PaiHparams.schedule"),
    ("PaiAblationHparams.names = ('flip',)", "unknown ablation 'flip'"),
    ("PaiHparams.excluded_layers = ('fc_9',)", "excluded layer 'fc_9'"),
    ("PaiHparams.chunk_size = 0", r"PaiHparams.chunk_size must be >= 1 \(or None\), got 0"),
])
def test_bad_settings_fail_before_writing(tmp_path, binding, message):
    gin_files.parse([], PAI + [binding])
    with pytest.raises(ConfigError, match=message):
        runner.run(str(tmp_path))
    assert not os.listdir(tmp_path)
