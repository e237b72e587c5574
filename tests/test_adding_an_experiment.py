"""README "Adding an experiment": the worked example (tests/toy_experiment.py plus its gin
lines) runs from the command line without any file of the package changing: it is listed,
planned, trained, resumed (a second run trains nothing) and reported."""
import csv
import glob
import json
import os
import re

from conftest import REPO, run_module

TESTS = os.path.dirname(os.path.abspath(__file__))
GIN = """\
import toy_experiment
ExperimentHparams.name = 'toy'
ToyHparams.parts = 2
TrainingHparams.training_steps = '20it'
TrainingHparams.eval_every = '10it'
"""


def _main(gin_file, *args):
    env = {"PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", REPO)])}
    result = run_module("tflottery.main", f"--gin_file={gin_file}", *args, extra_env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _tree(root):
    """{path: file contents} of every file under root."""
    return {p: open(p, "rb").read() for p in glob.glob(os.path.join(root, "**"), recursive=True)
            if os.path.isfile(p)}


def test_readme_toy_experiment_is_listed_planned_trained_resumed_and_reported(tmp_path):
    gin_file, root = tmp_path / "toy.gin", str(tmp_path / "runs")
    gin_file.write_text(GIN)

    listed = _main(gin_file, "--list")
    assert re.search(r"^  toy +Training in ToyHparams.parts equal phases", listed, re.M)

    plan = _main(gin_file, f"--root_dir={root}", "--dry_run")
    assert "part 0  steps 0..10" in plan and "part 1  steps 10..20" in plan
    assert "20 training steps left of 20" in plan
    assert not os.path.exists(root)             # a dry run writes nothing

    first = _main(gin_file, f"--root_dir={root}")
    (run_dir,) = glob.glob(os.path.join(root, "toy_*"))
    assert "final test accuracy of the network after 2 parts: " in first
    record = json.load(open(os.path.join(run_dir, "hparams.json")))
    assert record["hparams"]["ToyHparams"] == {"parts": 2}
    for part, end in (("part_0", 10), ("part_1", 20)):
        assert json.load(open(os.path.join(run_dir, "replicate_0", part, "final.json")))[
            "step"] == end

    files = _tree(run_dir)
    again = _main(gin_file, f"--root_dir={root}")     # resumes: everything is done
    assert again.splitlines()[-1] == first.splitlines()[-1]
    after = _tree(run_dir)
    for path, content in files.items():
        if "/part_" in path:    # nothing trained again: the phases' files are untouched
            assert after[path] == content, path
    assert "0 training steps left of 20" in _main(gin_file, f"--root_dir={root}", "--dry_run")

    report = run_module("tflottery.report", root)
    assert report.returncode == 0, report.stderr[-2000:]
    rows = list(csv.DictReader(open(os.path.join(root, "report", "results.csv"))))
    toy = [r for r in rows if r["run"] == os.path.basename(run_dir)]
    assert [r["experiment"] for r in toy] == ["toy", "toy"], rows
    assert {r["status"] for r in toy} == {"done"}
    assert {(r["method"], r["density"]) for r in toy} == {("toy parts", "1.0")}   # its REPORT
    assert json.load(open(os.path.join(run_dir, "experiment.json")))["method"] == "toy parts"


def test_readme_shows_the_toy_experiment_as_tested():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    source = open(os.path.join(TESTS, "toy_experiment.py"), encoding="utf-8").read()
    assert source[source.index("import dataclasses"):] in text
    assert GIN in text
