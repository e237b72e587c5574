"""Training speed (thesis 3.3.6): the early-stopping and the dilation metrics.

Early stopping: a phase trained with a holdout split (DatasetHparams.
holdout_fraction > 0) records holdout loss/accuracy at every evaluation; its
early-stopping step is the step of minimum holdout loss, and its accuracy
there is the test accuracy at the evaluation nearest that step.  Thesis
Figure 3-8 plots both against the fraction of weights remaining, for IMP and
its branches: the winning tickets learn faster.

Dilation: the lottery run's 'retrain' branch with BranchHparams.dilation = d
retrains level L with every step quantity scaled by d (level 0 is the dense
network).  A level's smallest matching dilation is the smallest d whose mean
test accuracy is at least the full-length (d = 1) dense accuracy minus
SummaryHparams.matching_tolerance points (Figure 3-9).

Everything is read from the collector's rows (reporting/collect.py: phases,
densities, the retrain branches' settings) and the phases' metrics.jsonl.
`report_section(table, out_dir)` is the report page's 'Training speed'
section (`python -m tflottery.report ROOT`); its own command and the sweep's
--speed_report were removed (#23) and only say so (MESSAGE).
"""
import math
import sys
from typing import Dict, List, Optional

from tflottery.reporting import collect
from tflottery.reporting.groups import pct as _pct, run_title, spread as _stats
from tflottery.reporting.tables import link, md_table
from tflottery.reporting.figures import style
from tflottery.runs import io, layout

DEFAULT_TOLERANCE = 0.2   # points; SummaryHparams.matching_tolerance's default
MESSAGE = ("the training-speed report's own command and sweep --speed_report were removed "
           "(#23): its tables and figures are the 'Training speed' section of the report "
           "page, python -m tflottery.report ROOT (a sweep writes it at its end)")


# ---- one phase: the early-stopping metric ----
def early_stopping(records: List[dict]) -> Optional[dict]:
    """Step of minimum holdout loss (the earliest on ties) and the test accuracy at
    the evaluation nearest to it (the earlier on ties); None without holdout records."""
    holdout = [r for r in records if "holdout_loss" in r]
    if not holdout:
        return None
    best = min(holdout, key=lambda r: (r["holdout_loss"], r["step"]))
    tests = [r for r in records if "test_accuracy" in r]
    at = min(tests, key=lambda r: (abs(r["step"] - best["step"]), r["step"])) if tests else None
    return {"step": best["step"], "holdout_loss": best["holdout_loss"],
            "holdout_accuracy": best.get("holdout_accuracy"),
            "test_step": None if at is None else at["step"],
            "test_accuracy": None if at is None else at["test_accuracy"]}


def smallest_matching_dilation(accuracy_by_dilation: Dict[float, float], dense_accuracy: float,
                               tolerance_points: float) -> Optional[float]:
    """The smallest dilation whose accuracy is >= dense - tolerance (None if none is)."""
    threshold = dense_accuracy - tolerance_points / 100.0
    matching = [d for d, acc in accuracy_by_dilation.items() if acc >= threshold - 1e-12]
    return min(matching) if matching else None


# ---- the phases, from the collector's rows ----
def _series(phase: dict) -> str:
    if phase["branch"] is None:
        return "IMP" if phase["level"] is not None else "train"
    if phase["branch"] == "retrain":
        parts = [f"dilation {phase['dilation']:g}" if phase["dilation"] is not None else "",
                 f"data seed {phase['data_seed']}" if phase["data_seed"] is not None else ""]
        return "retrain (" + ", ".join(p for p in parts if p) + ")"
    return phase["branch"]


def find_phases(table: dict) -> Dict[str, List[dict]]:
    """{run directory: its finished phases}: replicate_<r>/train (dense: density 1),
    and each lottery level's train/ and branch_*/train/ (a 'retrain' branch named
    'retrain' with its dilation and data seed, left out when they are unknown)."""
    run_dirs = {run["run"]: run["run_dir"] for run in table["runs"]}
    out: Dict[str, List[dict]] = {}
    for row in collect.done(table["rows"], kind="train"):
        level, branch, settings = row["level"], row["branch"], row["branch_settings"]
        if not (row["phase"] == layout.TRAIN or (level is not None and row["phase"].endswith(
                "/" + layout.TRAIN))):
            continue
        if branch is not None and branch.startswith("retrain_"):
            if settings is None:
                continue    # a retrain branch whose settings were not recorded
            branch = "retrain"
        phase = {"level": level, "branch": branch, "path": row["path"],
                 "density": 1.0 if level is None else row["density"],
                 "dilation": (settings or {}).get("dilation"),
                 "data_seed": (settings or {}).get("data_seed"),
                 "test_accuracy": row["test_accuracy"]}
        phase["series"] = _series(phase)
        out.setdefault(run_dirs[row["run"]], []).append(phase)
    return out


def run_tolerance(run_dir: str) -> float:
    """Matching tolerance (points): the run's summary.json's, else 0.2."""
    path = layout.file(run_dir, layout.RUN_SUMMARY + ".json")
    if io.exists(path):
        value = io.read_json(path).get("matching_tolerance")
        if value is not None:
            return float(value)
    return DEFAULT_TOLERANCE


# ---- the two analyses of one run ----
def early_stopping_table(phases: List[dict]) -> List[dict]:
    """Per (series, level): early-stopping step and accuracy over replicates.
    Dilated retrain branches are left out (their steps are on another scale)."""
    groups: Dict[tuple, list] = {}
    for p in phases:
        if p["branch"] == "retrain" and p["dilation"] not in (None, 1, 1.0):
            continue
        metric = early_stopping(collect.metrics(p["path"]))
        if metric is None:
            continue
        groups.setdefault((p["series"], p["level"]), []).append((p, metric))
    rows = []
    for (series, level), items in sorted(groups.items(),
                                         key=lambda kv: (kv[0][0] != "IMP", kv[0][0], kv[0][1] or 0)):
        densities = [p["density"] for p, _ in items if p["density"] is not None]
        rows.append({
            "series": series, "level": level,
            "density": sum(densities) / len(densities) if densities else None,
            "early_stop_step": _stats([m["step"] for _, m in items]),
            "early_stop_accuracy": _stats([m["test_accuracy"] for _, m in items
                                           if m["test_accuracy"] is not None] or [math.nan]),
            "final_accuracy": _stats([p["test_accuracy"] for p, _ in items])})
    return rows


def dilation_table(phases: List[dict], tolerance: float) -> Optional[dict]:
    """Per level: mean test accuracy at each dilation (the level itself counts as
    dilation 1 unless a retrain branch at 1 exists) and the smallest matching one."""
    dense = [p["test_accuracy"] for p in phases if p["level"] == 0 and p["branch"] is None]
    curves: Dict[int, Dict[float, list]] = {}
    for p in phases:
        if p["branch"] == "retrain" and p["dilation"] is not None:
            curves.setdefault(p["level"], {}).setdefault(float(p["dilation"]), []).append(p)
    if not curves or not dense:
        return None
    dense_accuracy = sum(dense) / len(dense)
    rows = []
    for level in sorted(curves):
        points = curves[level]
        own = [p for p in phases if p["level"] == level and p["branch"] is None]
        if own and 1.0 not in points:
            points[1.0] = own
        stats = {d: _stats([p["test_accuracy"] for p in ps]) for d, ps in points.items()}
        densities = [p["density"] for ps in points.values() for p in ps if p["density"] is not None]
        rows.append({
            "level": level, "density": sum(densities) / len(densities) if densities else None,
            "points": [dict(dilation=d, **stats[d]) for d in sorted(stats)],
            "smallest_matching_dilation": smallest_matching_dilation(
                {d: s["mean"] for d, s in stats.items()}, dense_accuracy, tolerance)})
    return {"dense_accuracy": dense_accuracy, "matching_tolerance": tolerance,
            "threshold": dense_accuracy - tolerance / 100.0, "rows": rows}


def analyze(table: dict) -> List[dict]:
    """Both metrics for every run of a collector's table that has something to show."""
    out = []
    runs = {run["run_dir"]: run for run in table["runs"]}
    for run_dir, phases in find_phases(table).items():
        early = early_stopping_table(phases)
        dilation = dilation_table(phases, run_tolerance(run_dir))
        if early or dilation:
            out.append({"run_dir": run_dir, "run": runs[run_dir]["run"],
                        "title": run_title(table, runs[run_dir]),
                        "early_stopping": early, "dilation": dilation})
    return out


# ---- figures (report_section titles and saves them) ----
def plot_early_stopping(rows: List[dict]):
    """Thesis Figure 3-8: early-stopping step and test accuracy there vs density."""
    fig, (ax_step, ax_acc) = style.pyplot().subplots(1, 2, figsize=(10, 4))
    rows = [r for r in rows if r["density"] is not None]
    for i, series in enumerate(dict.fromkeys(r["series"] for r in rows)):
        pts = sorted((r for r in rows if r["series"] == series), key=lambda r: -r["density"])
        for ax, key, scale in ((ax_step, "early_stop_step", 1), (ax_acc, "early_stop_accuracy", 100)):
            style.line_with_band(ax, [100 * r["density"] for r in pts], [r[key] for r in pts],
                                 series, f"C{i % 10}", style.marker(i), scale=scale)
    for ax in (ax_step, ax_acc):
        style.density_axis(ax, [r["density"] for r in rows])
    ax_step.set_ylabel("early-stopping step (min holdout loss)")
    ax_acc.set_ylabel("test accuracy at early stop (%)")
    ax_acc.legend(fontsize=8)
    return fig


def plot_dilation(table: dict):
    """Thesis Figure 3-9: test accuracy vs dilation per level (level 0 = dense),
    and the smallest matching dilation vs density."""
    fig, (ax_acc, ax_min) = style.pyplot().subplots(1, 2, figsize=(10, 4))
    for i, row in enumerate(table["rows"]):
        label = ("dense" if row["level"] == 0 else f"level {row['level']}") + (
            f" ({100 * row['density']:.1f}%)" if row["density"] is not None else "")
        style.line_with_band(ax_acc, [p["dilation"] for p in row["points"]], row["points"], label,
                             "black" if row["level"] == 0 else f"C{i % 10}", style.marker(i))
    ax_acc.axhline(100 * table["dense_accuracy"], color="gray", ls="--", lw=1,
                   label="dense, full length")
    ax_acc.axhline(100 * table["threshold"], color="gray", ls=":", lw=1,
                   label=f"matching (-{table['matching_tolerance']:g} points)")
    ax_acc.set_xlabel("dilation factor")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(fontsize=7)
    found = [r for r in table["rows"] if r["density"] is not None]
    hits = [r for r in found if r["smallest_matching_dilation"] is not None]
    ax_min.plot([100 * r["density"] for r in hits], [r["smallest_matching_dilation"] for r in hits],
                marker="o", ms=4, label="smallest matching dilation")
    tried = [p["dilation"] for r in table["rows"] for p in r["points"]]
    ax_min.axhline(min(tried), color="gray", ls=":", lw=1, label="smallest tried")
    misses = [r for r in found if r["smallest_matching_dilation"] is None]
    if misses:
        ax_min.plot([100 * r["density"] for r in misses], [max(tried)] * len(misses), "x",
                    color="red", label="never matching (at the largest tried)")
    style.density_axis(ax_min, [r["density"] for r in found])
    ax_min.set_ylabel("smallest matching dilation")
    ax_min.legend(fontsize=7)
    return fig


# ---- markdown ----
def _spread(s: dict, fmt) -> str:
    spread = s["n"] > 1 and fmt(s["min"]) != fmt(s["max"])
    return fmt(s["mean"]) + (f" ({fmt(s['min'])}-{fmt(s['max'])})" if spread else "")


def _early_markdown(rows: List[dict]) -> List[str]:
    return md_table(["series", "level", "density %", "early-stop step",
                     "test acc at early stop %", "final test acc %"],
                    [[r["series"], "-" if r["level"] is None else r["level"], _pct(r["density"]),
                      _spread(r["early_stop_step"], lambda v: f"{v:.0f}"),
                      _spread(r["early_stop_accuracy"], _pct),
                      _spread(r["final_accuracy"], _pct)] for r in rows]).split("\n")


def _dilation_markdown(table: dict) -> List[str]:
    rows = [[f"{r['level']}{' (dense)' if r['level'] == 0 else ''}", _pct(r["density"]),
             "none" if r["smallest_matching_dilation"] is None
             else f"{r['smallest_matching_dilation']:g}",
             ", ".join(f"{p['dilation']:g}: {_pct(p['mean'])}" for p in r["points"])]
            for r in table["rows"]]
    return [f"Dense accuracy at full length {_pct(table['dense_accuracy'])}%; matching means "
            f">= {_pct(table['threshold'])}% ({table['matching_tolerance']:g} points below).",
            ""] + md_table(["level", "density %", "smallest matching dilation",
                            "accuracy % by dilation"], rows).split("\n")


def report_section(table: dict, out_dir: str, page_dir: Optional[str] = None):
    """(markdown, [PNG paths]) of the training-speed section of the collector's table
    (collect.collect), figures written to out_dir.  Image links in the markdown are
    relative to page_dir (default out_dir): the report page puts the figures in its
    figures/ directory."""
    results = analyze(table)
    page_dir = page_dir or out_dir
    lines = ["## Training speed (thesis 3.3.6)", ""]
    figures = []
    if not results:
        lines.append("No training-speed data: no phase recorded holdout metrics "
                     "(DatasetHparams.holdout_fraction > 0) and no 'retrain' branch has a dilation.")
        return "\n".join(lines) + "\n", figures
    sections = [  # (result key, figure, table, what it shows)
        ("early_stopping", plot_early_stopping, _early_markdown,
         "Early stopping: the step of minimum holdout loss and the test accuracy at "
         "the nearest evaluation (mean, min-max over replicates)."),
        ("dilation", plot_dilation, _dilation_markdown,
         "Dilation: every step quantity scaled by the factor (retrain branch); "
         "the smallest factor whose mean accuracy still matches the dense network."),
    ]
    for res in results:
        lines += [f"### {res['title']}", ""]
        for key, plot, markdown, caption in sections:
            if not res[key]:
                continue
            fig = plot(res[key])
            fig.suptitle(res["title"], fontsize=9)
            path = style.save(fig, out_dir, f"speed_{res['run']}_{key}")[0]
            figures.append(path)
            lines += [caption, ""] + markdown(res[key])
            lines += ["", f"![{key.replace('_', ' ')}]({link(path, page_dir)})", ""]
    return "\n".join(lines) + "\n", figures


if __name__ == "__main__":
    sys.exit(f"error: {MESSAGE}")
