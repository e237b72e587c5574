"""Damaged logs and lmc copies: found, set aside, and their phase trained again.

A phase's metrics.jsonl and a mask hook's step log (dst's mask_updates.jsonl,
gradual's sparsity.jsonl) are read back when the phase resumes and checked
when a finished phase is skipped; an lmc analysis checks its copies even when
instability.json is intact.  Each case damages one file (bytes that are not
UTF-8, a garbled line, a log cut short), runs again and compares with an
undamaged run: the file kept as `<name>.damaged-<time>`, every record there
again, the results bit-identical (op determinism: conftest.py).
"""
from conftest import SMALL_RUN  # noqa: E402
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tflottery import data, gin_files, runner
from tflottery.runs import jsonl
from tflottery.training import checkpoints, metrics_log
from tflottery.training.loop import Trainer
from test_dst import DST
from test_gradual import GRADUAL
from test_phase_files import HP, SYNTH, SimulatedCrash, lenet

pytestmark = pytest.mark.usefixtures("clean_gin")


def scramble(path):
    """Random bytes (not UTF-8) of the file's size."""
    size = max(os.path.getsize(path), 64)
    open(path, "wb").write(np.random.default_rng(0).bytes(size))


def cut_in_half(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def garble_first_line(path):
    lines = open(path).read().splitlines(keepends=True)
    open(path, "w").write('{"step": 4, "drop\n' + "".join(lines[1:]))


def crash_after_checkpoint(monkeypatch, at):
    """Make the next run stop right after saving its rolling checkpoint at step `at`."""
    original = checkpoints.Checkpointer.save_latest

    def save_then_crash(self, step):
        original(self, step)
        if step == at:
            raise SimulatedCrash()
    monkeypatch.setattr(checkpoints.Checkpointer, "save_latest", save_then_crash)
    return lambda: monkeypatch.setattr(checkpoints.Checkpointer, "save_latest", original)


def record_keys(path):
    """(step, kind) of every record, in file order (timings differ between runs)."""
    return [(r["step"], metrics_log.kind(r)) for r in jsonl.read_records(path)]


def end_weights(phase_dir):
    reader = tf.train.load_checkpoint(os.path.join(phase_dir, "checkpoints", "end", "ckpt"))
    return {k: reader.get_tensor(k).tobytes() for k in sorted(reader.get_variable_to_shape_map())
            if k.startswith("model/")}


def one_aside(path):
    aside = glob.glob(path + ".damaged-*")
    assert len(aside) == 1, aside
    return aside[0]


@pytest.mark.parametrize("damage", [scramble, cut_in_half, garble_first_line],
                         ids=["not_utf8", "cut_in_half", "garbled_line"])
def test_resumed_phase_with_damaged_metrics_trains_again_from_its_start(tmp_path, monkeypatch,
                                                                         damage):
    dataset = data.build(SYNTH)
    strategy = tf.distribute.get_strategy()
    straight = str(tmp_path / "straight")
    Trainer(strategy, lenet(), dataset, HP, 0, straight).run()
    restore = crash_after_checkpoint(monkeypatch, 16)
    out = str(tmp_path / "killed")
    with pytest.raises(SimulatedCrash):
        Trainer(strategy, lenet(), dataset, HP, 0, out).run()
    restore()
    metrics = os.path.join(out, "metrics.jsonl")
    damage(metrics)
    Trainer(strategy, lenet(), dataset, HP, 0, out).run()
    one_aside(metrics)
    assert not os.path.exists(os.path.join(out, "checkpoints", "latest"))
    assert record_keys(metrics) == record_keys(os.path.join(straight, "metrics.jsonl")) == [
        (0, "test"), (8, "train"), (8, "test"), (16, "train"), (16, "test"), (24, "train"),
        (24, "test")]
    assert json.load(open(os.path.join(out, "final.json"))) == json.load(
        open(os.path.join(straight, "final.json")))
    assert end_weights(out) == end_weights(straight)


def run_dir_of(root):
    (rep,) = glob.glob(str(root / "*" / "replicate_0"))
    return rep


def straight_and_damaged_runs(tmp_path, config, crash_at, monkeypatch):
    """(straight replicate dir, replicate dir of a run stopped after its checkpoint at
    `crash_at`; None: of a finished run)."""
    gin_files.parse([], config)
    runner.run(str(tmp_path / "straight"))
    if crash_at is None:
        runner.run(str(tmp_path / "damaged"))
    else:
        restore = crash_after_checkpoint(monkeypatch, crash_at)
        with pytest.raises(SimulatedCrash):
            runner.run(str(tmp_path / "damaged"))
        restore()
    return run_dir_of(tmp_path / "straight"), run_dir_of(tmp_path / "damaged")


STEP_LOG_CASES = [
    # Resumed at the checkpoint of step 8 (the update at 4 logged): the log's
    # bytes are not UTF-8, a line is not JSON, the log is cut in half.
    ("dst", DST, "mask_updates.jsonl", 8, scramble),
    ("dst", DST, "mask_updates.jsonl", 8, garble_first_line),
    ("gradual", GRADUAL, "sparsity.jsonl", 12, cut_in_half),
    # The same logs of finished runs.
    ("dst", DST, "mask_updates.jsonl", None, scramble),
    ("gradual", GRADUAL, "sparsity.jsonl", None, cut_in_half),
]


@pytest.mark.parametrize("experiment, config, log, crash_at, damage", STEP_LOG_CASES,
                         ids=[f"{c[0]}-{'finished' if c[3] is None else 'resumed'}-"
                              f"{c[4].__name__}" for c in STEP_LOG_CASES])
def test_damaged_step_log_is_set_aside_and_its_phase_redone(tmp_path, monkeypatch, experiment,
                                                             config, log, crash_at, damage):
    straight, rep = straight_and_damaged_runs(tmp_path, config, crash_at, monkeypatch)
    path = os.path.join(rep, "train", log)
    damage(path)
    runner.run(str(tmp_path / "damaged"))     # the same (locked) gin configuration
    one_aside(path)
    assert open(path).read() == open(os.path.join(straight, "train", log)).read()
    assert record_keys(os.path.join(rep, "train", "metrics.jsonl")) == record_keys(
        os.path.join(straight, "train", "metrics.jsonl"))
    assert end_weights(os.path.join(rep, "train")) == end_weights(
        os.path.join(straight, "train"))
    result = f"{experiment}.json" if experiment == "dst" else "train/final.json"
    assert json.load(open(os.path.join(rep, result))) == json.load(
        open(os.path.join(straight, result)))


def truncate(path):
    cut_in_half(path)


def garble(path):
    open(path, "w").write('{"step": 24, "test_acc')


LMC = SMALL_RUN + ["ExperimentHparams.name = 'lmc'", "InstabilityHparams.num_alphas = 3",
                   "InstabilityHparams.rewind_steps = ('8it',)"]
LMC_CASES = [
    ("copy_1/checkpoints/end/ckpt.data-00000-of-00001", truncate, "copy_1/checkpoints/end"),
    # Copy 0's 'init' is the state at k under its mask: since #26 it stores no tensors,
    # only its masks and a reference (training/stored_weights.py).
    ("copy_0/checkpoints/init/mask_bits.npz", truncate, "copy_0/checkpoints/init"),
    ("copy_1/final.json", garble, "copy_1/final.json"),
    ("copy_0/metrics.jsonl", scramble, "copy_0/metrics.jsonl"),
]


@pytest.mark.parametrize("relpath, damage, aside", LMC_CASES, ids=[c[0] for c in LMC_CASES])
def test_damaged_lmc_copy_is_redone_while_instability_json_is_intact(tmp_path, monkeypatch,
                                                                      relpath, damage, aside):
    straight, rep = straight_and_damaged_runs(tmp_path, LMC, None, monkeypatch)
    analysis = os.path.join(rep, "k_8")
    damage(os.path.join(analysis, relpath))
    runner.run(str(tmp_path / "damaged"))
    one_aside(os.path.join(analysis, aside))
    for i in (0, 1):
        copy = os.path.join(analysis, f"copy_{i}")
        assert end_weights(copy) == end_weights(os.path.join(straight, "k_8", f"copy_{i}"))
        assert checkpoints.intact(os.path.join(copy, "checkpoints"), "init")
    assert json.load(open(os.path.join(analysis, "instability.json"))) == json.load(
        open(os.path.join(straight, "k_8", "instability.json")))


def test_summary_leaves_out_a_damaged_file_of_another_replicate_with_a_warning(tmp_path,
                                                                                caplog):
    """The lottery summary a run writes at its end reads every replicate; one it did
    not run cannot be remade by it, so its damaged files are named and left out."""
    from tflottery.reporting import summary
    from test_lottery import write_fake_level
    for r, accuracies in enumerate([(0.98, 0.97), (0.96, 0.95)]):
        rep = str(tmp_path / f"replicate_{r}")
        write_fake_level(rep, 0, 1.0, accuracies[0])
        write_fake_level(rep, 1, 0.8, accuracies[1], [("random_reinit", 0.5 + r / 10)])
    bad_final = tmp_path / "replicate_1" / "level_1" / "train" / "final.json"
    bad_final.write_text('{"test_acc')
    bad_branch = tmp_path / "replicate_0" / "level_1" / "branch_random_reinit" / "train" / (
        "final.json")
    bad_branch.write_bytes(b"\xff\xfe")
    bad_sparsity = tmp_path / "replicate_1" / "level_0" / "mask" / "sparsity.json"
    bad_sparsity.write_text("{}")
    with caplog.at_level("WARNING", logger="absl"):
        table = summary.summarize(str(tmp_path), matching_tolerance=0.2)
    level_0, level_1 = table["levels"]
    assert level_0["imp"]["mean"] == pytest.approx(0.97) and level_0["imp"]["n"] == 2
    assert level_0["density"] == 1.0       # replicate 0's; replicate 1's is left out
    assert level_1["imp"]["n"] == 1 and level_1["imp"]["mean"] == 0.97
    assert level_1["branches"] == {}       # replicate 0's is damaged, replicate 1's level too
    warned = [r.getMessage() for r in caplog.records if "left out of the summary" in r.getMessage()]
    assert sorted(w.split(" is damaged")[0] for w in warned) == sorted(
        str(p) for p in (bad_final, bad_branch, bad_sparsity))


def test_lmc_summary_leaves_out_a_damaged_record_of_another_replicate(tmp_path, caplog):
    """lmc's end-of-run summary reads every replicate's instability.json; one the run
    did not remake (another replicate's) is named and left out instead of crashing
    the run at its very end."""
    from tflottery.reporting import instability
    paths = []
    for rep, barrier in enumerate((0.01, 0.03, 0.05)):
        out = tmp_path / f"replicate_{rep}" / "k_0"
        out.mkdir(parents=True)
        json.dump({"level": None, "k": 0, "rewind_step": "0it", "density": 1.0,
                   "barrier": {"test": barrier, "train": barrier}, "end_accuracy": [0.9, 0.9],
                   "dense_accuracy": 0.9}, open(out / "instability.json", "w"))
        paths.append(out / "instability.json")
    paths[1].write_text('{"level": null, "k": 0, "barr')      # cut short
    paths[2].write_text('{"level": null, "k": 0}')             # fields missing
    with caplog.at_level("WARNING", logger="absl"):
        table = instability.end_of_run(str(tmp_path), {}, writable=True)
    (row,) = table["rows"]
    assert row["n"] == 1 and row["test_barrier_mean"] == pytest.approx(0.01)
    warned = [r.getMessage() for r in caplog.records if "left out of the summary" in r.getMessage()]
    assert len(warned) == 2 and all(any(str(p) in w for w in warned) for p in paths[1:])
    assert os.path.exists(tmp_path / "instability_summary.json")


def test_lmc_summary_leaves_out_a_record_without_its_density(tmp_path, caplog):
    """Every lmc version writes k, rewind_step and density; a record with its barriers but
    without one of them is damaged: named and left out, not averaged as None."""
    from tflottery.hparams import SummaryHparams
    from tflottery.reporting import instability
    record = {"level": 1, "k": 0, "rewind_step": "0it", "density": 0.8, "subnetwork": "imp",
              "barrier": {"test": 0.02, "train": 0.01}, "end_accuracy": [0.9, 0.9],
              "dense_accuracy": 0.9}
    paths = []
    for rep in (0, 1):
        out = tmp_path / f"replicate_{rep}" / "level_1" / "k_0"
        out.mkdir(parents=True)
        paths.append(out / "instability.json")
        json.dump({k: v for k, v in record.items() if rep == 0 or k != "density"},
                  open(paths[-1], "w"))
    with caplog.at_level("WARNING", logger="absl"):
        table = instability.summarize(str(tmp_path), SummaryHparams())
    (row,) = table["rows"]
    assert row["n"] == 1 and row["density"] == 0.8
    warned = [r.getMessage() for r in caplog.records if "left out of the summary" in r.getMessage()]
    assert len(warned) == 1 and str(paths[1]) in warned[0]
