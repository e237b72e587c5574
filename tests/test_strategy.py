"""The strategy factory, TF_CONFIG handling, the chief rule and multi-worker checkpoints.

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

import pytest
import tensorflow as tf

from tflottery.errors import ConfigError
from tflottery.training import checkpoints, strategy as strategy_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_CONFIG='{"cluster": {"worker": [')
    result = subprocess.run([sys.executable, "-m", "tflottery.main", f"--root_dir={root}",
                             "--gin_file=quickstart.gin"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
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


# ---- multi-worker checkpoints: the path logic ----------------------------------------------------

def _small_model_and_optimizer():
    import tf_keras as keras
    model = keras.Sequential([keras.layers.Dense(3, input_shape=(4,)),
                              keras.layers.BatchNormalization()])
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def test_scratch_dir_is_per_worker_and_removed(tmp_path):
    prefix = checkpoints.scratch_prefix("worker", 3)
    assert prefix.startswith("tflottery-ckpt-worker3-pid") and str(os.getpid()) in prefix
    with checkpoints.scratch_dir(("worker", 3), base=str(tmp_path)) as first:
        assert os.path.isdir(first) and os.path.dirname(first) == str(tmp_path)
        assert os.path.basename(first).startswith(prefix)
        with checkpoints.scratch_dir(("worker", 3), base=str(tmp_path)) as second:
            assert second != first        # two saves never share a directory
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError):     # removed even when the save fails
        with checkpoints.scratch_dir(("worker", 1), base=str(tmp_path)):
            raise RuntimeError("save failed")
    assert os.listdir(tmp_path) == []


def test_multi_worker_task_only_for_mwms(monkeypatch):
    from conftest import two_cpu_strategy
    assert checkpoints.multi_worker_task(None) is None
    assert checkpoints.multi_worker_task(tf.distribute.get_strategy()) is None
    assert checkpoints.multi_worker_task(two_cpu_strategy()) is None
    fake = _fake_mwms(monkeypatch, "worker", 2)
    assert checkpoints.multi_worker_task(fake) == ("worker", 2)


def _fake_mwms(monkeypatch, task_type, task_id):
    class FakeResolver:
        pass

    class FakeMWMS:
        cluster_resolver = FakeResolver()
    FakeMWMS.cluster_resolver.task_type = task_type
    FakeMWMS.cluster_resolver.task_id = task_id
    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", FakeMWMS)
    return FakeMWMS()


def _files_under(path):
    return sorted(os.path.relpath(os.path.join(d, f), path)
                  for d, _, files in os.walk(path) for f in files)


def test_non_chief_mwms_worker_saves_to_scratch_only(monkeypatch, tmp_path):
    scratch_base = tmp_path / "tmp"
    scratch_base.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch_base))
    made = []
    real_scratch = checkpoints.scratch_dir

    @contextlib.contextmanager
    def recording(task, base=None):
        with real_scratch(task, base) as path:
            yield path
            made.append((task, path, _files_under(path)))
    monkeypatch.setattr(checkpoints, "scratch_dir", recording)
    model, optimizer = _small_model_and_optimizer()
    fake = _fake_mwms(monkeypatch, "worker", 1)
    ckpt_dir = tmp_path / "run" / "checkpoints"
    worker = checkpoints.Checkpointer(str(ckpt_dir), model, optimizer, writable=False,
                                      strategy=fake)
    assert worker.saves_to_scratch
    worker.save_named("init", {"step": 0})
    worker.save_latest(10)
    assert not ckpt_dir.exists()                  # nothing in the chief's directory
    assert os.listdir(scratch_base) == []         # scratch removed after each save
    assert [m[0] for m in made] == [("worker", 1), ("worker", 1)]
    assert any(f.startswith("ckpt.") for f in made[0][2])          # a real save happened
    assert "checkpoint" in made[1][2] and any(f.startswith("ckpt-10.") for f in made[1][2])


def test_single_worker_checkpointer_unchanged(monkeypatch, tmp_path):
    """Writable: files in the directory.  Not writable, one process: no save at all."""
    model, optimizer = _small_model_and_optimizer()
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    chief = checkpoints.Checkpointer(str(tmp_path / "a"), model, optimizer)
    assert not chief.saves_to_scratch
    chief.save_named("init", {"step": 0})
    chief.save_latest(5)
    assert chief.has_named("init") and checkpoints.latest_step(str(tmp_path / "a")) == 5
    quiet = checkpoints.Checkpointer(str(tmp_path / "b"), model, optimizer, writable=False)
    assert not quiet.saves_to_scratch             # default strategy: the model's, not MWMS
    quiet.save_named("init", {"step": 0})
    quiet.save_latest(5)
    assert sorted(os.listdir(tmp_path)) == ["a"]
    assert quiet.restore_latest() is False


# ---- multi-worker training, for real: two processes on localhost ---------------------------------

# Runs tflottery.main with Checkpointer's scratch saves recorded to a file.
_DRIVER = """
import contextlib, sys
import tflottery
from tflottery.training import checkpoints
record, real = sys.argv[1], checkpoints.scratch_dir

@contextlib.contextmanager
def recording(task, base=None):
    with real(task, base) as path:
        yield path
        with open(record, "a") as f:
            f.write(path + "\\n")
checkpoints.scratch_dir = recording
from tflottery import main
sys.argv = ["tflottery.main"] + sys.argv[2:]
main.run()
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_worker_training_on_localhost(tmp_path):
    """ResNet-20 (BatchNorm: saving is collective) under MultiWorkerMirroredStrategy.

    Without scratch saves on worker 1 the two workers' collectives go out of
    step at the first checkpoint and training fails; with them, only worker 0
    writes the run directory and worker 1's scratch directories are gone.
    """
    root = tmp_path / "runs"
    ports = [_free_port(), _free_port()]
    args = ["--gin_file=quickstart.gin", "--gin_bindings=ExperimentHparams.name='train'",
            "--gin_bindings=ModelHparams.name='resnet_20'",
            "--gin_bindings=DatasetHparams.name='synthetic'",
            "--gin_bindings=TrainingHparams.training_steps='20it'",
            "--gin_bindings=TrainingHparams.eval_every='10it'",
            "--gin_bindings=TrainingHparams.checkpoint_steps=('10it',)", f"--root_dir={root}"]
    procs = []
    for i in range(2):
        tmp = tmp_path / f"tmp{i}"
        tmp.mkdir()
        config = {"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                  "task": {"type": "worker", "index": i}}
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TMPDIR=str(tmp),
                   TF_CONFIG=json.dumps(config))
        procs.append(subprocess.Popen(
            [sys.executable, "-c", _DRIVER, str(tmp_path / f"record{i}"), *args], cwd=REPO,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=400)[0])
    finally:
        for p in procs:
            p.kill()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    assert "CollectiveAllReduceStrategy with 2 replica(s)" in outputs[0]   # = MWMS
    assert not (tmp_path / "record0").exists()          # the chief never uses scratch
    scratch = (tmp_path / "record1").read_text().split()
    assert len(scratch) == 5     # init, step_10 (named), latest at 10, end, latest at 20
    assert all("tflottery-ckpt-worker1-" in s and not os.path.exists(s) for s in scratch)
    assert os.listdir(tmp_path / "tmp0") == [] and os.listdir(tmp_path / "tmp1") == []
    (run_dir,) = list(root.iterdir())
    train = run_dir / "replicate_0" / "train"
    assert (train / "final.json").exists() and (run_dir / "operative_config.gin").exists()
    assert sorted(os.listdir(train / "checkpoints")) == ["end", "init", "latest", "step_10"]
    assert checkpoints.latest_step(str(train / "checkpoints")) == 20
    assert all("workertemp" not in f for f in _files_under(root))
