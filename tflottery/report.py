"""A report of everything under a root directory of runs (or of one run).

    python -m tflottery.report ROOT_OR_RUN_DIR [--out DIR] [--matching_tolerance=0.2]

Collects every run below ROOT_OR_RUN_DIR (any mix of experiments,
replicates, levels, branches; partial runs included), draws every figure
the results support, and writes into DIR (default ROOT_OR_RUN_DIR/report):

    report.md, report.html      the page: tables, figures, configs
    figures/*.png|pdf           the figures
    results.json, results.csv   one row per training phase (+ instability.csv)

Given a single lottery run directory it also rebuilds that run's
summary.json, summary.md and summary.png, and prints its table, as before.
Unreadable result files are listed on stderr and skipped.
"""
import os
import sys

import tflottery  # noqa: F401
from tflottery import tf_import

tf_import.import_tensorflow()   # its start-up banner once, not twice

from absl import app, flags  # noqa: E402

# The experiments' own hyperparameter classes (PaiHparams, DstHparams, ...) give the
# defaults that a run's config.gin leaves out; reporting finds them by name in
# tflottery.hparams once they are defined.  The command line imports them here, so
# that the reporting package itself imports no experiment.
import tflottery.experiments  # noqa: E402,F401
from tflottery.reporting import collect, page, summary  # noqa: E402
from tflottery.runs import io, layout  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_float("matching_tolerance", None, "percentage points below dense still "
                   "'matching'; default: each run's own (SummaryHparams), else 0.2")
flags.DEFINE_string("out", None, "where to write the report; default ROOT_OR_RUN_DIR/report")


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _lottery_summary(run_dir: str, table: dict) -> None:
    """The single-run behaviour: rebuild summary.json/md/png and print the table."""
    tolerance = FLAGS.matching_tolerance
    previous = layout.file(run_dir, layout.RUN_SUMMARY + ".json")
    try:
        if tolerance is None and io.exists(previous):
            tolerance = io.read_json(previous)["matching_tolerance"]
        if tolerance is None:
            tolerance = float(collect.run_values(table, table["runs"][0]["run"]).get(
                "SummaryHparams.matching_tolerance", 0.2))
        result = summary.summarize(run_dir, tolerance)
    except Exception as err:  # noqa: BLE001 -- a damaged file: the report still runs
        table["problems"].append({"file": run_dir, "error": f"run summary not rebuilt: {err}"})
        return
    if not result["levels"]:
        print(f"{run_dir} has no finished lottery levels yet", file=sys.stderr)
        return
    summary.write(run_dir, result)
    summary.plot_run(run_dir)
    print(summary.to_markdown(result))


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("usage: python -m tflottery.report ROOT_OR_RUN_DIR [--out DIR]")
    root = argv[1].rstrip("/") or "/"
    if not io.exists(root):
        _fail(f"no such directory {root}")
    table = collect.collect(root)
    if not table["runs"]:
        _fail(f"{root} holds no runs (no directory with config.gin or replicate_* below it)")
    if FLAGS.matching_tolerance is not None:
        table["overrides"] = {"matching_tolerance": FLAGS.matching_tolerance}
    if len(table["runs"]) == 1 and table["runs"][0]["run_dir"] == root and \
            table["runs"][0]["experiment"] == "lottery":
        _lottery_summary(root, table)
    out_dir = FLAGS.out or os.path.join(root, "report")
    written = page.write_report(table, out_dir)
    for problem in table["problems"]:
        print(f"warning: skipped {problem['file']}: {problem['error']}", file=sys.stderr)
    print(f"report: {written['markdown']}")
    print(f"report: {written['html']}")
    print(f"figures: {len(written['figures'])} files in {os.path.join(out_dir, page.FIGURE_DIR)}")
    print("tables: " + ", ".join(written["data"]))


if __name__ == "__main__":
    app.run(main)
