"""Every file in gin_configs/ parses, binds, and names things that exist."""
import os

import gin
import pytest

from tflottery import data, gin_files, models
from tflottery.experiments import REGISTRY as EXPERIMENTS
from tflottery.hparams import DatasetHparams, ExperimentHparams, ModelHparams, TrainingHparams
from tflottery.training.loop import PhaseSteps, build_schedule
from tflottery.steps import Step
from tflottery.training.optimizers import OPTIMIZERS

# Base files are included by others and name no model on purpose.
BASE_FILES = {"cifar10_sgd_base.gin", "conv_cifar10_base.gin"}
# Experiment files are combined with a network file (they come after it).
EXPERIMENT_FILES = {"imp.gin", "imp_rewind.gin", "lrr.gin", "oneshot.gin", "lmc.gin",
                    "lmc_imp.gin", "pai_base.gin", "gradual.gin", "rigl.gin", "set.gin",
                    "dynamic_imp.gin", "dynamic_imp_recipe.gin"} | {
    f"pai_{method}.gin" for method in ("snip", "grasp", "synflow", "magnitude", "random", "isnip")}


TRAIN_SIZES = {"digits": 1497, "mnist": 60000, "mnist_local": 8000, "cifar10": 50000,
               "cifar100": 50000, "tiny_imagenet": 100000, "imagenet2012": 1281167}


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.mark.parametrize("name", gin_files.available_configs())
def test_config_parses_and_binds(name):
    files = ["lenet_mnist.gin", name] if name in EXPERIMENT_FILES else [name]
    if name == "oneshot.gin":
        files.insert(1, "imp_rewind.gin")
    gin_files.parse(files, [])
    exp, ds, model, tr = ExperimentHparams(), DatasetHparams(), ModelHparams(), TrainingHparams()
    assert exp.name in EXPERIMENTS
    assert ds.name in data.names()
    assert tr.optimizer in OPTIMIZERS
    if name not in BASE_FILES:
        assert model.name in models.names()
    if name in BASE_FILES:
        return
    # Steps resolve inside training with the dataset's real epoch length.
    ipe = TRAIN_SIZES[ds.name] // ds.batch_size
    steps = PhaseSteps.resolve(tr, iterations_per_epoch=ipe)
    build_schedule(tr, steps.total, ipe)
    if exp.name == "lottery":
        from tflottery.experiments.lottery import LevelPlan, LotteryHparams, PruningHparams
        assert LevelPlan.from_hparams(PruningHparams()).num_levels >= 2
        assert Step.parse(LotteryHparams().rewind_step).iterations(ipe) < steps.total
    if exp.name == "lmc":
        from tflottery.experiments.lmc import InstabilityHparams
        for k in InstabilityHparams().rewind_steps:
            assert Step.parse(k).iterations(ipe) < steps.total


def test_every_config_has_a_header():
    for name in gin_files.available_configs():
        with open(os.path.join(gin_files.CONFIG_DIR, name)) as f:
            first = f.readline()
        assert first.startswith("#"), name


def test_table_4_1_values():
    gin_files.parse(["resnet20_cifar10_warmup.gin"], [])
    tr = TrainingHparams()
    assert (tr.lr, tr.warmup, tr.milestones, tr.training_steps, tr.momentum) == (
        0.03, "30000it", ("32000it", "48000it"), "63000it", 0.9)
    assert DatasetHparams().batch_size == 128 and ModelHparams().name == "resnet_20"
    gin.clear_config()
    gin_files.parse(["lenet_mnist.gin"], [])
    tr = TrainingHparams()
    assert (tr.optimizer, tr.lr, tr.training_steps, DatasetHparams().batch_size) == (
        "adam", 1.2e-3, "24000it", 60)


def test_unknown_and_malformed():
    from tflottery.errors import ConfigError
    with pytest.raises(ConfigError, match="unknown gin file 'nope'"):
        gin_files.parse(["nope"], [])
    with pytest.raises(ConfigError, match="bad gin configuration"):
        gin_files.parse(["quickstart.gin"], ["TrainingHparams.lr = (("])
    gin.clear_config()
    with pytest.raises(ConfigError, match="bad gin configuration"):
        gin_files.parse(["quickstart.gin"], ["TrainingHparams.no_such_field = 3"])
