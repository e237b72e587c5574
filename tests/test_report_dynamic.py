"""Dynamic-sparsity runs in the report: rows, the per-replicate results and both figures."""
from conftest import SMALL_RUN  # noqa: E402
import os

import gin
import pytest

from tflottery import gin_files, runner
from tflottery.reporting import collect
from tflottery.reporting.figures import dynamic


pytestmark = pytest.mark.usefixtures("clean_gin")


def test_dst_and_dynamic_imp_runs_in_the_report(tmp_path):
    root = tmp_path / "runs"
    for bindings in (["ExperimentHparams.name = 'dst'", "DstHparams.update_every = '8it'",
                      "DstHparams.grow = 'random'"],
                     ["ExperimentHparams.name = 'dynamic_imp'",
                      "DynamicImpHparams.change_points = ('12it',)",
                      "DynamicImpHparams.regrow_init = 'zero'"]):
        gin.clear_config()
        gin_files.parse([], SMALL_RUN + bindings)
        runner.run(str(root))
    table = collect.collect(str(root))
    results = [r for r in table["rows"] if r["kind"] == "train"]
    assert sorted(r["method"] for r in results) == ["dynamic_imp (regrow_init=zero)", "set"]
    for row in results:
        assert row["density"] == pytest.approx(0.1, abs=1e-4) and row["status"] == "done"
    # Dynamic IMP: the last phase's sparse training is the result, the rest are phases.
    phases = sorted((r["phase"], r["kind"]) for r in table["rows"]
                    if r["experiment"] == "dynamic_imp")
    assert phases == [("phase_1/dense", "phase"), ("phase_1/sparse", "phase"),
                      ("phase_2/dense", "phase"), ("phase_2/sparse", "train")]
    (record,) = [d for d in table["dynamic"] if d["experiment"] == "dynamic_imp"]
    assert record["phases"][1]["overlap_with_previous"]["new_not_in_previous"] >= 0
    out = tmp_path / "figures"
    os.makedirs(out)
    accuracy = dynamic.dynamic_accuracy(table, str(out))
    phase_figure = dynamic.dynamic_imp_phases(table, str(out))
    assert any(p.endswith(".png") for p in accuracy) and any(p.endswith(".png")
                                                             for p in phase_figure)
    for path in accuracy + phase_figure:
        assert os.path.getsize(path) > 1000
