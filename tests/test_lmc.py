"""The instability experiment end to end on small synthetic data: curves,
barriers recomputed from the saved curves, copies and seeds, IMP masks
reused from the lottery run, per-epoch instability, bad inputs."""
from conftest import SMALL_RUN  # noqa: E402
import glob
import json
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from tflottery import data, gin_files, masking, models, runner
from tflottery.errors import ConfigError
from tflottery.hparams import DatasetHparams, TrainingHparams
from tflottery.training.loop import Trainer

BASE = SMALL_RUN + [
    "InstabilityHparams.num_alphas = 5",
]


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def run(root, experiment, *bindings):
    gin.clear_config()
    gin_files.parse([], BASE + [f"ExperimentHparams.name = '{experiment}'"] + list(bindings))
    return runner.run(str(root))


def test_dense_instability_records(tmp_path):
    run(tmp_path, "lmc", "InstabilityHparams.rewind_steps = ('0it', '1ep')",
        "InstabilityHparams.per_epoch = True")
    (run_dir,) = glob.glob(str(tmp_path / "lmc_*"))
    for k in (0, 8):
        out = os.path.join(run_dir, "replicate_0", f"k_{k}")
        rec = json.load(open(os.path.join(out, "instability.json")))
        assert os.path.exists(os.path.join(out, "instability.png"))
        for split in ("test", "train"):
            curve = rec["curves"][split]
            assert curve["alpha"] == pytest.approx(np.linspace(0, 1, 5).tolist())
            errors = np.array(curve["error"])
            np.testing.assert_allclose(errors, 1 - np.array(curve["accuracy"]), atol=1e-6)
            assert rec["barrier"][split] == pytest.approx(errors.max() - (errors[0] + errors[-1]) / 2)
        # The path's end points are the two trained copies.
        for i, end in enumerate((0, -1)):
            final = json.load(open(os.path.join(out, f"copy_{i}", "final.json")))
            assert rec["curves"]["test"]["accuracy"][end] == pytest.approx(final["test_accuracy"],
                                                                           abs=1e-6)
            metrics = [json.loads(l) for l in open(os.path.join(out, f"copy_{i}", "metrics.jsonl"))]
            assert metrics[0]["step"] == k and metrics[-1]["step"] == 24
        d = rec["distances"]
        assert d["l2_copies"] > 0 and 0 < d["cosine_copies"] < 1
        assert (d["l2_init_to_k"] == 0.0) == (k == 0)
        assert [row["step"] for row in rec["per_epoch"]] == [s for s in (8, 16, 24) if s > k]
    table = json.load(open(os.path.join(run_dir, "instability_summary.json")))
    assert [r["k"] for r in table["rows"]] == [0, 8]


def test_same_seed_same_copy_different_seed_different_copy(tmp_path):
    dataset = data.build(DatasetHparams(name="synthetic", batch_size=32))
    strategy = tf.distribute.get_strategy()
    hp = TrainingHparams(lr=0.05, momentum=0.9, training_steps="16it", eval_every="8it")
    finals = []
    for i, seed in enumerate((5, 5, 6)):
        model = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=0))
        Trainer(strategy, model, dataset, hp, seed, str(tmp_path / str(i))).run()
        finals.append(model.get_weights())
    for a, b in zip(finals[0], finals[1]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(finals[0][0], finals[2][0])


def test_imp_subnetwork_reuses_lottery_masks(tmp_path):
    lottery = ["PruningHparams.levels = 1", "LotteryHparams.rewind_step = '8it'"]
    run(tmp_path, "lottery", *lottery)
    (lottery_dir,) = glob.glob(str(tmp_path / "lottery_*"))
    level_final = os.path.join(lottery_dir, "replicate_0", "level_1", "train", "final.json")
    before = os.stat(level_final).st_mtime_ns
    run(tmp_path, "lmc", *lottery, "InstabilityHparams.subnetwork = 'imp'",
        "InstabilityHparams.level = 1", "InstabilityHparams.rewind_steps = ('8it',)")
    assert os.stat(level_final).st_mtime_ns == before        # not recomputed
    assert glob.glob(str(tmp_path / "lottery_*")) == [lottery_dir]
    (lmc_dir,) = glob.glob(str(tmp_path / "lmc_*"))
    rec = json.load(open(os.path.join(lmc_dir, "replicate_0", "k_8", "instability.json")))
    mask = masking.Mask.load(os.path.join(lottery_dir, "replicate_0", "level_1", "mask"))
    assert rec["density"] == pytest.approx(mask.density)
    level0 = json.load(open(os.path.join(lottery_dir, "replicate_0", "level_0", "train",
                                         "final.json")))
    assert rec["dense_accuracy"] == level0["test_accuracy"]


@pytest.mark.parametrize("binding,message", [
    ("InstabilityHparams.rewind_steps = ('30it',)", "not before the end of training"),
    ("InstabilityHparams.bn_mode = 'average'", "unknown instability bn_mode 'average'"),
    ("InstabilityHparams.copy_seeds = (3, 3)", "two different seeds"),
])
def test_bad_inputs(tmp_path, binding, message):
    with pytest.raises(ConfigError, match=message):
        run(tmp_path, "lmc", binding)
    assert not any(tmp_path.iterdir())


def test_imp_level_beyond_lottery_levels(tmp_path):
    with pytest.raises(ConfigError, match="IMP level 4 is not in the lottery run"):
        run(tmp_path, "lmc", "InstabilityHparams.subnetwork = 'imp'",
            "InstabilityHparams.level = 4", "PruningHparams.levels = 2")
    assert not any(tmp_path.iterdir())
