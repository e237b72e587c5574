"""Grids of gin bindings: `--grid Config.field=v1,v2,...`, expanded into jobs.

The one expander behind `python -m tflottery.sweep` (which runs the jobs)
and `launch/sweep.py` (which only writes their commands, for machines it
cannot reach).  Standard library only, so launch/sweep.py runs from a bare
Python: gin's own check of each value is passed in by the caller that has
gin (`check_value`).

A value list is split at the commas outside quotes and brackets, so tuples
and strings holding commas are one value: `BranchHparams.levels=(0,2),(0,4)`
is two values.  Several grids make their product; replicates are outermost,
so replicate 0 of the whole grid comes first (a sweep stopped half-way has
covered the grid once rather than a corner of it many times).
"""
import itertools
import re
from typing import Callable, List, Optional, Sequence, Tuple

from tflottery.errors import ConfigError

BINDING_NAME = re.compile(r"^%?[A-Za-z_][\w.]*(/[A-Za-z_][\w.]*)?$")
_CLOSING = {"(": ")", "[": "]", "{": "}"}

Grid = Tuple[str, List[str]]
Point = Tuple[Tuple[str, str], ...]     # ((name, value), ...) in --grid order


def split_values(text: str) -> List[str]:
    """Split 'a,b,(1, 2),'x,y'' at the commas outside quotes and brackets."""
    values, stack, quote, start, i = [], [], None, 0, 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in _CLOSING:
            stack.append(_CLOSING[ch])
        elif ch in ")]}":
            if not stack or stack.pop() != ch:
                raise ConfigError(f"unbalanced {ch!r} in {text!r}")
        elif ch == "," and not stack:
            values.append(text[start:i].strip())
            start = i + 1
        i += 1
    if quote or stack:
        opening = quote or {v: k for k, v in _CLOSING.items()}[stack[-1]]
        raise ConfigError(f"unclosed {opening!r} in {text!r}")
    values.append(text[start:].strip())
    return values


def parse_grid(spec: str, check_value: Optional[Callable[[str, str], None]] = None) -> Grid:
    """'Config.field=v1,v2' -> ('Config.field', ['v1', 'v2']).

    check_value(name, value), if given, raises ConfigError for a value that
    is not a valid binding (tflottery.sweep passes gin's parser)."""
    if "=" not in spec:
        raise ConfigError(f"--grid {spec!r} must look like 'Config.field=value1,value2,...'")
    name, values_text = (part.strip() for part in spec.split("=", 1))
    if not BINDING_NAME.match(name):
        raise ConfigError(f"--grid {spec!r}: {name!r} is not a gin binding name "
                          "(like LotteryHparams.rewind_step)")
    try:
        values = split_values(values_text)
    except ConfigError as e:
        raise ConfigError(f"--grid {spec!r}: {e}") from None
    if any(not v for v in values):
        raise ConfigError(f"--grid {spec!r} has an empty value (a stray comma?)")
    if len(set(values)) != len(values):
        raise ConfigError(f"--grid {spec!r} repeats a value")
    for value in values:
        if check_value is not None:
            try:
                check_value(name, value)
            except ConfigError as e:
                raise ConfigError(f"--grid {spec!r}: {e}") from None
    return name, values


def parse_grids(specs: Sequence[str], check_value=None) -> List[Grid]:
    grids = [parse_grid(s, check_value) for s in specs]
    names = [n for n, _ in grids]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"the same binding is given to --grid twice ({', '.join(twice)}); "
                          f"put all its values in one --grid")
    return grids


def points(grids: Sequence[Grid]) -> List[Point]:
    """The product of the grids (one empty point if there are none)."""
    names = [n for n, _ in grids]
    return [tuple(zip(names, combo)) for combo in itertools.product(*(v for _, v in grids))]


def expand(grids: Sequence[Grid], replicates: Sequence[int]) -> List[Tuple[int, Point]]:
    """Every job as (replicate, point), replicates outermost."""
    return [(r, p) for r in replicates for p in points(grids)]
