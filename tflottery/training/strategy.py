"""The one place that builds the tf.distribute strategy.

TPUStrategy when --tpu is given ('local' on a Cloud TPU VM, or a TPU name /
grpc address), MultiWorkerMirroredStrategy when TF_CONFIG describes a cluster
with more than one worker, MirroredStrategy when several GPUs are visible,
otherwise the default (single-device) strategy.
"""
import json
import os
from typing import Optional

import tensorflow as tf
from absl import logging

from tflottery.errors import ConfigError


def _num_workers_in_tf_config() -> int:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e}); fix or unset it") from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def build_strategy(tpu: Optional[str] = None) -> tf.distribute.Strategy:
    """Build the strategy for this process (see module docstring for the order)."""
    if tpu:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    elif _num_workers_in_tf_config() > 1:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif len(tf.config.list_logical_devices("GPU")) > 1:
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    logging.info("strategy: %s with %d replica(s)", type(strategy).__name__,
                 strategy.num_replicas_in_sync)
    return strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this worker writes outputs (only the chief writes)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief
