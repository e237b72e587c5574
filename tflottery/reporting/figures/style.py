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


def look(col, index: int, aligned: bool = False) -> dict:
    """line_with_band's colour and marker of a raw line (`col`, marker(index)), or of its
    aligned twin (lmc figures): a darker shade of the colour and another marker, open, so
    that raw and aligned points tell apart without the line style."""
    if not aligned:
        return {"col": col, "mk": marker(index)}
    import matplotlib.colors as mcolors
    rgb = np.array(mcolors.to_rgb(col))
    return {"col": tuple(0.5 * rgb), "mk": MARKERS[(index + 6) % len(MARKERS)],
            "open_marker": True}


def slug(text: str) -> str:
    """A file-name-safe version of a run or group name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_")[:80] or "figure"


def _titles(fig):
    """(text, the width in display units it must fit in) of the figure's titles: the
    suptitle in the figure, each visible axes' titles in the axes' width."""
    suptitle = getattr(fig, "_suptitle", None)      # matplotlib keeps it there
    out = [(suptitle, fig.bbox.width * 0.98)]
    for ax in fig.axes:
        if ax.get_visible() and ax.axison:
            out += [(t, max(ax.bbox.width, 0.3 * fig.bbox.width)) for t in
                    (ax.title, getattr(ax, "_left_title", None), getattr(ax, "_right_title", None))]
    return [(t, width) for t, width in out if t is not None and t.get_text()]


def fit_titles(fig) -> bool:
    """Re-wrap (at spaces) each title that is wider than its room, line by line, so that
    no title of a narrow figure is cut off at the figure's edge; True if one was."""
    renderer = fig.canvas.get_renderer()
    before = [t.get_text() for t, _ in _titles(fig)]
    for text, room in _titles(fig):
        lines = text.get_text().split("\n")
        out = []
        for line in lines:
            text.set_text(line)
            wide = text.get_window_extent(renderer).width
            chars = len(line)
            while wide > room and chars > 12:
                chars = max(12, min(chars - 1, int(chars * room / wide)))
                text.set_text(textwrap.fill(line, chars, break_long_words=False))
                wide = text.get_window_extent(renderer).width
            out.append(text.get_text())
        text.set_text("\n".join(out))
    return [t.get_text() for t, _ in _titles(fig)] != before


def layout(fig) -> None:
    """tight_layout, with the titles re-wrapped to the room the layout leaves them."""
    fig.tight_layout()
    if fit_titles(fig):
        fig.tight_layout()


def save_figure(fig, path: str, dpi: int = 110, laid_out: bool = False) -> None:
    """Write a matplotlib figure as PNG atomically (gs:// paths too) and close it
    (laid out first unless `laid_out`)."""
    import matplotlib.pyplot as plt
    if not laid_out:
        layout(fig)
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    io.atomic_write_bytes(path, buffer.getvalue())


def warm() -> None:
    """Save a throwaway figure as PDF and PNG, to memory: a process's first saved figure
    loads the backends and fonts (about 0.1 s), which a run does while it trains
    (summary.prepare) rather than at its end."""
    fig, ax = pyplot().subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1], marker="o", label="x")
    ax.set_xlabel("x")
    ax.legend()
    layout(fig)
    for kind in ("pdf", "png"):
        fig.savefig(_io.BytesIO(), format=kind)
    pyplot().close(fig)


def save(fig, out_dir: str, name: str) -> List[str]:
    """Write `name`.png and `name`.pdf into out_dir; return both paths."""
    png, pdf = os.path.join(out_dir, name + ".png"), os.path.join(out_dir, name + ".pdf")
    layout(fig)
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="pdf")
    io.atomic_write_bytes(pdf, buffer.getvalue())
    save_figure(fig, png, dpi=120, laid_out=True)       # also closes the figure
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
        ax.set_xticklabels([f"{t:.3g}" if t < 100 else "100" for t in ticks], fontsize=8)
        low, high = min(ticks), max(ticks)
        ax.set_xlim(high * 1.15, low / 1.15)    # reversed: sparser to the right
    else:
        ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%, log scale)")


def line_with_band(ax, xs, points: List[dict], label: str, col: str, mk: str = "o",
                   ls: str = "-", scale: float = 100.0, open_marker: bool = False) -> None:
    """Mean as a line with markers (open ones: `open_marker`); the min-max over
    replicates as a band."""
    ax.plot(xs, [scale * p["mean"] for p in points], ls=ls, marker=mk, ms=5 if open_marker else 4,
            color=col, label=label, lw=1.6 if ls == "-" else 1.3,
            **({"markerfacecolor": "white", "markeredgewidth": 1.3} if open_marker else {}))
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
    mean, n = 100 * sum(accuracies) / len(accuracies), len(accuracies)
    ax.axhspan(100 * min(accuracies), 100 * max(accuracies), color="0.5", alpha=0.18, lw=0)
    ax.axhline(mean, color="0.35", ls="--", lw=1,
               label=f"{what}: {mean:.2f}%" + (f" (mean; band min-max of {n} results)"
                                                if n > 1 else ""))


def axes_with_legend_panel(title: str, width: float = 9.0, height: float = 4.6):
    """(fig, ax, legend_ax): a plot and, on its right, a panel for its legend.

    Legends of many lines cover the data when drawn inside the axes, and a
    legend outside the axes is cut off by tight_layout; a panel of its own
    is laid out with the plot."""
    fig, (ax, legend_ax) = pyplot().subplots(1, 2, figsize=(width, height),
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


def _covers(line, below, tolerance: float) -> bool:
    """Whether `line` runs on top of `below`: at least half its points share an x with
    `below`, and at 80% of those (all, for up to 4) their y differ by at most `tolerance`
    (noisy curves that lie on each other cross a little)."""
    xa, ya = (np.asarray(v, dtype=float)[:, None] for v in line.get_data())
    xb, yb = (np.asarray(v, dtype=float)[None, :] for v in below.get_data())
    same = np.isclose(xb, xa, rtol=1e-6, atol=0.0)     # [point of line, point of below]
    close = (same & (np.abs(yb - ya) <= tolerance)).any(1)[same.any(1)]
    if not close.size or 2 * close.size < len(xa):
        return False
    return bool(close.all() if close.size <= 4 else close.sum() >= 0.8 * close.size)


def unhide_overlaps(ax, tolerance: float = 0.015) -> None:
    """A line drawn on an earlier one with (nearly) the same points (two methods that score
    alike) would hide it: the later one is drawn dashed, with open markers a size larger,
    so that the one below shows through, and its legend label says which line it lies on.
    Call before the legend is made; `tolerance` is a fraction of the lines' y range."""
    lines = [line for line in ax.get_lines() if line.get_transform() is ax.transData
             and not line.get_label().startswith("_") and len(line.get_xdata())]
    if len(lines) < 2:
        return
    ys = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in lines])
    span = float(np.nanmax(ys) - np.nanmin(ys)) if np.isfinite(ys).any() else 0.0
    names = [line.get_label() for line in lines]
    for i, line in enumerate(lines):
        j = next((j for j, b in enumerate(lines[:i])
                  if _covers(line, b, tolerance * (span or 1.0))), None)
        if j is None:
            continue
        below = lines[j]
        line.set_linestyle((0, (4, 3)) if below.get_linestyle() == "-" else (0, (1.5, 2.5)))
        line.set_markersize(below.get_markersize() + 3)
        line.set_markerfacecolor("none")
        line.set_markeredgewidth(1.4)
        line.set_zorder(below.get_zorder() + 0.1)
        line.set_label(f"{names[i]} (on top of {names[j]})")
