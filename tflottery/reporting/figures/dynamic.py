"""Dynamic sparsity (thesis 6.2.2): RigL, SET and Dynamic IMP beside IMP and pruning at init.

Two figures:
  * dynamic_accuracy: per network, test accuracy against the fraction of
    weights remaining for every dynamic-sparsity method run on it (points,
    or lines over several sparsities), with the IMP curves of lottery runs
    and the methods of pai runs of the same network for reference;
  * dynamic_imp_phases: per Dynamic IMP run, how much the mask changes from
    one phase to the next (the fraction of phase i's mask that phase i-1
    had pruned; the fraction of it that was regrown) and the accuracy of
    each phase's dense and sparse trainings -- the thesis's question of
    whether the masks of successive phases differ.
"""
import warnings
from typing import List

import numpy as np

from tflottery.reporting import ginconfig, groups
from tflottery.reporting.figures import style
from tflottery.reporting.figures.accuracy import finish, plot_methods


def _spread_single_points(methods: dict) -> dict:
    """Methods run at one density each drawn side by side (up to +-6% on the log axis),
    so that their markers and error bars do not hide each other."""
    single = sorted(m for m, pts in methods.items() if len(pts) == 1)
    out = dict(methods)
    for i, method in enumerate(single):
        factor = 1.0 + 0.12 * ((i + 0.5) / len(single) - 0.5)
        out[method] = {x: dict(p, density=p["density"] * factor)
                       for x, p in methods[method].items()}
    return out


def dynamic_accuracy(table: dict, out_dir: str) -> List[str]:
    """Per network: every dynamic-sparsity method, with IMP and PaI of the same network."""
    paths = []
    for key, runs in groups.by_network(table, "dynamic").items():
        methods = groups.by_method(groups.trained(table, [run["run"] for run in runs]))
        if not methods:
            continue
        fig, ax, lax = style.axes_with_legend_panel(
            f"Dynamic sparsity: {runs[0]['network']}\n"
            f"{style.replicates_note(max(p['n'] for pts in methods.values() for p in pts.values()))}")
        style.dense_band(ax, groups.dense_accuracies(table, key))
        plot_methods(ax, _spread_single_points(methods))
        densities = [p["density"] for pts in methods.values() for p in pts.values()]
        start = len(methods)
        for run in groups.by_network(table, "lottery").get(key, []):
            imp = [e for e in groups.lottery_levels(table, run["run"]) if e["density"] and e["imp"]]
            if imp:
                style.line_with_band(ax, [100 * e["density"] for e in imp], [e["imp"] for e in imp],
                                     f"IMP, rewound to "
                                     f"{ginconfig.lookup(run['_values'], 'LotteryHparams.rewind_step')}"
                                     f" ({groups.run_label(table, run) or run['run']})", "0.35",
                                     style.marker(start), ls=":")
                densities += [e["density"] for e in imp]
                start += 1
        pai_rows = [r for group in groups.pai_groups(table) if group["network_key"] == key
                    for r in groups.trained(table, group["runs"], branch=None)]
        if pai_rows:
            densities += plot_methods(ax, groups.by_method(pai_rows), ls=":", start=start)
        finish(ax, densities, lax)
        paths += style.save(fig, out_dir,
                            f"dynamic_accuracy__{style.slug(runs[0]['network'])}")
    return paths


def _columns(data: np.ndarray):
    """(mean, min, max) of each column over its known (non-NaN) values; NaN where none is
    (phase 1 has no previous mask), without NumPy's all-NaN warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(data, 0), np.nanmin(data, 0), np.nanmax(data, 0)


def dynamic_imp_phases(table: dict, out_dir: str) -> List[str]:
    """Per Dynamic IMP run: mask change between phases and each phase's accuracies."""
    paths = []
    by_run = {}
    for record in table.get("dynamic", []):
        if record.get("phases"):
            by_run.setdefault(record["run"], []).append(record)
    for run, records in sorted(by_run.items()):
        count = min(len(r["phases"]) for r in records)
        phases = np.arange(1, count + 1)

        def values(field, sub=None):
            out = [[(p.get(field) or {}).get(sub) if sub else p.get(field)
                    for p in r["phases"][:count]] for r in records]
            return np.array([[np.nan if v is None else 100 * v for v in row] for row in out])
        fig, (left, right) = style.pyplot().subplots(1, 2, figsize=(10, 3.8))
        width = 0.38
        for offset, (field, sub, label) in zip((-width / 2, width / 2), (
                ("overlap_with_previous", "new_not_in_previous",
                 "of the mask: pruned by the phase before"),
                ("regrown_kept", None, "of the mask: regrown weights"))):
            mean, low, high = _columns(values(field, sub))
            left.bar(phases + offset, mean, width, label=label,
                     yerr=[mean - low, high - mean] if len(records) > 1 else None)
        left.set_xticks(phases)
        left.set_xlabel("phase")
        left.set_ylabel("% of the phase's mask")
        left.set_ylim(0, 100)
        left.legend(fontsize=7, loc="upper left")
        left.grid(alpha=0.3, axis="y")
        for field, label, marker in (("dense_test_accuracy", "dense (hybrid) training", "s"),
                                     ("sparse_test_accuracy", "sparse training", "o")):
            data = values(field)
            if np.all(np.isnan(data)):
                continue
            right.plot(phases, _columns(data)[0], marker=marker, label=label)
        right.set_xticks(phases)
        right.set_xlabel("phase")
        right.set_ylabel("test accuracy at the phase's end (%)")
        right.legend(fontsize=7, loc="lower right")
        right.grid(alpha=0.3)
        first = records[0]
        fig.suptitle(f"Dynamic IMP, {first['network']}, {100 * (1 - first['sparsity']):.3g}% of "
                     f"weights kept, change points {first['change_points']} it\nrun {run}, "
                     f"{style.replicates_note(len(records))}", fontsize=10)
        fig.tight_layout()
        paths += style.save(fig, out_dir, f"dynamic_imp_phases__{style.slug(run)}")
    return paths
