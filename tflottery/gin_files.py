"""Finding and parsing gin files and bindings, with one-line errors.

A bare name ('quickstart' or 'quickstart.gin') is looked up in the current
directory and then in the repository's gin_configs/ folder, which is also
gin's search path for `include` lines.
"""
import contextlib
import logging
import os
import re
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


def check_text(path: str) -> None:
    """ConfigError unless the file is UTF-8 text with at least one statement.

    gin reads a file of non-UTF-8 bytes with a UnicodeDecodeError that names
    no line, and an empty file (or one of comments only) as "configure
    nothing": almost always the wrong file.  The message quotes the line.
    """
    with open(path, "rb") as f:
        data = f.read()
    for number, line in enumerate(data.splitlines(), 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            text = line.decode("utf-8", "backslashreplace").strip()
            raise ConfigError(f"bad gin configuration: {path}:{number}: {text[:200]}: not UTF-8 "
                              f"text; save the file as UTF-8") from None
    statements = [l for l in data.decode("utf-8").splitlines()
                  if l.strip() and not l.strip().startswith("#")]
    if not statements:
        raise ConfigError(f"gin file {path} is empty (no bindings); give the file that "
                          f"configures the run, e.g. --gin_file=quickstart.gin")


def describe_error(e: BaseException) -> str:
    """One line for a gin parse error: file:line: the offending text, and what is wrong."""
    location = e.args[1] if isinstance(e, SyntaxError) and len(e.args) > 1 else None
    text = getattr(location, "line_content", None)
    if text is not None:
        where = (f"{location.filename}:{location.line_num}" if location.filename
                 else "--gin_bindings")
        return f"{where}: {text.strip()[:200]}: {e.args[0]}"
    # Other errors (unknown configurable or parameter) end 'In file "f", line n' + the line.
    message = str(e).strip()
    match = re.search(r'\s*In file "([^"]*)", line (\d+)\s*\n\s*(.*)', message)
    if match:
        return f"{match.group(1)}:{match.group(2)}: {match.group(3).strip()[:200]}: " \
               f"{' '.join(message[:match.start()].split())}"
    return " ".join(message.split())[:400]


def parse(files: Sequence[str], bindings: Sequence[str]) -> None:
    """Parse gin files then bindings (later ones win); errors become ConfigError."""
    paths = [resolve(f) for f in files]
    for path in paths:
        check_text(path)
    if os.path.isdir(CONFIG_DIR):
        gin.add_config_file_search_path(CONFIG_DIR)  # for `include 'base.gin'` lines
    try:
        with _quiet_include_probes():
            gin.parse_config_files_and_bindings(paths, list(bindings))
    except (ValueError, SyntaxError, tokenize.TokenError, KeyError, IOError) as e:
        raise ConfigError(f"bad gin configuration: {describe_error(e)}") from None
