"""The report as a reader sees it (#25 item 5), on a small showcase root
(tests/synthetic_runs.build_showcase(full=False): two pai sweeps of one network that
differ only in PaiHparams.scope, magnitude and random pruning scoring the same, a
one-panel ablation figure, an lmc run with alignment and soups, a training-speed run).

Without a browser: every figure title lies inside its figure (matplotlib's own text
extents, measured as the figure is written); runs and pai sweeps are labelled by the
settings that tell them apart; raw and aligned instability differ in colour and marker;
a line drawn on top of an equal one leaves it visible; every figure is in
report/figures/.  With headless Chromium (Debian's `chromium`, or CHROMIUM=/path;
skipped without it): at 1280 px no table runs past its box and nothing else sticks
out past the text column, measured by the browser's layout of the page
(benchmarks/report_screenshots.py, which also makes the screenshots for a person).
"""
import importlib.util
import os
import re

import numpy as np
import pytest

import synthetic_runs
from conftest import REPO
from tflottery.reporting import collect, groups, page
from tflottery.reporting.figures import style

_spec = importlib.util.spec_from_file_location(
    "report_screenshots", os.path.join(REPO, "benchmarks", "report_screenshots.py"))
report_screenshots = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report_screenshots)


def _titles(fig):
    texts = [fig._suptitle] + [t for ax in fig.axes if ax.get_visible()
                               for t in (ax.title, ax._left_title, ax._right_title)]
    return [t for t in texts if t is not None and t.get_text()]


def _clipped_titles(fig):
    """Titles not wholly inside the figure, or a suptitle running into an axes' title."""
    renderer = fig.canvas.get_renderer()
    box, out = fig.bbox, []
    for text in _titles(fig):
        b = text.get_window_extent(renderer)
        if b.x0 < box.x0 - 0.5 or b.x1 > box.x1 + 0.5 or b.y0 < box.y0 - 0.5 \
                or b.y1 > box.y1 + 0.5:
            out.append(f"{text.get_text()!r} spans x {b.x0:.0f}..{b.x1:.0f}, y {b.y0:.0f}.."
                       f"{b.y1:.0f} in a {box.width:.0f} x {box.height:.0f} figure")
    if fig._suptitle is not None and fig._suptitle.get_text():
        top = fig._suptitle.get_window_extent(renderer)
        out += [f"the suptitle runs into the title {t.get_text()!r}" for t in _titles(fig)
                if t is not fig._suptitle and t.get_window_extent(renderer).overlaps(top)]
    return out


def _data_lines(ax):
    return [line for line in ax.get_lines() if line.get_transform() is ax.transData
            and not line.get_label().startswith("_") and len(line.get_xdata())]


def _hidden_lines(ax):
    """(pairs of lines on top of each other -- at 90% of their points within 1.5% of the
    y range --, those of them where the later hides the earlier: drawn in the same line
    style, or with filled markers no larger)."""
    lines = _data_lines(ax)
    ys = [np.asarray(line.get_ydata(), float) for line in lines]
    span = max((float(np.nanmax(y) - np.nanmin(y)) for y in ys), default=0.0) or 1.0
    pairs, hidden = [], []
    for j, top in enumerate(lines):
        for i, below in enumerate(lines[:j]):
            xa, xb = np.asarray(top.get_xdata(), float), np.asarray(below.get_xdata(), float)
            if xa.shape != xb.shape or not np.allclose(xa, xb) or \
                    np.percentile(np.abs(ys[j] - ys[i]), 90) > 0.015 * span:
                continue
            pairs.append((below.get_label(), top.get_label()))
            see_through = top.get_linestyle() != below.get_linestyle() and (
                top.get_marker() in ("", "None", None) or
                (top.get_markerfacecolor() == "none"
                 and top.get_markersize() > below.get_markersize()))
            if not see_through:
                hidden.append(pairs[-1])
    return pairs, hidden


def _aligned_pairs(ax):
    """(raw label, aligned label, same colour, same marker) of each raw line and its
    aligned twin."""
    lines = {line.get_label(): line for line in _data_lines(ax)}
    out = []
    for label, line in lines.items():
        raw = lines.get(label[:-len(", aligned")]) if label.endswith(", aligned") else None
        if raw is not None:
            out.append((raw.get_label(), label,
                        np.allclose(style_rgb(raw.get_color()), style_rgb(line.get_color())),
                        raw.get_marker() == line.get_marker()))
    return out


def style_rgb(col):
    import matplotlib.colors as mcolors
    return mcolors.to_rgb(col)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The showcase's report, every figure inspected as it is written: {'root', 'out',
    'written', 'table', 'figures': {png name: {'clipped', 'pairs', 'hidden', 'aligned',
    'titles', 'lines'}}}."""
    root = str(tmp_path_factory.mktemp("browser") / "root")
    synthetic_runs.build_showcase(root, full=False)
    seen = {}
    original = style.save_figure

    def inspecting(fig, path, dpi=110, laid_out=False):
        if not laid_out:
            style.layout(fig)
        overlaps = [_hidden_lines(ax) for ax in fig.axes]
        seen[os.path.basename(path)] = {
            "clipped": _clipped_titles(fig),
            "pairs": [p for pairs, _ in overlaps for p in pairs],
            "hidden": [h for _, hidden in overlaps for h in hidden],
            "aligned": [p for ax in fig.axes for p in _aligned_pairs(ax)],
            "lines": {line.get_label(): [list(v) for v in line.get_data()]
                      for ax in fig.axes for line in _data_lines(ax)},
            "titles": [re.sub(r"\s+", " ", t.get_text()) for t in _titles(fig)]}
        original(fig, path, dpi, laid_out=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(style, "save_figure", inspecting)
        table = collect.collect(root)
        out = os.path.join(root, "report")
        written = page.write_report(table, out)
    return {"root": root, "out": out, "written": written, "table": table, "figures": seen}


def test_no_figure_title_is_clipped(report):
    figures = report["figures"]
    assert len(figures) >= 12 and any(name.startswith("pai_ablations") for name in figures)
    clipped = {name: found["clipped"] for name, found in figures.items() if found["clipped"]}
    assert clipped == {}


def test_runs_and_sweeps_are_labelled_by_the_settings_that_tell_them_apart(report):
    with open(report["written"]["markdown"]) as f:
        markdown = f.read()
    assert "settings 2" not in markdown and "settings_2" not in str(report["figures"])
    rows = [line.split(" | ") for line in markdown.splitlines() if line.startswith("| pai_")]
    settings = [row[3] for row in rows]
    assert len(rows) == 12 and len(set(settings)) == 12
    assert "method=synflow, scope=layerwise, target_sparsity=0.96" in settings
    labels = sorted(g["label"] for g in groups.pai_groups(report["table"]))
    assert labels == ["conv_2 on cifar10, pruned at 0it, scope=global",
                      "conv_2 on cifar10, pruned at 0it, scope=layerwise"]
    # Each figure of a sweep says which one it is in its title.
    titles = {name: " ".join(found["titles"]) for name, found in report["figures"].items()}
    for name, text in titles.items():
        if name.startswith(("pai_", "neuron_collapse", "layer_sparsity")):
            assert re.search(r"scope=(global|layerwise)", text), (name, text)
    # A figure of one run names it by its settings (here the only lmc run: by name alone).
    run = next(r for r in report["table"]["runs"] if r["run"] == "pai_0000700001")
    assert groups.run_title(report["table"], run) == \
        "pai_0000700001 (method=magnitude, scope=layerwise, target_sparsity=0.96)"
    assert "run lmc_3f9a8b7c6d, mean of 2" in titles["instability__lmc_3f9a8b7c6d.png"]


def test_raw_and_aligned_instability_differ_in_colour_and_marker(report):
    pairs = [p for name, found in report["figures"].items()
             if name.startswith(("instability", "interpolation")) for p in found["aligned"]]
    assert len(pairs) >= 4
    assert [p for p in pairs if p[2] or p[3]] == []


def test_a_line_on_top_of_an_equal_one_leaves_it_visible(report):
    pai = report["figures"]["pai_accuracy__conv_2_on_cifar10_pruned_at_0it_scope_layerwise.png"]
    assert ("magnitude", "random (on top of magnitude)") in pai["pairs"]
    hidden = {name: found["hidden"] for name, found in report["figures"].items()
              if found["hidden"]}
    assert hidden == {}


def test_pai_accuracy_draws_the_methods_without_their_ablations(report):
    """SynFlow's line is the mean of its own runs, not of them and their shuffled masks."""
    pai = report["figures"]["pai_accuracy__conv_2_on_cifar10_pruned_at_0it_scope_layerwise.png"]
    xs, ys = pai["lines"]["SynFlow"]
    assert np.allclose(ys, [100 * (0.79 - 0.1 * t ** 4 + 0.01) for t in (0.8, 0.96)])
    assert "1 replicate" in " ".join(pai["titles"])


def test_every_figure_is_under_report_figures(report):
    figure_dir = os.path.join(report["out"], page.FIGURE_DIR)
    assert any(os.path.basename(p).startswith("speed_") for p in report["written"]["figures"])
    assert [p for p in report["written"]["figures"]
            if os.path.dirname(p) != figure_dir] == []
    assert [f for f in os.listdir(report["out"]) if f.endswith((".png", ".pdf"))] == []
    with open(report["written"]["html"]) as f:
        sources = re.findall(r'<img [^>]*src="([^"]+)"', f.read())
    assert sources and [s for s in sources if not s.startswith("figures/")] == []


CHROMIUM = report_screenshots.find_chromium()


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium: apt-get install chromium "
                    "(or set CHROMIUM=/path/to/chrome) to check the page's layout")
def test_at_1280_px_no_table_or_title_runs_past_its_box(report):
    layout = report_screenshots.measure(report["written"]["html"], 1280, CHROMIUM)
    assert layout["viewport"] == 1280
    assert len(layout["tables"]) >= 8 and len(layout["images"]) >= 12
    assert any(t["heading"].startswith("Instability") for t in layout["tables"])
    assert report_screenshots.problems(layout) == []
