"""Training speed (thesis 3.3.6): holdout metrics recorded by the Trainer, the
early-stopping and dilation metrics against hand-made run directories (values
computed by hand here), and the report section's figures."""
from conftest import run_module, two_cpu_strategy  # noqa: F401,E402  (conftest sets up TensorFlow)
import glob
import json
import os

import pytest
import tensorflow as tf

from tflottery import data, masking, models, sweep
from tflottery.hparams import DatasetHparams, TrainingHparams
from tflottery.reporting import collect, speed
from tflottery.training.loop import Trainer, read_metrics


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def make_phase(phase_dir, test_accuracy, records=(), density=None, branch=None):
    """A finished phase: final.json, metrics.jsonl, and (beside it) mask/sparsity.json
    and branch.json when given."""
    write_json(os.path.join(phase_dir, "final.json"), {"step": 100, "test_accuracy": test_accuracy})
    with open(os.path.join(phase_dir, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    parent = os.path.dirname(phase_dir)
    if density is not None:
        write_json(os.path.join(parent, "mask", "sparsity.json"), {"total": {"density": density}})
    if branch is not None:
        write_json(os.path.join(parent, "branch.json"), branch)


def phases_of(run):
    """The finished phases of one run directory, as the report's collector finds them."""
    return speed.find_phases(collect.collect(str(run)))[str(run)]


def retrain(level, dilation):
    return {"name": "retrain", "level": level, "dilation": dilation, "data_seed": None}


def evals(holdout_losses, test_accuracies, every=100):
    """metrics.jsonl records: test and holdout evaluations every `every` steps."""
    out = []
    for i, (loss, acc) in enumerate(zip(holdout_losses, test_accuracies)):
        out.append({"step": i * every, "test_loss": 1.0, "test_accuracy": acc})
        out.append({"step": i * every, "holdout_loss": loss, "holdout_accuracy": 0.5})
    return out


# ---- the Trainer records the holdout ----
def test_trainer_records_holdout_metrics(tmp_path):
    dataset = data.build(DatasetHparams(name="synthetic", batch_size=32, holdout_fraction=0.25))
    strategy = tf.distribute.get_strategy()
    with strategy.scope():
        model = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=0))
    hp = TrainingHparams(optimizer="sgd", lr=0.05, training_steps="16it", eval_every="8it")
    Trainer(strategy, model, dataset, hp, data_seed=0, out_dir=str(tmp_path)).run()
    records = read_metrics(str(tmp_path))
    holdout = [r for r in records if "holdout_loss" in r]
    assert [r["step"] for r in holdout] == [0, 8, 16]
    assert all(set(r) == {"step", "holdout_loss", "holdout_accuracy"} for r in holdout)
    assert all(0.0 <= r["holdout_accuracy"] <= 1.0 and r["holdout_loss"] > 0 for r in holdout)
    assert [r["step"] for r in records if "test_accuracy" in r] == [0, 8, 16]
    tags = set()     # (run, tag): the holdout is a TensorBoard run beside train and test
    for path in glob.glob(str(tmp_path / "tensorboard" / "*" / "events.out.tfevents.*")):
        run = os.path.basename(os.path.dirname(path))
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update((run, v.tag) for v in event.summary.value)
    assert {("holdout", "loss"), ("holdout", "accuracy"), ("test", "loss")} <= tags


# ---- the early-stopping metric ----
def test_early_stopping_is_min_holdout_loss_and_nearest_test_accuracy(tmp_path):
    records = evals([2.0, 0.5, 0.3, 0.3, 0.4], [0.1, 0.8, 0.9, 0.91, 0.92])
    make_phase(str(tmp_path), 0.92, records)
    # Minimum 0.3 at steps 200 and 300: the earliest, 200; test accuracy there 0.9.
    assert speed.early_stopping(collect.metrics(str(tmp_path))) == {
        "step": 200, "holdout_loss": 0.3, "holdout_accuracy": 0.5, "test_step": 200,
        "test_accuracy": 0.9}
    # Test evaluations elsewhere: 150 and 250 are both 50 from 200 -> the earlier, 150.
    sparse = [r for r in records if "holdout_loss" in r] + [
        {"step": 0, "test_accuracy": 0.1}, {"step": 150, "test_accuracy": 0.85},
        {"step": 250, "test_accuracy": 0.95}, {"step": 400, "test_accuracy": 0.97}]
    result = speed.early_stopping(sparse)
    assert (result["step"], result["test_step"], result["test_accuracy"]) == (200, 150, 0.85)
    assert speed.early_stopping([r for r in records if "test_accuracy" in r]) is None


def test_early_stopping_table_over_replicates_and_branches(tmp_path):
    run = tmp_path / "lottery_x"
    for rep, (best0, best2) in enumerate([(3, 1), (1, 1)]):   # index of min holdout loss
        losses0 = [1.0, 0.9, 0.8, 0.7][:best0 + 1] + [5.0] * (3 - best0)
        make_phase(str(run / f"replicate_{rep}/level_0/train"), 0.9,
                   evals(losses0, [0.5, 0.6, 0.7, 0.8]), density=1.0)
        make_phase(str(run / f"replicate_{rep}/level_2/train"), 0.95,
                   evals([1.0, 0.1, 0.5, 0.6], [0.5, 0.96, 0.9, 0.9]), density=0.64)
        make_phase(str(run / f"replicate_{rep}/level_2/branch_random_reinit/train"), 0.85,
                   evals([1.0, 0.9, 0.8, 0.7], [0.5, 0.6, 0.7, 0.85 + 0.01 * rep]))
        make_phase(str(run / f"replicate_{rep}/level_2/branch_retrain_ab/train"), 0.9,
                   evals([1.0, 0.1], [0.5, 0.9]), branch=retrain(2, 0.5))   # dilated: left out
    rows = speed.early_stopping_table(phases_of(run))
    summary = [(r["series"], r["level"], r["density"], r["early_stop_step"]["mean"],
                r["early_stop_step"]["min"], r["early_stop_step"]["max"],
                r["early_stop_accuracy"]["mean"]) for r in rows]
    # level 0: min at 300 (acc 0.8) and 100 (acc 0.6) -> step 200, acc 0.7;
    # level 2: step 100, acc 0.96; reinit (density of its level): step 300, acc (0.85+0.86)/2.
    assert summary == [("IMP", 0, 1.0, 200, 100, 300, pytest.approx(0.7)),
                       ("IMP", 2, 0.64, 100, 100, 100, 0.96),
                       ("random_reinit", 2, 0.64, 300, 300, 300, pytest.approx(0.855))]


# ---- the dilation metric ----
def test_smallest_matching_dilation():
    accs = {0.2: 0.90, 0.3: 0.955, 0.5: 0.959, 1.0: 0.96}
    assert speed.smallest_matching_dilation(accs, 0.96, 0.2) == 0.5    # threshold 0.958
    assert speed.smallest_matching_dilation(accs, 0.96, 0.5) == 0.3    # threshold 0.955
    assert speed.smallest_matching_dilation(accs, 0.99, 0.2) is None


def dilation_run(root, tolerance=None):
    """Two replicates; dense 0.95/0.97 (mean 0.96); retrain branches at levels 0, 2, 4."""
    run = root / "lottery_d"
    curves = {   # level: (density, own accuracies, {dilation: accuracies per replicate})
        0: (1.0, [0.95, 0.97], {0.2: [0.90, 0.92], 0.3: [0.96, 0.95], 0.5: [0.957, 0.961]}),
        2: (0.64, [0.96, 0.96], {0.2: [0.96, 0.958]}),
        4: (0.4096, [0.9, 0.9], {0.2: [0.5, 0.5], 2.0: [0.9, 0.9]}),
    }
    for level, (density, own, points) in curves.items():
        for rep in range(2):
            base = run / f"replicate_{rep}" / f"level_{level}"
            make_phase(str(base / "train"), own[rep], density=density)
            for i, (d, accs) in enumerate(points.items()):
                make_phase(str(base / f"branch_retrain_{i}" / "train"), accs[rep],
                           density=density, branch=retrain(level, d))
    if tolerance is not None:
        write_json(str(run / "summary.json"), {"matching_tolerance": tolerance})
    return run


def test_dilation_table_by_hand(tmp_path):
    run = dilation_run(tmp_path)
    table = speed.dilation_table(phases_of(run), speed.run_tolerance(str(run)))
    assert table["dense_accuracy"] == pytest.approx(0.96)
    assert table["threshold"] == pytest.approx(0.958)
    rows = {r["level"]: r for r in table["rows"]}
    # Level 0: 0.2 -> 0.91, 0.3 -> 0.955, 0.5 -> 0.959 (first >= 0.958), 1 -> 0.96 (its own).
    assert [p["dilation"] for p in rows[0]["points"]] == [0.2, 0.3, 0.5, 1.0]
    assert [p["mean"] for p in rows[0]["points"]] == pytest.approx([0.91, 0.955, 0.959, 0.96])
    assert rows[0]["smallest_matching_dilation"] == 0.5
    assert rows[2]["smallest_matching_dilation"] == 0.2     # 0.959 at 0.2
    assert rows[4]["smallest_matching_dilation"] is None    # 0.9 at best
    assert [rows[l]["density"] for l in (0, 2, 4)] == [1.0, 0.64, 0.4096]
    # The run's own tolerance (summary.json) of 0.5 points: threshold 0.955, level 0 -> 0.3.
    run5 = dilation_run(tmp_path / "t5", tolerance=0.5)
    table5 = speed.dilation_table(phases_of(run5), speed.run_tolerance(str(run5)))
    assert {r["level"]: r["smallest_matching_dilation"] for r in table5["rows"]} == {
        0: 0.3, 2: 0.2, 4: None}


# ---- the report section ----
def test_report_section_from_the_table_and_root(tmp_path):
    run = dilation_run(tmp_path / "root")
    for rep in range(2):   # holdout metrics in the IMP levels: an early-stopping figure too
        for level in (0, 2, 4):
            with open(run / f"replicate_{rep}/level_{level}/train/metrics.jsonl", "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in evals([1.0, 0.5, 0.6], [0.5, 0.9, 0.95]))
    out = tmp_path / "report"
    markdown, figures = speed.report_section(collect.collect(str(tmp_path / "root")), str(out))
    assert figures == [str(out / "speed_lottery_d_early_stopping.png"),
                       str(out / "speed_lottery_d_dilation.png")]
    for path in figures:
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(path[:-4] + ".pdf") > 1000
    assert "| IMP | 2 | 64.00 | 100 | 90.00 | 96.00 |" in markdown
    assert "| 0 (dense) | 100.00 | 0.5 |" in markdown and "| 4 | 40.96 | none |" in markdown
    assert "![dilation](speed_lottery_d_dilation.png)" in markdown
    empty_md, empty_figs = speed.report_section({"runs": [], "rows": []}, str(out))
    assert empty_figs == [] and "No training-speed data" in empty_md


def test_the_removed_command_says_where_the_report_is(tmp_path, capsys):
    """`python -m tflottery.reporting.speed` and sweep --speed_report (removed, #23): one
    line naming the report page's section; the sweep plans and runs nothing."""
    result = run_module("tflottery.reporting.speed", str(tmp_path), timeout=120)
    assert result.returncode == 1
    # The last line (before it: TensorFlow's start-up lines, as the module imports it).
    assert result.stderr.strip().splitlines()[-1] == f"error: {speed.MESSAGE}"
    assert "python -m tflottery.report ROOT" in speed.MESSAGE
    assert sweep.main([f"--root_dir={tmp_path / 'runs'}", "--grid=A.b=1,2",
                       "--speed_report"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {speed.MESSAGE}"]
    assert not (tmp_path / "runs").exists()
