"""The look shared by every report figure, and how figures are written.

One place decides the density axis of the thesis (log scale, fraction of
weights remaining, sparser to the right), the min-max bands over
replicates, the colour of each method (the same in every figure), and that
each figure is written as PNG (for the pages) and PDF (for papers).
"""
import io as _io
import os
import re
import textwrap
from typing import Dict, List, Sequence

import numpy as np

from tflottery.runs import io

# The same colour for a method or branch in every figure.
COLORS: Dict[str, str] = {
    "imp": "C0", "lrr": "C0", "random_reinit": "C1", "random_prune_global": "C2",
    "random_prune_layerwise": "C3", "inverted": "C4", "retrain": "C5",
    "snip": "C0", "grasp": "C1", "grasp_abs": "C2", "synflow": "C3", "magnitude": "C4",
    "random": "C5", "isnip": "C6", "magnitude_unit_variance": "C7", "gradual": "C8",
    "shuffle": "C1", "reinit": "C2", "invert": "C3",
}
MARKERS = "osD^v<>pPhX*"


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def color(name: str, index: int = 0) -> str:
    base = name.split("_")[0] if name.startswith("retrain_") else name
    return COLORS.get(base, f"C{index % 10}")


def marker(index: int) -> str:
    return MARKERS[index % len(MARKERS)]


def slug(text: str) -> str:
    """A file-name-safe version of a run or group name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_")[:80] or "figure"


def save_figure(fig, path: str, dpi: int = 110) -> None:
    """Write a matplotlib figure as PNG atomically (gs:// paths too) and close it."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    io.atomic_write_bytes(path, buffer.getvalue())


def save(fig, out_dir: str, name: str) -> List[str]:
    """Write `name`.png and `name`.pdf into out_dir; return both paths."""
    png, pdf = os.path.join(out_dir, name + ".png"), os.path.join(out_dir, name + ".pdf")
    fig.tight_layout()
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="pdf")
    io.atomic_write_bytes(pdf, buffer.getvalue())
    save_figure(fig, png, dpi=120)       # also closes the figure
    return [png, pdf]


def spread(values: List, count: int) -> List:
    """Up to `count` of `values` evenly spread, always the first and the last
    (the panels or curves a figure has room for)."""
    if len(values) <= count:
        return values
    idx = np.linspace(0, len(values) - 1, count).round().astype(int)
    return [values[i] for i in sorted(set(idx))]


def panel_grid(count: int, panel_width: float, extra_height: float, ylabel: str = ""):
    """(fig, axes): `count` panels in rows of up to 3 sharing the y axis (labelled `ylabel`
    on the left), as a 2-D array; the panels past `count` in the last row are hidden."""
    cols = min(3, count)
    rows = (count + cols - 1) // cols
    fig, axes = pyplot().subplots(rows, cols, figsize=(panel_width * cols, 3.5 * rows + extra_height),
                                  sharey=True, squeeze=False)
    for ax in list(axes.flat)[count:]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    return fig, axes


def _fmt_percent(value: float) -> str:
    return f"{value:.3g}" if value < 100 else "100"


def density_axis(ax, densities: Sequence[float], max_ticks: int = 9) -> None:
    """x: weights remaining in %, log scale, reversed (sparser to the right)."""
    ticks = []
    for t in sorted({round(100 * d, 4) for d in densities if d and d > 0}, reverse=True):
        if not ticks or ticks[-1] / t > 1.06:      # labels closer than that would overlap
            ticks.append(t)
    if len(ticks) > max_ticks:
        step = (len(ticks) - 1) / (max_ticks - 1)
        ticks = [ticks[round(i * step)] for i in range(max_ticks)]
    ax.set_xscale("log")
    ax.minorticks_off()
    if ticks:
        ax.set_xticks(ticks)
        ax.set_xticklabels([_fmt_percent(t) for t in ticks], fontsize=8)
        low, high = min(ticks), max(ticks)
        ax.set_xlim(high * 1.15, low / 1.15)    # reversed: sparser to the right
    else:
        ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%, log scale)")


def line_with_band(ax, xs, points: List[dict], label: str, col: str, mk: str = "o",
                   ls: str = "-", scale: float = 100.0) -> None:
    """Mean as a line with markers; the min-max over replicates as a band."""
    ax.plot(xs, [scale * p["mean"] for p in points], ls=ls, marker=mk, ms=4, color=col,
            label=label, lw=1.6 if ls == "-" else 1.3)
    if any(p["n"] > 1 for p in points) and len(xs) == 1:
        # A band over one point has no width: the min-max as an error bar instead.
        p = points[0]
        ax.errorbar(xs, [scale * p["mean"]], yerr=[[scale * (p["mean"] - p["min"])],
                                                   [scale * (p["max"] - p["mean"])]],
                    color=col, ls="none", lw=1, capsize=3)
    elif any(p["n"] > 1 for p in points):
        ax.fill_between(xs, [scale * p["min"] for p in points],
                        [scale * p["max"] for p in points], color=col, alpha=0.15, lw=0)


def dense_band(ax, accuracies: List[float], what: str = "dense network") -> None:
    """The dense accuracy as a grey band (min-max over replicates) and a line."""
    if not accuracies:
        return
    lo, hi = 100 * min(accuracies), 100 * max(accuracies)
    mean = 100 * sum(accuracies) / len(accuracies)
    n = len(accuracies)
    ax.axhspan(lo, hi, color="0.5", alpha=0.18, lw=0)
    ax.axhline(mean, color="0.35", ls="--", lw=1,
               label=f"{what}: {mean:.2f}%" + (f" (mean; band min-max of {n} results)"
                                                if n > 1 else ""))


def axes_with_legend_panel(title: str, width: float = 9.0, height: float = 4.6):
    """(fig, ax, legend_ax): a plot and, on its right, a panel for its legend.

    Legends of many lines cover the data when drawn inside the axes, and a
    legend outside the axes is cut off by tight_layout; a panel of its own
    is laid out with the plot."""
    plt = pyplot()
    fig, (ax, legend_ax) = plt.subplots(1, 2, figsize=(width, height),
                                        gridspec_kw={"width_ratios": [3.0, 1.25]})
    legend_ax.axis("off")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return fig, ax, legend_ax


def legend_in_panel(ax, legend_ax, wrap: int = 30) -> None:
    handles, labels = ax.get_legend_handles_labels()
    labels = [textwrap.fill(label, wrap) for label in labels]
    legend_ax.legend(handles, labels, loc="upper left", fontsize=7.5, frameon=False,
                     borderaxespad=0.0)


def replicates_note(n: int) -> str:
    return f"mean of {n} replicates, bands min-max" if n > 1 else "1 replicate"
