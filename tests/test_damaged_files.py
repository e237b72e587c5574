"""A damaged file in a run directory is set aside and its stage redone.

Each case damages one file of a finished (or half-finished) quickstart run,
runs the same command again and checks: exit 0, one warning naming the
file, the file kept as `<name>.damaged-<time>`, every result equal to
the undamaged run's (bit for bit: --deterministic), every metrics record
there again, and a report of the run that finds nothing unreadable.
"""
import glob
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_module
from tflottery import masking
from tflottery.reporting import collect
from tflottery.runs import jsonl
from tflottery.training import metrics_log

ARGS = ["--gin_file=quickstart.gin", "--deterministic",
        "--gin_bindings=TrainingHparams.training_steps = '40it'",
        "--gin_bindings=TrainingHparams.eval_every = '20it'",
        "--gin_bindings=PruningHparams.levels = 2"]


def run(root):
    result = run_module("tflottery.main", f"--root_dir={root}", *ARGS)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("finished")
    run(root)
    (run_dir,) = glob.glob(str(root / "lottery_*"))
    return run_dir


def results(run_dir):
    """Every final.json, mask, branch record, end checkpoint tensor and metrics record
    ((step, kind): timings differ between runs) of a run, and its config.gin."""
    rep = os.path.join(run_dir, "replicate_0")
    out = {"config.gin": open(os.path.join(run_dir, "config.gin"), "rb").read()}
    for name in ("final.json", "branch.json"):
        for path in sorted(glob.glob(os.path.join(rep, "**", name), recursive=True)):
            out[os.path.relpath(path, rep)] = json.load(open(path))
    for path in sorted(glob.glob(os.path.join(rep, "**", "metrics.jsonl"), recursive=True)):
        out[os.path.relpath(path, rep)] = [(r["step"], metrics_log.kind(r))
                                           for r in jsonl.read_records(path)]
    for path in sorted(glob.glob(os.path.join(rep, "**", "mask.npz"), recursive=True)):
        mask = masking.Mask.load(os.path.dirname(path))
        out[os.path.relpath(path, rep)] = {k: mask[k].tolist() for k in sorted(mask)}
    for path in sorted(glob.glob(os.path.join(rep, "**", "end", "ckpt.index"), recursive=True)):
        reader = tf.train.load_checkpoint(path[:-len(".index")])
        out[os.path.relpath(path, rep)] = {
            k: reader.get_tensor(k).tobytes() for k in sorted(reader.get_variable_to_shape_map())
            if k.startswith("model/")}
    return out


def truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def scramble(path):
    size = max(os.path.getsize(path), 64)
    open(path, "wb").write(np.random.default_rng(0).bytes(size))


def garble(path):
    open(path, "w").write('{"step": 40, "test_acc')


CASES = [
    ("level_1/train/checkpoints/end/ckpt.data-00000-of-00001", truncate),
    ("pretrain/checkpoints/end/ckpt.data-00000-of-00001", truncate),
    ("level_1/mask/mask.npz", scramble),
    ("level_2/mask/mask.npz", truncate),
    ("level_1/mask/sparsity.json", garble),
    ("level_2/train/final.json", garble),
    ("level_1/branch_random_reinit/train/final.json", garble),
    # Read by no later stage of the run, only by reports: checked anyway.
    ("level_1/train/metrics.jsonl", scramble),
    ("level_2/train/metrics.jsonl", truncate),
    ("level_1/branch_random_reinit/train/metrics.jsonl", garble),
    ("level_1/branch_random_reinit/branch.json", scramble),
    ("level_1/branch_random_reinit/mask/mask.npz", scramble),
    ("../config.gin", scramble),
]


@pytest.mark.parametrize("relpath, damage", CASES, ids=[c[0] for c in CASES])
def test_damaged_file_is_set_aside_and_redone(finished, tmp_path, relpath, damage):
    root = tmp_path / "runs"
    run_dir = str(root / os.path.basename(finished))
    shutil.copytree(finished, run_dir)
    expected = results(run_dir)
    target = os.path.join(run_dir, "replicate_0", relpath)
    damage(target)
    result = run(root)
    assert "Traceback" not in result.stderr
    # The damaged file (or the checkpoint directory holding it) is kept aside.
    aside = glob.glob(target + ".damaged-*") + glob.glob(os.path.dirname(target) + ".damaged-*")
    assert len(aside) == 1, aside
    warnings = [l for l in result.stderr.splitlines() if "is damaged" in l]
    assert len(warnings) == 1 and os.path.basename(aside[0]).split(".damaged-")[0] in warnings[0]
    assert results(run_dir) == expected
    assert collect.collect(run_dir)["problems"] == []


def test_half_finished_phase_with_damaged_rolling_checkpoint_and_metrics(tmp_path):
    """Stopped mid-level, then its rolling checkpoint cut short and a line of
    its metrics garbled: the level trains again from its start, exactly."""
    from test_run_safety import LONG_LEVELS, finals, start, wait_for
    import signal
    straight = run_module("tflottery.main", f"--root_dir={tmp_path / 'straight'}", *LONG_LEVELS)
    assert straight.returncode == 0, straight.stderr[-2000:]
    root = tmp_path / "runs"
    proc = start(root, *LONG_LEVELS)
    wait_for(str(root / "*" / "replicate_0" / "level_1" / "train" / "checkpoints" / "latest"
                 / "checkpoint"), proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=300)
    assert proc.returncode == 143
    (run_dir,) = glob.glob(str(root / "lottery_*"))
    phase = os.path.join(run_dir, "replicate_0", "level_1", "train")
    (data,) = glob.glob(os.path.join(phase, "checkpoints", "latest", "ckpt-*.data-*"))
    truncate(data)
    with open(os.path.join(phase, "metrics.jsonl"), "a") as f:
        f.write("not json at all\n")
    again = run_module("tflottery.main", f"--root_dir={root}", *LONG_LEVELS)
    assert again.returncode == 0, again.stderr[-2000:]
    assert glob.glob(os.path.join(phase, "checkpoints", "latest.damaged-*"))
    (straight_dir,) = glob.glob(str(tmp_path / "straight" / "lottery_*"))
    assert finals(run_dir) == finals(straight_dir)
    lines = open(os.path.join(phase, "metrics.jsonl")).read().splitlines()
    steps = [json.loads(l)["step"] for l in lines]
    assert steps == sorted(steps) and len(steps) == len(set(map(tuple, (
        (json.loads(l)["step"], tuple(sorted(json.loads(l)))) for l in lines))))
