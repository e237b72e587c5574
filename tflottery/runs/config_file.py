"""config.gin of a run directory: written once, checked on every run.

The runner writes the gin configuration a run directory was first made with
(later invocations may add bindings that do not change the run's name, such
as more IMP levels; the file keeps the first).  Reports read the run's
settings from it, so a garbled copy used to be skipped by every report
("skipping unreadable") and never mended.  Now each run reads it back: bytes
that are not UTF-8 or text gin cannot parse mean damage, and the file is set
aside (runs/damage.py) and written again from this invocation's
configuration.
"""

from tflottery.runs import damage, io, layout

FILENAME = layout.CONFIG


def read_config(path: str) -> str:
    """The text of a config.gin (ValueError if it is not UTF-8 gin)."""
    from tflottery.reporting import ginconfig
    text = io.read_text(path)
    _, error = ginconfig.parse(text)
    if error:
        raise ValueError(f"{path}: {error}")
    return text


def write_config(run_dir: str, text: str) -> None:
    """Write `text` as the run's config.gin unless a readable one is there."""
    path = layout.file(run_dir, FILENAME)
    if damage.read_output(path, read_config) is None:
        io.atomic_write_text(path, text)
