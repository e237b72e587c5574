"""Run names: defaults left out of the hash, and a few pinned hashes."""
import dataclasses
import hashlib

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
