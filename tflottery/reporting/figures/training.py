"""Test accuracy over training at several sparsity levels (thesis Figure
3-1): winning tickets learn faster and reach higher accuracy than the dense
network until they are pruned too far; random reinitialisation (dashed)
does not."""
import json
from typing import Dict, List

import numpy as np
from absl import logging

from tflottery.reporting import collect, groups
from tflottery.reporting.figures import style
from tflottery.runs import io

MAX_LEVELS = 6


def test_curve(phase_dir: str) -> Dict[int, float]:
    """{step: test accuracy} from a phase's metrics.jsonl (bad lines skipped)."""
    path = f"{phase_dir}/metrics.jsonl"
    out = {}
    try:
        text = io.read_text(path) if io.exists(path) else ""
    except Exception as err:  # unreadable: the collector has reported it
        logging.warning("cannot read %s: %s", path, err)
        return out
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "test_accuracy" in record:
            out[int(record["step"])] = float(record["test_accuracy"])
    return out


def _mean_curve(rows: List[dict]):
    curves = [test_curve(r["path"]) for r in rows]
    steps = sorted({s for c in curves for s in c})
    pts = []
    for s in steps:
        values = [c[s] for c in curves if s in c]
        pts.append(groups.stats(values))
    return steps, pts


def training_curves(table: dict, out_dir: str) -> List[str]:
    """Per lottery run: test accuracy vs iteration for up to 6 levels."""
    plt = style.pyplot()
    paths = []
    for run in groups.runs_of(table, "lottery"):
        rows = collect.done(table["rows"], run=run["run"], kind="train")
        imp = [r for r in rows if r["branch"] is None and r["level"] is not None]
        levels = style.spread(sorted({r["level"] for r in imp}), MAX_LEVELS)
        if not levels:
            continue
        fig, ax = plt.subplots(figsize=(7.0, 4.6))
        drawn, n = 0, 0
        for i, level in enumerate(levels):
            at = [r for r in imp if r["level"] == level]
            steps, pts = _mean_curve(at)
            if not steps:
                continue
            ds = [r["density"] for r in at if r["density"] is not None]
            name = (f"{100 * np.mean(ds):.3g}% remaining" if ds else f"level {level}")
            col = plt.cm.viridis(i / max(1, len(levels) - 1) * 0.9)
            style.line_with_band(ax, steps, pts, f"{name} (level {level})", col,
                                 style.marker(i))
            n = max(n, max(p["n"] for p in pts))
            drawn += 1
            reinit = [r for r in rows if r["level"] == level and r["branch"] == "random_reinit"]
            if reinit and level > 0:
                rs, rp = _mean_curve(reinit)
                if rs:
                    style.line_with_band(ax, rs, rp, f"{name}, random reinit", col,
                                         style.marker(i), ls="--")
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xlabel("training iteration")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"Test accuracy during training: {groups.network_label(run)}\n"
                     f"run {run['run']}, {style.replicates_note(n)}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, loc="lower right", framealpha=0.9)
        paths += style.save(fig, out_dir, f"training_curves__{style.slug(run['run'])}")
    if not paths:
        logging.info("figure training_curves skipped: no lottery metrics")
    return paths
