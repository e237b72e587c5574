"""What pruning methods do to each layer (thesis chapter 5): the fraction of
weights each method keeps per layer (Figure 5-11; methods that empty a
layer disconnect the network), and neuron collapse (Figure 5-6): the
fraction of units whose incoming weights are almost all pruned.  Both are
read from the statistics.json written beside each pruned mask."""
from typing import Dict, List

import numpy as np

from tflottery.reporting import groups
from tflottery.reporting.figures import style

MAX_LAYER_PANELS = 4
MAX_COLLAPSE_PANELS = 6


def _target(record: dict) -> float:
    if record.get("target_sparsity") is not None:
        return round(1.0 - float(record["target_sparsity"]), 6)
    return round(float(record["density"] or 0.0), 3)


def stat_groups(table: dict) -> List[dict]:
    """Statistics of the main masks per sweep: {label, slug, targets: {density: {method: [rec]}}}.

    A pai sweep's methods share a group; gradual runs of the same network
    join it; other gradual runs form their own."""
    out, used = [], set()

    def bucket(records):
        targets: Dict[float, Dict[str, List[dict]]] = {}
        for rec in records:
            targets.setdefault(_target(rec), {}).setdefault(rec["method"] or "?", []).append(rec)
        return targets

    for group in groups.pai_groups(table):
        used.update(group["gradual"])
        records = [s for s in table["statistics"] if s["branch"] is None and (
            s["run"] in group["runs"] or s["run"] in group["gradual"])]
        if records:
            out.append({"label": group["label"], "targets": bucket(records)})
    for run in groups.runs_of(table, "gradual"):
        records = [s for s in table["statistics"] if s["run"] == run["run"]]
        if run["run"] not in used and records:
            out.append({"label": f"{run['network']}, gradual ({run['run']})",
                        "targets": bucket(records)})
    return out


def layer_sparsity(table: dict, out_dir: str) -> List[str]:
    """Per sweep: bars of the weights remaining per layer, one bar per method,
    one panel per overall density (up to 4)."""
    paths = []
    for group in stat_groups(table):
        targets = style.spread(sorted(group["targets"], reverse=True), MAX_LAYER_PANELS)
        layers = sorted({name for t in targets for recs in group["targets"][t].values()
                         for rec in recs for name in rec["layers"]}, key=groups.natural_key)
        methods = sorted({m for t in targets for m in group["targets"][t]})
        width = min(22.0, max(7.0, 0.28 * len(layers) * max(1, len(methods)) + 2))
        fig, axes = style.pyplot().subplots(len(targets), 1, squeeze=False,
                                            figsize=(width, 2.9 * len(targets) + 0.9))
        bar = 0.8 / max(1, len(methods))
        any_empty = False
        for ax, target in zip(axes[:, 0], targets):
            # Very sparse networks: a log axis, or the bars would be invisible.
            log = target < 0.1
            for i, method in enumerate(methods):
                recs = group["targets"][target].get(method, [])
                if not recs:
                    continue
                dens = np.array([np.mean([r["layers"][n]["kept"] / r["layers"][n]["size"]
                                          for r in recs if n in r["layers"]
                                          and r["layers"][n]["size"]])
                                 if any(n in r["layers"] for r in recs) else np.nan
                                 for n in layers])
                xs = np.arange(len(layers)) - 0.4 + bar * (i + 0.5)
                ax.bar(xs, 100 * dens, width=bar, color=style.color(method, i),
                       label=f"{groups.label(method)} ({len(recs)} replicate"
                             f"{'s' if len(recs) > 1 else ''})" if ax is axes[0, 0] else None)
                empty = xs[dens == 0]
                if len(empty):
                    any_empty = True
                    ax.plot(empty, [0.02 if log else 1.0] * len(empty), ls="none", marker="x",
                            color=style.color(method, i), ms=7)
            ax.axhline(100 * target, color="0.3", ls="--", lw=1)
            ax.set_xticks(range(len(layers)))
            ax.set_xticklabels(layers, rotation=45 if len(layers) > 4 else 0, ha="right"
                               if len(layers) > 4 else "center", fontsize=7)
            ax.set_ylabel("weights remaining\nin the layer (%)")
            if log:
                ax.set_yscale("log")
                ax.set_ylim(0.01, 150)
            else:
                ax.set_ylim(0, 105)
            ax.set_title(f"{100 * target:.3g}% of the weights remaining overall (dashed line)"
                         + (", log scale" if log else ""), fontsize=9)
            ax.grid(alpha=0.3, axis="y")
        fig.suptitle(f"Weights remaining per layer: {group['label']}"
                     + ("\nx: a layer that is fully pruned" if any_empty else ""), fontsize=10)
        axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7.5,
                          framealpha=0.9)
        paths += style.save(fig, out_dir, f"layer_sparsity__{style.slug(group['label'])}")
    return paths


def neuron_collapse(table: dict, out_dir: str) -> List[str]:
    """Per sweep: fraction of units whose incoming-weight sparsity is at least
    s, against s, one line per method, one panel per overall density."""
    paths = []
    for group in stat_groups(table):
        targets = [t for t in sorted(group["targets"], reverse=True)
                   if any(r.get("network_neuron_collapse") and r.get("thresholds")
                          for recs in group["targets"][t].values() for r in recs)]
        targets = style.spread(targets, MAX_COLLAPSE_PANELS)
        if not targets:
            continue
        fig, axes = style.panel_grid(len(targets), 4.3, 0.7,
                                     "units whose incoming\nsparsity is >= s (%)")
        for ax, target in zip(axes.flat, targets):
            for i, (method, recs) in enumerate(sorted(group["targets"][target].items())):
                recs = [r for r in recs if r.get("network_neuron_collapse") and r.get("thresholds")
                        and len(r["network_neuron_collapse"]) == len(r["thresholds"])]
                if not recs:
                    continue
                xs = recs[0]["thresholds"]
                curves = np.array([r["network_neuron_collapse"] for r in recs
                                   if len(r["thresholds"]) == len(xs)])
                pts = [groups.stats(curves[:, j]) for j in range(len(xs))]
                style.line_with_band(ax, xs, pts, groups.label(method),
                                     style.color(method, i), ls="-", mk="")
            ax.set_title(f"{100 * target:.3g}% of the weights remaining", fontsize=9)
            ax.set_xlabel("sparsity threshold s (%)")
            ax.set_xlim(0, 100)
            ax.grid(alpha=0.3)
            style.unhide_overlaps(ax)
            ax.legend(fontsize=7, loc="lower left")
        fig.suptitle(f"Neuron collapse: {group['label']}", fontsize=10)
        paths += style.save(fig, out_dir, f"neuron_collapse__{style.slug(group['label'])}")
    return paths
