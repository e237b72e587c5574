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


def parse(experiment, *bindings):
    gin.clear_config()
    gin_files.parse([], BASE + [f"ExperimentHparams.name = '{experiment}'"] + list(bindings))


def run(root, experiment, *bindings):
    parse(experiment, *bindings)
    return runner.run(str(root))


def dry_run(root, experiment, *bindings):
    parse(experiment, *bindings)
    return runner.dry_run(str(root))


def report_summary(root):
    """The report's markdown instability table of the runs under `root`: one dict per row."""
    from tflottery.reporting import collect, tables
    lines = tables.lmc_summary(collect.collect(str(root))).split("\n\n")[0].splitlines()
    header, rows = lines[0], lines[2:]

    def cells(line):
        return [c.strip() for c in line.strip("|").split("|")]
    return [dict(zip(cells(header), cells(row))) for row in rows]


@pytest.fixture
def run_logs(monkeypatch):
    """The RunLogs the runner makes (to compare the steps planned with those trained)."""
    from tflottery.training import run_log
    made = []

    class Recorded(run_log.RunLog):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(run_log, "RunLog", Recorded)
    return made


def test_dense_instability_records(tmp_path, run_logs, caplog):
    bindings = ("InstabilityHparams.rewind_steps = ('0it', '1ep')",
                "InstabilityHparams.per_epoch = True")
    # The plan: per k its pretraining to k, then the copies from k to the end.
    plan = dry_run(tmp_path, "lmc", *bindings)
    assert not any(tmp_path.iterdir())
    for line in ("k=0 / pretrain  steps 0..0", "k=0 / copy 1    steps 0..24",
                 "k=8 / pretrain  steps 0..8", "k=8 / copy 0    steps 8..24",
                 "88 training steps left of 88"):
        assert line in plan, plan
    with caplog.at_level("INFO", logger="absl"):
        result = run(tmp_path, "lmc", *bindings)
    assert "k=8 / pretrain: step 8/8" in caplog.text
    assert "k=8 / copy 1: step 24/24" in caplog.text
    assert "k=8: test instability" in caplog.text
    (log,) = run_logs
    assert log.trained_steps == log.planned_steps == 88     # the run's ETA counts every step
    assert result["accuracy_of"] == "k=8 / copy 0 (the last analysis)"
    (run_dir,) = glob.glob(str(tmp_path / "lmc_*"))
    for k in (0, 8):
        out = os.path.join(run_dir, "replicate_0", f"k_{k}")
        rec = json.load(open(os.path.join(out, "instability.json")))
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
    # The report's table: no aligned columns without alignment; the soup's accuracy per k.
    (row,) = report_summary(tmp_path)
    assert not any("aligned" in column for column in row)
    soups = [json.load(open(os.path.join(run_dir, "replicate_0", f"k_{k}", "instability.json"))
                       )["soup"]["accuracy"]["test"] for k in (0, 8)]
    assert row["soup test accuracy % by k (it)"] == ", ".join(
        f"{k}: {100 * soup:.2f}" for k, soup in zip((0, 8), soups))


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
    lmc = (*lottery, "InstabilityHparams.subnetwork = 'imp'", "InstabilityHparams.levels = (1,)",
           "InstabilityHparams.rewind_steps = ('8it',)")
    # The plan names the lottery run's phases the copies need (already trained) and the copies.
    plan = dry_run(tmp_path, "lmc", *lmc)
    assert "level 1 / k=8 / copy 1  steps 8..24" in plan, plan
    assert plan.count("[finished: skipped]") == 3 and "32 training steps left of 72" in plan
    run(tmp_path, "lmc", *lmc)
    assert os.stat(level_final).st_mtime_ns == before        # not recomputed
    assert glob.glob(str(tmp_path / "lottery_*")) == [lottery_dir]
    (lmc_dir,) = glob.glob(str(tmp_path / "lmc_*"))
    rec = json.load(open(os.path.join(lmc_dir, "replicate_0", "level_1", "k_8",
                                      "instability.json")))
    mask = masking.Mask.load(os.path.join(lottery_dir, "replicate_0", "level_1", "mask"))
    assert rec["density"] == pytest.approx(mask.density)
    level0 = json.load(open(os.path.join(lottery_dir, "replicate_0", "level_0", "train",
                                         "final.json")))
    assert rec["dense_accuracy"] == level0["test_accuracy"]


@pytest.mark.parametrize("binding,message", [
    ("InstabilityHparams.rewind_steps = ('30it',)", "not before the end of training"),
    ("InstabilityHparams.bn_mode = 'average'", "unknown instability bn_mode 'average'"),
    ("InstabilityHparams.copy_seeds = (3, 3)", "two or more different seeds"),
    ("InstabilityHparams.align = 'average'", "unknown instability align 'average'"),
    ("InstabilityHparams.align_restarts = 0", r"align_restarts must be in \[1, 100\]"),
    ("InstabilityHparams.align_restarts = 2", "restarts weight matching, but align is None"),
    ("InstabilityHparams.align = 'activations'\nInstabilityHparams.align_restarts = 2",
     "but align is 'activations'"),
    ("InstabilityHparams.subnetwork = 'independent'\nInstabilityHparams.rewind_steps = ('8it',)",
     "only k = 0 is defined"),
])
def test_bad_inputs(tmp_path, binding, message):
    with pytest.raises(ConfigError, match=message):
        run(tmp_path, "lmc", binding)
    assert not any(tmp_path.iterdir())


def test_imp_level_beyond_lottery_levels(tmp_path):
    with pytest.raises(ConfigError, match="IMP level 4 is not in the lottery run"):
        run(tmp_path, "lmc", "InstabilityHparams.subnetwork = 'imp'",
            "InstabilityHparams.levels = (1, 4)", "PruningHparams.levels = 2")
    assert not any(tmp_path.iterdir())


def test_random_reinit_control_uses_the_imp_mask_with_fresh_weights(tmp_path):
    run(tmp_path, "lmc", "PruningHparams.levels = 1", "InstabilityHparams.subnetwork = "
        "'random_reinit'", "InstabilityHparams.levels = (1,)")
    (lottery_dir,) = glob.glob(str(tmp_path / "lottery_*"))
    (lmc_dir,) = glob.glob(str(tmp_path / "lmc_*"))
    mask = masking.Mask.load(os.path.join(lottery_dir, "replicate_0", "level_1", "mask"))
    out = os.path.join(lmc_dir, "replicate_0", "level_1", "k_0")
    start = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=3))
    from tflottery.training import checkpoints
    checkpoints.restore_weights(start, os.path.join(out, "copy_0", "checkpoints"), "init")
    assert masking.get_mask(start) == mask
    w0 = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=0))   # replicate 0's W0
    kept = mask["fc_1/kernel"]
    a = masking.prunable_variables(start)["fc_1/kernel"].numpy()
    b = masking.prunable_variables(w0)["fc_1/kernel"].numpy()
    assert np.all(a[~kept] == 0) and not np.allclose(a[kept], b[kept])


def test_earliest_stable_and_matching_k_by_hand(tmp_path):
    from tflottery.hparams import SummaryHparams
    from tflottery.reporting import instability
    # Test barriers (fractions) and accuracies per replicate at k = 0, 100, 500;
    # dense accuracy 0.90; threshold 2 points; tolerance 0.2 points.
    table = {0: [(0.05, 0.88), (0.01, 0.90), (0.00, 0.90)],     # stable from 100, matching 100
             1: [(0.05, 0.88), (0.03, 0.89), (0.01, 0.899)],    # stable from 500, matching 500
             2: [(0.05, 0.88), (0.04, 0.85), (0.03, 0.85)]}     # never
    for rep, values in table.items():
        for k, (barrier, acc) in zip((0, 100, 500), values):
            out = tmp_path / f"replicate_{rep}" / "level_2" / f"k_{k}"
            out.mkdir(parents=True)
            json.dump({"level": 2, "k": k, "rewind_step": f"{k}it", "subnetwork": "imp",
                       "density": 0.64, "barrier": {"test": barrier, "train": barrier / 2},
                       "end_accuracy": [acc, acc], "dense_accuracy": 0.90},
                      open(out / "instability.json", "w"))
    result = instability.summarize(str(tmp_path), SummaryHparams())
    # Per replicate earliest stable k: 100, 500, never -> median 500; same for matching.
    assert result["earliest"] == [{"level": 2, "stable_k": 500.0, "matching_k": 500.0}]
    row = [r for r in result["rows"] if r["k"] == 100][0]
    assert row["test_barrier_mean"] == pytest.approx((0.01 + 0.03 + 0.04) / 3)
    assert row["test_barrier_std"] == pytest.approx(np.std([0.01, 0.03, 0.04]))
    assert row["stable"] is False     # mean 2.67 points >= 2
    text = instability.to_markdown(result)
    assert "earliest stable k (median over replicates) 500, earliest matching k 500" in text
    assert "Stable: test instability below 2 points" in text   # numbers as written, not 2.0


def end_weights(out, i, seed=0):
    """Copy i's trained LeNet (8x8 synthetic inputs), loaded from its 'end' checkpoint."""
    from tflottery.training import checkpoints
    model = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=seed))
    checkpoints.restore_weights(model, os.path.join(out, f"copy_{i}", "checkpoints"), "end")
    return model


def test_accuracy(model):
    """Accuracy on the synthetic test split, computed here with NumPy from model(x)."""
    dataset = data.build(DatasetHparams(name="synthetic", batch_size=32))
    correct = total = 0
    for images, labels in dataset.eval_dataset("test"):
        real = labels.numpy() >= 0
        predicted = np.argmax(model(images, training=False).numpy(), axis=-1)
        correct += int(np.sum((predicted == labels.numpy())[real]))
        total += int(real.sum())
    return correct / total


test_accuracy.__test__ = False   # a helper, not a test


def averaged(members):
    soup = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=0))
    soup.set_weights([np.mean(ws, axis=0) for ws in zip(*[m.get_weights() for m in members])])
    return soup


def test_independent_copies_aligned_by_weight_matching_with_a_soup_of_three(tmp_path, monkeypatch):
    from tflottery.analysis import align
    from tflottery.training import checkpoints
    run(tmp_path, "lmc", "InstabilityHparams.subnetwork = 'independent'",
        "InstabilityHparams.align = 'weights'", "InstabilityHparams.copy_seeds = (1, 2, 3)",
        "InstabilityHparams.per_epoch = True")
    (run_dir,) = glob.glob(str(tmp_path / "lmc_*"))
    out = os.path.join(run_dir, "replicate_0", "k_0")
    rec = json.load(open(os.path.join(out, "instability.json")))
    # Copy 0 starts from the run's W0 (seed 0), copy i from seed 100000 * i.
    for i in range(3):
        init = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=0))
        checkpoints.restore_weights(init, os.path.join(out, f"copy_{i}", "checkpoints"), "init")
        fresh = models.build("lenet_300_100", (8, 8, 1), 10, seed=100000 * i)
        np.testing.assert_array_equal(init.get_weights()[0], fresh.get_weights()[0])
    aligned = rec["aligned"]
    assert aligned["method"] == "weights" and 0 < aligned["moved_fraction"] <= 1
    for split in ("test", "train"):
        raw_curve, curve = rec["curves"][split], aligned["curves"][split]
        assert aligned["barrier"][split] == pytest.approx(
            max(curve["error"]) - (curve["error"][0] + curve["error"][-1]) / 2)
        # Alignment keeps both end points' functions: copy 0 untouched, copy 1 permuted.
        assert curve["accuracy"][0] == raw_curve["accuracy"][0]
        assert curve["accuracy"][-1] == pytest.approx(raw_curve["accuracy"][-1], abs=2e-3)
    assert aligned["distances"]["l2_copies"] < rec["distances"]["l2_copies"]
    assert [set(r) for r in rec["per_epoch"]] == [{"step", "test_barrier",
                                                   "aligned_test_barrier"}] * 3
    # The soups, recomputed here: the plain mean of the three copies' end weights, and the
    # mean after permuting copies 1 and 2 to match copy 0 (no BN: nothing recomputed).
    copies = [end_weights(out, i) for i in range(3)]
    assert rec["soup"]["n"] == 3
    assert rec["soup"]["accuracy"]["test"] == pytest.approx(test_accuracy(averaged(copies)),
                                                            abs=1e-6)
    matched = [copies[0]] + [align.apply(c, align.weight_matching(copies[0], c))
                             for c in copies[1:]]
    assert rec["soup"]["aligned_accuracy"]["test"] == pytest.approx(
        test_accuracy(averaged(matched)), abs=1e-6)
    table = json.load(open(os.path.join(run_dir, "instability_summary.json")))
    (row,) = table["rows"]
    assert row["aligned_test_barrier_mean"] == pytest.approx(aligned["barrier"]["test"])
    assert row["soup_aligned_accuracy_mean"] == rec["soup"]["aligned_accuracy"]["test"]
    markdown = open(os.path.join(run_dir, "instability_summary.md")).read()
    assert "aligned test instability" in markdown and "aligned soup accuracy %" in markdown
    assert "| independent | - | 0 |" in markdown and "- independent: earliest stable" in markdown
    from tflottery.reporting import collect           # python -m tflottery.report's rows
    report_table = collect.collect(str(tmp_path))
    (report_row,) = report_table["instability"]
    assert report_row["align"] == "weights"
    assert report_row["aligned_test_instability"] == aligned["barrier"]["test"]
    assert report_row["aligned_curves"] == aligned["curves"]       # drawn dashed by the report
    from tflottery.reporting.figures import lmc as lmc_figures, style
    figures = []
    monkeypatch.setattr(style, "save", lambda fig, out_dir, name: figures.append(fig) or [name])
    lmc_figures.interpolation(report_table, str(tmp_path / "figures"))
    (test_axis, _) = figures[0].axes
    dashed = [line for line in test_axis.lines if line.get_linestyle() == "--"]
    # (labelled "... (on top of k = 0it)" where it lies on the raw curve: style.unhide_overlaps)
    assert [line.get_label().split(" (on top of")[0] for line in dashed] == ["k = 0it, aligned"]
    np.testing.assert_allclose(dashed[0].get_ydata(),
                               100 * np.array(aligned["curves"]["test"]["error"]))
    assert report_row["aligned_soup_accuracy"] == rec["soup"]["aligned_accuracy"]["test"]
    # The report's markdown table shows the aligned barriers beside the raw one, and the soups.
    (row,) = report_summary(tmp_path)
    expected = {"test instability (points) by k (it)": rec["barrier"]["test"],
                "aligned test instability (points) by k (it)": aligned["barrier"]["test"],
                "aligned train instability (points) by k (it)": aligned["barrier"]["train"],
                "soup test accuracy % by k (it)": rec["soup"]["accuracy"]["test"],
                "aligned soup test accuracy % by k (it)": rec["soup"]["aligned_accuracy"]["test"]}
    assert {column: row[column] for column in expected} == {
        column: f"0: {100 * value:.2f}" for column, value in expected.items()}


def test_alignment_restarts_keep_the_best_objective_and_report_the_spread(tmp_path, caplog):
    """align_restarts = 3: the aligned path uses the restart of the highest weight-matching
    objective (seeds 0, 1, 2 recomputed here from the copies' end weights); every
    restart's test barrier is listed with their spread; both barrier definitions are
    recorded and equal the NumPy formulas on the recorded curves."""
    from tflottery.analysis import align
    with caplog.at_level("INFO", logger="absl"):
        run(tmp_path, "lmc", "InstabilityHparams.subnetwork = 'independent'",
            "InstabilityHparams.align = 'weights'", "InstabilityHparams.align_restarts = 3")
    (run_dir,) = glob.glob(str(tmp_path / "lmc_*"))
    out = os.path.join(run_dir, "replicate_0", "k_0")
    rec = json.load(open(os.path.join(out, "instability.json")))
    restarts = rec["aligned"]["restarts"]
    a, b = end_weights(out, 0), end_weights(out, 1)
    objectives = [align.weight_matching(a, b, seed=seed).objective for seed in range(3)]
    assert [r["seed"] for r in restarts["runs"]] == [0, 1, 2]
    assert [r["objective"] for r in restarts["runs"]] == pytest.approx(objectives)
    assert restarts["chosen"] == int(np.argmax(objectives))
    chosen = restarts["runs"][restarts["chosen"]]
    assert chosen["test_barrier"] == pytest.approx(rec["aligned"]["barrier"]["test"], abs=1e-6)
    barriers = [r["test_barrier"] for r in restarts["runs"]]
    assert restarts["test_barrier_spread"] == pytest.approx(max(barriers) - min(barriers))
    assert (f"3 weight-matching restarts: test instability {100 * min(barriers):.2f} to "
            f"{100 * max(barriers):.2f} points (spread "
            f"{100 * restarts['test_barrier_spread']:.2f}); aligned by restart "
            f"{restarts['chosen']}") in caplog.text
    for measured in (rec, rec["aligned"]):
        for split, curve in measured["curves"].items():
            errors, alphas = np.array(curve["error"]), np.array(curve["alpha"])
            line = (1 - alphas) * errors[0] + alphas * errors[-1]
            assert measured["linear_barrier"][split] == pytest.approx(np.max(errors - line))
            assert measured["barrier"][split] == pytest.approx(
                errors.max() - (errors[0] + errors[-1]) / 2)
    # Both definitions in the report's table (saying which is which), the run's
    # summary and the instability figure (dotted lines).
    from tflottery.reporting import collect, tables
    from tflottery.reporting.figures import lmc as lmc_figures, style
    (row,) = report_summary(tmp_path)
    for column, value in (("test instability above the line (points) by k (it)",
                           rec["linear_barrier"]["test"]),
                          ("aligned test instability above the line (points) by k (it)",
                           rec["aligned"]["linear_barrier"]["test"])):
        assert row[column] == f"0: {100 * value:.2f}"
    report_table = collect.collect(str(tmp_path))
    assert "above the line: minus the straight line" in tables.lmc_summary(report_table)
    (summary_row,) = json.load(open(os.path.join(run_dir, "instability_summary.json")))["rows"]
    assert summary_row["test_linear_barrier_mean"] == pytest.approx(rec["linear_barrier"]["test"])
    assert summary_row["aligned_test_linear_barrier_mean"] == pytest.approx(
        rec["aligned"]["linear_barrier"]["test"])
    markdown = open(os.path.join(run_dir, "instability_summary.md")).read()
    assert "| test instability above the line |" in markdown
    figures = []
    original_save = style.save
    style.save = lambda fig, out_dir, name: figures.append(fig) or [name]
    try:
        lmc_figures.instability_vs_k(report_table, str(tmp_path / "figures"))
    finally:
        style.save = original_save
    lines = {line.get_label(): line for line in figures[0].axes[0].lines}
    (label,) = [label for label in lines if ", above the line" in label and "aligned" not in label]
    assert lines[label].get_ydata()[0] == pytest.approx(100 * rec["linear_barrier"]["test"])


def test_imp_subnetwork_aligned_by_activations_moves_its_mask(tmp_path):
    run(tmp_path, "lmc", "PruningHparams.levels = 1", "InstabilityHparams.subnetwork = 'imp'",
        "InstabilityHparams.levels = (1,)", "InstabilityHparams.align = 'activations'")
    (lmc_dir,) = glob.glob(str(tmp_path / "lmc_*"))
    rec = json.load(open(os.path.join(lmc_dir, "replicate_0", "level_1", "k_0",
                                      "instability.json")))
    aligned = rec["aligned"]
    assert aligned["method"] == "activations" and aligned["moved_fraction"] > 0
    for split in ("test", "train"):
        # The ends keep their functions under the union of the two (permuted) masks.
        assert aligned["curves"][split]["accuracy"][0] == rec["curves"][split]["accuracy"][0]
        assert aligned["curves"][split]["accuracy"][-1] == pytest.approx(
            rec["curves"][split]["accuracy"][-1], abs=2e-3)
    assert rec["density"] == pytest.approx(0.8, abs=0.01)
    assert set(rec["soup"]) == {"n", "accuracy", "aligned_accuracy"}


def test_independent_imp_subnetworks_come_from_two_lottery_replicates(tmp_path):
    from tflottery.training import checkpoints
    run(tmp_path, "lmc", "PruningHparams.levels = 1",
        "InstabilityHparams.subnetwork = 'independent_imp'", "InstabilityHparams.levels = (1,)",
        "InstabilityHparams.align = 'weights'")
    (lottery_dir,) = glob.glob(str(tmp_path / "lottery_*"))
    (lmc_dir,) = glob.glob(str(tmp_path / "lmc_*"))
    out = os.path.join(lmc_dir, "replicate_0", "level_1", "k_0")
    rec = json.load(open(os.path.join(out, "instability.json")))
    masks = [masking.Mask.load(os.path.join(lottery_dir, f"replicate_{r}", "level_1", "mask"))
             for r in (0, 100000)]
    assert masks[0] != masks[1]
    for i, (mask, seed) in enumerate(zip(masks, (0, 100000))):
        start = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=0))
        checkpoints.restore_weights(start, os.path.join(out, f"copy_{i}", "checkpoints"), "init")
        assert masking.get_mask(start) == mask
        w0 = models.build("lenet_300_100", (8, 8, 1), 10, seed=seed).get_weights()[0]
        np.testing.assert_array_equal(start.get_weights()[0], np.where(mask["fc_1/kernel"], w0, 0))
    assert rec["density"] == pytest.approx(masks[0].density)
    assert rec["aligned"]["moved_fraction"] > 0.5      # unrelated networks: most units move
    for split in ("test", "train"):
        raw, aligned = rec["curves"][split]["accuracy"], rec["aligned"]["curves"][split]["accuracy"]
        assert aligned[0] == raw[0] and aligned[-1] == pytest.approx(raw[-1], abs=2e-3)


def test_end_of_run_draws_the_per_epoch_figure_once_and_no_path_figure(tmp_path, capsys):
    """An analysis recorded with per_epoch gets instability_per_epoch.png at the run's end
    (redrawn only when its instability.json is newer); the error along the path is the
    report's interpolation figure, not a file of each analysis (#23)."""
    from tflottery.reporting import instability
    k_dir = tmp_path / "lmc_0123456789" / "replicate_0" / "k_0"
    k_dir.mkdir(parents=True)
    curve = {"alpha": [0.0, 0.5, 1.0], "error": [0.1, 0.3, 0.1]}
    (k_dir / "instability.json").write_text(json.dumps({
        "k": 0, "rewind_step": "0it", "density": 1.0, "end_accuracy": [0.9, 0.9],
        "barrier": {"test": 0.2, "train": 0.2}, "curves": {"test": curve, "train": curve},
        "per_epoch": [{"step": 8, "test_barrier": 0.3}, {"step": 16, "test_barrier": 0.2}]}))
    table = instability.end_of_run(str(tmp_path / "lmc_0123456789"), {})
    assert [(r["k"], r["test_barrier_mean"]) for r in table["rows"]] == [(0, 0.2)]
    figure = k_dir / "instability_per_epoch.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(k_dir)) == ["instability.json", "instability_per_epoch.png"]
    drawn = figure.stat().st_mtime_ns
    instability.end_of_run(str(tmp_path / "lmc_0123456789"), {})
    assert figure.stat().st_mtime_ns == drawn          # not stale: not drawn again
    capsys.readouterr()
