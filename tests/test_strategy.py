"""The strategy factory, TF_CONFIG handling, the chief rule and the workers' run trees.

No TPU or second machine is available here, so TPU start-up is checked
against mocks (which calls, with which arguments, in which order), and
multi-worker training runs as two local processes talking over localhost.
"""
import contextlib
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, run_module
from tflottery.errors import ConfigError
from tflottery.training import checkpoints, strategy as strategy_lib


# ---- TPUStrategy -------------------------------------------------------------------------------

class _FakeStrategy:
    num_replicas_in_sync = 8

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


@pytest.fixture
def tpu_calls(monkeypatch):
    """Replace the four TPU entry points with recorders; returns the call log."""
    calls = []

    class FakeResolver:
        def __init__(self, **kwargs):
            calls.append(("resolver", kwargs))

        def cluster_spec(self):  # would call the Cloud TPU API: must not be used
            raise AssertionError("cluster_spec() called")

    class FakeTPUStrategy(_FakeStrategy):
        def __init__(self, resolver):
            super().__init__(resolver)
            self.cluster_resolver = resolver
            calls.append(("strategy", resolver))

    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", FakeResolver)
    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster",
                        lambda r: calls.append(("connect", r)))
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system",
                        lambda r: calls.append(("initialize", r)))
    monkeypatch.setattr(tf.distribute, "TPUStrategy", FakeTPUStrategy)
    return calls


def test_tpu_vm_local_initialises_without_connecting(tpu_calls):
    """On a TPU VM the chips are local: no remote cluster to connect to."""
    strategy = strategy_lib.build_strategy("local")
    assert [c[0] for c in tpu_calls] == ["resolver", "initialize", "strategy"]
    resolver = tpu_calls[1][1]
    assert tpu_calls[0][1] == {"tpu": "local"}
    assert tpu_calls[2][1] is resolver and strategy.cluster_resolver is resolver
    assert strategy_lib.is_chief(strategy)   # one Python process drives the TPU


@pytest.mark.parametrize("tpu", ["my-v4-32-pod", "grpc://10.0.0.2:8470"])
def test_named_tpu_connects_then_initialises(tpu_calls, tpu):
    """A pod slice (driven from worker 0) or a remote TPU: connect, then initialise."""
    strategy = strategy_lib.build_strategy(tpu)
    assert [c[0] for c in tpu_calls] == ["resolver", "connect", "initialize", "strategy"]
    assert tpu_calls[0][1] == {"tpu": tpu}
    resolver = tpu_calls[1][1]
    assert all(c[1] is resolver for c in tpu_calls[1:])
    assert strategy_lib.is_chief(strategy)   # without asking the TPU API for the cluster


# ---- TF_CONFIG -----------------------------------------------------------------------------------

def _tf_config(workers=2, chief=0, task=("worker", 0), **extra_cluster):
    cluster = {"worker": [f"host{i}:2222" for i in range(workers)], **extra_cluster}
    if chief:
        cluster["chief"] = ["chief0:2222"]
    config = {"cluster": cluster}
    if task is not None:
        config["task"] = {"type": task[0], "index": task[1]}
    return json.dumps(config)


@pytest.fixture
def mwms(monkeypatch):
    """MultiWorkerMirroredStrategy replaced by a recorder (a real one would wait for peers)."""
    made = []

    class FakeMWMS(_FakeStrategy):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", FakeMWMS)
    return made


@pytest.mark.parametrize("config", [_tf_config(workers=2), _tf_config(workers=1, chief=1,
                                                                         task=("chief", 0)),
                                    _tf_config(workers=3, task=("worker", 2))],
                         ids=["two_workers", "chief_and_worker", "worker_2_of_3"])
def test_multi_worker_tf_config_picks_mwms(monkeypatch, mwms, config):
    monkeypatch.setenv("TF_CONFIG", config)
    strategy = strategy_lib.build_strategy(None)
    assert mwms == [strategy]


@pytest.mark.parametrize("config", [None, "", _tf_config(workers=1),
                                    _tf_config(workers=1, task=None),
                                    _tf_config(workers=1, evaluator=["ev:2222"])],
                         ids=["unset", "empty", "one_worker", "one_worker_no_task",
                              "one_worker_plus_evaluator"])
def test_single_worker_does_not_pick_mwms(monkeypatch, mwms, config):
    if config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", config)
    strategy = strategy_lib.build_strategy(None)
    assert mwms == []
    assert strategy is tf.distribute.get_strategy()   # no GPUs here: the default strategy


BAD_TF_CONFIGS = [
    ('{"cluster": {"worker": ["a:1", "b:1"]', "is not valid JSON"),
    ('["a:1", "b:1"]', "must be a JSON object"),
    ('{"cluster": ["a:1", "b:1"]}', "'cluster' must map task types"),
    ('{"cluster": {"worker": "a:1,b:1"}}', "cluster['worker'] must be a list"),
    (_tf_config(workers=2, task=None), "has no 'task'"),
    (_tf_config(workers=2, task=("evaluator", 0), evaluator=["e:1"]),
     "task type 'evaluator' is not supported"),
    (_tf_config(workers=2, task=("worker", 2)), "task worker 2 is not in the cluster"),
    (_tf_config(workers=2, task=("worker", "1")), "task index '1' must be an integer"),
    (_tf_config(workers=1, chief=1, task=("chief", 1)), "task chief 1 is not in the cluster"),
]


@pytest.mark.parametrize("raw,message", BAD_TF_CONFIGS, ids=[m for _, m in BAD_TF_CONFIGS])
def test_bad_tf_config_is_a_one_line_config_error(monkeypatch, mwms, raw, message):
    monkeypatch.setenv("TF_CONFIG", raw)
    with pytest.raises(ConfigError) as info:
        strategy_lib.build_strategy(None)
    text = str(info.value)
    assert message in text and text.startswith("TF_CONFIG ") and "\n" not in text
    assert mwms == []


def test_bad_tf_config_from_the_command_line(tmp_path):
    """Through main: exit status 2, one `error:` line, no traceback, nothing written."""
    root = tmp_path / "runs"
    result = run_module("tflottery.main", f"--root_dir={root}", "--gin_file=quickstart.gin",
                        extra_env={"TF_CONFIG": '{"cluster": {"worker": ['})
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: TF_CONFIG is not valid JSON"), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not root.exists()


# ---- is_chief ------------------------------------------------------------------------------------

class _StrategyWithResolver:
    def __init__(self, resolver):
        self.cluster_resolver = resolver


@pytest.mark.parametrize("config,expected", [
    (_tf_config(workers=2, chief=1, task=("chief", 0)), True),
    (_tf_config(workers=2, chief=1, task=("worker", 0)), False),
    (_tf_config(workers=2, chief=0, task=("worker", 0)), True),   # worker 0 is chief if none
    (_tf_config(workers=2, chief=0, task=("worker", 1)), False),
    (_tf_config(workers=2, chief=1, task=("evaluator", 0), evaluator=["e:1"]), False),
    (_tf_config(workers=2, chief=0, task=("evaluator", 0), evaluator=["e:1"]), False),
], ids=["chief", "worker0_with_chief", "worker0_no_chief", "worker1", "evaluator_with_chief",
        "evaluator_no_chief"])
def test_is_chief_by_role(monkeypatch, config, expected):
    monkeypatch.setenv("TF_CONFIG", config)
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    assert strategy_lib.is_chief(_StrategyWithResolver(resolver)) is expected


def test_is_chief_single_process_strategies():
    from conftest import two_cpu_strategy
    assert strategy_lib.is_chief(tf.distribute.get_strategy())
    assert strategy_lib.is_chief(two_cpu_strategy())


# ---- worker_root: where each worker's run tree goes -----------------------------------------

@pytest.mark.parametrize("root,task,expected", [
    ("gs://b/runs", ("worker", 0), "gs://b/runs"),              # worker 0, no chief: the chief
    ("gs://b/runs", ("worker", 1), "gs://b/runs.worker_1"),
    ("gs://b/runs/", ("worker", 1), "gs://b/runs.worker_1"),    # trailing slash
    ("gs://b/x/runs//", ("worker", 2), "gs://b/x/runs.worker_2"),
    ("/data/runs", ("worker", 1), "/data/runs.worker_1"),
    ("/data/runs/", ("worker", 2), "/data/runs.worker_2"),
    ("runs", ("worker", 1), "runs.worker_1"),                   # relative stays relative
    ("/data/runs/", ("worker", 0), "/data/runs/"),              # the chief's is untouched
], ids=["gs_chief", "gs_worker1", "gs_trailing_slash", "gs_nested", "local_worker1",
        "local_trailing_slash", "relative", "local_chief"])
def test_worker_root_is_a_sibling_for_non_chief_workers(monkeypatch, root, task, expected):
    monkeypatch.setenv("TF_CONFIG", _tf_config(workers=3, task=task))
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    assert strategy_lib.worker_root(root, _StrategyWithResolver(resolver)) == expected


def test_worker_root_with_a_chief_task(monkeypatch):
    """With a 'chief' task, worker 0 is not the chief and gets its own sibling."""
    for task, expected in [(("chief", 0), "gs://b/runs"), (("worker", 0), "gs://b/runs.worker_0")]:
        monkeypatch.setenv("TF_CONFIG", _tf_config(workers=2, chief=1, task=task))
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        assert strategy_lib.worker_root("gs://b/runs", _StrategyWithResolver(resolver)) == expected


def test_worker_root_single_process_and_odd_roots(monkeypatch, tmp_path):
    from conftest import two_cpu_strategy
    for strategy in (tf.distribute.get_strategy(), two_cpu_strategy()):
        for root in ("gs://b/runs/", "gs://b", "runs", ".", "/"):
            assert strategy_lib.worker_root(root, strategy) == root   # unchanged
    monkeypatch.setenv("TF_CONFIG", _tf_config(workers=2, task=("worker", 1)))
    worker = _StrategyWithResolver(tf.distribute.cluster_resolver.TFConfigClusterResolver())
    monkeypatch.chdir(tmp_path)
    assert strategy_lib.worker_root(".", worker) == f"{tmp_path}.worker_1"   # beside cwd
    assert strategy_lib.worker_root("", worker) == f"{tmp_path}.worker_1"
    for root in ("gs://b", "gs://b/", "/", "//"):   # no sibling to put the copy in
        with pytest.raises(ConfigError, match="give a folder"):
            strategy_lib.worker_root(root, worker)


def test_checkpointer_writable_or_not(tmp_path):
    """Writable: files in the directory.  Not writable: no save at all."""
    import tf_keras as keras
    model = keras.Sequential([keras.layers.Dense(3, input_shape=(4,)),
                              keras.layers.BatchNormalization()])
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    saver = checkpoints.Checkpointer(str(tmp_path / "a"), model, optimizer)
    saver.save_named("init", {"step": 0})
    saver.save_latest(5)
    assert saver.has_named("init") and checkpoints.latest_step(str(tmp_path / "a")) == 5
    quiet = checkpoints.Checkpointer(str(tmp_path / "b"), model, optimizer, writable=False)
    quiet.save_named("init", {"step": 0})
    quiet.save_latest(5)
    assert sorted(os.listdir(tmp_path)) == ["a"]
    assert quiet.restore_latest() is False


# ---- multi-worker training, for real: two processes on localhost ---------------------------------

def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _files_under(path):
    """Relative paths of the files under `path`; TensorBoard event files (named after the
    host, pid and time) as 'events.out.tfevents'."""
    out = []
    for d, _, files in os.walk(path):
        for f in files:
            f = "events.out.tfevents" if f.startswith("events.out.tfevents.") else f
            out.append(os.path.relpath(os.path.join(d, f), path))
    return sorted(out)


def test_two_worker_lottery_on_localhost(tmp_path):
    """A lottery run (IMP level 0, level 1, a branch) as two MultiWorkerMirroredStrategy
    workers; ResNet-20 has BatchNorm, so every checkpoint save is collective.

    Every step reads back files of an earlier one (final.json, masks, 'end'
    checkpoints): each worker must find them in a complete tree of its own.
    The chief's is under root, worker 1's under root.worker_1, the same files,
    the same masks and accuracies; root holds no copy.
    """
    root = tmp_path / "runs"
    ports = [_free_port(), _free_port()]
    args = ["--gin_file=quickstart.gin", "--gin_bindings=ModelHparams.name='resnet_20'",
            "--gin_bindings=DatasetHparams.name='synthetic'",
            "--gin_bindings=TrainingHparams.training_steps='10it'",
            "--gin_bindings=TrainingHparams.eval_every='5it'",
            "--gin_bindings=PruningHparams.levels=1",
            "--gin_bindings=BranchHparams.names=('random_reinit',)", f"--root_dir={root}"]
    procs, logs = [], [tmp_path / f"worker{i}.log" for i in range(2)]
    # Output to files, not pipes: read one at a time, the other worker's pipe
    # would fill up and block it, and with it the collectives of both.
    with contextlib.ExitStack() as stack:
        for i, log in enumerate(logs):
            config = {"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                      "task": {"type": "worker", "index": i}}
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(config))
            out = stack.enter_context(open(log, "w"))
            procs.append(subprocess.Popen([sys.executable, "-m", "tflottery.main", *args],
                                          cwd=REPO, env=env, stdout=out,
                                          stderr=subprocess.STDOUT))
        try:
            for p in procs:
                p.wait(timeout=400)
        finally:
            for p in procs:
                p.kill()
    outputs = [log.read_text() for log in logs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    assert "CollectiveAllReduceStrategy with 2 replica(s)" in outputs[0]   # = MWMS
    worker_root = tmp_path / "runs.worker_1"
    assert f"run tree is under {worker_root}" in outputs[1]
    assert sorted(p.name for p in tmp_path.glob("runs*")) == ["runs", "runs.worker_1"]

    trees = []
    for top in (root, worker_root):
        (run_dir,) = list(top.iterdir())       # one run: no copy of another worker inside
        rep = run_dir / "replicate_0"
        assert sorted(os.listdir(rep)) == ["finished.json", "level_0", "level_1", "pretrain"]
        for phase in ("level_0/train", "level_1/train", "level_1/branch_random_reinit/train"):
            assert (rep / phase / "final.json").exists(), phase
        for name in ("summary.json", "summary.md", "operative_config.gin", "config.gin"):
            assert (run_dir / name).exists(), name
        trees.append(run_dir)
    assert trees[0].name == trees[1].name
    assert _files_under(trees[0]) == _files_under(trees[1])

    def masks(run_dir):
        found = {}
        for rel in _files_under(run_dir):
            if rel.endswith("mask.npz"):
                with np.load(run_dir / rel) as npz:
                    found[rel] = {k: npz[k] for k in npz.files}
        return found
    chief_masks, worker_masks = masks(trees[0]), masks(trees[1])
    assert "replicate_0/level_1/mask/mask.npz" in chief_masks
    assert chief_masks.keys() == worker_masks.keys()
    for rel, by_weight in chief_masks.items():
        assert by_weight.keys() == worker_masks[rel].keys()
        assert all(np.array_equal(by_weight[k], worker_masks[rel][k]) for k in by_weight), rel
    level_1 = chief_masks["replicate_0/level_1/mask/mask.npz"]
    assert 0 < sum(m.sum() for m in level_1.values()) < sum(m.size for m in level_1.values())

    for rel in _files_under(trees[0]):
        if rel.endswith("final.json"):
            chief, worker = (json.loads((t / rel).read_text()) for t in trees)
            assert chief["test_accuracy"] == worker["test_accuracy"], rel
    assert [l for l in outputs[0].splitlines() if l.startswith("final test accuracy")] == \
        [l for l in outputs[1].splitlines() if l.startswith("final test accuracy")] != []
