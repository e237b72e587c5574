"""Rebuild and print the summary of a lottery run directory.

    python -m tflottery.report RUN_DIR [--matching_tolerance=0.2]

Reads every finished level and branch of every replicate under RUN_DIR,
writes summary.json, summary.md and summary.png there, and prints the table.
"""
import sys

import tflottery  # noqa: F401

from absl import app, flags

from tflottery.reporting import plots, summary
from tflottery.runs import io

FLAGS = flags.FLAGS
flags.DEFINE_float("matching_tolerance", None, "percentage points below dense still "
                   "'matching'; default: the run's own (from its summary.json), else 0.2")


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("usage: python -m tflottery.report RUN_DIR")
    run_dir = argv[1]
    if not io.exists(run_dir):
        print(f"error: no run directory {run_dir}", file=sys.stderr)
        sys.exit(2)
    tolerance = FLAGS.matching_tolerance
    previous = f"{run_dir}/summary.json"
    if tolerance is None:
        tolerance = io.read_json(previous)["matching_tolerance"] if io.exists(previous) else 0.2
    table = summary.summarize(run_dir, tolerance)
    if not table["levels"]:
        print(f"error: {run_dir} has no finished lottery levels", file=sys.stderr)
        sys.exit(2)
    summary.write(run_dir, table)
    plots.plot_run(run_dir, table)
    print(summary.to_markdown(table))


if __name__ == "__main__":
    app.run(main)
