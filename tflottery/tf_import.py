"""Import TensorFlow with its start-up banner printed once.

The TensorFlow 2.21 wheel runs the same C++ start-up checks from two of its
shared libraries, so every banner line ("oneDNN custom operations are on",
"Could not find cuda drivers", absl's "All log messages before
absl::InitializeLog()") appears twice.  The lines are written by C++
static initialisers straight to file descriptor 2, before any Python or
absl logging setting applies, so they are captured at that level during
the import and written back with repeats removed.
"""
import os
import re
import sys
import tempfile

# absl's C++ prefix: severity, date, time, thread id ("I0000 00:00:1796.628628    1911 ").
_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+\s+")


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


def import_tensorflow() -> None:
    """Import tensorflow (once per process) with its banner deduplicated."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            sys.stderr.write(unique_lines(capture.read().decode("utf-8", "replace")))
            sys.stderr.flush()
