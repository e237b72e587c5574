"""The README is true to the code: its own-model-and-data example runs as
written (a gin `import` of a module that registers a model and a dataset),
and its hyperparameter table and model list name every dataclass, field,
experiment and model there is."""
import dataclasses
import json
import glob
import os
import re
import shlex
import subprocess
import sys

from conftest import REPO

README = os.path.join(REPO, "README.md")


def _section(title: str) -> str:
    text = open(README, encoding="utf-8").read()
    start = text.index(f"## {title}")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _blocks(text: str):
    """(info string, body) of every fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)


def _run(argv, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTHONPATH", None)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def test_readme_own_model_and_dataset_run_from_the_cli(tmp_path):
    blocks = _blocks(_section("Your own model and data (from the command line)"))
    (module,) = [body for info, body in blocks if info == "python"]
    (config,) = [body for info, body in blocks if info == ""]
    (command,) = [body for info, body in blocks if info == "bash"]
    (tmp_path / "my_project.py").write_text(module)
    (tmp_path / "my_experiment.gin").write_text(config)
    argv = shlex.split(command.strip())
    assert argv[:3] == ["python", "-m", "tflottery.main"]
    listed = _run([sys.executable, "-m", "tflottery.main", "--list",
                   "--gin_file=my_experiment.gin"], tmp_path)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert re.search(r"^  tiny_mlp +tiny_mlp$", listed.stdout, re.M)
    assert re.search(r"^  blobs +load_blobs$", listed.stdout, re.M)
    result = _run([sys.executable] + argv[1:], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final test accuracy of the last IMP level (level 2, 63.98% of weights remaining)" \
        in result.stdout
    acc = float(result.stdout.strip().splitlines()[-1].split()[-1].rstrip("%"))
    assert acc > 60.0        # three well-separated classes; chance is 33%
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "lottery_*"))
    record = json.load(open(os.path.join(run_dir, "hparams.json")))
    assert record["hparams"]["ModelHparams"]["options"] == {"width": 32}
    assert record["non_default"]["DatasetHparams"]["name"] == "blobs"


def test_readme_names_every_hparams_class_field_experiment_and_model():
    from tflottery import experiments, hparams, models
    text = open(README, encoding="utf-8").read()
    rows = {m.group(1): m.group(2) for m in
            re.finditer(r"^\| `(\w+Hparams)` \|(.*)\|$", text, re.M)}
    classes = [c for c in hparams.classes() if c.__module__.startswith("tflottery.")]
    for cls in classes:
        assert cls.__name__ in rows, f"{cls.__name__} is missing from the README's table"
        for field in dataclasses.fields(cls):
            assert f"`{field.name}`" in rows[cls.__name__], (cls.__name__, field.name)
    for name in experiments.REGISTRY.names():
        if experiments.REGISTRY.get(name).__module__.startswith("tflottery."):
            assert f"`'{name}'`" in rows["ExperimentHparams"], name
    for name in models.REGISTRY.names():
        assert f"`{name}`" in text, f"model {name} is missing from the README"
