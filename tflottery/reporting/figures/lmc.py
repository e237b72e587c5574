"""Instability analysis figures (thesis chapter 4): the error along the
linear path between two copies trained with different SGD noise (Figure
4-2), the instability against the rewinding step k (Figures 4-3, 4-15), and
the earliest stable / matching k against sparsity (Figure 4-18).  Runs with
InstabilityHparams.align add the path and the instability after permutation
alignment as dashed lines of the same colour (issue #15)."""
from typing import List

import numpy as np

from tflottery.reporting import groups
from tflottery.reporting.figures import style


def _level_name(entry: dict) -> str:
    density = "" if entry["density"] is None else f", {100 * entry['density']:.3g}% remaining"
    if entry["level"] is None:
        return f"{entry['subnetwork']}{density}"
    return f"{groups.label(entry['subnetwork'])} level {entry['level']}{density}"


def _k_label(row: dict) -> str:
    text = row.get("rewind_step") or f"{row['k']}it"
    return text if text == f"{row['k']}it" else f"{text} ({row['k']} it)"


# (row key of the curves, line style, label suffix): raw, then aligned.
_PATHS = (("curves", "-", ""), ("aligned_curves", "--", ", aligned"))


def _mean_path(rows, key: str, split: str):
    """(alphas, per-alpha error stats, replicates) of the rows' `key` curves, or None."""
    rows = [r for r in rows if r.get(key) and split in r[key]]
    if not rows:
        return None
    alphas = rows[0][key][split]["alpha"]
    errors = np.array([r[key][split]["error"] for r in rows
                       if len(r[key][split]["error"]) == len(alphas)])
    return alphas, [groups.stats(errors[:, j]) for j in range(len(alphas))], len(errors)


def interpolation(table: dict, out_dir: str) -> List[str]:
    """Per lmc run and level: test and train error against alpha, one line per k."""
    plt = style.pyplot()
    paths = []
    for run in groups.runs_of(table, "lmc"):
        for entry in groups.instability_levels(table, run["run"]):
            rows = [r for r in entry["rows"] if r.get("curves")]
            ks = sorted({r["k"] for r in rows})
            if not ks:
                continue
            splits = [s for s in ("test", "train") if any(s in r["curves"] for r in rows)]
            fig, axes = plt.subplots(1, len(splits), figsize=(5.2 * len(splits), 4.0),
                                     squeeze=False)
            n = 0
            for ax, split in zip(axes[0], splits):
                for i, k in enumerate(ks):
                    at = [r for r in rows if r["k"] == k]
                    col = plt.cm.plasma(0.85 * i / max(1, len(ks) - 1))
                    for key, ls, suffix in _PATHS:
                        path = _mean_path(at, key, split)
                        if path is None:
                            continue
                        alphas, pts, count = path
                        n = max(n, count)
                        style.line_with_band(ax, alphas, pts, f"k = {_k_label(at[0])}{suffix}",
                                             ls=ls, **style.look(col, i, key.startswith("aligned")))
                ax.set_xlabel("interpolation coefficient alpha (0 = copy 0, 1 = copy 1)")
                ax.set_ylabel(f"{split} error (%)")
                ax.set_title(f"{split} set", fontsize=9)
                ax.grid(alpha=0.3)
                style.unhide_overlaps(ax)
                ax.legend(fontsize=7.5, title="rewinding step", title_fontsize=7.5)
            fig.suptitle(f"Error along the linear path between two copies: "
                         f"{run['network']}\n{_level_name(entry)}; "
                         f"run {groups.run_title(table, run)}, {style.replicates_note(n)}",
                         fontsize=10)
            suffix = "" if entry["level"] is None else f"_level_{entry['level']}"
            paths += style.save(fig, out_dir,
                                f"interpolation__{style.slug(run['run'])}{suffix}")
    return paths


def instability_vs_k(table: dict, out_dir: str) -> List[str]:
    """Per lmc run: test and train instability against k, one line per level."""
    paths = []
    for run in groups.runs_of(table, "lmc"):
        entries = groups.instability_levels(table, run["run"])
        ks = sorted({r["k"] for e in entries for r in e["rows"]})
        if not ks:
            continue
        threshold = groups.summary_setting(table, run["run"], "stability_threshold")
        labels = {}
        for e in entries:
            for r in e["rows"]:
                labels.setdefault(r["k"], _k_label(r))
        pos = {k: i for i, k in enumerate(ks)}
        fig, axes = style.pyplot().subplots(1, 2, figsize=(10.4, 4.0), sharey=True)
        n = 0
        for ax, split in zip(axes, ("test", "train")):
            for i, entry in enumerate(entries):
                for column, ls, suffix in (
                        (f"{split}_instability", "-", ""),
                        (f"aligned_{split}_instability", "--", ", aligned"),
                        (f"{split}_linear_instability", ":", ", above the line"),
                        (f"aligned_{split}_linear_instability", ":", ", aligned, above the line")):
                    mine = sorted({r["k"] for r in entry["rows"] if r.get(column) is not None})
                    if not mine:
                        continue
                    pts = [groups.stats([r[column] for r in entry["rows"]
                                         if r["k"] == k and r.get(column) is not None])
                           for k in mine]
                    n = max([n] + [p["n"] for p in pts])
                    look = style.look(f"C{i % 10}", i, column.startswith("aligned"))
                    style.line_with_band(ax, [pos[k] for k in mine], pts,
                                         _level_name(entry) + suffix, ls=ls, **look)
            ax.axhline(threshold, color="0.35", ls=":", lw=1,
                       label=f"stability threshold ({threshold:g} points)")
            ax.set_xticks(range(len(ks)))
            ax.set_xticklabels([labels[k] for k in ks], rotation=30, ha="right", fontsize=8)
            ax.set_xlabel("rewinding step k (evenly spaced)")
            ax.set_title(f"{split} set", fontsize=9)
            ax.grid(alpha=0.3)
            style.unhide_overlaps(ax)
            ax.legend(fontsize=7.5)
        axes[0].set_ylabel("instability (error barrier, percentage points)")
        fig.suptitle(f"Instability of training from step k: {run['network']}\n"
                     f"run {groups.run_title(table, run)}, {style.replicates_note(n)}",
                     fontsize=10)
        paths += style.save(fig, out_dir, f"instability__{style.slug(run['run'])}")
    return paths


def stable_k_vs_sparsity(table: dict, out_dir: str) -> List[str]:
    """Per lmc run of subnetworks: the earliest k (median over replicates) at
    which the subnetwork is stable, and at which it is matching, per density."""
    paths = []
    for run in groups.runs_of(table, "lmc"):
        entries = [e for e in groups.instability_levels(table, run["run"])
                   if e["level"] is not None and e["density"]]
        if not entries:
            continue
        threshold = groups.summary_setting(table, run["run"], "stability_threshold")
        tol = groups.summary_setting(table, run["run"], "matching_tolerance")
        found = [(e, groups.earliest_k(e["rows"], threshold, tol)) for e in entries]
        all_k = sorted({r["k"] for e in entries for r in e["rows"]})
        top = max(all_k) * 2 if max(all_k) > 0 else 1
        fig, ax = style.pyplot().subplots(figsize=(7.0, 4.4))
        for i, (what, col) in enumerate((("stable_k", "C0"), ("matching_k", "C3"))):
            if what == "matching_k" and not any(f["can_match"] for _, f in found):
                continue
            xs = [100 * e["density"] for e, _ in found]
            ys = [f[what] if f[what] is not None else np.nan for _, f in found]
            name = ("earliest stable k (instability < %g points)" % threshold
                    if what == "stable_k" else
                    "earliest matching k (within %g points of dense)" % tol)
            ax.plot(xs, ys, marker=style.marker(i), color=col, label=name)
            never = [x for x, (_, f) in zip(xs, found) if f[what] is None]
            if never:
                ax.plot(never, [top] * len(never), ls="none", marker="x", ms=8, color=col,
                        label=f"{name.split(' (')[0]}: not reached")
        ax.set_yscale("symlog", linthresh=max(1, min([k for k in all_k if k > 0] or [1])))
        ax.set_yticks(all_k + [top])
        ax.set_yticklabels([str(k) for k in all_k] + ["never"], fontsize=8)
        ax.set_ylabel("rewinding step k (iterations, median over replicates)")
        replicates = len({r["replicate"] for e in entries for r in e["rows"]})
        ax.set_title(f"Earliest stable and matching rewinding step: {run['network']}"
                     f"\nrun {groups.run_title(table, run)}, {replicates} replicate(s)",
                     fontsize=10)
        ax.grid(alpha=0.3)
        style.density_axis(ax, [e["density"] for e in entries])
        ax.legend(fontsize=7.5)
        paths += style.save(fig, out_dir, f"stable_k__{style.slug(run['run'])}")
    return paths
