"""`--help` and `--show_hparams` (#25): every hyperparameter field reachable from the
command line with its type, default, configured value and meaning.

The meanings come from the classes' docstrings (tflottery/hparams_doc.py), so a
field added without a docstring entry fails here rather than showing
'(undocumented)' to a user.
"""
import dataclasses
from typing import Optional, Tuple


from conftest import run_module
import tflottery.experiments  # noqa: F401  (registers every experiment's classes)
from tflottery import hparams, hparams_doc


@dataclasses.dataclass(frozen=True)
class _Toy:
    """A toy class: its summary
    on two lines.

    Text that is not an entry: ignored.
    width: how wide, continued
      on an indented line (e.g. '3ep' is one). A second sentence.
    left / right: both margins.
    kind: 'Erdős-Rényi-
      Kernel' joins.
    steps: a step quantity.
    """

    width: int = 3
    left: float = 0.0
    right: Optional[float] = None
    kind: str = "erk"
    steps: Tuple[hparams.StepText, ...] = ("1ep",)
    loose: bool = False


def test_field_docs_reads_entries_continuations_and_pairs():
    docs = hparams_doc.field_docs(_Toy)
    assert docs == {"width": "how wide, continued on an indented line (e.g. '3ep' is one). "
                             "A second sentence.",
                    "left": "both margins.", "right": "both margins.",
                    "kind": "'Erdős-Rényi-Kernel' joins.", "steps": "a step quantity."}
    assert hparams_doc.summary_line(_Toy) == "A toy class: its summary on two lines."
    assert hparams_doc.first_sentence(docs["width"]) == (
        "how wide, continued on an indented line (e.g. '3ep' is one).")


def test_describe_shows_type_default_value_and_meaning():
    text = hparams_doc.describe([_Toy(width=5)])
    lines = text.splitlines()
    assert lines[0] == "_Toy: A toy class: its summary on two lines."
    assert "  width: int = 3  (here: 5)" in lines
    assert "  left: float = 0.0" in lines          # at its default: no 'here:'
    assert "  steps: Tuple[step, ...] = ('1ep',)" in lines
    assert lines[lines.index("  loose: bool = False") + 1].strip() == "(undocumented)"


def test_every_field_of_every_class_is_documented():
    classes = hparams.classes()
    assert {"TrainingHparams", "PruningHparams", "DstHparams", "PaiHparams",
            "InstabilityHparams"} <= {c.__name__ for c in classes}
    missing = [f"{cls.__name__}.{f.name}" for cls in classes for f in dataclasses.fields(cls)
               if f.name not in hparams_doc.field_docs(cls)]
    assert not missing, f"add a docstring entry 'name: meaning' for {missing}"
    text = hparams_doc.describe(classes)
    for cls in classes:
        for field in dataclasses.fields(cls):
            assert f"\n  {field.name}: " in text, (cls.__name__, field.name)


def test_help_exits_0_and_points_at_show_hparams():
    out = run_module("tflottery.main", "--help", timeout=120)
    assert out.returncode == 0, out.stderr[-1000:]
    assert "--show_hparams" in out.stdout and "--gin_file" in out.stdout


def test_show_hparams_lists_the_configured_experiment_with_its_values(tmp_path):
    out = run_module("tflottery.main", "--gin_file=quickstart.gin", "--show_hparams",
                     "--gin_bindings=TrainingHparams.lr = 0.01",
                     f"--root_dir={tmp_path / 'runs'}", timeout=120)
    assert out.returncode == 0, out.stderr[-1000:]
    assert "experiment 'lottery'" in out.stdout
    assert "  lr: float = 0.1  (here: 0.01)" in out.stdout
    assert "  levels: int = " in out.stdout and "(here: 6)" in out.stdout
    # quickstart's classes, not every experiment's; nothing written.
    assert "PruningHparams:" in out.stdout and "DstHparams:" not in out.stdout
    assert not (tmp_path / "runs").exists()
