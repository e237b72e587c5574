"""The command line end to end on the offline digits data, and its errors.

Each case runs `python -m tflottery.main` in a subprocess, as a user would,
and checks the exit status, the one-line error and what is on disk.
"""
import glob
import json
import os
import re

import pytest

from conftest import run_module


def run_main(root, *args, timeout=300):
    return run_module("tflottery.main", f"--root_dir={root}", *args, timeout=timeout)


def test_quickstart_end_to_end_and_rerun_skips(tmp_path):
    """The README's main job (IMP on digits), shortened: 2 levels + reinit branch."""
    root = str(tmp_path / "runs")
    args = ["--gin_file=quickstart.gin", "--gin_bindings=TrainingHparams.training_steps='120it'",
            "--gin_bindings=TrainingHparams.eval_every='50it'",
            "--gin_bindings=PruningHparams.levels=2"]
    first = run_main(root, *args)
    assert first.returncode == 0, first.stderr[-2000:]
    line = [l for l in first.stdout.splitlines() if l.startswith("final test accuracy")]
    assert line, first.stdout
    acc = float(line[0].split()[-1].rstrip("%"))
    assert acc > 50.0   # 120 Adam steps on digits; chance is 10%
    assert "| level | density % |" in first.stdout
    (run_dir,) = glob.glob(os.path.join(root, "lottery_*"))
    rep = os.path.join(run_dir, "replicate_0")
    for name in ("config.gin", "operative_config.gin", "summary.json", "summary.md",
                 "summary.png"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    for level in range(3):
        for name in ("mask/mask.npz", "mask/sparsity.json", "train/final.json",
                     "train/metrics.jsonl", "train/checkpoints/init/info.json",
                     "train/checkpoints/end/info.json"):
            assert os.path.exists(os.path.join(rep, f"level_{level}", name)), (level, name)
    for level in (1, 2):
        assert os.path.exists(os.path.join(rep, f"level_{level}", "branch_random_reinit",
                                           "train", "final.json"))
    records = [json.loads(l) for l in open(os.path.join(rep, "level_1/train/metrics.jsonl"))]
    assert [r["step"] for r in records if "test_accuracy" in r] == [0, 50, 100, 120]
    densities = [json.load(open(os.path.join(rep, f"level_{l}/mask/sparsity.json")))["total"]
                 ["density"] for l in range(3)]
    assert densities == pytest.approx([1.0, 0.8, 0.64], abs=1e-4)
    assert "training from step" in first.stderr
    # The start names the run's non-default settings; every phase is announced by
    # name, with progress in % and ETAs; the closing line says whose accuracy it is.
    assert "settings that differ from the defaults" in first.stderr
    assert "TrainingHparams.training_steps = '120it'" in first.stderr
    for phase in ("level 0: training steps 0..120", "level 2: training steps 0..120",
                  "level 1 / random_reinit: training steps 0..120",
                  "level 2 / random_reinit: training steps 0..120"):
        assert phase in first.stderr, phase
    assert re.search(r"level 2 / random_reinit: step 120/120 \(100%\)  [\d.]+ steps/s  "
                     r"ETA 0s \(run \d+s\)", first.stderr), first.stderr[-3000:]
    assert line[0].startswith("final test accuracy of the last IMP level (level 2, "
                              "64.00% of weights remaining): ")
    # Only random_reinit ran: the non-triviality comparison was not made.
    assert "IMP non-trivial (matching where random pruning is not) at levels: not measured" \
        in first.stdout
    second = run_main(root, *args)
    assert second.returncode == 0, second.stderr[-2000:]
    assert [l for l in second.stdout.splitlines() if l.startswith("final test accuracy")] == line
    assert "training from step" not in second.stderr   # nothing was retrained
    assert "level 2 / random_reinit: finished before" in second.stderr
    # The dry run of the finished run: every phase finished and skipped, nothing written.
    before = sorted(p for p in glob.glob(os.path.join(root, "**"), recursive=True))
    dry = run_main(root, *args, "--dry_run")
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "level 2 / random_reinit  steps 0..120" in dry.stdout
    assert "[finished: skipped]" in dry.stdout and "[to run]" not in dry.stdout
    assert "0 training steps left of 600" in dry.stdout
    assert sorted(glob.glob(os.path.join(root, "**"), recursive=True)) == before


def test_list_names_every_registry_entry_and_gin_config():
    from tflottery import catalog
    result = run_module("tflottery.main", "--list")
    assert result.returncode == 0, result.stderr[-2000:]
    for title, registry in catalog.registries().items():
        assert title + ":" in result.stdout
        for name in registry.names():
            assert re.search(rf"^  {re.escape(name)}( |$)", result.stdout, re.M), (title, name)
    flat = " ".join(result.stdout.split())      # descriptions are wrapped over lines
    for name, about in catalog.gin_config_entries():
        assert f"  {name}" in result.stdout
        # Whole: a sentence, not a first comment line cut mid-sentence.
        assert about.endswith((".", ".)")) and " ".join(about.split()) in flat, (name, about)
    assert catalog.gin_config_entries()[0][1]
    assert "quickstart.gin" in result.stdout and "Quickstart: iterative magnitude pruning" \
        in result.stdout
    assert "experiments (ExperimentHparams.name):" in result.stdout
    assert "--list" in run_module("tflottery.main", "--help").stdout


def test_dry_run_writes_nothing_and_start_up_is_quiet(tmp_path):
    """A fresh dry run lists the phases to run and creates nothing; the gin
    include probe and the doubled TensorFlow banner are gone; --verbosity counts."""
    config = tmp_path / "mine.gin"
    config.write_text("include 'quickstart.gin'\nPruningHparams.levels = 1\n")
    root = tmp_path / "runs"
    dry = run_main(str(root), f"--gin_file={config}", "--dry_run")
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert not root.exists()
    assert "dry run: nothing is written" in dry.stdout
    assert "run directory does not exist yet" in dry.stdout
    for line in ("pretrain", "level 0", "level 1", "level 1 / random_reinit"):
        assert re.search(rf"^  {re.escape(line)} +steps", dry.stdout, re.M), line
    assert "[nothing to train (evaluated once)]" in dry.stdout and "[to run]" in dry.stdout
    assert "900 training steps left of 900" in dry.stdout
    assert "Path not found" not in dry.stderr
    assert dry.stderr.count("oneDNN custom operations are on") <= 1
    assert "strategy:" in dry.stderr                   # INFO by default
    quiet = run_main(str(root), f"--gin_file={config}", "--dry_run", "--verbosity=-1")
    assert quiet.returncode == 0 and "strategy:" not in quiet.stderr


BAD_INPUTS = [
    (["--gin_bindings=ModelHparams.name='resnet_21'"], "unknown model 'resnet_21'"),
    (["--gin_bindings=DatasetHparams.name='imagenet42'"], "unknown dataset 'imagenet42'"),
    (["--gin_bindings=TrainingHparams.optimizer='adagrad'"], "unknown optimizer 'adagrad'"),
    (["--gin_bindings=TrainingHparams.lr = (("], "bad gin configuration"),
    (["--gin_file=no_such_config"], "unknown gin file 'no_such_config'"),
    (["--gin_bindings=TrainingHparams.training_steps='0it'"], "training_steps must be positive"),
    (["--gin_bindings=TrainingHparams.checkpoint_steps=('5000it',)"], "past the end of training"),
    (["--gin_bindings=TrainingHparams.eval_every='900it'"], "eval_every '900it'"),
    (["--gin_bindings=TrainingHparams.lr='0.1'"], "TrainingHparams.lr = '0.1' is not of type float"),
    (["--gin_bindings=DatasetHparams.name='cifar10'", "--gin_bindings=DatasetHparams.data_dir='{empty}'"],
     "not available offline"),
    # Checked before the first write (they used to fail after config.gin, or a
    # whole training, was written).
    (["--gin_bindings=TrainingHparams.momentum=1.5"], "TrainingHparams.momentum must be in [0, 1)"),
    (["--gin_bindings=TrainingHparams.momentum=-1.0"],
     "TrainingHparams.momentum = -1.0: must not be negative"),
    (["--gin_bindings=ExperimentHparams.name='pai'", "--gin_bindings=PaiHparams.method='snip'",
      "--gin_bindings=PaiHparams.examples_per_class=1000000000"],
     "PaiHparams.examples_per_class: cannot take 1000000000 examples per class"),
    (["--gin_bindings=ExperimentHparams.name='lmc'",
      "--gin_bindings=InstabilityHparams.num_alphas=1000000"],
     "InstabilityHparams.num_alphas must be in [2, 1000]"),
    # A model that cannot be built for the data, in an experiment that builds
    # nothing during validation: the runner's throwaway build catches it.
    (["--gin_bindings=ExperimentHparams.name='train'", "--gin_bindings=ModelHparams.name='inception_v3'"],
     "needs images of at least 75x75"),
]


@pytest.mark.parametrize("extra,message", BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_one_line_error_nothing_written(tmp_path, extra, message):
    root = tmp_path / "runs"
    empty = tmp_path / "empty_data_dir"
    empty.mkdir()
    extra = [e.replace("{empty}", str(empty)) for e in extra]
    gin = [] if any(e.startswith("--gin_file") for e in extra) else ["--gin_file=quickstart.gin"]
    result = run_main(str(root), *gin, *extra)
    assert result.returncode == 2, (result.stdout, result.stderr[-2000:])
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not root.exists()   # not even empty: it is created once every check has passed


def test_nan_loss_stops_with_error_and_no_final(tmp_path):
    root = tmp_path / "runs"
    result = run_main(str(root), "--gin_file=quickstart.gin",
                      "--gin_bindings=TrainingHparams.optimizer='sgd'",
                      "--gin_bindings=TrainingHparams.lr=1e30",
                      "--gin_bindings=TrainingHparams.training_steps='100it'",
                      "--gin_bindings=TrainingHparams.eval_every='50it'")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: loss became") and "lower TrainingHparams.lr" in last
    assert glob.glob(str(root / "*" / "config.gin"))
    assert not glob.glob(str(root / "*" / "replicate_0" / "level_0" / "train" / "final.json"))
    assert not glob.glob(str(root / "*" / "replicate_0" / "level_1"))


def test_a_run_starts_without_tensorflow_start_up_noise(tmp_path):
    """As a user runs it (no TF_CPP_MIN_LOG_LEVEL), a short quickstart's whole stderr
    holds no E/W line of TensorFlow's start-up (CUDA probe, oneDNN, absl pre-init);
    TFLOTTERY_RAW_LOGS=1 would show them (tests/test_tf_import.py)."""
    out = run_module("tflottery.main", f"--root_dir={tmp_path / 'runs'}",
                     "--gin_file=quickstart.gin", "--gin_bindings=PruningHparams.levels = 1",
                     "--gin_bindings=TrainingHparams.training_steps = '20it'",
                     "--gin_bindings=TrainingHparams.eval_every = '10it'",
                     "--gin_bindings=BranchHparams.names = ()",
                     extra_env={"TF_CPP_MIN_LOG_LEVEL": None})
    assert out.returncode == 0, out.stderr[-2000:]
    noise = [line for line in out.stderr.splitlines()
             if re.match(r"[EWF]\d{4} ", line) or "InitializeLog" in line or "cuInit" in line
             or "oneDNN" in line or "cuda drivers" in line]
    assert not noise, noise
    assert "level 1: training steps 0..20" in out.stderr
