"""Grouping and averaging of the collected table, shared by tables and figures.

Both the summary tables and the figures need the same answers: which runs
train the same network (so a dense accuracy from one can be the reference
of another), which pruning-at-initialisation runs belong in one sweep
(they differ only in method and target sparsity), the mean and min-max of
an accuracy over replicates, and the earliest stable / matching rewinding
step.  Keeping them here keeps the tables and the figures consistent.
"""
import re
from typing import Dict, List, Optional

import numpy as np

from tflottery.reporting import collect, ginconfig

NETWORK_PREFIXES = ("DatasetHparams.", "ModelHparams.", "TrainingHparams.")
# Bindings that do not change which results are comparable in a pai sweep.
PAI_SWEEP_KEYS = ("PaiHparams.method", "PaiHparams.target_sparsity", "ExperimentHparams.name")
RANDOM_PRUNING_BRANCHES = ("random_prune_global", "random_prune_layerwise")
_NOT_COMPARED = ("SummaryHparams.", "BranchHparams.", "InstabilityHparams.rewind_steps",
                 "InstabilityHparams.levels")

LABELS = {
    "imp": "IMP", "lrr": "LRR", "dense": "dense", "random_reinit": "random reinit",
    "random_prune_global": "random pruning (global)",
    "random_prune_layerwise": "random pruning (layerwise)", "inverted": "inverted mask",
    "snip": "SNIP", "grasp": "GraSP", "grasp_abs": "GraSP |score|", "synflow": "SynFlow",
    "magnitude": "magnitude", "random": "random", "isnip": "iterative SNIP",
    "magnitude_unit_variance": "magnitude (unit variance)", "gradual": "gradual magnitude",
    "shuffle": "layerwise shuffle", "reinit": "reinitialise", "invert": "invert scores",
    "rigl": "RigL", "set": "SET", "dynamic_imp": "Dynamic IMP",
}


def label(name: Optional[str], settings: Optional[dict] = None) -> str:
    """Readable name of a method or branch ('retrain_1a2b3c4d' with its settings)."""
    if name is None:
        return "-"
    if name.startswith("retrain_"):
        if settings:
            return "retrain (" + ", ".join(f"{k.replace('_', ' ')} {v}"
                                           for k, v in sorted(settings.items())) + ")"
        return f"retrain ({name[len('retrain_'):]})"
    return LABELS.get(name, name.replace("_", " "))


def pct(x, digits: int = 2) -> str:
    """100 x with `digits` decimals; '-' for no value (None, NaN)."""
    return "-" if x is None or x != x else f"{100 * x:.{digits}f}"


def accuracy_text(s: Optional[dict]) -> str:
    """'mean (min-max)' in % of accuracy stats (the range only over several replicates),
    with a ✓ if they are marked matching; '' for none."""
    if not s:
        return ""
    spread = f" ({pct(s['min'])}-{pct(s['max'])})" if s["n"] > 1 else ""
    return f"{pct(s['mean'])}{spread}{' ✓' if s.get('matching') else ''}"


def spread(values: List[float]) -> dict:
    """Mean, min, max and count (the mean as sum / n: the run summaries' JSON)."""
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values),
            "n": len(values)}


def stats(values: List[float]) -> dict:
    values = [float(v) for v in values]
    return {"mean": float(np.mean(values)), "min": min(values), "max": max(values), "n": len(values)}


def natural_key(text: str):
    """'conv_10' after 'conv_2' (layer names in build order, not text order)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def runs_of(table: dict, family: str) -> List[dict]:
    """The runs drawn by the tables and figures of `family` (their ReportSpec.family:
    'train', 'gradual', 'lottery', 'lmc', 'pai' or 'dynamic'), not named by experiment."""
    return [r for r in table["runs"] if r["_spec"].family == family]


def network_key(values: Dict[str, object]) -> tuple:
    """The settings that define the dense network and its training."""
    keys = sorted(k for k in values if k.startswith(NETWORK_PREFIXES)
                  and k not in ("TrainingHparams.data_seed", "TrainingHparams.model_seed"))
    out = [(k, ginconfig.as_text(values[k])) for k in keys]
    for key in ("ModelHparams.name", "DatasetHparams.name"):   # defaults made explicit
        if key not in values:
            out.append((key, ginconfig.as_text(ginconfig.lookup(values, key))))
    return tuple(sorted(out))


def by_network(table: dict, family: str) -> Dict[tuple, List[dict]]:
    """{network_key: [run dicts]} of the family's runs with a known config, in the order
    of each network's first run name."""
    out: Dict[tuple, List[dict]] = {}
    for run in runs_of(table, family):
        if run.get("config_file"):
            out.setdefault(network_key(run["_values"]), []).append(run)
    return dict(sorted(out.items(), key=lambda kv: kv[1][0]["run"]))


# Settings that a run's label leaves out: the experiment and the network have their own
# columns and titles, the branches are columns and lines of their own, and SummaryHparams
# only changes how a report judges the results.
_LABEL_IGNORED = ("ExperimentHparams.name", "ModelHparams.name", "DatasetHparams.name",
                  "BranchHparams.", "SummaryHparams.")


def differences(runs: List[dict], ignore: tuple = ()) -> Dict[str, str]:
    """Per run: 'name=value, ...' of the settings (config.gin bindings, unset ones at their
    defaults) in which the runs differ, leaving out the keys starting with one of `ignore`;
    '' for a run that differs in none.  A setting is named by its field alone unless two
    differing settings share a field name (TrainingHparams.data_seed, BranchHparams.data_seed)."""
    keys = sorted({k for r in runs for k in r.get("_values", {})
                   if not (ignore and k.startswith(tuple(ignore)))})

    def value(run, key):
        return ginconfig.as_text(ginconfig.lookup(run.get("_values", {}), key, "default"))
    varying = [k for k in keys if len({value(r, k) for r in runs}) > 1]
    fields = [k.split(".")[-1] for k in varying]
    names = {k: f if fields.count(f) == 1 else k for k, f in zip(varying, fields)}
    return {r["run"]: ", ".join(f"{names[k]}={value(r, k)}" for k in varying) for r in runs}


def run_label(table: dict, run: dict) -> str:
    """The settings that tell a run apart from the other runs of its experiment
    ('method=snip, target_sparsity=0.5'): '' when it is the only one, differs in none
    or has no config.  Worked out for all runs at once and kept in each run's private
    '_label'."""
    if "_label" not in run:
        by_experiment: Dict[str, List[dict]] = {}
        for r in table["runs"]:
            r["_label"] = ""
            if r.get("config_file"):
                by_experiment.setdefault(r["experiment"], []).append(r)
        for runs in by_experiment.values():
            labels = differences(runs, _LABEL_IGNORED) if len(runs) > 1 else {}
            for r in runs:
                r["_label"] = labels.get(r["run"], "")
        run.setdefault("_label", "")
    return run["_label"]


def run_title(table: dict, run: dict) -> str:
    """A run's name with the settings that tell it apart: 'pai_0a1b (method=snip, ...)'."""
    text = run_label(table, run)
    return f"{run['run']} ({text})" if text else run["run"]


def dense_accuracies(table: dict, key: tuple) -> List[float]:
    """Test accuracies of dense networks trained like `key`: 'train' runs and
    lottery level 0 (one per replicate)."""
    out = []
    for run in table["runs"]:
        if not run.get("config_file") or network_key(run["_values"]) != key:
            continue
        where = {"train": {}, "lottery": {"level": 0, "branch": None}}.get(run["_spec"].family)
        if where is not None:
            out += [r["test_accuracy"] for r in trained(table, [run["run"]], **where)]
    return out


def trained(table: dict, runs: List[str], **where) -> List[dict]:
    """The finished training phases (collect.done, kind 'train') of the named runs, run
    by run, that match every `column=value` given."""
    return [r for run in runs for r in collect.done(table["rows"], run=run, kind="train", **where)]


def lottery_levels(table: dict, run: str) -> List[dict]:
    """Per level: mean density, IMP accuracy stats, and each branch's stats."""
    rows = collect.done(table["rows"], run=run, kind="train")
    levels = sorted({r["level"] for r in rows if r["level"] is not None})
    out = []
    for level in levels:
        at = [r for r in rows if r["level"] == level]
        imp = [r for r in at if r["branch"] is None]
        densities = [r["density"] for r in imp if r["density"] is not None]
        entry = {"level": level, "density": float(np.mean(densities)) if densities else None,
                 "imp": stats([r["test_accuracy"] for r in imp]) if imp else None,
                 "branches": {}}
        for name in sorted({r["branch"] for r in at if r["branch"] is not None}):
            branch = [r for r in at if r["branch"] == name]
            bd = [r["density"] for r in branch if r["density"] is not None]
            entry["branches"][name] = dict(
                stats([r["test_accuracy"] for r in branch]),
                density=float(np.mean(bd)) if bd else entry["density"],
                settings=branch[0].get("branch_settings"))
        out.append(entry)
    return out


def judge_levels(levels: List[dict], tolerance: float) -> dict:
    """Judge a lottery run's levels ({level, density, imp, branches}) against its dense
    network: marks the IMP and branch accuracy stats 'matching' (mean at least level 0's
    IMP mean minus `tolerance` points); returns that dense accuracy, the highest matching
    sparsity and the levels where IMP is non-trivial (matching where a random-pruning
    branch is not).  Without a level 0 nothing is judged (dense None)."""
    base = [e for e in levels if e["level"] == 0 and e["imp"]]
    if not base:
        return {"dense": None, "highest": None, "nontrivial": []}
    dense = base[0]["imp"]["mean"]
    threshold = dense - tolerance / 100.0
    highest, nontrivial = None, []
    for e in levels:
        for s in [e["imp"], *e["branches"].values()]:
            if s:
                s["matching"] = bool(s["mean"] >= threshold)
        if not (e["imp"] and e["imp"]["matching"]):
            continue
        if e["density"] is not None:
            highest = max(highest or 0.0, 1.0 - e["density"])
        if any(not e["branches"][b]["matching"] for b in RANDOM_PRUNING_BRANCHES
               if b in e["branches"]):
            nontrivial.append(e["level"])
    return {"dense": dense, "highest": highest, "nontrivial": nontrivial}


def summary_setting(table: dict, run: str, field: str) -> float:
    """SummaryHparams.<field> of a run (its config, else the default), unless
    the report overrides it (table['overrides'], e.g. --matching_tolerance)."""
    override = (table.get("overrides") or {}).get(field)
    if override is not None:
        return float(override)
    return float(ginconfig.lookup(collect.run_values(table, run), f"SummaryHparams.{field}"))


# ---- pruning at initialisation sweeps ----

def pai_groups(table: dict) -> List[dict]:
    """pai runs that differ only in method and target sparsity, as one group each, with
    the gradual runs of the same network ('gradual', run names)."""
    groups: Dict[tuple, dict] = {}
    for run in runs_of(table, "pai"):
        values = run.get("_values", {})
        key = tuple(sorted((k, ginconfig.as_text(v)) for k, v in values.items()
                           if k not in PAI_SWEEP_KEYS and not k.startswith(_NOT_COMPARED)))
        group = groups.setdefault(key, {"runs": [], "network": run["network"],
                                        "network_key": network_key(values),
                                        "prune_step": ginconfig.lookup(
                                            values, "PaiHparams.prune_step")})
        group["runs"].append(run["run"])
        group.setdefault("first", run)
    by_base: Dict[str, List[dict]] = {}
    for group in groups.values():
        by_base.setdefault(f"{group['network']}, pruned at {group['prune_step'] or '?'}",
                           []).append(group)
    gradual = by_network(table, "gradual")
    for base, alike in by_base.items():
        # Sweeps of one network pruned at one step: labelled by the settings they differ in.
        apart = differences([g["first"] for g in alike], PAI_SWEEP_KEYS + _NOT_COMPARED) \
            if len(alike) > 1 else {}
        for group in alike:
            first = group.pop("first")["run"]
            text = apart.get(first) or (f"like {first}" if len(alike) > 1 else "")
            group["label"] = f"{base}, {text}" if text else base
            group["gradual"] = [r["run"] for r in gradual.get(group["network_key"], [])]
    return list(groups.values())


def by_method(rows: List[dict]) -> Dict[str, Dict[float, dict]]:
    """{method: {target (or density): {'density': mean, **accuracy stats}}}."""
    out: Dict[str, Dict[float, List[dict]]] = {}
    for r in rows:
        target = r.get("target_sparsity")
        x = round(1.0 - float(target), 6) if target is not None else (
            round(r["density"], 4) if r["density"] is not None else None)
        if x is None:
            continue
        out.setdefault(r["method"] or "?", {}).setdefault(x, []).append(r)
    result = {}
    for method, points in out.items():
        result[method] = {}
        for x, rs in sorted(points.items(), reverse=True):
            ds = [r["density"] for r in rs if r["density"] is not None]
            result[method][x] = dict(stats([r["test_accuracy"] for r in rs]),
                                     density=float(np.mean(ds)) if ds else x)
    return result


# ---- instability ----

def median_earliest(values: List[Optional[float]]) -> Optional[float]:
    """Median over replicates; a replicate that never gets there counts as infinite."""
    if not values:
        return None
    median = float(np.median([np.inf if v is None else v for v in values]))
    return median if np.isfinite(median) else None


def k_text(k: Optional[float]) -> str:
    """An earliest k for a table: 'never' (None: not within the k tried), else as a number
    without a trailing '.0'."""
    return "never" if k is None else f"{k:g}"


def earliest_k(rows: List[dict], threshold_points: float, tolerance_points: float,
               replicates: Optional[List[int]] = None) -> dict:
    """Earliest stable and earliest matching k of one run's level (median over replicates:
    those of the rows, or `replicates`, where one without rows counts as never)."""
    stable, matching, can_match = [], [], False
    for rep in replicates if replicates is not None else sorted({r["replicate"] for r in rows}):
        mine = sorted((r for r in rows if r["replicate"] == rep), key=lambda r: r["k"])
        stable.append(next((r["k"] for r in mine
                            if r["test_instability"] < threshold_points / 100.0), None))
        judged = [r for r in mine if r["dense_accuracy"] is not None]
        can_match = can_match or bool(judged)
        matching.append(next((r["k"] for r in judged if r["end_accuracy"] >=
                              r["dense_accuracy"] - tolerance_points / 100.0), None))
    return {"stable_k": median_earliest(stable),
            "matching_k": median_earliest(matching) if can_match else None,
            "can_match": can_match, "replicates": len(stable)}


def instability_levels(table: dict, run: str) -> List[dict]:
    """Per level (None = dense) of an lmc run: density and its instability rows."""
    rows = [r for r in table["instability"] if r["run"] == run]
    levels = sorted({r["level"] for r in rows}, key=lambda l: -1 if l is None else l)
    out = []
    for level in levels:
        mine = [r for r in rows if r["level"] == level]
        ds = [r["density"] for r in mine if r["density"] is not None]
        out.append({"level": level, "rows": mine, "subnetwork": mine[0]["subnetwork"],
                    "density": float(np.mean(ds)) if ds else None})
    return out
