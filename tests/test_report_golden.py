"""The report's bytes pinned (#23): a hand-made root of every experiment's layout
(tests/synthetic_runs.py, plus a lottery run with holdout metrics and dilated retrain
branches for the training-speed section) rendered by the report page and the
single-run lottery summary must give exactly the Markdown, tables and figure file
names stored in tests/data/report_golden/.

The tree is written from JSON files only (no training), so the bytes do not depend
on the CPU; the root's temporary path is replaced by ROOT before comparing.  To
accept an intended change: REGENERATE_GOLDEN=1 pytest tests/test_report_golden.py.
"""
from conftest import SMALL_RUN  # noqa: F401  (conftest sets up TensorFlow)
import json
import shutil
import os

import pytest

import synthetic_runs
from tflottery.reporting import collect, page, summary

GOLDEN = os.path.join(os.path.dirname(__file__), "data", "report_golden")


def _write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj))


def _texts(directory, root):
    out = {}
    for top, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(top, name)
            rel = os.path.relpath(path, directory)
            if name.endswith((".md", ".csv")):
                with open(path) as f:
                    out[rel] = f.read().replace(root, "ROOT")
            else:
                out[rel] = None
    return out


def _check(actual: dict, name: str):
    """actual: {file: text or None (only its presence is pinned)}."""
    path = os.path.join(GOLDEN, name + ".json")
    if os.environ.get("REGENERATE_GOLDEN"):
        with open(path, "w") as f:
            json.dump(actual, f, indent=0, sort_keys=True)
            f.write("\n")
    with open(path) as f:
        expected = json.load(f)
    assert sorted(actual) == sorted(expected)
    for key in expected:
        assert actual[key] == expected[key], key


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("golden") / "root")
    synthetic_runs.build(root)
    return root


def _page(root, name):
    out = os.path.join(os.path.dirname(root), "report_" + name)
    page.write_report(collect.collect(root), out)
    _check(_texts(out, root), name)


def test_report_page_is_byte_identical(root):
    _page(root, "page")


def test_speed_section_is_byte_identical(tmp_path):
    """Apart from the synthetic root: a corrupt file there fails speed's own reader."""
    root = str(tmp_path / "root")
    synthetic_runs.speed_run(root)
    _page(root, "speed_page")


def test_lottery_run_summary_is_byte_identical(root):
    run_dir = os.path.join(root, "lottery_aaaaaaaaaa")
    result = summary.summarize(run_dir, 0.2)
    _check({"summary.md": summary.to_markdown(result)}, "lottery_summary")


def test_runs_recording_their_spec_render_the_same_page(root, tmp_path):
    """The same runs with experiment.json written from each experiment's REPORT (as the
    runner records it) render the same page: the recorded spec and the fallback for runs
    from before the record (reporting/legacy.py, checked here against the experiments'
    declarations) read alike."""
    from tflottery import experiments
    from tflottery.reporting import legacy
    from tflottery.runs import report_spec
    for name, spec in legacy.SPECS.items():
        assert experiments.REGISTRY.get(name).REPORT == spec, name
    copy = str(tmp_path / "root")
    shutil.copytree(root, copy)
    recorded = 0
    for run_dir in collect.find_runs(copy):
        match = legacy.RUN_NAME.fullmatch(os.path.basename(run_dir))
        if match and match.group("experiment") in legacy.SPECS:
            report_spec.write(run_dir, experiments.REGISTRY.get(match.group("experiment")).REPORT)
            recorded += 1
    assert recorded >= 7
    _page(copy, "page")
