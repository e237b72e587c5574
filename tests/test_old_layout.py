"""A run directory written before #26 (checkpoints with masks as float32 and
optimizer slots, no record of their files) still resumes and reports, and
nothing in it is rewritten: tests/fixtures/old_layout/README.md says how the
fixture was made, and from which commit."""
import glob
import hashlib
import os
import shutil

import numpy as np

from conftest import REPO, run_module

FIXTURE = os.path.join(REPO, "tests", "fixtures", "old_layout")
ENV = {"PYTHONPATH": os.pathsep.join([REPO, FIXTURE])}


def hashes(root):
    out = {}
    for parent, _, files in os.walk(root):
        for name in files:
            path = os.path.join(parent, name)
            out[os.path.relpath(path, root)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def test_old_run_directory_resumes_and_reports_without_rewriting(tmp_path):
    root = str(tmp_path / "runs")
    shutil.copytree(os.path.join(FIXTURE, "runs"), root)
    before = hashes(root)
    result = run_module("tflottery.main", f"--root_dir={root}",
                        f"--gin_file={os.path.join(FIXTURE, 'fixture.gin')}", "--deterministic",
                        extra_env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "is damaged" not in result.stderr and "training steps" not in result.stderr
    assert result.stderr.count("finished before; skipped") == 5, result.stderr[-3000:]
    assert "level 2, 64.02% of weights remaining): 57.67%" in result.stdout
    report = run_module("tflottery.report", root, f"--out={tmp_path / 'report'}", extra_env=ENV)
    assert report.returncode == 0, report.stderr[-3000:]
    # A finished re-run only reads: no phase file, record, summary or figure is written
    # again (finished.json and summary.pdf were, before the runner checked).
    assert hashes(root) == before


def test_a_rerun_that_trains_again_writes_the_summary_again(tmp_path):
    """The read-only re-run is only for a replicate that trains nothing: with its last
    level gone, the level is trained again and the run's end writes its records."""
    root = str(tmp_path / "runs")
    shutil.copytree(os.path.join(FIXTURE, "runs"), root)
    (replicate,) = glob.glob(os.path.join(root, "lottery_*", "replicate_0"))
    shutil.rmtree(os.path.join(replicate, "level_2"))
    before = hashes(root)
    result = run_module("tflottery.main", f"--root_dir={root}",
                        f"--gin_file={os.path.join(FIXTURE, 'fixture.gin')}", "--deterministic",
                        extra_env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "level 2, 64.02% of weights remaining): 57.67%" in result.stdout
    after = hashes(root)
    changed = {p for p in before if after[p] != before[p]}
    assert {os.path.basename(p) for p in changed} >= {"finished.json", "summary.pdf"}, changed


def test_old_checkpoints_load_with_their_masks(tmp_path, monkeypatch):
    """restore_weights reads an old 'end' (masks included) into a model: its masks equal the
    level's mask.npz and its weights the checkpoint's tensors."""
    import sys
    import tensorflow as tf
    from tflottery import masking, models
    # The fixture's model is registered for this test only: the README test lists every
    # registered model, and this one is not the package's.
    monkeypatch.syspath_prepend(FIXTURE)
    monkeypatch.setattr(models.REGISTRY, "_items", dict(models.REGISTRY._items))
    monkeypatch.delitem(sys.modules, "fixture_model", raising=False)
    import fixture_model  # noqa: F401  (registers fixture_mlp)
    from tflottery.training import checkpoints
    (run,) = glob.glob(os.path.join(FIXTURE, "runs", "lottery_*"))
    level = os.path.join(run, "replicate_0", "level_2")
    model = masking.wrap(models.build("fixture_mlp", (8, 8, 1), 10, seed=5))
    checkpoints.restore_weights(model, os.path.join(level, "train", "checkpoints"), "end")
    assert masking.get_mask(model) == masking.Mask.load(os.path.join(level, "mask"))
    reader = tf.train.load_checkpoint(os.path.join(level, "train", "checkpoints", "end", "ckpt"))
    stored = sorted(reader.get_tensor(k).tobytes() for k in reader.get_variable_to_shape_map()
                    if k.startswith("model/") and "_mask" not in k)
    loaded = sorted(np.asarray(v.numpy()).tobytes() for v in model.trainable_variables)
    assert loaded == stored
