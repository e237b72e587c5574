"""Summaries of instability analyses: per rewinding step k, the test and
train error barriers (mean and standard deviation over replicates), whether
training from k is stable, whether the subnetwork is matching, and the
earliest stable and matching k (median over replicates, thesis Figure 4-18);
plus the plot of the error along the linear path."""
import glob
import io as _io
import os
import re

import numpy as np

from tflottery.runs import io


def _records(run_dir: str):
    """{replicate: {k: instability.json record}}."""
    out = {}
    for path in glob.glob(os.path.join(run_dir, "replicate_*", "k_*", "instability.json")):
        k_dir = os.path.dirname(path)
        rep = int(re.fullmatch(r"replicate_(\d+)", os.path.basename(os.path.dirname(k_dir)))[1])
        out.setdefault(rep, {})[int(os.path.basename(k_dir)[2:])] = io.read_json(path)
    return out


def _median_earliest(per_replicate):
    """Median over replicates of the earliest k; a replicate that never
    reaches it counts as +infinity (None if the median is never reached)."""
    values = [np.inf if v is None else v for v in per_replicate]
    if not values:
        return None
    median = float(np.median(values))
    return None if not np.isfinite(median) else median


def summarize(run_dir: str, summary_hp) -> dict:
    records = _records(run_dir)
    threshold = summary_hp.stability_threshold / 100.0
    tolerance = summary_hp.matching_tolerance / 100.0
    ks = sorted({k for reps in records.values() for k in reps})
    rows = []
    for k in ks:
        recs = [reps[k] for reps in records.values() if k in reps]
        test = [r["barrier"]["test"] for r in recs]
        train = [r["barrier"]["train"] for r in recs]
        acc = [float(np.mean(r["end_accuracy"])) for r in recs]
        dense = [r["dense_accuracy"] for r in recs if r.get("dense_accuracy") is not None]
        row = {"k": k, "rewind_step": recs[0]["rewind_step"], "n": len(recs),
               "density": float(np.mean([r["density"] for r in recs])),
               "test_barrier_mean": float(np.mean(test)), "test_barrier_std": float(np.std(test)),
               "train_barrier_mean": float(np.mean(train)),
               "train_barrier_std": float(np.std(train)),
               "accuracy_mean": float(np.mean(acc)),
               "stable": bool(np.mean(test) < threshold)}
        row["matching"] = (bool(np.mean(acc) >= np.mean(dense) - tolerance) if dense else None)
        rows.append(row)

    def earliest(pred):
        per_rep = []
        for reps in records.values():
            hits = [k for k in sorted(reps) if pred(reps[k])]
            per_rep.append(hits[0] if hits else None)
        return _median_earliest(per_rep)

    stable_k = earliest(lambda r: r["barrier"]["test"] < threshold)
    matching_k = earliest(lambda r: r.get("dense_accuracy") is not None and
                          np.mean(r["end_accuracy"]) >= r["dense_accuracy"] - tolerance)
    return {"rows": rows, "stability_threshold": summary_hp.stability_threshold,
            "matching_tolerance": summary_hp.matching_tolerance,
            "earliest_stable_k": stable_k, "earliest_matching_k": matching_k}


def to_markdown(table: dict) -> str:
    if not table["rows"]:
        return "(no finished instability analyses yet)"
    lines = ["| k (it) | step | density % | test instability (points) | train instability "
             "(points) | accuracy % | stable | matching |", "|---|---|---|---|---|---|---|---|"]
    for r in table["rows"]:
        match = "-" if r["matching"] is None else ("yes" if r["matching"] else "no")
        lines.append(
            f"| {r['k']} | {r['rewind_step']} | {100 * r['density']:.2f} | "
            f"{100 * r['test_barrier_mean']:.2f} ± {100 * r['test_barrier_std']:.2f} | "
            f"{100 * r['train_barrier_mean']:.2f} ± {100 * r['train_barrier_std']:.2f} | "
            f"{100 * r['accuracy_mean']:.2f} | {'yes' if r['stable'] else 'no'} | {match} |")
    lines.append("")
    lines.append(f"Stable: test instability below {table['stability_threshold']} points "
                 f"(mean over {max(r['n'] for r in table['rows'])} replicate(s)). "
                 f"Earliest stable k (median over replicates): {table['earliest_stable_k']}; "
                 f"earliest matching k: {table['earliest_matching_k']}.")
    return "\n".join(lines)


def write(run_dir: str, table: dict) -> None:
    io.atomic_write_json(os.path.join(run_dir, "instability_summary.json"), table)
    io.atomic_write_text(os.path.join(run_dir, "instability_summary.md"),
                         to_markdown(table) + "\n")


def plot_curves(path: str, result: dict) -> None:
    """Test and train error along the linear path between the two copies."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for split, curve in result["curves"].items():
        ax.plot(curve["alpha"], [100 * e for e in curve["error"]], marker="o", ms=3,
                label=f"{split} (instability {100 * result['barrier'][split]:.2f})")
    ax.set_xlabel("interpolation alpha")
    ax.set_ylabel("error (%)")
    ax.set_title(f"k = {result['rewind_step']}, density {100 * result['density']:.1f}%")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    io.atomic_write_bytes(path, buffer.getvalue())
