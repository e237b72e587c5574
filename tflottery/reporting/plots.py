"""The thesis's standard picture of an IMP run: test accuracy against density
(log scale, decreasing to the right), IMP and each branch as a line with the
replicates' min-max as a band, and the dense accuracy as a reference line."""
import io as _io
import os

from tflottery.runs import io


def accuracy_vs_density(table: dict, path: str) -> str:
    """Write the plot of a `summary.summarize` table to `path` (PNG); return path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in table["levels"] if r["density"] is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    series = {"IMP": [(r["density"], r["imp"]) for r in rows]}
    for r in rows:
        for name, stats in r["branches"].items():
            series.setdefault(name, []).append((r["density"], stats))
    for name, points in series.items():
        points.sort(key=lambda p: -p[0])
        xs = [100 * d for d, _ in points]
        ax.plot(xs, [100 * s["mean"] for _, s in points], marker="o", ms=3, label=name)
        ax.fill_between(xs, [100 * s["min"] for _, s in points],
                        [100 * s["max"] for _, s in points], alpha=0.2)
    if table["dense_accuracy"] is not None:
        ax.axhline(100 * table["dense_accuracy"], color="gray", ls="--", lw=1, label="dense")
    ax.set_xscale("log")
    ticks = sorted({round(100 * r["density"], 1) for r in rows}, reverse=True)[::2]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks], fontsize=8)
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    save_figure(fig, path, dpi=120)
    return path


def save_figure(fig, path: str, dpi: int = 110) -> None:
    """Write a matplotlib figure as PNG atomically (gs:// paths too) and close it."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    io.atomic_write_bytes(path, buffer.getvalue())


def plot_run(run_dir: str, table: dict) -> str:
    return accuracy_vs_density(table, os.path.join(run_dir, "summary.png"))
