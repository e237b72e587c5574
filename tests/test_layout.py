"""The run directory's layout (runs/layout.py) and what a run records for its report
(#23): the names are the on-disk format, the runner writes experiment.json from the
experiment's ReportSpec and calls its declared end-of-run report, and the collector
reports an experiment it has never heard of from that record alone."""
from conftest import SMALL_RUN  # noqa: E402
import json
import os

import gin
import pytest

from tflottery import experiments, gin_files, runner
from tflottery.experiments.train import TrainExperiment
from tflottery.reporting import collect, groups
from tflottery.runs import layout, report_spec


def test_names_are_the_on_disk_format():
    rep = layout.replicate_dir(layout.run_dir("/r", "lottery_0123456789"), 2)
    assert rep == "/r/lottery_0123456789/replicate_2"
    level = layout.level_dir(rep, 3)
    assert layout.train_dir(layout.branch_dir(level, "random_reinit")) == \
        rep + "/level_3/branch_random_reinit/train"
    assert layout.branch_dir_name("retrain") is None
    assert layout.branch_dir_name("inverted", data_seed=7) == "branch_inverted"
    assert layout.copy_dir(layout.analysis_dir(rep, None, 500), 1) == rep + "/k_500/copy_1"
    assert layout.analysis_dir(rep, 2, 0) == rep + "/level_2/k_0"
    assert layout.dynamic_phase_dir(rep, 1, layout.SPARSE) == rep + "/phase_1/sparse"
    assert layout.mask_of_phase(rep + "/level_3/train") == rep + "/level_3/mask"
    assert layout.mask_of_phase(rep + "/phase_1") == rep + "/phase_1/mask"
    assert layout.describe("level_2/k_500/copy_1") == {
        "level": 2, "k": 500, "branch": None, "kind": "copy"}
    assert layout.describe("level_2/branch_retrain_ab/train")["branch"] == "retrain_ab"
    assert layout.dynamic_phase("phase_3/dense") == (3, "dense")
    assert layout.numbered(["level_10", "level_2", "levels", "k_1"], layout.LEVEL) == [
        (2, "level_2"), (10, "level_10")]


def test_retrain_branch_tag_is_pinned():
    # The tag hashes the settings the branch changes: runs made before #23 keep theirs.
    assert layout.branch_dir_name("retrain", data_seed=7) == "branch_retrain_454fbfb0"
    assert layout.branch_dir_name("retrain", dilation=0.5) == "branch_retrain_41beb39e"


def test_spec_round_trips_through_experiment_json(tmp_path):
    spec = experiments.REGISTRY.get("dst").REPORT
    report_spec.write(str(tmp_path), spec)
    assert report_spec.read(str(tmp_path)) == spec
    assert report_spec.read(str(tmp_path / "none")) is None
    (tmp_path / layout.EXPERIMENT_RECORD).write_text("[1]")
    with pytest.raises(ValueError):
        report_spec.read(str(tmp_path))


END_OF_RUN_CALLS = []


def toy_end_of_run(run_dir, settings, writable):
    """A toy experiment's declared end-of-run report (called by the runner)."""
    END_OF_RUN_CALLS.append((run_dir, settings["TrainingHparams.training_steps"], writable))
    return {"toy": True}


class ToyExperiment(TrainExperiment):
    """The train experiment under another name, reported as a lottery-like 'dense' run."""

    name = "toy_layout"
    REPORT = report_spec.ReportSpec(name, family="train", method="toy method", dense=True,
                                    end_of_run=f"{__name__}.toy_end_of_run")


@pytest.fixture
def toy():
    experiments.REGISTRY.register("toy_layout", ToyExperiment)
    yield
    del experiments.REGISTRY._items["toy_layout"]
    gin.clear_config()


def test_runner_records_the_spec_and_calls_the_declared_report(tmp_path, toy):
    gin.clear_config()
    gin_files.parse([], SMALL_RUN + ["ExperimentHparams.name = 'toy_layout'"])
    result = runner.run(str(tmp_path))
    run_dir = END_OF_RUN_CALLS[-1][0]
    assert END_OF_RUN_CALLS[-1][1:] == ("24it", True) and result["summary"] == {"toy": True}
    with open(os.path.join(run_dir, "experiment.json")) as f:
        assert report_spec.from_record(json.load(f)) == ToyExperiment.REPORT
    table = collect.collect(str(tmp_path))
    (run,) = table["runs"]
    assert run["experiment"] == "toy_layout" and groups.runs_of(table, "train") == [run]
    (row,) = table["rows"]
    assert (row["method"], row["density"], row["status"]) == ("toy method", 1.0, "done")
