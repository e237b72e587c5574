"""Run names: defaults left out of the hash, and a few pinned hashes."""
import dataclasses
import hashlib

import pytest

from tflottery.hparams import DatasetHparams, ExperimentHparams, ModelHparams, TrainingHparams
from tflottery.runs.naming import canonical_config, config_hash, run_name


def test_defaults_are_left_out():
    assert canonical_config([DatasetHparams(), TrainingHparams()]) == {}
    cfg = canonical_config([TrainingHparams(lr=0.5, milestones=("1ep",))])
    assert cfg == {"TrainingHparams": {"lr": 0.5, "milestones": ("1ep",)}}


def test_binding_a_default_does_not_rename():
    a = run_name("train", [TrainingHparams(lr=0.5)])
    b = run_name("train", [TrainingHparams(lr=0.5, momentum=0.0)])
    assert a == b


def test_order_of_fields_and_dicts_does_not_matter():
    a = config_hash([ModelHparams(options={"a": 1, "b": 2})])
    b = config_hash([ModelHparams(options={"b": 2, "a": 1})])
    assert a == b


def test_pinned_hashes():
    # If one of these changes, existing run directories would no longer be
    # found: change the hashing only on purpose, with a migration note.
    # All defaults: the hash of the canonical text '{}' (sha256 44136fa355b3...).
    assert run_name("train", [ExperimentHparams(), DatasetHparams(), ModelHparams(),
                              TrainingHparams()]) == "train_44136fa355"
    # The canonical text is written out by hand here and hashed independently.
    quick = [ExperimentHparams(), DatasetHparams(name="digits", batch_size=60),
             ModelHparams(name="lenet_300_100"),
             TrainingHparams(optimizer="adam", lr=1.2e-3, training_steps="600it",
                             eval_every="5ep", steps_per_loop=50)]
    text = ('{"TrainingHparams":{"eval_every":"5ep","lr":0.0012,"optimizer":"adam",'
            '"steps_per_loop":50,"training_steps":"600it"}}')
    assert config_hash(quick) == hashlib.sha256(text.encode()).hexdigest()[:10]
    resnet = [DatasetHparams(name="cifar10", batch_size=128), ModelHparams(name="resnet_20"),
              TrainingHparams(momentum=0.9, milestones=("32000it", "48000it"))]
    text = ('{"DatasetHparams":{"batch_size":128,"name":"cifar10"},'
            '"ModelHparams":{"name":"resnet_20"},'
            '"TrainingHparams":{"milestones":["32000it","48000it"],"momentum":0.9}}')
    assert config_hash(resnet) == hashlib.sha256(text.encode()).hexdigest()[:10]
    assert config_hash(resnet) == "775204117c"  # pinned


def test_new_field_with_default_keeps_hash():
    @dataclasses.dataclass(frozen=True)
    class TrainingHparams2(TrainingHparams):
        new_option: int = 3
    TrainingHparams2.__name__ = "TrainingHparams"
    assert config_hash([TrainingHparams2(lr=0.5)]) == config_hash([TrainingHparams(lr=0.5)])


# The run directory of every shipped configuration (#23: the layout refactor must not
# rename a run).  Experiment files are combined with lenet_mnist.gin as in
# test_gin_configs.py; the base files name no model and are left out.
PINNED_RUN_NAMES = {
    "conv2_cifar10.gin": "train_64e25f9183",
    "conv4_cifar10.gin": "train_a72d121e4f",
    "conv6_cifar10.gin": "train_01940de6d7",
    "conv8_cifar10.gin": "train_fff2bd5ed3",
    "dilation_lenet_mnist_local.gin": "lottery_02515659d3",
    "dynamic_imp.gin": "dynamic_imp_2d6a799550",
    "dynamic_imp_recipe.gin": "dynamic_imp_a7d02de963",
    "gradual.gin": "gradual_e7e49578ae",
    "imp.gin": "lottery_092f90c689",
    "imp_rewind.gin": "lottery_7f18c05e9a",
    "inceptionv3_imagenet.gin": "train_b5e9dfa189",
    "lenet_mnist.gin": "train_206a7505e0",
    "lenet_mnist_local.gin": "train_05bbc01f2e",
    "lmc.gin": "lmc_102339e4fb",
    "lmc_align.gin": "lmc_c47b9dd85e",
    "lmc_align_imp.gin": "lmc_6ff8fa41f0",
    "lmc_align_resnet20.gin": "lmc_00fcae0b05",
    "lmc_imp.gin": "lmc_89e6459aea",
    "lmc_lenet.gin": "lmc_102339e4fb",
    "lmc_resnet20.gin": "lmc_c4967e43d6",
    "lmc_vgg16.gin": "lmc_0c755b976f",
    "lrr.gin": "lottery_8ec8bb3bac",
    "oneshot.gin": "lottery_bb411e8be5",
    "pai_base.gin": "pai_1efaf6a1b9",
    "pai_grasp.gin": "pai_df9ec017e2",
    "pai_isnip.gin": "pai_9d0040565c",
    "pai_magnitude.gin": "pai_1efaf6a1b9",
    "pai_random.gin": "pai_01d2e564fc",
    "pai_snip.gin": "pai_8e216bd4b8",
    "pai_synflow.gin": "pai_a6c319692f",
    "quickstart.gin": "lottery_2fcb3142a5",
    "resnet18_tinyimagenet.gin": "train_edd3f96a6c",
    "resnet20_cifar10.gin": "train_6a78ea26bd",
    "resnet20_cifar10_low.gin": "train_91751047a8",
    "resnet20_cifar10_warmup.gin": "train_0db49e1686",
    "resnet50_imagenet.gin": "train_636dce2d6c",
    "rigl.gin": "dst_46fd9ccde3",
    "set.gin": "dst_19d781ffd5",
    "vgg16_cifar10.gin": "train_511678f588",
    "vgg16_cifar10_low.gin": "train_e0df3825e9",
    "vgg16_cifar10_warmup.gin": "train_48925d2e90",
}


@pytest.mark.parametrize("config", sorted(PINNED_RUN_NAMES))
def test_every_shipped_config_keeps_its_run_name(config):
    import gin
    from test_gin_configs import EXPERIMENT_FILES
    from tflottery import gin_files, runner
    files = ["lenet_mnist.gin", config] if config in EXPERIMENT_FILES else [config]
    if config == "oneshot.gin":
        files.insert(1, "imp_rewind.gin")
    gin.clear_config()
    try:
        gin_files.parse(files, [])
        experiment, base = runner.build_hparams()
        assert runner.name_and_record(experiment, base)[0] == PINNED_RUN_NAMES[config]
    finally:
        gin.clear_config()
