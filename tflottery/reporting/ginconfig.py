"""Read a run's config.gin back as data: {'Class.field': value}.

Reports group and label runs by their settings (which method, which target
sparsity, which network), so the bindings a run was started with must be
readable without re-running gin's registration of every configurable.  gin's
own parser reads the file statement by statement without needing the
configurables to exist; references (`@name`) and macros (`%NAME`) are kept as
text.  A file gin cannot parse (hand-edited, truncated) is read line by line
instead, so one bad file never stops a report.
"""
import ast
import dataclasses
import re
from typing import Dict, Tuple

from gin import config_parser

from tflottery import hparams


class _Symbol(str):
    """A gin reference or macro, shown as written (`@name`, `%NAME`)."""

    def __repr__(self):
        return str(self)


class _Delegate(config_parser.ParserDelegate):
    def configurable_reference(self, scoped_configurable_name, evaluate):
        return _Symbol("@" + scoped_configurable_name + ("()" if evaluate else ""))

    def macro(self, macro_name):
        return _Symbol("%" + macro_name)


def _parse_with_gin(text: str) -> Dict[str, object]:
    out = {}
    for statement in config_parser.ConfigParser(text, _Delegate()):
        if isinstance(statement, config_parser.BindingStatement):
            scope = f"{statement.scope}/" if statement.scope else ""
            out[f"{scope}{statement.selector}.{statement.arg_name}"] = statement.value
    return out


_BINDING = re.compile(r"^\s*([\w./]+)\s*=\s*(.*)$")


def _parse_lines(text: str) -> Dict[str, object]:
    """Fallback: `key = value` lines, a value continuing while brackets are open."""
    out, key, value, depth = {}, None, "", 0
    for line in text.splitlines():
        stripped = line.rstrip()
        if stripped.lstrip().startswith("#"):
            continue
        if key is None:
            match = _BINDING.match(stripped)
            if not match:
                continue
            key, value = match.group(1), match.group(2)
        else:
            value += " " + stripped.strip()
        depth = sum(value.count(c) for c in "([{") - sum(value.count(c) for c in ")]}")
        if depth <= 0:
            try:
                out[key] = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                out[key] = _Symbol(value.strip())
            key, value = None, ""
    return out


def parse(text: str) -> Tuple[Dict[str, object], str]:
    """({'Class.field': Python value}, error message or '') of a gin config text."""
    try:
        return _parse_with_gin(text), ""
    except Exception as err:  # gin raises SyntaxError and others; never fatal here
        return _parse_lines(text), f"not valid gin ({type(err).__name__}: {err}); read line by line"


def as_text(value) -> str:
    """A binding's value as one string for tables: strings bare, others as gin writes them."""
    if isinstance(value, str) and not isinstance(value, _Symbol):
        return value
    return repr(value)


def lookup(bindings: Dict[str, object], key: str, default=None):
    """A binding's value; else the field's default in tflottery.hparams; else `default`.

    config.gin holds only the bindings that were set, so an unset field has
    the dataclass default (e.g. ModelHparams.name = 'lenet_300_100')."""
    if key in bindings:
        return bindings[key]
    cls_name, _, field = key.rpartition(".")
    cls = getattr(hparams, cls_name.split("/")[-1], None)
    found = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
    if field in found and found[field].default is not dataclasses.MISSING:
        return found[field].default
    if field in found and found[field].default_factory is not dataclasses.MISSING:
        return found[field].default_factory()
    return default
