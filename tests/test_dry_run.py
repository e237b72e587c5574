"""`--dry_run` without the data set (issue #25, item 2).

The plan needs only the data's sizes, which the registry's table
(Source.sizes) holds: a dry run reads and downloads nothing, so the plan of
a TPU job on ImageNet can be previewed on a machine without ImageNet (this
one is offline, with neither CIFAR nor ImageNet).  The expected steps below
are worked out by hand from the gin files and the datasets' published sizes.
"""
import dataclasses
import re

import gin
import pytest

from conftest import run_module
from tflottery import data, gin_files, runner
from tflottery.data import DATASETS, Source
from tflottery.errors import DataNotAvailableError


pytestmark = pytest.mark.usefixtures("clean_gin")


def dry_main(root, *args):
    """`--dry_run` with downloads allowed and tfds's default data_dir beside the root:
    neither may be created."""
    tfds_dir = root.parent / "tensorflow_datasets"
    done = run_module("tflottery.main", f"--root_dir={root}", *args, "--dry_run",
                      extra_env={"TFLOTTERY_TFDS_DOWNLOAD": None, "TFDS_DATA_DIR": str(tfds_dir)})
    assert not root.exists() and not tfds_dir.exists()
    return done


def phase_lines(text):
    """{phase name: (start, end)} of a dry run's phase lines."""
    found = re.findall(r"^  (\S.*?) +steps (\d+)\.\.(\d+)  ", text, re.M)
    return {name: (int(a), int(b)) for name, a, b in found}


def test_resnet50_imagenet_plans_offline(tmp_path):
    root = tmp_path / "runs"
    dry = dry_main(root, "--gin_file=resnet50_imagenet.gin")
    assert dry.returncode == 0, dry.stderr[-2000:]
    # ImageNet 2012 has 1,281,167 training images (tfds metadata); batch 1024 drops the
    # last partial batch: 1251 iterations per epoch, and 90 epochs of training.
    ipe = 1281167 // 1024
    assert ipe == 1251
    assert phase_lines(dry.stdout) == {"train": (0, 90 * ipe)}
    assert "train  steps 0..112590  replicate_0/train  [to run]" in dry.stdout
    assert (f"data: 'imagenet2012', 1281167 training, 0 holdout and 50000 test examples "
            f"(224, 224, 3), 1000 classes; {ipe} iterations per epoch of batch 1024") in dry.stdout
    assert f"{90 * ipe} training steps left of {90 * ipe}" in dry.stdout
    assert not root.exists()


def test_resnet20_cifar10_imp_rewind_plans_offline(tmp_path):
    root = tmp_path / "runs"
    dry = dry_main(root, "--gin_file=resnet20_cifar10.gin", "--gin_file=imp_rewind.gin",
                   "--gin_bindings=DatasetHparams.holdout_fraction = 0.1")
    assert dry.returncode == 0, dry.stderr[-2000:]
    # CIFAR-10: 50,000 training images, 10% held out -> 45,000; batch 128 -> 351 it/epoch.
    assert ("data: 'cifar10', 45000 training, 5000 holdout and 10000 test examples "
            "(32, 32, 3), 10 classes; 351 iterations per epoch of batch 128") in dry.stdout
    # imp_rewind.gin: k = 2000 it, 63000 it of training (cifar10_sgd_base.gin), levels
    # 0..10 (imp.gin), two branches at levels 1..10.
    expected = {"pretrain": (0, 2000)}
    expected.update({f"level {level}": (2000, 63000) for level in range(11)})
    for level in range(1, 11):
        for branch in ("random_reinit", "random_prune_layerwise"):
            expected[f"level {level} / {branch}"] = (2000, 63000)
    assert phase_lines(dry.stdout) == expected
    total = 2000 + 31 * 61000
    assert f"{total} training steps left of {total}" in dry.stdout
    assert not root.exists()


def test_imagenet_holdout_and_image_size_in_the_plan(tmp_path):
    """holdout_fraction, num_train_examples and image_size as a run applies them."""
    gin_files.parse(["resnet50_imagenet.gin"], [
        "DatasetHparams.holdout_fraction = 0.1", "DatasetHparams.image_size = 64",
        "TrainingHparams.training_steps = '2ep'", "TrainingHparams.warmup = '1ep'",
        "TrainingHparams.milestones = ('1ep',)"])
    text = runner.dry_run(str(tmp_path / "runs"))
    holdout = round(0.1 * 1281167)          # 128117
    ipe = (1281167 - holdout) // 1024       # 1126
    assert (f"data: 'imagenet2012', {1281167 - holdout} training, {holdout} holdout and 50000 "
            f"test examples (64, 64, 3), 1000 classes; {ipe} iterations per epoch") in text
    assert phase_lines(text) == {"train": (0, 2 * ipe)}
    gin.clear_config()
    gin_files.parse(["resnet50_imagenet.gin"], ["DatasetHparams.num_train_examples = 10240",
                                                "TrainingHparams.training_steps = '100ep'"])
    assert phase_lines(runner.dry_run(str(tmp_path / "runs"))) == {"train": (0, 1000)}


PLANS = {
    # The quickstart (IMP on digits), in epochs, with a holdout and a subset: 1,497
    # training digits, 150 held out, 1,000 of the rest train; batch 60 -> 16 it/epoch.
    "digits": (["quickstart.gin"], [
        "DatasetHparams.holdout_fraction = 0.1", "DatasetHparams.num_train_examples = 1000",
        "TrainingHparams.training_steps = '7ep'", "TrainingHparams.eval_every = '1ep'",
        "LotteryHparams.rewind_step = '1ep'", "PruningHparams.levels = 2"],
        {"pretrain": (0, 16), "level 0": (16, 112), "level 1": (16, 112), "level 2": (16, 112),
         "level 1 / random_reinit": (16, 112), "level 2 / random_reinit": (16, 112)}),
    # mnist_local: 8,000 training images, 400 held out; batch 60 -> 126 it/epoch.
    "mnist_local": (["lenet_mnist_local.gin"], [
        "DatasetHparams.holdout_fraction = 0.05", "TrainingHparams.training_steps = '3ep'",
        "TrainingHparams.eval_every = '1ep'"], {"train": (0, 3 * 126)}),
}


@pytest.mark.parametrize("name", sorted(PLANS))
def test_plan_from_table_is_the_plan_of_a_run(name, tmp_path, monkeypatch, request):
    """The dry run from the registry's sizes reads no data, and its data line and phases
    are those of a real run's prepare (which loads the data) and of a dry run that
    reads the data (the Source without sizes)."""
    if name == "mnist_local":
        request.getfixturevalue("mnist_dir")     # skip without the real MNIST files
    files, bindings, expected = PLANS[name]
    source = DATASETS.get(name)
    loads = []

    def counting_load(data_dir):
        loads.append(data_dir)
        return source.load(data_dir)

    def with_source(entry):
        monkeypatch.setitem(DATASETS._items, name, entry)
        gin.clear_config()
        gin_files.parse(files, bindings)

    root = str(tmp_path / "runs")
    with_source(dataclasses.replace(source, load=counting_load))
    from_table = runner.dry_run(root)
    assert loads == []                               # the table: nothing read
    assert phase_lines(from_table) == expected and "note:" not in from_table
    experiment, ctx = runner.prepare(root)           # a real run's plan: the data is loaded
    assert len(loads) == 1 and isinstance(ctx.dataset, data.Dataset)
    assert runner.describe_data(ctx.dataset) in from_table.splitlines()
    assert {p.name: (p.start, p.end) for p in runner.phases(experiment, ctx)} == expected
    with_source(dataclasses.replace(source, load=counting_load, sizes=None))
    assert runner.dry_run(root) == from_table        # no sizes: the data is read
    assert len(loads) == 2
    assert not (tmp_path / "runs").exists()


def test_every_table_entry_plans_without_tfds(tmp_path, monkeypatch):
    """Each dataset in the table plans as its sizes say, with no tfds builder made (so
    nothing downloaded) and no network probe, whatever is or is not on this machine."""
    import tensorflow_datasets as tfds
    from tflottery.data import sources
    calls = []
    monkeypatch.setattr(tfds, "builder", lambda *a, **k: calls.append(("builder", a)))
    monkeypatch.setattr(sources, "_check_network", lambda *a, **k: calls.append(("network", a)))
    sized = [name for name in data.names() if DATASETS.get(name).sizes is not None]
    assert {"mnist", "cifar10", "cifar100", "imagenet2012"} <= set(sized)
    for name in sized:
        sizes = DATASETS.get(name).sizes
        gin.clear_config()
        gin_files.parse([], [f"DatasetHparams.name = '{name}'", "DatasetHparams.batch_size = 50",
                             "ModelHparams.name = 'lenet_300_100'", "ExperimentHparams.name = 'train'",
                             "TrainingHparams.training_steps = '2ep'",
                             "TrainingHparams.eval_every = '1ep'"]
                        + (["DatasetHparams.image_size = 16"] if name == "imagenet2012" else []))
        text = runner.dry_run(str(tmp_path / "runs"))
        assert f"{sizes.num_train} training, 0 holdout and {sizes.num_test} test examples" in text, text
        assert phase_lines(text) == {"train": (0, 2 * (sizes.num_train // 50))}, text
    assert calls == []
    assert not (tmp_path / "runs").exists()


def _unavailable(data_dir):
    raise DataNotAvailableError("my_data.bin not found in /nowhere")


UNSIZED = ["DatasetHparams.name = 'unsized'", "DatasetHparams.batch_size = 32",
           "ModelHparams.name = 'lenet_300_100'", "ExperimentHparams.name = 'train'",
           "TrainingHparams.eval_every = '100it'"]


def test_unknown_size_plans_in_iterations_with_a_note(tmp_path, monkeypatch):
    """A user's dataset without sizes that cannot be read: a plan in iterations and a
    one-line note, not an error; steps in epochs are named, not guessed; a real run
    still stops with the data's own one-line error."""
    monkeypatch.setitem(DATASETS._items, "unsized", Source(_unavailable))
    root = tmp_path / "runs"
    gin_files.parse([], UNSIZED + ["TrainingHparams.training_steps = '300it'"])
    text = runner.dry_run(str(root))
    notes = [line for line in text.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "size of dataset 'unsized' is unknown" in notes[0] \
        and "my_data.bin not found" in notes[0], text
    assert "layer names in the settings are not checked" in notes[0]
    assert "data: size unknown; batch 32" in text
    assert phase_lines(text) == {"train": (0, 300)}
    gin.clear_config()
    gin_files.parse([], UNSIZED + ["TrainingHparams.training_steps = '3ep'"])
    text = runner.dry_run(str(root))
    assert "phases not listed: step 3ep is in epochs, and the dataset's size" in text
    assert not root.exists()
    with pytest.raises(DataNotAvailableError, match="my_data.bin not found"):
        runner.run(str(root))
    assert not root.exists()


def test_an_unsized_dataset_at_hand_is_read(tmp_path):
    """npz has no sizes (they are the user's file's): a dry run reads the file."""
    import numpy as np
    path = tmp_path / "mine.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 255, (100, 6, 6, 1), dtype=np.uint8),
             y_train=np.arange(100) % 3, x_test=np.zeros((10, 6, 6, 1), np.uint8),
             y_test=np.arange(10) % 3)
    gin_files.parse([], ["DatasetHparams.name = 'npz'", f"DatasetHparams.data_dir = '{path}'",
                         "DatasetHparams.batch_size = 20", "ModelHparams.name = 'lenet_300_100'",
                         "ExperimentHparams.name = 'train'",
                         "TrainingHparams.training_steps = '2ep'",
                         "TrainingHparams.eval_every = '1ep'"])
    text = runner.dry_run(str(tmp_path / "runs"))
    assert "data: 'npz', 100 training, 0 holdout and 10 test examples (6, 6, 1), 3 classes; " \
           "5 iterations per epoch of batch 20" in text
    assert phase_lines(text) == {"train": (0, 10)} and "note:" not in text


def test_known_sizes_need_num_classes_and_a_streamed_one_a_plan():
    with pytest.raises(ValueError, match="needs num_classes"):
        Source(_unavailable, sizes=data.Sizes(1, 1, (1, 1, 1)))
    with pytest.raises(ValueError, match="needs plan"):
        Source(build=_unavailable, num_classes=3, sizes=data.Sizes(1, 1, None))


def test_npz_without_its_file_is_one_note(tmp_path):
    """The user's npz file is not on this machine: one note, a plan in iterations."""
    gin_files.parse([], ["DatasetHparams.name = 'npz'", "DatasetHparams.data_dir = '/nowhere/mine.npz'",
                         "DatasetHparams.batch_size = 20", "ModelHparams.name = 'lenet_300_100'",
                         "ExperimentHparams.name = 'train'", "TrainingHparams.training_steps = '500it'",
                         "TrainingHparams.eval_every = '100it'"])
    text = runner.dry_run(str(tmp_path / "runs"))
    notes = [line for line in text.splitlines() if line.startswith("note:")]
    assert notes == ["note: the size of dataset 'npz' is unknown (no sizes in the registry, and it "
                     "cannot be read here: DatasetHparams.data_dir '/nowhere/mine.npz' does not "
                     "exist; fix the path or leave data_dir unset): steps are planned in iterations "
                     "only, and layer names in the settings are not checked (the network's input "
                     "shape comes from the data)"], text
    assert phase_lines(text) == {"train": (0, 500)}
    assert not (tmp_path / "runs").exists()


def test_a_missing_data_dir_of_a_known_dataset_is_a_note(tmp_path):
    """The TPU VM's data_dir is not on this laptop: the plan from the table, and a note."""
    gin_files.parse(["resnet50_imagenet.gin"], ["DatasetHparams.data_dir = '/mnt/disks/imagenet'"])
    text = runner.dry_run(str(tmp_path / "runs"))
    assert "note: a run on this machine would stop: DatasetHparams.data_dir '/mnt/disks/imagenet' " \
           "does not exist" in text
    assert phase_lines(text) == {"train": (0, 90 * 1251)}


@pytest.mark.parametrize("bindings", [
    ["ExperimentHparams.name = 'lottery'", "PruningHparams.scope = 'layerwise'",
     "PruningHparams.layer_fractions = {'output': 0}", "PruningHparams.levels = 1"],
    ["ExperimentHparams.name = 'pai'", "PaiHparams.excluded_layers = ['output']"],
    ["ExperimentHparams.name = 'dst'", "DstHparams.dense_layers = ['output']"],
    ["ExperimentHparams.name = 'dynamic_imp'", "DynamicImpHparams.excluded_layers = ['output']"],
], ids=lambda b: b[0].split("'")[1])
def test_unknown_size_plans_settings_that_name_layers(bindings, tmp_path, monkeypatch):
    """Without data no network is built, so there are no layer names to check a setting's
    against: the plan is made and says the names are unchecked (it failed with 'not a
    prunable layer; choose from: ' and an empty list)."""
    monkeypatch.setitem(DATASETS._items, "unsized", Source(_unavailable))
    gin_files.parse([], UNSIZED[:3] + UNSIZED[4:] + bindings
                    + ["TrainingHparams.training_steps = '300it'"])
    text = runner.dry_run(str(tmp_path / "runs"))
    assert "layer names in the settings are not checked" in text
    assert "training steps left" in text, text
    assert not (tmp_path / "runs").exists()
