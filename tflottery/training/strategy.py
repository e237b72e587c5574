"""The one place that builds the tf.distribute strategy.

TPUStrategy when --tpu is given ('local' on a Cloud TPU VM, or a TPU name /
grpc address), MultiWorkerMirroredStrategy when TF_CONFIG describes a cluster
with more than one worker, MirroredStrategy when several GPUs are visible,
otherwise the default (single-device) strategy.

TPU start-up follows TF Model Garden's `tpu_initialize`: on a TPU VM
(`--tpu=local`) the chips are attached to this host, so there is no remote
cluster to connect to and only the TPU system is initialised; with a TPU name
(a pod slice driven from its worker 0, or a remote TPU) the resolver asks the
Cloud TPU API for the workers, and the eager context must be connected to
them before the TPU system can be initialised on them.

TF_CONFIG is checked here, before TensorFlow reads it, because a malformed
one otherwise fails deep inside the collective set-up (or hangs waiting for
peers) with a message that does not name the variable.
"""
import json
import os
from typing import Optional

import tensorflow as tf
from absl import logging

from tflottery.errors import ConfigError

# Task types that train.  'evaluator' (a side-car that only reads checkpoints)
# and 'ps' (parameter servers) belong to other strategies; tflottery has no
# side-car evaluator, so such a process would train a second, unsynchronised copy.
TRAINING_TASK_TYPES = ("chief", "worker")
LOCAL_TPU = "local"


def _bad_tf_config(problem: str) -> ConfigError:
    return ConfigError(f"TF_CONFIG {problem}; fix or unset it (see README, multi-worker GPU)")


def parse_tf_config(raw: Optional[str] = None) -> Optional[dict]:
    """The validated TF_CONFIG (from $TF_CONFIG unless `raw` is given), or None if unset.

    Checks the shape MultiWorkerMirroredStrategy relies on: a 'cluster' mapping
    task types to lists of 'host:port' strings and, when more than one worker
    trains, a 'task' {'type': 'chief'|'worker', 'index': i} naming an entry of
    that list.
    """
    raw = os.environ.get("TF_CONFIG") if raw is None else raw
    if raw is None or not raw.strip():
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise _bad_tf_config(f"is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise _bad_tf_config(f"must be a JSON object, got {type(config).__name__}")
    cluster = config.get("cluster", {})
    if not isinstance(cluster, dict):
        raise _bad_tf_config("'cluster' must map task types to lists of 'host:port'")
    for task_type, addresses in cluster.items():
        if not (isinstance(addresses, list) and all(isinstance(a, str) and a for a in addresses)):
            raise _bad_tf_config(f"cluster['{task_type}'] must be a list of 'host:port' strings")
    if num_training_workers(config) > 1:
        task = config.get("task")
        if not isinstance(task, dict):
            raise _bad_tf_config("describes several workers but has no 'task' "
                                 "({'type': 'worker', 'index': i}) saying which one this is")
        task_type, index = task.get("type"), task.get("index", 0)
        if task_type not in TRAINING_TASK_TYPES:
            raise _bad_tf_config(f"task type {task_type!r} is not supported; every process "
                                 f"must train, as one of: {', '.join(TRAINING_TASK_TYPES)}")
        if not isinstance(index, int) or isinstance(index, bool):
            raise _bad_tf_config(f"task index {index!r} must be an integer")
        members = cluster.get(task_type, [])
        if not 0 <= index < len(members):
            raise _bad_tf_config(f"task {task_type} {index} is not in the cluster "
                                 f"({len(members)} {task_type} entries)")
    return config


def num_training_workers(config: Optional[dict]) -> int:
    """How many processes train in the cluster (chief + workers); 0 without TF_CONFIG."""
    if not config:
        return 0
    cluster = config.get("cluster", {})
    return sum(len(cluster.get(t, [])) for t in TRAINING_TASK_TYPES)


def _num_workers_in_tf_config() -> int:
    return num_training_workers(parse_tf_config())


def _tpu_strategy(tpu: str) -> tf.distribute.Strategy:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    if tpu != LOCAL_TPU:
        # Remote workers (pod slice, TPU node): the eager context must know
        # them before initialize_tpu_system can run on them.  For 'local'
        # TensorFlow would make this a no-op anyway (the master is local).
        tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def build_strategy(tpu: Optional[str] = None) -> tf.distribute.Strategy:
    """Build the strategy for this process (see module docstring for the order)."""
    if tpu:
        strategy = _tpu_strategy(tpu)
    elif _num_workers_in_tf_config() > 1:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif len(tf.config.list_logical_devices("GPU")) > 1:
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    logging.info("strategy: %s with %d replica(s)", type(strategy).__name__,
                 strategy.num_replicas_in_sync)
    return strategy


def is_tpu(strategy) -> bool:
    return isinstance(strategy, (tf.distribute.TPUStrategy, tf.distribute.experimental.TPUStrategy))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process is the chief, whose run tree is the canonical one (see worker_root).

    TPUStrategy is driven by a single Python process, which is the chief by
    construction; its resolver's task type describes the TPU workers, and
    asking it for the cluster spec would call the Cloud TPU API.  Under
    MultiWorkerMirroredStrategy the chief is the 'chief' task if there is one,
    else worker 0 (TensorFlow's convention); an evaluator never is.
    """
    if is_tpu(strategy):
        return True
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def worker_root(root_dir: str, strategy: tf.distribute.Strategy) -> str:
    """Where this process keeps its run directories: `root_dir`, or a sibling of it.

    Under MultiWorkerMirroredStrategy every worker runs the whole experiment
    and reads back what it wrote (a level's final.json to skip finished work,
    its masks, the 'end' checkpoint to rewind to), so every worker needs a
    complete run tree of its own: one shared tree, written by the chief
    alone, would be read by the others before (or while) the chief wrote it.
    With a tree each, all workers write (and so also make the same
    collective calls, e.g. the all-reduces that read BatchNorm statistics
    when a checkpoint is saved), and each decides what to do from its own
    files; the trees evolve identically because training is synchronous and
    masks are a deterministic function of identical weights.

    The chief (and any single-process strategy) writes under `root_dir`, the
    canonical tree that reports read.  Any other worker writes under the
    sibling `<root_dir>.<task type>_<task id>` (gs://b/runs ->
    gs://b/runs.worker_1), outside `root_dir` so that reports over it never
    see the copies, and on the same storage, so `root_dir` may be local to
    each host or shared by all of them.

    Known gap: the workers write their trees independently, so a worker
    killed between the chief's write of a checkpoint or a phase's
    final.json and its own leaves the trees one step apart, and on resume the
    workers would take different paths (hang, or train out of step).  To
    recover, stop every worker and make each non-chief tree a copy of the
    chief's run directory (e.g. `rm -r runs.worker_1/<run>` then
    `cp -r runs/<run> runs.worker_1/`, or `gsutil -m rsync -r -d`), then
    re-run: the trees are identical again and the run resumes.
    """
    if is_chief(strategy):
        return root_dir
    resolver = strategy.cluster_resolver
    base = root_dir.rstrip("/")
    scheme, sep, path = base.rpartition("://")
    if sep and "/" not in path:
        raise ConfigError(f"--root_dir={root_dir} is a bucket root; multi-worker runs keep each "
                          "worker's copy in a sibling of root_dir, so give a folder, e.g. "
                          f"{scheme}://{path}/runs")
    if not sep and os.path.basename(base) in ("", ".", ".."):
        # '.', '..', '' (the current folder): name the folder, to be beside it.
        base = "/" if root_dir.startswith("/") and not base else os.path.abspath(base)
        if base == "/":
            raise ConfigError("--root_dir=/ has no sibling for the workers' copies; "
                              "give a folder, e.g. /runs")
    return f"{base}.{resolver.task_type}_{resolver.task_id}"
