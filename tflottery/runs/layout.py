"""Every path and file name of a run directory, in one place (#23).

Experiments write through these functions and reporting finds runs and
phases through them, so the tree below is named here only:

    <root>/<experiment>_<hash>/          run_dir (naming.py makes the name)
        config.gin  operative_config.gin  hparams.json  experiment.json  lock.json
        summary.{json,md,png}  instability_summary.{json,md}
        replicate_<r>/                   replicate_dir
            finished.json  <result file> (pai.json, dst.json, dynamic_imp.json)
            pretrain/  train/  mask/  mask_init/           phase and mask dirs
            level_<L>/ mask/ train/ branch_<name>/ (branch.json mask/ train/)
            [level_<L>/]k_<k>/ pretrain/ copy_<i>/ instability.json
            phase_<i>/ dense/ sparse/ mask/ regrown/ kept_regrown/   (dynamic_imp)
            branch_<name>/ mask/ train/                        (pai ablations)

A phase directory holds final.json, metrics.jsonl, checkpoints/ and
tensorboard/ (its TensorBoard runs train/, test/, holdout/ are named in
training/summaries.py).  The names are part of the on-disk format: changing
one renames existing runs, which tests/test_naming.py and the report golden
(tests/test_report_golden.py) would catch.
"""
import hashlib
import json
import os
import re
from typing import Iterable, List, Optional, Tuple

# ---- file names ----
CONFIG = "config.gin"
OPERATIVE_CONFIG = "operative_config.gin"
HPARAMS = "hparams.json"
EXPERIMENT_RECORD = "experiment.json"
FINISHED = "finished.json"
LOCK = "lock.json"
FINAL = "final.json"
METRICS = "metrics.jsonl"
BRANCH_RECORD = "branch.json"
MASK_FILE, MASK_REPORT, STATISTICS = "mask.npz", "sparsity.json", "statistics.json"
INSTABILITY = "instability.json"
RUN_SUMMARY = "summary"                  # summary.json / .md / .png of a lottery run
INSTABILITY_SUMMARY = "instability_summary"

# ---- directory names ----
TRAIN, PRETRAIN, MASK = "train", "pretrain", "mask"
CHECKPOINTS, TENSORBOARD = "checkpoints", "tensorboard"
# Inside checkpoints/: the rolling checkpoint, and per named one its info, its tensors
# (unless its info.json refers to another checkpoint's) and its masks, one bit a weight.
LATEST, CHECKPOINT_INFO, CHECKPOINT_PREFIX = "latest", "info.json", "ckpt"
CHECKPOINT_MASK_BITS = "mask_bits.npz"
DENSE, SPARSE = "dense", "sparse"
REPLICATE, LEVEL, BRANCH, K, COPY, PHASE = (
    "replicate_", "level_", "branch_", "k_", "copy_", "phase_")


def join(*parts: str) -> str:
    """A path below a run directory (the one place paths are assembled)."""
    return os.path.join(*parts)


def run_dir(root: str, name: str) -> str:
    return join(root, name)


def replicate_dir(run: str, replicate: int) -> str:
    return join(run, f"{REPLICATE}{replicate}")


def level_dir(rep: str, level: int) -> str:
    return join(rep, f"{LEVEL}{level}")


def branch_dir(parent: str, dirname: str) -> str:
    """`parent`/branch_<name> (`dirname` from branch_dir_name, or a plain branch name)."""
    return join(parent, dirname if dirname.startswith(BRANCH) else BRANCH + dirname)


def branch_dir_name(name: str, data_seed: Optional[int] = None,
                    dilation: Optional[float] = None) -> Optional[str]:
    """`branch_<name>`; the 'retrain' branch's is `branch_retrain_<tag>`, the tag a hash of the
    settings it changes (None when it changes none)."""
    if name != "retrain":
        return BRANCH + name
    settings = {k: v for k, v in (("data_seed", data_seed), ("dilation", dilation))
                if v is not None}
    if not settings:
        return None
    tag = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"{BRANCH}retrain_{tag}"


def analysis_dir(rep: str, level: Optional[int], k: int) -> str:
    """An instability analysis at rewinding step k: of the dense network (level None) or
    of lottery level `level`."""
    return join(rep if level is None else level_dir(rep, level), f"{K}{k}")


def copy_dir(analysis: str, i: int) -> str:
    return join(analysis, f"{COPY}{i}")


def dynamic_phase_dir(rep: str, i: int, part: str = "") -> str:
    """Dynamic IMP's phase_<i>, or its `part` (DENSE, SPARSE, a mask's name) in it."""
    return join(rep, f"{PHASE}{i}", part) if part else join(rep, f"{PHASE}{i}")


def train_dir(parent: str) -> str:
    return join(parent, TRAIN)


def pretrain_dir(parent: str) -> str:
    return join(parent, PRETRAIN)


def mask_dir(parent: str) -> str:
    return join(parent, MASK)


def checkpoints_dir(phase: str) -> str:
    return join(phase, CHECKPOINTS)


def relative(target: str, start: str) -> str:
    """`target` as a path relative to `start` ('../../pretrain/checkpoints/end'), for
    references inside a run that stay true when the run directory is moved.  Works on
    plain strings, so also for gs:// paths (os.path.relpath would fold their '//')."""
    a, b = target.rstrip("/").split("/"), start.rstrip("/").split("/")
    common = 0
    while common < min(len(a), len(b)) and a[common] == b[common]:
        common += 1
    return "/".join([".."] * (len(b) - common) + a[common:]) or "."


def resolve(start: str, rel: str) -> str:
    """The path that `relative(target, start)` returned `rel` for."""
    parts = start.rstrip("/").split("/")
    for part in rel.split("/"):
        if part == "..":
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def file(directory: str, name: str) -> str:
    """A named file (one of the constants above, or a module's own FILENAME) in `directory`."""
    return join(directory, name)


# ---- reading a tree back ----
def numbered(names: Iterable[str], prefix: str) -> List[Tuple[int, str]]:
    """(number, name) of the names that are `prefix` + digits, sorted by number."""
    out = []
    for name in names:
        match = re.fullmatch(re.escape(prefix) + r"(\d+)", name.rstrip("/"))
        if match:
            out.append((int(match.group(1)), name.rstrip("/")))
    return sorted(out)


def describe(rel: str) -> dict:
    """What the path of a phase relative to its replicate says about it: level, k, branch
    (the directory name after 'branch_') and kind ('pretrain', 'copy' or 'train')."""
    parts = [p for p in rel.split("/") if p and p != "."]
    info = {"level": None, "k": None, "branch": None}
    for part in parts:
        for key, prefix in (("level", LEVEL), ("k", K)):
            if re.fullmatch(prefix + r"\d+", part):
                info[key] = int(part[len(prefix):])
        if part.startswith(BRANCH):
            info["branch"] = part[len(BRANCH):]
    last = parts[-1] if parts else ""
    info["kind"] = (PRETRAIN if last == PRETRAIN else
                    "copy" if re.fullmatch(COPY + r"\d+", last) else "train")
    return info


def dynamic_phase(rel: str) -> Optional[Tuple[int, str]]:
    """(i, 'dense' or 'sparse') of a dynamic_imp phase path 'phase_<i>/<part>', else None."""
    match = re.fullmatch(PHASE + r"(\d+)/(" + DENSE + "|" + SPARSE + ")", rel)
    return (int(match.group(1)), match.group(2)) if match else None


def mask_of_phase(phase: str) -> str:
    """The mask directory of a phase: beside it for a '.../train' phase, else inside it."""
    parent = os.path.dirname(phase) if os.path.basename(phase) == TRAIN else phase
    return mask_dir(parent)


def analysis_of(rel: str) -> str:
    """The analysis (k_<k>) directory, relative to the replicate, of a copy or pretrain
    phase of an instability analysis."""
    return rel.rsplit("/", 1)[0] if "/" in rel else ""

