"""Bad input is refused in one line before anything exists (issue 22, point 1).

The cases come from benchmarks/bad_inputs.py, which generates a wrong-type
and out-of-range values for every field of every hyperparameter dataclass
(plus the issue's hand-written cases).  Here a sample runs in-process
(gin_files.parse + runner.prepare, what the CLI runs before it writes) and
a few through `python -m tflottery.main`; the benchmark runs them all.
"""
import dataclasses
import importlib.util
import math
import os

import pytest

from conftest import REPO

from tflottery import hparams
from tflottery.errors import ConfigError
from tflottery.steps import Step

_spec = importlib.util.spec_from_file_location(
    "bad_inputs", os.path.join(REPO, "benchmarks", "bad_inputs.py"))
bad_inputs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bad_inputs)


def _hparams_classes():
    """The package's hyperparameter classes: the shared ones and those beside their
    experiments (a test's own, such as test_adding_an_experiment's, are left out)."""
    import tflottery.experiments  # noqa: F401  (defines the classes beside the experiments)
    return [c for c in hparams.classes() if c.__module__.startswith("tflottery.")]


def test_generated_cases_cover_every_field_of_every_hparams_class():
    """A wrong type for every field, and out-of-range values for every non-bool field,
    found from the dataclasses (so a field added later is covered without a test edit)."""
    kinds = {}
    for case in bad_inputs.generated_cases():
        key = case.name.split(": ", 1)[1].split(" = ")[0]
        kinds.setdefault(key, set()).add(case.name.split(":")[0])
    classes = _hparams_classes() + list(bad_inputs.model_options_classes())
    assert len(classes) >= 14 + 5
    for cls in classes:
        for field in dataclasses.fields(cls):
            key = f"{cls.__name__}.{field.name}"
            assert kinds.get(key) == ({"type"} if field.type is bool else {"type", "range"}), key


def _sample_of_generated():
    """The first wrong-type and the last out-of-range case of every class."""
    by_class = {}
    for case in bad_inputs.generated_cases():
        cls = case.name.split(": ", 1)[1].split(".")[0]
        kind = case.name.split(":")[0]
        by_class.setdefault((cls, kind), []).append(case)
    return [cases[0] if kind == "type" else cases[-1]
            for (_, kind), cases in sorted(by_class.items())]


SAMPLE = _sample_of_generated()


@pytest.mark.parametrize("case", SAMPLE, ids=[c.name for c in SAMPLE])
def test_generated_bad_value_is_refused_before_the_root_exists(tmp_path, case):
    outcome = bad_inputs.run_in_process(case, str(tmp_path / "runs"))
    assert outcome.failure is None, (outcome.failure, outcome.message)


HAND = {"seed: BranchHparams.data_seed = -1 (lottery)", "seed: --replicate=99999999999999999999",
        "layer: unmasked_layers = ('bogus_layer',)",
        "layer: layer_fractions = {'output': 2.0} (layerwise)",
        "level: InstabilityHparams.levels = (99,) (dense)",
        "model option: resnet_20 bn_momentum = 'x'", "GradualHparams.power = -1",
        "RigL at sparsity 0", "data_dir does not exist (digits ignores it)",
        "npz data_dir of random bytes", "size: training_steps = '99999999999999999999999it'",
        "size: eval_every = '1it' with 2**40 steps", "size: PruningHparams.levels = 1000000000",
        "size: target_sparsity = 0.99999999 (below one weight)", "empty gin file",
        "gin parse: unbalanced quote", "gin parse: missing =", "gin parse: non-UTF-8 bytes",
        "gin parse: power expression", "gin binding parse: unbalanced quote"}


@pytest.fixture(scope="module")
def hand_cases(tmp_path_factory):
    return {c.name: c for c in bad_inputs.hand_cases(str(tmp_path_factory.mktemp("scratch")))}


def test_the_hand_sample_names_existing_cases(hand_cases):
    assert HAND <= set(hand_cases), HAND - set(hand_cases)


@pytest.mark.parametrize("name", sorted(HAND))
def test_hand_written_bad_input_is_refused_before_the_root_exists(tmp_path, hand_cases, name):
    outcome = bad_inputs.run_in_process(hand_cases[name], str(tmp_path / "runs"))
    assert outcome.failure is None, (outcome.failure, outcome.message)


def test_base_configurations_are_accepted():
    """Without this, a broken base would make every case "refused"."""
    assert bad_inputs.check_bases() == []


CLI = ["flag: --bogus_flag=1", "seed: --replicate=99999999999999999999",
       "npz data_dir of random bytes"]


@pytest.mark.parametrize("name", CLI)
def test_cli_refuses_with_one_error_line_exit_2_and_no_root(tmp_path, hand_cases, name):
    outcome = bad_inputs.run_cli(hand_cases[name], str(tmp_path / "runs"), str(tmp_path))
    assert outcome.failure is None, (outcome.failure, outcome.message)
    assert outcome.message.startswith("error: ")


def test_step_limit_is_2_to_the_53_minus_1():
    assert Step.parse(f"{2 ** 53 - 1}it").iterations(1) == 2 ** 53 - 1
    with pytest.raises(ConfigError, match="limit"):
        Step.parse(f"{2 ** 53}it")
    with pytest.raises(ConfigError, match="limit"):
        Step.parse(f"{2 ** 40}ep").iterations(2 ** 13)    # 2**53 iterations


def test_pruning_levels_stop_at_one_remaining_weight():
    """0.8**L of 50,200 weights stays >= 1 up to L = floor(ln 50200 / -ln 0.8) = 48."""
    from tflottery.experiments.lottery import LevelPlan
    limit = math.floor(math.log(50200) / -math.log(0.8))
    assert limit == 48
    LevelPlan.from_hparams(hparams.PruningHparams(fraction=0.2, levels=limit)).check_fits(50200)
    with pytest.raises(ConfigError, match="less than one weight"):
        LevelPlan.from_hparams(hparams.PruningHparams(fraction=0.2, levels=limit + 1)) \
            .check_fits(50200)
