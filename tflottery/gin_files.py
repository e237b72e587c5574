"""Finding and parsing gin files and bindings, with one-line errors.

A bare name ('quickstart' or 'quickstart.gin') is looked up in the current
directory and then in the repository's gin_configs/ folder, which is also
gin's search path for `include` lines.
"""
import contextlib
import logging
import os
import tokenize
from typing import List, Sequence

import gin

from tflottery.errors import ConfigError

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "gin_configs")


def available_configs() -> List[str]:
    if not os.path.isdir(CONFIG_DIR):
        return []
    return sorted(f for f in os.listdir(CONFIG_DIR) if f.endswith(".gin"))


def resolve(name: str) -> str:
    candidates = [name] if name.endswith(".gin") else [name, name + ".gin"]
    for c in candidates:
        for path in (c, os.path.join(CONFIG_DIR, c)):
            if os.path.isfile(path):
                return path
    raise ConfigError(f"unknown gin file {name!r}; give a path or one of: "
                      f"{', '.join(available_configs())}")


class _NoResourceProbes(logging.Filter):
    """Drops gin.resource_reader's log lines.

    For `include 'base.gin'`, gin tries each search-path prefix in turn with
    each registered file reader; its second reader (a Python-package
    resource reader) logs `ERROR Path not found: base.gin` for the current
    directory before the next prefix, gin_configs/, finds the file.  The
    probe is not an error: a file found nowhere raises IOError, which parse()
    reports.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.pathname.replace(os.sep, "/").endswith("gin/resource_reader.py")


@contextlib.contextmanager
def _quiet_include_probes():
    root, probe_filter = logging.getLogger(), _NoResourceProbes()
    root.addFilter(probe_filter)
    try:
        yield
    finally:
        root.removeFilter(probe_filter)


def parse(files: Sequence[str], bindings: Sequence[str]) -> None:
    """Parse gin files then bindings (later ones win); errors become ConfigError."""
    paths = [resolve(f) for f in files]
    if os.path.isdir(CONFIG_DIR):
        gin.add_config_file_search_path(CONFIG_DIR)  # for `include 'base.gin'` lines
    try:
        with _quiet_include_probes():
            gin.parse_config_files_and_bindings(paths, list(bindings))
    except (ValueError, SyntaxError, tokenize.TokenError, KeyError, IOError) as e:
        msg = " ".join(str(e).split())
        raise ConfigError(f"bad gin configuration: {msg[:400]}") from None
