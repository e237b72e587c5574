"""Test accuracy against the fraction of weights remaining (thesis Figures
3-3, 3-5, 3-7 and 5-4): the picture that says how sparse a network can be
and still match the dense one, and whether the pruning method matters
(its line above its ablations' lines)."""
from typing import List


from tflottery.reporting import groups
from tflottery.reporting.figures import style


def finish(ax, densities, legend_ax=None) -> None:
    """Density axis, lines on top of others made see-through, and the legend in its
    panel (or inside the axes)."""
    style.density_axis(ax, densities)
    style.unhide_overlaps(ax)
    low, high = ax.get_ylim()
    if high > 100:                       # no room above 100% accuracy
        ax.set_ylim(low, 100.5)
    if legend_ax is not None:
        ax.set_ylabel("test accuracy (%)")
        style.legend_in_panel(ax, legend_ax)
    else:
        ax.legend(fontsize=7, loc="best", framealpha=0.9)


def _n(levels) -> int:
    return max((e["imp"]["n"] for e in levels if e["imp"]), default=0)


def lottery_accuracy(table: dict, out_dir: str) -> List[str]:
    """Per lottery run: IMP (or LRR) and each ablation branch, over the levels."""
    paths = []
    for run in groups.runs_of(table, "lottery"):
        fig = lottery_accuracy_figure(table, run)
        if fig is not None:
            paths += style.save(fig, out_dir, f"lottery_accuracy__{style.slug(run['run'])}")
    return paths


def lottery_accuracy_figure(table: dict, run: dict):
    """The accuracy-against-density figure of one lottery run, or None without levels.

    The one rendering of it: the report's figure and the run directory's
    summary.png (summary.plot_run) are both this.  The title names the run with
    the settings that tell it apart from the other lottery runs of `table`
    (none in the run's own summary.png, whose table holds only that run)."""
    levels = [e for e in groups.lottery_levels(table, run["run"]) if e["density"]]
    if not levels:
        return None
    values = run.get("_values", {})
    method = "LRR" if values.get("LotteryHparams.mode") == "lrr" else "IMP"
    rewind = values.get("LotteryHparams.rewind_step", "0it")
    how = "learning-rate rewinding" if method == "LRR" else (
        "resetting to initialisation" if rewind in ("0it", "0ep") else
        f"rewinding to {rewind}")
    fig, ax, lax = style.axes_with_legend_panel(
        f"{method} with {how}: {run['network']}\n"
        f"run {groups.run_title(table, run)}, {style.replicates_note(_n(levels))}")
    dense = [r["test_accuracy"] for r in groups.trained(table, [run["run"]], level=0,
                                                        branch=None)]
    style.dense_band(ax, dense)
    imp = [e for e in levels if e["imp"]]
    style.line_with_band(ax, [100 * e["density"] for e in imp], [e["imp"] for e in imp],
                         method, style.color("imp"), style.marker(0))
    names = sorted({n for e in levels for n in e["branches"]})
    for i, name in enumerate(names, start=1):
        pts = [e["branches"][name] for e in levels if name in e["branches"]]
        style.line_with_band(ax, [100 * p["density"] for p in pts], pts,
                             groups.label(name, pts[0].get("settings")),
                             style.color(name, i), style.marker(i), ls="--")
    finish(ax, [e["density"] for e in levels], lax)
    return fig


def _differences(runs: List[dict]) -> dict:
    """Per run, the settings in which it differs from the others of its group
    (how many levels were asked for does not change a level's result)."""
    found = groups.differences(runs, ("SummaryHparams.", "BranchHparams.",
                                      "PruningHparams.levels", "PruningHparams.target_sparsity"))
    return {name: text or name for name, text in found.items()}


def lottery_comparison(table: dict, out_dir: str) -> List[str]:
    """Lottery runs of the same network in one figure (e.g. resetting vs
    rewinding vs LRR), IMP lines only; one figure per network."""
    paths = []
    for key, runs in groups.by_network(table, "lottery").items():
        curves = [(r, [e for e in groups.lottery_levels(table, r["run"])
                       if e["density"] and e["imp"]]) for r in runs]
        curves = [(r, lv) for r, lv in curves if len(lv) > 1]   # a line, not a dot
        if len(curves) < 2:
            continue
        names = _differences([r for r, _ in curves])
        network = curves[0][0]["network"]
        fig, ax, lax = style.axes_with_legend_panel(f"Lottery runs compared: {network}\n"
                        f"{style.replicates_note(max(_n(lv) for _, lv in curves))}")
        style.dense_band(ax, groups.dense_accuracies(table, key))
        densities = []
        for i, (run, levels) in enumerate(curves):
            style.line_with_band(ax, [100 * e["density"] for e in levels],
                                 [e["imp"] for e in levels], names[run["run"]], f"C{i % 10}",
                                 style.marker(i))
            densities += [e["density"] for e in levels]
        finish(ax, densities, lax)
        paths += style.save(fig, out_dir, f"lottery_comparison__{style.slug(network)}")
    return paths


def plot_methods(ax, by_method: dict, ls: str = "-", start: int = 0, col=None):
    densities = []
    for i, (method, points) in enumerate(sorted(by_method.items()), start=start):
        pts = list(points.values())
        style.line_with_band(ax, [100 * p["density"] for p in pts], pts, groups.label(method),
                             col or style.color(method, i), style.marker(i), ls=ls)
        densities += [p["density"] for p in pts]
    return densities


def pai_accuracy(table: dict, out_dir: str) -> List[str]:
    """Per pai sweep: one line per method over the target sparsities (and
    gradual magnitude pruning of the same network, if run)."""
    paths = []
    for group in groups.pai_groups(table):
        # The methods themselves: their ablations (branches) are pai_ablations' lines.
        methods = groups.by_method(groups.trained(table, group["runs"], branch=None))
        if not methods:
            continue
        gradual = groups.trained(table, group["gradual"], branch=None)
        n = max(p["n"] for pts in methods.values() for p in pts.values())
        fig, ax, lax = style.axes_with_legend_panel(
            f"Pruning at initialisation: {group['label']}\n{style.replicates_note(n)}")
        style.dense_band(ax, groups.dense_accuracies(table, group["network_key"]))
        densities = plot_methods(ax, methods)
        if gradual:
            densities += plot_methods(ax, groups.by_method(gradual), ls=":", start=len(methods))
        finish(ax, densities, lax)
        paths += style.save(fig, out_dir, f"pai_accuracy__{style.slug(group['label'])}")
    return paths


def pai_ablations(table: dict, out_dir: str) -> List[str]:
    """Per pai sweep: one panel per method, the method (solid) and its
    ablations (dashed: layerwise shuffle, reinitialisation, inversion)."""
    paths = []
    for group in groups.pai_groups(table):
        rows = groups.trained(table, group["runs"])
        main = groups.by_method([r for r in rows if r["branch"] is None])
        ablated = sorted({r["method"] for r in rows if r["branch"] is not None})
        ablated = [m for m in ablated if m in main]
        if not ablated:
            continue
        fig, axes = style.panel_grid(len(ablated), 4.2, 0.6, "test accuracy (%)")
        dense = groups.dense_accuracies(table, group["network_key"])
        for ax, method in zip(axes.flat, ablated):
            # The method in black, so that the ablations' colours stand out.
            densities = plot_methods(ax, {method: main[method]}, col="black")
            names = sorted({r["branch"] for r in rows
                            if r["method"] == method and r["branch"] is not None})
            for i, name in enumerate(names, start=1):
                pts = groups.by_method([r for r in rows
                                        if r["method"] == method and r["branch"] == name])
                densities += plot_methods(ax, {name: pts[method]}, ls="--", start=i)
            style.dense_band(ax, dense, "dense")
            ax.set_title(groups.label(method), fontsize=10)
            ax.grid(alpha=0.3)
            finish(ax, densities)
        fig.suptitle(f"Ablations (dashed) of pruning at initialisation: {group['label']}",
                     fontsize=10)
        paths += style.save(fig, out_dir, f"pai_ablations__{style.slug(group['label'])}")
    return paths
