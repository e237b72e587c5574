"""A write that fails mid-run (disk full, a file-size limit): one clean line, no
half-written checkpoint directory left behind."""
import os
import subprocess
import sys

from conftest import REPO

# A checkpoint save under a 20 kB file-size limit (RLIMIT_FSIZE): TensorFlow's
# SaveV2 fails half-way through writing its shards into `<prefix>_temp/`, as on
# a full disk (the failure is real, not simulated).
_SAVE_UNDER_LIMIT = """
import os, resource, signal, sys
import tflottery
import tensorflow as tf
from tflottery import masking, models
from tflottery.training.checkpoints import Checkpointer
model = masking.wrap(models.build("lenet_300_100", (8, 8, 1), 10, seed=0))
ckpt = Checkpointer(sys.argv[1], model, tf.keras.optimizers.SGD(0.1))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # EFBIG instead of a kill
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, resource.RLIM_INFINITY))
for save in (lambda: ckpt.save_latest(5), lambda: ckpt.save_named("end", {"step": 5})):
    try:
        save()
        print("saved")
    except tf.errors.OpError as e:
        print("failed:", type(e).__name__, "File too large" in str(e))
"""


def test_failed_checkpoint_write_leaves_no_temp_directory(tmp_path):
    directory = tmp_path / "checkpoints"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", _SAVE_UNDER_LIMIT, str(directory)], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["failed: OutOfRangeError True"] * 2, out.stdout
    left = sorted(os.path.relpath(os.path.join(p, n), directory)
                  for p, dirs, files in os.walk(directory) for n in dirs + files)
    assert left == ["end", "latest"], left      # no ckpt-5_temp, no ckpt_temp


def test_disk_full_line_has_no_function_node_prefix():
    import tensorflow as tf
    from tflottery.main import _write_failure
    error = tf.errors.ResourceExhaustedError(None, None, (
        "{{function_node __wrapped__SaveV2_dtypes_13_device_/job:localhost/replica:0/task:0/"
        "device:CPU:0}} runs/x/ckpt-5_temp/part-00000-of-00001.data-00000-of-00001.tempstate1; "
        "No space left on device [Op:SaveV2]"))
    assert _write_failure(error) == (
        "writing the run directory failed: runs/x/ckpt-5_temp/part-00000-of-00001.data-00000-"
        "of-00001.tempstate1; No space left on device [Op:SaveV2]")
