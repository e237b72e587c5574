"""Every hyperparameter field with its type, default, value and meaning, as text
(`python -m tflottery.main --show_hparams`).

The meaning of a field is taken from its class's docstring, where each field
is an entry `name: what it is` (continued on indented lines; `a / b: ...`
documents two fields at once), so the help cannot drift from the code: a
field without an entry shows `(undocumented)`, and a test fails on it.
"""
import dataclasses
import inspect
import re
import textwrap
import typing
from typing import Dict, Iterable, List

from tflottery import hparams

WIDTH = 100   # columns of the help text

# `name: text` or `name_a / name_b: text` at the docstring's own indentation.
_ENTRY = re.compile(r"^(\w+(?:\s*/\s*\w+)*)\s*:\s+(.*)$")


def field_docs(cls) -> Dict[str, str]:
    """{field: its meaning, one line} from the entries of `cls`'s docstring."""
    names = {f.name for f in dataclasses.fields(cls)}
    out: Dict[str, str] = {}
    current: List[str] = []
    for line in inspect.cleandoc(cls.__doc__ or "").splitlines():
        match = _ENTRY.match(line)
        keys = [k.strip() for k in match.group(1).split("/")] if match else []
        if keys and all(k in names for k in keys):
            current = keys
            for key in keys:
                out[key] = match.group(2).strip()
        elif current and line.startswith(" ") and line.strip():
            for key in current:    # "Erdős-Rényi-" + "Kernel" joins without a space
                joined = re.search(r"\w-$", out[key])
                out[key] += ("" if joined else " ") + line.strip()
        else:
            current = []
    return out


def first_sentence(text: str) -> str:
    """The text up to the full stop that ends its first sentence (or all of it)."""
    match = re.search(r"\.(?=\s+[A-Z]|\s*$)", text)   # not "e.g. '90ep'"
    return text[:match.start() + 1] if match else text


def type_text(annotation) -> str:
    """A field's type as the help shows it: a step quantity as `step` ('90ep', '500it')."""
    return hparams.type_name(annotation).replace(
        "str", "step") if _mentions_step(annotation) else hparams.type_name(annotation)


def _mentions_step(annotation) -> bool:
    return annotation is hparams.StepText or any(
        _mentions_step(a) for a in typing.get_args(annotation))


def summary_line(cls) -> str:
    """The first paragraph of a class's docstring, on one line."""
    return " ".join(inspect.cleandoc(cls.__doc__ or "").split("\n\n", 1)[0].split())


def _default(field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def describe_class(cls, instance=None) -> List[str]:
    """Lines for one class: its summary, then per field `name: type = default`, the
    configured value when it differs, and the meaning."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    lines = [f"{cls.__name__}: {summary_line(cls)}"]
    for field in dataclasses.fields(cls):
        default = _default(field)
        text = f"  {field.name}: {type_text(hints[field.name])} = {default!r}"
        if instance is not None and getattr(instance, field.name) != default:
            text += f"  (here: {getattr(instance, field.name)!r})"
        lines.append(text)
        lines += textwrap.wrap(first_sentence(docs.get(field.name, "(undocumented)")),
                               width=WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return lines


def describe(items: Iterable) -> str:
    """The text for classes or configured instances (an instance shows its values)."""
    blocks = []
    for item in items:
        cls = item if isinstance(item, type) else type(item)
        blocks.append("\n".join(describe_class(cls, None if item is cls else item)))
    return "\n\n".join(blocks)
