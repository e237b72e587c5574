"""Checking a --root_dir before anything runs.

A root that is empty, a file, read-only or unreachable would otherwise fail
deep inside TensorFlow's file system layer with a long traceback, after the
data were loaded and perhaps after part of a run was written.  Checked
first, it is one line naming the path and the fix.

The check writes (and removes) a probe file: permission bits do not tell
the whole story (a read-only mount, or root, who passes every permission
check), and writing is what the run will do.
"""
import os
import uuid

import tensorflow as tf

from tflottery.errors import ConfigError

PROBE_PREFIX = ".tflottery-probe-"


def check_root(root_dir: str, create: bool = True) -> None:
    """ConfigError unless `root_dir` is (or can be made) a writable directory.

    create=False checks only what needs no write (given, reachable, not a
    file): the runner checks that before validating the configuration, and
    creates the root (create=True) only once every check has passed, so a
    refused run leaves no empty root behind.
    """
    if not root_dir or not str(root_dir).strip():
        raise ConfigError("--root_dir is empty; give the directory for run directories, "
                          "e.g. --root_dir=runs")
    remote = "://" in root_dir
    if remote and root_dir.startswith("gs://"):
        from tflottery.data.sources import _check_network
        try:
            _check_network()
        except OSError as e:
            raise ConfigError(f"--root_dir {root_dir} is not reachable (no connection to Cloud "
                              f"Storage: {e}); check the network, or use a local directory") from e
    if not remote and os.path.exists(root_dir) and not os.path.isdir(root_dir):
        raise ConfigError(f"--root_dir {root_dir} is a file, not a directory; choose a directory")
    if not create:
        return
    try:
        tf.io.gfile.makedirs(root_dir)
        probe = os.path.join(root_dir, PROBE_PREFIX + uuid.uuid4().hex[:8])
        with tf.io.gfile.GFile(probe, "w") as f:
            f.write("probe")
        tf.io.gfile.remove(probe)
    except (OSError, tf.errors.OpError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--root_dir {root_dir} cannot be created or written ({reason}); "
                          f"choose a directory you can write to") from e
