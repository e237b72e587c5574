"""Test accuracy over training at every sparsity level (thesis Figure 3-1),
as small multiples (one panel per level, so no level is dropped however
many there are): winning tickets learn faster and reach higher accuracy
than the dense network (dotted, in every panel) until they are pruned too
far; random reinitialisation (dashed) does not."""
from typing import Dict, List

import numpy as np

from tflottery.reporting import collect, groups
from tflottery.reporting.figures import style


def test_curve(phase_dir: str) -> Dict[int, float]:
    """{step: test accuracy} from a phase's metrics.jsonl (bad lines skipped)."""
    return {int(r["step"]): float(r["test_accuracy"]) for r in collect.metrics(phase_dir)
            if "test_accuracy" in r}


def _mean_curve(rows: List[dict]):
    curves = [test_curve(r["path"]) for r in rows]
    steps = sorted({s for c in curves for s in c})
    return steps, [groups.stats([c[s] for c in curves if s in c]) for s in steps]


def training_curves(table: dict, out_dir: str) -> List[str]:
    """Per lottery run: test accuracy against iteration, one panel per level (every
    level, none dropped), each with the dense network's curve for reference and the
    level's random reinitialisation dashed."""
    paths = []
    for run in groups.runs_of(table, "lottery"):
        rows = collect.done(table["rows"], run=run["run"], kind="train")
        imp = [r for r in rows if r["branch"] is None and r["level"] is not None]
        curves = []
        for level in sorted({r["level"] for r in imp}):
            at = [r for r in imp if r["level"] == level]
            steps, pts = _mean_curve(at)
            if steps:
                ds = [r["density"] for r in at if r["density"] is not None]
                reinit = [r for r in rows if r["level"] == level and
                          r["branch"] == "random_reinit"]
                curves.append((level, ds, (steps, pts), _mean_curve(reinit) if reinit and
                               level > 0 else ([], [])))
        if not curves:
            continue
        paths += _small_multiples(table, run, curves, out_dir)
    return paths


def _small_multiples(table: dict, run: dict, curves, out_dir: str) -> List[str]:
    fig, axes = style.panel_grid(len(curves), 3.6, 0.6, "test accuracy (%)")
    dense = curves[0][2] if curves[0][0] == 0 else None
    n = 0
    for ax, (level, ds, (steps, pts), (rs, rp)) in zip(axes.flat, curves):
        if dense is not None and level != 0:
            style.line_with_band(ax, dense[0], dense[1], "dense (level 0)", "0.6", "", ls=":")
        style.line_with_band(ax, steps, pts, "IMP", style.color("imp"), "o")
        if rs:
            style.line_with_band(ax, rs, rp, "random reinit", style.color("random_reinit"),
                                 "s", ls="--")
        n = max([n] + [p["n"] for p in pts])
        remaining = f"{100 * np.mean(ds):.3g}% remaining" if ds else "density unknown"
        ax.set_title(f"level {level}: {remaining}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.set_xlabel("training iteration", fontsize=8)
    handles = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center",
               ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(f"Test accuracy during training: {run['network']}, every level\n"
                 f"run {groups.run_title(table, run)}, {style.replicates_note(n)}", fontsize=10)
    return style.save(fig, out_dir, f"training_curves__{style.slug(run['run'])}")
