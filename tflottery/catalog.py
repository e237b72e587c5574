"""What can be named in a gin config: `python -m tflottery.main --list`.

Every list is read from its registry at call time, so an experiment, model,
dataset, branch or scorer registered anywhere (including by a module a gin
file `import`s) appears without this file changing.  Each entry gets a
one-line description where one is at hand: the object's own `description`,
the first sentence of its docstring, a model's architecture arguments, a gin
file's first comment sentence (whole, wrapped).
"""
import functools
import os
import sys
import textwrap
from typing import Dict, List, Tuple

from tflottery import gin_files, hparams_doc

Entry = Tuple[str, str]


def _first_line(text) -> str:
    """The first sentence of a docstring or comment block, whole (its first paragraph
    may run over several lines; comment markers dropped)."""
    lines = [line.strip().lstrip("#").strip() for line in (text or "").strip().splitlines()]
    paragraph = []
    for line in lines:
        if not line and paragraph:
            break
        if line:
            paragraph.append(line)
    return hparams_doc.first_sentence(" ".join(paragraph))


def describe(obj) -> str:
    """One line about a registered object (empty when nothing says more than its name)."""
    description = getattr(obj, "description", None)
    if isinstance(description, str) and description:
        return description
    arch = getattr(obj, "arch", None)
    builder = getattr(obj, "builder", None)
    if builder is not None and isinstance(arch, dict):     # a models.ModelSpec
        args = ", ".join(f"{k}={v}" for k, v in sorted(arch.items()))
        return f"{builder.__name__}({args})" if args else builder.__name__
    fn = getattr(obj, "fn", None)
    if callable(fn):                                        # a scoring.Scorer
        return _first_line(fn.__doc__)
    load = getattr(obj, "load", None)
    if callable(load):                                      # a data.Source
        if isinstance(load, functools.partial):
            return f"{load.func.__name__}{tuple(load.args)!r}".replace(",)", ")")
        return load.__name__
    if isinstance(obj, type):                               # an experiment class
        return _first_line(obj.__doc__) or _first_line(sys.modules[obj.__module__].__doc__)
    return ""


def gin_config_entries() -> List[Entry]:
    """(file name, first comment line) of every file in gin_configs/."""
    out = []
    for name in gin_files.available_configs():
        with open(os.path.join(gin_files.CONFIG_DIR, name), encoding="utf-8") as f:
            lines = f.read().splitlines()
        # The opening comment block (up to the first line that is not a comment).
        comments = lines[:next((i for i, l in enumerate(lines) if not l.startswith("#")),
                               len(lines))]
        out.append((name, _first_line("\n".join(comments))))
    return out


def registries() -> Dict[str, object]:
    """Section title -> registry, imported here so that everything has registered."""
    from tflottery import data, experiments, models, scoring
    from tflottery.experiments import branches
    from tflottery.training import optimizers
    return {"experiments (ExperimentHparams.name)": experiments.REGISTRY,
            "models (ModelHparams.name)": models.REGISTRY,
            "datasets (DatasetHparams.name)": data.registry.DATASETS,
            "branches (BranchHparams.names)": branches.REGISTRY,
            "scorers (PaiHparams.method)": scoring.SCORERS,
            "optimizers (TrainingHparams.optimizer)": optimizers.OPTIMIZERS}


def sections() -> Dict[str, List[Entry]]:
    out = {title: [(name, describe(registry.get(name))) for name in registry.names()]
           for title, registry in registries().items()}
    out["gin configs (--gin_file)"] = gin_config_entries()
    return out


def format_sections(listing: Dict[str, List[Entry]]) -> str:
    lines = []
    for title, entries in listing.items():
        lines.append(f"{title}:")
        width = max((len(name) for name, _ in entries), default=0)
        for name, about in entries:
            lines += textwrap.wrap(about, width=hparams_doc.WIDTH,
                                   initial_indent=f"  {name:<{width}}  ",
                                   subsequent_indent=" " * (width + 4)) or [f"  {name}"]
        lines.append("")
    lines.append("Your own model or dataset: register it in a module of yours and add "
                 "`import your_module` to a gin file (README: 'Your own model and data').")
    return "\n".join(lines)
