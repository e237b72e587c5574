"""Dynamic-sparsity runs in the report: rows, the per-replicate results and both figures."""
from conftest import SMALL_RUN  # noqa: E402
import os

import gin
import pytest

from tflottery import gin_files, runner
from tflottery.reporting import collect, groups, tables
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


def test_dynamic_imp_variants_are_distinct_methods_with_their_overlaps(tmp_path):
    # Forced overlap and growth instead of the second IMP phase: each its own row, labelled
    # by its settings, with the last phase's mask movement.
    root = tmp_path / "runs"
    for binding in ("DynamicImpHparams.min_overlap = 0.8",
                    "DynamicImpHparams.next_mask = 'grow_random'", ""):
        gin.clear_config()
        gin_files.parse([], SMALL_RUN + ["ExperimentHparams.name = 'dynamic_imp'",
                                         "DynamicImpHparams.change_points = ('12it',)", binding])
        runner.run(str(root))
    table = collect.collect(str(root))
    methods = sorted(r["method"] for r in table["rows"] if r["kind"] == "train")
    assert methods == ["dynamic_imp", "dynamic_imp (min_overlap=0.8)",
                       "dynamic_imp (next_mask=grow_random)"]
    summary = tables.dynamic_summary(table)
    by_method = {r["method"]: r for r in table["dynamic"]}
    for method, record in by_method.items():
        moved = record["phases"][-1]["overlap_with_previous"]["new_not_in_previous"]
        line = next(line for line in summary.splitlines()
                    if f"| {groups.label(method)} |" in line)
        assert f"| {100 * moved:.1f} |" in line, (method, line)
    assert by_method["dynamic_imp (min_overlap=0.8)"]["phases"][-1][
        "overlap_with_previous"]["new_not_in_previous"] <= 0.2
    # 80% of m_1 dropped and as many grown (some of them just dropped).
    assert by_method["dynamic_imp (next_mask=grow_random)"]["phases"][-1][
        "regrown_kept"] == pytest.approx(0.8, abs=0.01)
