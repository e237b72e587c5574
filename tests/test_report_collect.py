"""Collecting a root of runs into one table (tflottery.reporting.collect),
checked row by row against a synthetic root whose files the test wrote
(tests/synthetic_runs.py), including partial runs, a run without
config.gin and corrupt result files."""
import csv
import json
import os

import pytest

import synthetic_runs
from tflottery.reporting import collect, ginconfig


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("root"))
    expected = synthetic_runs.build(root)
    return root, expected, collect.collect(root)


def _rows(table):
    return {(r["run"], r["replicate"], r["phase"]): r for r in table["rows"]}


def test_one_row_per_phase_with_the_values_written(synthetic):
    _, expected, table = synthetic
    rows = _rows(table)
    assert set(rows) == set(expected["rows"])
    for key, want in expected["rows"].items():
        row = rows[key]
        assert row["status"] == want.get("status", "done"), key
        for column, value in want.items():
            if column == "status":
                continue
            if isinstance(value, float):
                assert row[column] == pytest.approx(value, abs=1e-9), (key, column)
            else:
                assert row[column] == value, (key, column)


def test_counts_and_kinds(synthetic):
    _, expected, table = synthetic
    rows = table["rows"]
    lottery = [r for r in rows if r["run"] == "lottery_aaaaaaaaaa"]
    # 2 replicates x (pretrain + 7 levels + 6 levels x 5 branches) - 1 corrupt final.json
    assert len(lottery) == 2 * (1 + 7 + 6 * 5) - 1
    assert {r["kind"] for r in lottery} == {"pretrain", "train"}
    assert {r["branch"] for r in lottery} == {None, expected["retrain"]} | set(
        synthetic_runs.LOTTERY_BRANCHES)
    pai = [r for r in rows if r["experiment"] == "pai" and r["run"] != "pai_badbadbad0"]
    assert len(pai) == 15 * 2 + 10 * 2 * 3        # main + ablations of snip and synflow
    assert {r["method"] for r in pai} == {"snip", "synflow", "random"}
    assert {r["target_sparsity"] for r in pai} == set(synthetic_runs.PAI_SPARSITIES)
    assert {r["experiment"] for r in rows} == {"lottery", "lmc", "pai", "gradual", "train", "dst",
                                              "dynamic_imp"}
    copies = [r for r in rows if r["kind"] == "copy"]
    assert len(copies) == 2 * 2 * 4 * 2 + 2 * 2


def test_retrain_branch_settings_from_the_config_hash(synthetic):
    _, expected, table = synthetic
    retrain = [r for r in table["rows"] if r["branch"] == expected["retrain"]]
    assert retrain and all(r["branch_settings"] == {"data_seed": 7} for r in retrain)
    others = [r for r in table["rows"] if r["branch"] == "random_reinit"]
    assert all(r["branch_settings"] is None for r in others)


def test_retrain_branch_settings_from_branch_json(tmp_path):
    """branch.json (written by branches.run_branch) wins over the config hash."""
    rep = tmp_path / "lottery_1111111111" / "replicate_0"
    bdir = rep / "level_1" / "branch_retrain_0badc0de"
    (bdir / "train").mkdir(parents=True)
    (bdir / "train" / "final.json").write_text('{"step": 5, "test_accuracy": 0.5}')
    (bdir / "branch.json").write_text(json.dumps({"name": "retrain", "level": 1,
                                                  "dilation": 0.5, "data_seed": None}))
    (row,) = collect.collect(str(tmp_path))["rows"]
    assert row["branch"] == "retrain_0badc0de" and row["branch_settings"] == {"dilation": 0.5}


def test_corrupt_files_are_reported_by_name_and_skipped(synthetic):
    _, expected, table = synthetic
    assert sorted(p["file"] for p in table["problems"]) == sorted(expected["corrupt"])
    assert all(p["error"] for p in table["problems"])
    rows = _rows(table)
    assert ("lottery_aaaaaaaaaa", 1, "level_6/branch_inverted/train") not in rows
    assert ("lottery_aaaaaaaaaa", 0, "level_6/branch_inverted/train") in rows
    assert rows[("pai_badbadbad0", 0, "train")]["density"] is None   # truncated mask.npz
    stats = {(s["run"], s["replicate"]) for s in table["statistics"]}
    assert stats == set(expected["statistics"])                   # corrupt one left out


def test_partial_and_missing_config_runs(synthetic):
    _, _, table = synthetic
    runs = {r["run"]: r for r in table["runs"]}
    partial = _rows(table)[("lottery_0123456789", 0, "level_1/train")]
    assert partial["status"] == "partial" and partial["step"] == 750
    assert partial["test_accuracy"] is None
    assert runs["lottery_0123456789"]["status"] == "partial"      # no operative_config.gin
    assert runs["lottery_aaaaaaaaaa"]["status"] == "done"
    no_config = runs["train_9999999999"]
    assert no_config["experiment"] == "train" and no_config["config_file"] is None
    assert no_config["config"] == {} and "no config.gin" in no_config["notes"][0]
    assert any("train_9999999999: no config.gin" in n for n in table["notes"])


def test_config_bindings_are_columns(synthetic):
    _, _, table = synthetic
    row = _rows(table)[("lottery_aaaaaaaaaa", 0, "level_2/train")]
    assert row["ExperimentHparams.name"] == "lottery"
    assert row["LotteryHparams.rewind_step"] == "500it"
    assert row["TrainingHparams.lr"] == "0.0002"
    assert row["BranchHparams.names"].startswith("('random_reinit', ")
    run = [r for r in table["runs"] if r["run"] == "lottery_aaaaaaaaaa"][0]
    assert "LotteryHparams.rewind_step = '500it'" in run["config_text"]
    assert run["network"] == "conv_2 on cifar10"


def test_instability_rows(synthetic):
    _, expected, table = synthetic
    assert len(table["instability"]) == len(expected["instability"]) == 2 * 2 * 4 + 2
    for row in table["instability"]:
        record = expected["instability"][(row["run"], row["replicate"], row["level"], row["k"])]
        assert row["test_instability"] == pytest.approx(record["barrier"]["test"])
        assert row["train_instability"] == pytest.approx(record["barrier"]["train"])
        assert row["density"] == pytest.approx(record["density"])
        assert row["end_accuracy"] == pytest.approx(record["end_accuracy"][0])
        assert row["rewind_step"] == record["rewind_step"]
        assert row["curves"]["test"]["alpha"] == record["curves"]["test"]["alpha"]


def test_statistics_records(synthetic):
    _, expected, table = synthetic
    for record in table["statistics"]:
        layers = expected["statistics"][(record["run"], record["replicate"])]
        assert record["layers"] == layers
        assert len(record["network_neuron_collapse"]) == len(record["thresholds"]) == 101
    gradual = [s for s in table["statistics"] if s["experiment"] == "gradual"]
    assert len(gradual) == 1 and gradual[0]["method"] == "gradual"
    assert gradual[0]["target_sparsity"] == 0.9


def test_written_as_json_and_csv(synthetic, tmp_path):
    _, _, table = synthetic
    paths = collect.write(table, str(tmp_path))
    assert [os.path.basename(p) for p in paths] == ["results.json", "results.csv",
                                                    "instability.csv"]
    data = json.load(open(paths[0]))
    assert len(data["rows"]) == len(table["rows"])
    assert all("_values" not in run for run in data["runs"])
    assert len(data["problems"]) == 3
    with open(paths[1]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(table["rows"])
    assert list(rows[0])[:len(collect.PHASE_COLUMNS)] == collect.PHASE_COLUMNS
    assert "PaiHparams.method" in rows[0] and "LotteryHparams.rewind_step" in rows[0]
    with open(paths[2]) as f:
        assert len(list(csv.DictReader(f))) == len(table["instability"])


def test_one_run_dir_nested_roots_and_empty_roots(synthetic, tmp_path):
    root, _, _ = synthetic
    one = collect.collect(os.path.join(root, "lmc_dddddddddd"))
    assert [r["run"] for r in one["runs"]] == ["lmc_dddddddddd"]
    assert len(one["rows"]) == 6 and len(one["instability"]) == 2
    nested = tmp_path / "sweeps" / "a"
    nested.mkdir(parents=True)
    os.symlink(os.path.join(root, "train_ffffffffff"), nested / "train_ffffffffff")
    assert [r["run"] for r in collect.collect(str(tmp_path))["runs"]] == ["train_ffffffffff"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert collect.collect(str(empty))["runs"] == []


def test_gin_config_parsing():
    text = ("# comment\nTrainingHparams.lr = 0.1\nBranchHparams.names = ('a',\n    'b')\n"
            "ModelHparams.options = {'width': 2}\nscope/X.y = @foo\nZ.w = %MACRO\n")
    values, error = ginconfig.parse(text)
    assert error == ""
    assert values["TrainingHparams.lr"] == 0.1 and values["BranchHparams.names"] == ("a", "b")
    assert values["ModelHparams.options"] == {"width": 2}
    assert ginconfig.as_text(values["scope/X.y"]) == "@foo"
    assert ginconfig.as_text(values["Z.w"]) == "%MACRO"
    assert ginconfig.as_text("synthetic") == "synthetic"
    # Not gin: read line by line, with a message.
    values, error = ginconfig.parse("A.b = 1\nthis is not gin ((\nC.d = (1,\n 2)\n")
    assert error and values["A.b"] == 1 and values["C.d"] == (1, 2)
    assert ginconfig.lookup({}, "ModelHparams.name") == "lenet_300_100"   # the default
    assert ginconfig.lookup({}, "NoSuch.field", "x") == "x"


def test_damaged_mask_beside_a_good_report_is_named(tmp_path):
    """The density comes from sparsity.json, but a cut-short mask.npz next to
    it is still reported (a re-run of the experiment would redo it)."""
    import numpy as np
    from tflottery import masking
    run = tmp_path / "lottery_0123456789"
    mask_dir = run / "replicate_0" / "level_1" / "mask"
    masking.Mask({"dense/kernel": np.array([[True, False]])}).save(str(mask_dir))
    train = run / "replicate_0" / "level_1" / "train"
    train.mkdir(parents=True)
    (train / "final.json").write_text(json.dumps({"step": 10, "test_accuracy": 0.5}))
    npz = mask_dir / "mask.npz"
    npz.write_bytes(npz.read_bytes()[:20])
    table = collect.collect(str(tmp_path))
    assert [p["file"] for p in table["problems"]] == [str(npz)]
    (row,) = table["rows"]
    assert row["density"] == 0.5


def test_settings_come_from_hparams_json_before_config_gin(tmp_path):
    """A run's hparams.json (its resolved dataclasses) is what reports read; a
    config.gin beside it (stale, or hand-edited) does not override it."""
    from tflottery import hparams_record
    from tflottery.experiments.lottery import BranchHparams, LotteryHparams
    from tflottery.hparams import DatasetHparams, ExperimentHparams, ModelHparams, TrainingHparams
    run = tmp_path / "lottery_0123456789"
    train = run / "replicate_0" / "level_0" / "train"
    train.mkdir(parents=True)
    (train / "final.json").write_text(json.dumps({"step": 10, "test_accuracy": 0.5}))
    (run / "config.gin").write_text("ModelHparams.name = 'vgg_16'\n")
    hparams = [ExperimentHparams(name="lottery"), DatasetHparams(name="cifar10"),
               ModelHparams(name="resnet_20"), TrainingHparams(lr=0.1),
               LotteryHparams(rewind_step="500it"),
               BranchHparams(names=("retrain",), dilation=0.5)]
    hparams_record.write(str(run), hparams_record.record("lottery", run.name, hparams))
    table = collect.collect(str(tmp_path))
    (info,) = table["runs"]
    assert info["config_file"] == "hparams.json" and info["experiment"] == "lottery"
    assert info["config_text_file"] == "config.gin"      # the page shows the readable file
    assert info["network"] == "resnet_20 on cifar10"
    assert info["config"]["LotteryHparams.rewind_step"] == "500it"
    assert info["config"]["BranchHparams.names"] == "('retrain',)"   # as config.gin reads
    assert "TrainingHparams.optimizer" not in info["config"]           # defaults left out
    (row,) = table["rows"]
    assert row["rewind_step"] == "500it" and row["method"] == "imp"
    assert collect.is_run_dir(str(run))
