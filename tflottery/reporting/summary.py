"""The IMP summary table of a run: per level, density and accuracy of IMP and
of each branch over the replicates, which are *matching* the dense network,
the highest matching sparsity, and where IMP is non-trivial (matching where
random pruning is not).

Everything is read back from the run directory, so the table can be rebuilt
at any time (`python -m tflottery.report RUN_DIR`) and covers every
replicate that has run so far.  At the end of a run, the files of the run's
own levels and branches have just been checked and remade if damaged
(runs/damage.py); a damaged file the run did not cover (another replicate,
a level or branch not asked for this time) is left out of the table with a
warning that says which run remakes it.  The run's summary.png is the report's
accuracy-against-density figure of the run (figures/accuracy.py): one rendering.
"""
from typing import Dict, Optional

from tflottery.reporting.groups import (RANDOM_PRUNING_BRANCHES, accuracy_text as _acc,
                                        judge_levels, pct as _pct, spread as _stats)
from tflottery.reporting.tables import md_table
from tflottery.reporting.collect import listdir, numbered, read_or_warn
from tflottery.runs import io, layout


def _accuracy(phase_dir: str):
    return read_or_warn(layout.file(phase_dir, layout.FINAL), "test_accuracy")


def _density(directory: str):
    return read_or_warn(layout.file(layout.mask_dir(directory), layout.MASK_REPORT),
                        "total", "density")


def summarize(run_dir: str, matching_tolerance: float = 0.2) -> dict:
    """Collect every finished level and branch of every replicate in `run_dir`."""
    per_level: Dict[int, dict] = {}
    for _, rep_dir in numbered(run_dir, layout.REPLICATE):
        for level, level_dir in numbered(rep_dir, layout.LEVEL):
            accuracy = _accuracy(layout.train_dir(level_dir))
            if accuracy is None:
                continue
            entry = per_level.setdefault(level, {"imp": [], "densities": [], "branches": {}})
            entry["imp"].append(accuracy)
            entry["densities"].append(_density(level_dir))
            for name in listdir(level_dir):
                accuracy = _accuracy(layout.train_dir(layout.join(level_dir, name))) \
                    if name.startswith(layout.BRANCH) else None
                if accuracy is not None:
                    entry["branches"].setdefault(name[len(layout.BRANCH):], []).append(accuracy)
    rows = []
    for level in sorted(per_level):
        entry = per_level[level]
        densities = [d for d in entry["densities"] if d is not None]
        density = sum(densities) / len(densities) if densities else None
        rows.append({"level": level, "density": density,
                     "sparsity": None if density is None else 1.0 - density,
                     "imp": _stats(entry["imp"]),
                     "branches": {n: _stats(v) for n, v in sorted(entry["branches"].items())}})
    judged = judge_levels(rows, matching_tolerance)     # nothing without a level 0
    return {"levels": rows if judged["dense"] is not None else [],
            "dense_accuracy": judged["dense"], "matching_tolerance": matching_tolerance,
            "highest_matching_sparsity": judged["highest"],
            "nontrivial_levels": judged["nontrivial"]}


def to_markdown(table: dict) -> str:
    if not table["levels"]:
        return "(no finished levels yet)"
    names = sorted({n for r in table["levels"] for n in r["branches"]})
    n = max(r["imp"]["n"] for r in table["levels"])
    return "\n".join([
        md_table(["level", "density %", "IMP acc % (min-max)"] + [f"{n} %" for n in names],
                 [[r["level"], _pct(r["density"]), _acc(r["imp"])] +
                  [_acc(r["branches"].get(n)) for n in names] for r in table["levels"]]), "",
        f"Dense accuracy {_pct(table['dense_accuracy'])}% (mean of {n} replicate(s)); "
        f"✓ = matching (mean within {table['matching_tolerance']} points of dense).",
        f"Highest matching sparsity: {_pct(table['highest_matching_sparsity'])}%. "
        f"IMP non-trivial (matching where random pruning is not) at levels: "
        f"{nontrivial_text(table)}."])


def nontrivial_text(table: dict) -> str:
    """The levels where IMP is non-trivial; 'not measured' when no random-pruning
    branch ran at a level IMP matches (no comparison is not a negative result)."""
    compared = [r for r in table["levels"] if r["imp"]["matching"] and any(
        b in r["branches"] for b in RANDOM_PRUNING_BRANCHES)]
    if not compared:
        return ("not measured (no " + " or ".join(RANDOM_PRUNING_BRANCHES) +
                " branch at a matching level)")
    return str(table["nontrivial_levels"] or "none")


def write(run_dir: str, table: dict, name: str = layout.RUN_SUMMARY, markdown=to_markdown) -> None:
    """<name>.json and .md of a run's summary table (the lmc summary's too)."""
    io.atomic_write_json(layout.file(run_dir, name + ".json"), table)
    io.atomic_write_text(layout.file(run_dir, name + ".md"), markdown(table) + "\n")


def prepare() -> None:
    """Import matplotlib and save a first figure (plot_run's slow first time); the runner
    calls this in a background thread while the run trains (runner.prepare_end_of_run)."""
    from tflottery.reporting.figures import style
    style.warm()


def plot_run(run_dir: str) -> Optional[str]:
    """Write run_dir/summary.png and .pdf, drawn from the run directory as the report
    collects it; return the PNG's path (None if no level has finished)."""
    from tflottery.reporting import collect, groups
    from tflottery.reporting.figures import accuracy, style
    collected = collect.collect(run_dir)
    runs = groups.runs_of(collected, "lottery")
    fig = accuracy.lottery_accuracy_figure(collected, runs[0]) if runs else None
    return None if fig is None else style.save(fig, run_dir, "summary")[0]


def end_of_run(run_dir: str, settings: dict, writable: bool = True) -> Optional[dict]:
    """A lottery run's end (its ReportSpec.end_of_run): summary.json/md/png of every
    replicate so far, the table printed; returns the table."""
    table = summarize(run_dir, settings.get("SummaryHparams.matching_tolerance", 0.2))
    if writable:
        write(run_dir, table)
        plot_run(run_dir)
    print(to_markdown(table), flush=True)
    return table
