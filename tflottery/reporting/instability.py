"""Summaries of instability analyses: per rewinding step k, the test and
train error barriers (mean and standard deviation over replicates), whether
training from k is stable, whether the subnetwork is matching, and the
earliest stable and matching k (median over replicates, thesis Figure 4-18);
plus the plot of the instability during the copies' training (per_epoch).
Analyses with InstabilityHparams.align set add the barriers after permutation
alignment beside the raw ones (columns and dashed curves); every analysis's soup
(uniform weight average of its copies) adds its test accuracy."""
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from tflottery.hparams import SummaryHparams
from tflottery.reporting import collect, groups, summary
from tflottery.reporting.figures import style
from tflottery.reporting.tables import md_table
from tflottery.runs import io, layout


def analyses(run_dir: str) -> list:
    """The instability rows (collect.py) of every analysis of the run: replicate_<r>/k_<k>
    (dense) and replicate_<r>/level_<L>/k_<k>.  A damaged record (one this run did not
    remake: another replicate's) is left out with a warning, as the lottery summary
    leaves out a damaged level."""
    table = collect.collect(run_dir)
    for problem in table["problems"]:
        if problem["file"].endswith(layout.INSTABILITY):
            collect.warn_left_out(problem["file"], problem["error"])
    return table["instability"]


def _mean_std(recs, column, prefix):
    values = [r[column] for r in recs]
    return {f"{prefix}_mean": float(np.mean(values)), f"{prefix}_std": float(np.std(values))}


def _optional_columns(recs) -> dict:
    """Aligned barriers (mean, std) and soup accuracies, then the test barriers above the
    straight line between the end points (raw and aligned; mean, std), where every record
    has them (lmc runs made since they exist)."""
    def every(column):
        return all(r.get(column) is not None for r in recs)
    out = {}
    if every("align"):
        out["align"] = recs[0]["align"]
        for split in ("test", "train"):
            out.update(_mean_std(recs, f"aligned_{split}_instability", f"aligned_{split}_barrier"))
    if every("_soup_n"):
        out["soup_n"] = recs[0]["_soup_n"]
        for column, key in (("soup_accuracy", "accuracy"), ("aligned_soup_accuracy",
                                                            "aligned_accuracy")):
            if every(column):
                out[f"soup_{key}_mean"] = float(np.mean([r[column] for r in recs]))
    for prefix in ("", "aligned_"):
        if every(f"{prefix}test_linear_instability"):
            out.update(_mean_std(recs, f"{prefix}test_linear_instability",
                                 f"{prefix}test_linear_barrier"))
    return out


def summarize(run_dir: str, summary_hp, rows=None) -> dict:
    """Rows per (level, k) and, per level, the earliest stable / matching k (`rows`:
    `analyses(run_dir)` when the caller has read them already)."""
    rows = analyses(run_dir) if rows is None else rows
    threshold = summary_hp.stability_threshold / 100.0
    tolerance = summary_hp.matching_tolerance / 100.0
    by_key = {}
    for r in rows:
        by_key.setdefault((r["level"], r["k"]), []).append(r)
    out = []
    for key in sorted(by_key, key=lambda key: (-1 if key[0] is None else key[0], key[1])):
        recs = by_key[key]
        acc = [r["end_accuracy"] for r in recs]
        dense = [r["dense_accuracy"] for r in recs if r["dense_accuracy"] is not None]
        out.append({
            "level": key[0], "k": key[1], "rewind_step": recs[0]["rewind_step"], "n": len(recs),
            "subnetwork": recs[0]["subnetwork"],
            "density": float(np.mean([r["density"] for r in recs])),
            **_mean_std(recs, "test_instability", "test_barrier"),
            **_mean_std(recs, "train_instability", "train_barrier"),
            "accuracy_mean": float(np.mean(acc)),
            "stable": bool(np.mean([r["test_instability"] for r in recs]) < threshold),
            "matching": bool(np.mean(acc) >= np.mean(dense) - tolerance) if dense else None,
            **_optional_columns(recs)})

    # Per level, as the report's table (groups.earliest_k); a replicate with no analysis
    # at a level counts there as never stable or matching.
    replicates = sorted({r["replicate"] for r in rows})
    earliest = []
    for level in sorted({key[0] for key in by_key}, key=lambda l: -1 if l is None else l):
        found = groups.earliest_k([r for r in rows if r["level"] == level],
                                  summary_hp.stability_threshold, summary_hp.matching_tolerance,
                                  replicates=replicates)
        earliest.append({"level": level, "stable_k": found["stable_k"],
                         "matching_k": found["matching_k"]})
    return {"rows": out, "earliest": earliest,
            "stability_threshold": summary_hp.stability_threshold,
            "matching_tolerance": summary_hp.matching_tolerance}


def _cell(r, prefix) -> str:
    """100 x a column's mean, ± its standard deviation where it has one; '-' without it."""
    if f"{prefix}_mean" not in r:
        return "-"
    std = f" ± {100 * r[f'{prefix}_std']:.2f}" if f"{prefix}_std" in r else ""
    return f"{100 * r[f'{prefix}_mean']:.2f}{std}"


# The table's columns between density and stable: (header, summary key), each shown
# where some row has the key (aligned barriers, linear barriers and soups: the runs that
# measured them).
_COLUMNS = (
    ("test instability (points)", "test_barrier"),
    ("train instability (points)", "train_barrier"),
    ("aligned test instability", "aligned_test_barrier"),
    ("aligned train instability", "aligned_train_barrier"),
    ("test instability above the line", "test_linear_barrier"),
    ("aligned test instability above the line", "aligned_test_linear_barrier"),
    ("accuracy %", "accuracy"),
    ("soup accuracy %", "soup_accuracy"),
    ("aligned soup accuracy %", "soup_aligned_accuracy"),
)


def to_markdown(table: dict) -> str:
    if not table["rows"]:
        return "(no finished instability analyses yet)"
    aligned = any("align" in r for r in table["rows"])
    souped = any("soup_n" in r for r in table["rows"])
    columns = [(header, key) for header, key in _COLUMNS
               if any(f"{key}_mean" in r for r in table["rows"])]
    linear = any(key.endswith("linear_barrier") for _, key in columns)
    header = ["subnetwork", "level", "k (it)", "step", "density %"]
    header += [name for name, _ in columns] + ["stable", "matching"]
    rows = []
    for r in table["rows"]:
        match = "-" if r["matching"] is None else ("yes" if r["matching"] else "no")
        level = "-" if r["level"] is None else r["level"]
        cells = [r["subnetwork"], level, r["k"], r["rewind_step"], f"{100 * r['density']:.2f}"]
        cells += [_cell(r, key) for _, key in columns]
        rows.append(cells + ["yes" if r["stable"] else "no", match])
    lines = [md_table(header, rows), ""]
    lines.append(f"Stable: test instability below {table['stability_threshold']:g} points "
                 f"(mean over {max(r['n'] for r in table['rows'])} replicate(s)); matching: "
                 f"within {table['matching_tolerance']:g} points of the dense accuracy.")
    if linear:
        lines.append("Instability: the highest error on the path minus the mean error of its "
                     "end points (the thesis's; stable judges it); above the line: minus the "
                     "straight line between the end points instead (Entezari et al., Ainsworth "
                     "et al.).")
    if aligned:
        methods = sorted({r["align"] for r in table["rows"] if "align" in r})
        lines.append(f"Aligned: copy 2's units permuted to match copy 1 by {', '.join(methods)} "
                     "matching before interpolating; stability and matching judge the raw path.")
    if souped:
        lines.append("Soup: test accuracy of the uniform weight average of all "
                     f"{max(r.get('soup_n', 0) for r in table['rows'])} copies"
                     + (" (aligned: each copy first aligned to copy 1)." if aligned else "."))
    unpruned = next((r["subnetwork"] for r in table["rows"] if r["level"] is None), "dense")
    for e in table["earliest"]:
        where = unpruned if e["level"] is None else f"level {e['level']}"
        lines.append(f"- {where}: earliest stable k (median over replicates) "
                     f"{groups.k_text(e['stable_k'])}, earliest matching k "
                     f"{groups.k_text(e['matching_k'])}")
    return "\n".join(lines)


def _stale(image: str, record: str) -> bool:
    """Whether an analysis's figure is missing or older than its instability.json."""
    if not io.exists(image):
        return True
    return tf.io.gfile.stat(image).mtime_nsec < tf.io.gfile.stat(record).mtime_nsec


def end_of_run(run_dir: str, settings: dict, writable: bool = True) -> Optional[dict]:
    """An lmc run's end (its ReportSpec.end_of_run): each analysis's
    instability_per_epoch.png (InstabilityHparams.per_epoch) not drawn yet,
    instability_summary.json/md over every replicate so far, the table printed; returns
    the table.  The error along each path is drawn by the report (its interpolation
    figure, mean over replicates); each analysis's own instability.png went in #23."""
    summary_hp = SummaryHparams(**{field: settings[f"SummaryHparams.{field}"]
                                   for field in ("matching_tolerance", "stability_threshold")
                                   if f"SummaryHparams.{field}" in settings})
    rows = analyses(run_dir)     # each damaged record warned about once
    table = summarize(run_dir, summary_hp, rows)
    if writable:
        for row in rows:
            path = layout.file(os.path.dirname(row["path"]), "instability_per_epoch.png")
            if row["per_epoch"] is not None and _stale(path, row["path"]):
                plot_per_epoch(path, row)
        summary.write(run_dir, table, layout.INSTABILITY_SUMMARY, to_markdown)
    print(to_markdown(table), flush=True)
    return table


def plot_per_epoch(path: str, row: dict) -> None:
    """Test instability between the copies at each epoch of their training."""
    rows = row["per_epoch"]
    fig, ax = style.pyplot().subplots(figsize=(5.6, 3.6))
    ax.plot([r["step"] for r in rows], [100 * r["test_barrier"] for r in rows], marker="o", ms=3,
            label="raw")
    if rows and "aligned_test_barrier" in rows[0]:
        ax.plot([r["step"] for r in rows], [100 * r["aligned_test_barrier"] for r in rows],
                marker="s", ms=3, ls="--", label="aligned")
        ax.legend(fontsize=8)
    ax.set_xlabel("training step of the copies")
    ax.set_ylabel("test instability (points)")
    ax.set_title(f"k = {row['rewind_step']}: instability during training")
    ax.grid(alpha=0.3)
    style.save_figure(fig, path)
