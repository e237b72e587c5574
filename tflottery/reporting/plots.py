"""The run directory's summary.png.

summary.png is the report's accuracy-against-density figure of the run
(figures/accuracy.py, lottery_accuracy_figure): one rendering, drawn from
the run directory as `python -m tflottery.report` would collect it.
"""


def plot_run(run_dir: str, table: dict = None) -> str:
    """Write run_dir/summary.png; return its path (None if no level has finished).

    `table` (a summary.summarize table) is not needed: the figure is drawn
    from the run directory itself, like the report's."""
    from tflottery.reporting import collect, groups
    from tflottery.reporting.figures import accuracy, style
    collected = collect.collect(run_dir)
    runs = groups.runs_of(collected, "lottery")
    fig = accuracy.lottery_accuracy_figure(collected, runs[0]) if runs else None
    if fig is None:
        return None
    return style.save(fig, run_dir, "summary")[0]       # summary.png and summary.pdf
