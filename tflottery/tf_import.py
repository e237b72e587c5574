"""Import TensorFlow without its start-up noise.

TensorFlow's C++ runtime writes lines at start-up that say nothing about the
user's run: absl's "All log messages before absl::InitializeLog()", the CUDA
probe ("Could not find cuda drivers", and an `E` line "failed call to cuInit"
on a machine without a GPU, which reads as a failure), the CPU-feature and
oneDNN notices; the TensorFlow 2.21 wheel runs these checks from two of its
shared libraries, so most appear twice.  They are written by C++ static
initialisers and by the first device probe straight to file descriptor 2,
before any Python or absl logging setting applies, so they are captured at
that level while TensorFlow is imported and its devices are listed, and
written back without repeats and without those known lines.  Any other line
(a real error: a missing library, a broken driver message we do not know)
is written back as it came.  `TFLOTTERY_RAW_LOGS=1` writes everything back
unfiltered (still once per line).

TensorFlow's tf.lite imports JAX, if it is installed, while TensorFlow
imports (for its JAX-to-TFLite converter, which tflottery never uses): a
third of a second on a quiet 2-core machine, in every run.  `import jax`
is made to fail for that moment (see `_jax_skipped`), unless JAX is
imported already; `import jax` afterwards works as usual.
"""
import contextlib
import os
import re
import sys
import tempfile

# absl's C++ prefix: severity, date, time, thread id ("I0000 00:00:1796.628628    1911 ").
_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+\s+")

RAW_ENV = "TFLOTTERY_RAW_LOGS"

# The start-up lines that are about the machine, not the run (matched after the prefix).
NOISE = re.compile("|".join([
    r"All log messages before absl::InitializeLog\(\) is called",
    r"cudart_stub\.cc:\d+\] Could not find cuda drivers",
    r"cuda_platform\.cc:\d+\] failed call to cuInit",
    r"oneDNN custom operations are on",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"To enable the following instructions: .* rebuild TensorFlow",
    r"TF-TRT Warning: Could not find TensorRT",
]))


def unique_lines(text: str) -> str:
    """`text` without lines that repeat an earlier one (ignoring the absl prefix)."""
    seen, out = set(), []
    for line in text.splitlines(keepends=True):
        key = _PREFIX.sub("", line).strip()
        if key and key in seen:
            continue
        seen.add(key)
        out.append(line)
    return "".join(out)


def startup_lines(text: str, raw: bool = False) -> str:
    """What of TensorFlow's start-up output to show: each line once, the known
    machine notices (NOISE) left out unless `raw`."""
    text = unique_lines(text)
    if raw:
        return text
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.search(line))


@contextlib.contextmanager
def _jax_skipped():
    """`import jax` raises ImportError inside (as if JAX were not installed), unless
    it is imported already; afterwards it imports as usual."""
    if "jax" in sys.modules:
        yield
        return
    sys.modules["jax"] = None       # the import system's "not importable" marker
    try:
        yield
    finally:
        if sys.modules.get("jax", 0) is None:
            del sys.modules["jax"]


def import_tensorflow() -> None:
    """Import tensorflow and list its devices (once per process), start-up noise removed."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            with _jax_skipped():
                import tensorflow
            # The CUDA probe: here rather than at the first op, inside the capture.
            tensorflow.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            sys.stderr.write(startup_lines(capture.read().decode("utf-8", "replace"),
                                           raw=os.environ.get(RAW_ENV, "") not in ("", "0")))
            sys.stderr.flush()
