"""The report's summary tables, as Markdown, from the collected table.

The questions a reader of a sweep asks first: which runs exist and how far
they got; how sparse each lottery run gets while still matching the dense
network; from which rewinding step training is stable (and the subnetwork
matching); and how each pruning-at-initialisation method compares with
its ablations at each sparsity.  Matching and stability use each run's own
SummaryHparams (or the report's --matching_tolerance).
"""
import os
from typing import List

import numpy as np

from tflottery.reporting import groups
from tflottery.reporting.groups import accuracy_text as _acc


def md_table(header: List[str], rows: List[List[str]]) -> str:
    def clean(cell):
        return str(cell).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(clean(h) for h in header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def link(path: str, page_dir: str) -> str:
    """`path` relative to page_dir, with '/' (gs:// paths too), for links in the pages."""
    if "://" in path:
        return path[len(page_dir.rstrip("/")) + 1:]
    return os.path.relpath(path, page_dir).replace(os.sep, "/")


def runs_overview(table: dict) -> str:
    rows = []
    for run in table["runs"]:
        mine = [r for r in table["rows"] if r["run"] == run["run"]]
        done = sum(r["status"] == "done" for r in mine)
        partial = sum(r["status"] == "partial" for r in mine)
        rates = [r["steps_per_second"] for r in mine if r.get("steps_per_second")]
        rows.append([run["run"], run["experiment"], run["network"],
                     groups.run_label(table, run) or ("-" if run.get("config_file")
                                                      else "unknown"),
                     len(run["replicates"]), done, partial,
                     f"{float(np.median(rates)):.1f}" if rates else "-", run["status"],
                     "; ".join(run["notes"])])
    return md_table(["run", "experiment", "network", "settings that differ between runs of its "
                     "experiment", "replicates", "phases done", "phases partial",
                     "training steps/s (median)", "status", "notes"], rows)


# ---- lottery ----

def lottery_summary(table: dict) -> str:
    """One line per lottery run, then each run's table per level."""
    lines, details = [], []
    for run in groups.runs_of(table, "lottery"):
        levels = groups.lottery_levels(table, run["run"])
        if not levels:
            continue
        tolerance = groups.summary_setting(table, run["run"], "matching_tolerance")
        judged = groups.judge_levels(levels, tolerance)
        values = run.get("_values", {})
        method = "LRR" if values.get("LotteryHparams.mode") == "lrr" else "IMP"
        n = max((e["imp"]["n"] for e in levels if e["imp"]), default=0)
        lines.append([run["run"], run["network"], method,
                      values.get("LotteryHparams.rewind_step", "0it"), n, len(levels),
                      groups.pct(judged["dense"]), groups.pct(judged["highest"]), tolerance,
                      ", ".join(map(str, judged["nontrivial"])) or "none"])
        names = sorted({b for e in levels for b in e["branches"]})
        settings = {b: e["branches"][b].get("settings") for e in levels for b in e["branches"]}
        rows = [[e["level"], groups.pct(e["density"]), _acc(e["imp"])] +
                [_acc(e["branches"].get(b)) for b in names] for e in levels]
        details.append(f"**{run['run']}** ({run['network']}, {method}): test accuracy % "
                       f"(min-max over replicates); ✓ = matching\n\n" +
                       md_table(["level", "weights remaining %", method] +
                                [groups.label(b, settings.get(b)) for b in names], rows))
    if not lines:
        return ""
    head = md_table(["run", "network", "method", "rewind step", "replicates", "levels",
                     "dense accuracy %", "highest matching sparsity %",
                     "tolerance (points)", "non-trivial levels"], lines)
    return head + ("\n\nMatching: mean accuracy within the tolerance of the dense (level 0) "
                   "accuracy. Non-trivial: matching where random pruning is not.\n\n" +
                   "\n\n".join(details))


# ---- instability ----

# Columns of the instability table shown only when some lmc run has the values
# (InstabilityHparams.align; the soups): (header, instability row key).
LMC_OPTIONAL_COLUMNS = (
    ("test instability above the line (points) by k (it)", "test_linear_instability"),
    ("aligned test instability (points) by k (it)", "aligned_test_instability"),
    ("aligned test instability above the line (points) by k (it)",
     "aligned_test_linear_instability"),
    ("aligned train instability (points) by k (it)", "aligned_train_instability"),
    ("soup test accuracy % by k (it)", "soup_accuracy"),
    ("aligned soup test accuracy % by k (it)", "aligned_soup_accuracy"),
)


def mean_by_k(rows: List[dict], key: str) -> str:
    """'0: 1.23, 500: 0.40': 100 x the mean over replicates of the rows' `key` per k,
    for the ks that have it ('-' if none has)."""
    values = {}
    for r in rows:
        if r.get(key) is not None:
            values.setdefault(r["k"], []).append(r[key])
    return ", ".join(f"{k}: {100 * np.mean(values[k]):.2f}" for k in sorted(values)) or "-"


def lmc_summary(table: dict) -> str:
    """One line per lmc run and level: instability by k (raw, and aligned and the soups'
    accuracies side by side when some run measured them), earliest stable/matching k."""
    entries = [(run, entry) for run in groups.runs_of(table, "lmc")
               for entry in groups.instability_levels(table, run["run"])]
    optional = [(header, key) for header, key in LMC_OPTIONAL_COLUMNS
                if any(r.get(key) is not None for _, entry in entries for r in entry["rows"])]
    rows = []
    for run, entry in entries:
        threshold = groups.summary_setting(table, run["run"], "stability_threshold")
        tol = groups.summary_setting(table, run["run"], "matching_tolerance")
        found = groups.earliest_k(entry["rows"], threshold, tol)
        rows.append([run["run"], run["network"], entry["subnetwork"],
                     "-" if entry["level"] is None else entry["level"],
                     groups.pct(entry["density"]), found["replicates"],
                     mean_by_k(entry["rows"], "test_instability"),
                     *(mean_by_k(entry["rows"], key) for _, key in optional), threshold,
                     groups.k_text(found["stable_k"]),
                     groups.k_text(found["matching_k"]) if found["can_match"] else "n/a (dense)"])
    if not rows:
        return ""
    return md_table(["run", "network", "subnetwork", "level", "weights remaining %",
                     "replicates", "test instability (points) by k (it)",
                     *(header for header, _ in optional), "threshold (points)",
                     "earliest stable k (it)", "earliest matching k (it)"], rows) + (
        "\n\nEarliest k: median over replicates of each replicate's earliest k "
        "(never reached counts as infinite).") + (
        " Instability: the highest error on the path minus the mean error of its end "
        "points (the thesis's; stability is judged by it); above the line: minus the "
        "straight line between the end points instead (Entezari et al., Ainsworth et al.)."
        if any(key.endswith("linear_instability") for _, key in optional) else "")


# ---- pruning at initialisation ----

def pai_summary(table: dict) -> str:
    parts = []
    for group in groups.pai_groups(table):
        rows = groups.trained(table, group["runs"])
        if not rows:
            continue
        gradual = groups.trained(table, group["gradual"], branch=None)
        main = groups.by_method([r for r in rows if r["branch"] is None] + gradual)
        xs = sorted({x for pts in main.values() for x in pts}, reverse=True)
        dense = groups.dense_accuracies(table, group["network_key"])
        body = []
        for method in sorted(main):
            body.append([groups.label(method)] + [_acc(main[method].get(x)) for x in xs])
            for name in sorted({r["branch"] for r in rows
                                if r["method"] == method and r["branch"] is not None}):
                ablated = groups.by_method([r for r in rows if r["method"] == method
                                            and r["branch"] == name]).get(method, {})
                body.append([f"↳ {groups.label(name)}"] + [_acc(ablated.get(x)) for x in xs])
        note = (f"Dense accuracy {groups.pct(float(np.mean(dense)))}% (mean of {len(dense)} results)."
                if dense else "No dense run of this network found.")
        collapsed = sorted({(s["method"], s["branch"] or "", groups.pct(s["density"]), layer)
                            for s in table["statistics"] if s["run"] in group["runs"]
                            for layer in s["fully_pruned_layers"]})
        if collapsed:
            note += " Fully pruned layers: " + "; ".join(
                f"{groups.label(m)}{f' ({groups.label(b)})' if b else ''} at {d}% remaining: "
                f"{layer}" for m, b, d, layer in collapsed)
        parts.append(f"**{group['label']}**: test accuracy % (min-max over replicates) by "
                     f"weights remaining; ↳ = ablation of the method above. {note}\n\n" +
                     md_table(["method"] + [f"{100 * x:.3g}%" for x in xs], body))
    return "\n\n".join(parts)


def train_summary(table: dict) -> str:
    rows = []
    for run in groups.runs_of(table, "train") + groups.runs_of(table, "gradual"):
        done = groups.trained(table, [run["run"]], branch=None)
        accs = [r["test_accuracy"] for r in done]
        if accs:
            dens = [r["density"] for r in done if r["density"] is not None]
            rows.append([run["run"], run["experiment"], run["network"], len(accs),
                         groups.pct(float(np.mean(dens))) if dens else "-",
                         _acc(groups.stats(accs))])
    if not rows:
        return ""
    return md_table(["run", "experiment", "network", "replicates", "weights remaining %",
                     "test accuracy % (min-max)"], rows)


def dynamic_summary(table: dict) -> str:
    """One row per dst / dynamic_imp run: accuracy over replicates and how far the mask moved."""
    by_run = {}
    for record in table.get("dynamic", []):
        by_run.setdefault(record["run"], []).append(record)
    rows = []
    for run, records in sorted(by_run.items()):
        moved, kept = [], []
        for r in records:
            if "final_vs_start" in r:       # RigL / SET: against the starting mask
                moved.append(r["final_vs_start"]["new_not_in_previous"])
            elif len(r.get("phases", [])) > 1:
                moved.append(r["phases"][-1]["overlap_with_previous"]["new_not_in_previous"])
                kept.append(r["phases"][-1]["regrown_kept"])
        rows.append([run, groups.label(records[0]["method"]), records[0]["network"], len(records),
                     groups.pct(float(np.mean([r["density"] for r in records]))),
                     _acc(groups.stats([r["test_accuracy"] for r in records])),
                     groups.pct(float(np.mean(moved)), 1) if moved else "-",
                     groups.pct(float(np.mean(kept)), 1) if kept else "-"])
    if not rows:
        return ""
    return ("Mask moved: the share of the final mask that was not in the starting mask "
            "(RigL/SET) or that the previous phase had pruned (Dynamic IMP, last phase); "
            "regrown kept: the share of the last phase's mask that was regrown.\n\n" +
            md_table(["run", "method", "network", "replicates", "weights remaining %",
                      "test accuracy % (min-max)", "mask moved %", "regrown kept %"], rows))


def problems(table: dict) -> str:
    lines = [f"- `{p['file']}`: {p['error']}" for p in table["problems"]]
    lines += [f"- {note}" for note in table["notes"]]
    return "\n".join(lines)
