"""What an experiment is checked for at registration (experiments/base.py), and the run
state every copy of a RunContext shares (experiments/context.py)."""
import dataclasses

import pytest

from tflottery.errors import ConfigError
from tflottery.experiments import REGISTRY
from tflottery.experiments.base import check_experiment
from tflottery.experiments.context import RunContext
from tflottery.registry import Registry


class Complete:
    name = "complete"

    def hparams(self):
        return []

    def validate(self, ctx):
        pass

    def phases(self, ctx):
        return []

    def run(self, ctx):
        return {}


def test_every_registered_experiment_is_complete():
    for name in REGISTRY.names():
        check_experiment(name, REGISTRY.get(name))


def test_a_class_without_a_method_is_refused_at_registration_naming_it():
    registry = Registry("experiment", check_experiment)
    registry.register("complete", Complete)

    class NoPhases(Complete):
        name = "no_phases"
        phases = None

    with pytest.raises(ConfigError, match=r"^experiment 'no_phases' \(.*NoPhases\) lacks "
                                          r"phases\(\); an experiment needs name, hparams\(\)"):
        registry.register("no_phases", NoPhases)
    assert registry.names() == ["complete"]


def test_a_class_registered_under_another_name_is_refused():
    with pytest.raises(ConfigError, match="has name = 'complete'; set the class attribute "
                                          "name = 'other'"):
        Registry("experiment", check_experiment).register("other", Complete)


def test_copies_of_a_context_share_its_run_state():
    ctx = RunContext(strategy=None, run_dir="runs/x", replicate=0, dataset_hp=None,
                     model_hp=None, training_hp=None, dataset=None)
    other = dataclasses.replace(ctx, replicate=1, run_dir="runs/y")
    assert other.state is ctx.state
    other.state.pretrained.add("runs/y/replicate_1/pretrain")
    assert "runs/y/replicate_1/pretrain" in ctx.state.pretrained
