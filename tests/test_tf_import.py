"""TensorFlow's start-up lines (tflottery/tf_import.py): repeats and the known machine
notices removed, every other line kept, everything kept with TFLOTTERY_RAW_LOGS."""
from tflottery import tf_import

# TensorFlow 2.21's start-up on a CPU machine (two shared libraries run the checks),
# plus an error line that is not a known notice.
BANNER = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796626704.610422   21950 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1796626704.698590   21950 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796626709.153730   21950 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
E0000 00:00:1796626709.595501   21950 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
E0000 00:00:1796626709.600000   21950 dso_loader.cc:70] Could not load dynamic library 'libfoo.so.1'
"""


def test_known_notices_go_and_other_lines_stay():
    assert tf_import.startup_lines(BANNER) == (
        "E0000 00:00:1796626709.600000   21950 dso_loader.cc:70] Could not load dynamic "
        "library 'libfoo.so.1'\n")


def test_raw_keeps_every_line_once():
    raw = tf_import.startup_lines(BANNER, raw=True).splitlines()
    assert len(raw) == 6      # the two repeated lines once each
    assert sum("cuInit" in line for line in raw) == 1
    assert sum("InitializeLog" in line for line in raw) == 1
