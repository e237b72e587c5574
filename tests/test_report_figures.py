"""Every report figure from the synthetic root: written as PNG and PDF under
the expected names, and nothing (no file, no error) when its data is absent."""
import os
import sys

import pytest

import synthetic_runs
from tflottery.reporting import collect, figures, page
from tflottery.reporting.figures import accuracy, lmc, pai, training

PNG, PDF = b"\x89PNG\r\n\x1a\n", b"%PDF"
GROUP = "conv_2_on_cifar10_pruned_at_0it"
EXPECTED = {
    "lottery_accuracy": ["lottery_accuracy__lottery_aaaaaaaaaa",
                         "lottery_accuracy__lottery_bbbbbbbbbb",
                         "lottery_accuracy__lottery_0123456789"],
    "lottery_comparison": ["lottery_comparison__conv_2_on_cifar10"],
    "training_curves": ["training_curves__lottery_aaaaaaaaaa",
                        "training_curves__lottery_bbbbbbbbbb",
                        "training_curves__lottery_0123456789"],
    # the run with the truncated mask trains another network: its own group
    "pai_accuracy": [f"pai_accuracy__{GROUP}",
                     "pai_accuracy__lenet_300_100_on_cifar10_pruned_at_0it"],
    "pai_ablations": [f"pai_ablations__{GROUP}"],
    "interpolation": ["interpolation__lmc_cccccccccc_level_2",
                      "interpolation__lmc_cccccccccc_level_4", "interpolation__lmc_dddddddddd"],
    "instability_vs_k": ["instability__lmc_cccccccccc", "instability__lmc_dddddddddd"],
    "stable_k_vs_sparsity": ["stable_k__lmc_cccccccccc"],
    "dynamic_accuracy": ["dynamic_accuracy__conv_2_on_cifar10"],
    "dynamic_imp_phases": ["dynamic_imp_phases__dynamic_imp_2222222222"],
    "layer_sparsity": [f"layer_sparsity__{GROUP}"],
    "neuron_collapse": [f"neuron_collapse__{GROUP}"],
}


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """The whole report of the synthetic root, written in-process (without a
    speed section, so that only this package's code is under test)."""
    root = str(tmp_path_factory.mktemp("root"))
    synthetic_runs.build(root)
    table = collect.collect(root)
    out = str(tmp_path_factory.mktemp("report"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "tflottery.reporting.speed", None)
        written = page.write_report(table, out)
    return table, os.path.join(out, page.FIGURE_DIR), written


def test_every_figure_is_drawn_as_png_and_pdf(drawn):
    table, out, written = drawn
    assert not [p for p in table["problems"] if "figure failed" in p["error"]]
    want = [os.path.join(out, name + ext) for names in EXPECTED.values() for name in names
            for ext in (".png", ".pdf")]
    assert sorted(written["figures"]) == sorted(want)
    for path in want:
        with open(path, "rb") as f:
            assert f.read(4) == (PNG if path.endswith(".png") else PDF)[:4], path


def test_page_references_every_figure_and_has_the_tables(drawn):
    table, out, written = drawn
    md, html = open(written["markdown"]).read(), open(written["html"]).read()
    for path in written["figures"]:
        rel = os.path.relpath(path, os.path.dirname(written["markdown"]))
        assert rel in md and f'"{rel}"' in html, rel
    for _, title, caption, _, _ in figures.FIGURES:
        assert f"### {title}" in md and caption in md
    lottery = [l for l in md.splitlines()
               if l.startswith("| lottery_aaaaaaaaaa |") and "| IMP |" in l]
    # dense (0.800 + 0.802) / 2; every level matching -> sparsity 1 - 0.8^6
    assert lottery and "| IMP | 500it | 2 | 7 | 80.10 | 73.79 | 0.2 |" in lottery[0]
    assert "| lmc_cccccccccc | conv_2 on cifar10 | imp | 2 | 64.00 | 2 |" in md
    assert "| SNIP | 79.95 (79.90-80.00) |" in md and "| ↳ layerwise shuffle |" in md
    assert "| gradual magnitude |" in md                     # joins the pai table
    assert "| dst_1111111111 | RigL | conv_2 on cifar10 | 1 | 10.00 | 79.00 | 40.0 | - |" in md
    assert ("| dynamic_imp_2222222222 | dynamic imp (regrow=gradient) | conv_2 on cifar10 | 1 | "
            "10.00 | 80.00 | 30.0 | 30.0 |") in md
    assert md.count("<details markdown=\"1\">") == len(table["runs"]) == html.count("<details>")
    # No holdout metrics and no dilated branch: the section says so (its own reader used to
    # fail on the corrupt final.json instead; it reads the collector's rows now, #23).
    assert "## Training speed (thesis 3.3.6)\n\nNo training-speed data" in md
    assert "report_section failed" not in md
    for problem in table["problems"]:
        assert problem["file"] in md


def test_lottery_figures_count_only_finished_levels(drawn):
    table, _, _ = drawn
    from tflottery.reporting import groups
    levels = groups.lottery_levels(table, "lottery_0123456789")
    assert [e["level"] for e in levels] == [0]          # level 1 is partial
    levels = groups.lottery_levels(table, "lottery_aaaaaaaaaa")
    assert levels[6]["branches"]["inverted"]["n"] == 1   # the corrupt replicate is skipped
    assert levels[6]["imp"]["n"] == 2


EMPTY = {"root": "/nowhere", "runs": [], "rows": [], "instability": [], "statistics": [],
         "problems": [], "notes": []}


@pytest.mark.parametrize("function", [f for _, _, _, f, _ in figures.FIGURES],
                         ids=[k for k, _, _, _, _ in figures.FIGURES])
def test_nothing_drawn_without_data(tmp_path, function):
    assert function(dict(EMPTY), str(tmp_path / "out")) == []
    assert not (tmp_path / "out").exists()


def test_draw_all_says_why_a_figure_is_missing(tmp_path, caplog):
    with caplog.at_level("INFO", logger="absl"):
        assert figures.draw_all(dict(EMPTY), str(tmp_path / "out")) == []
    skipped = [r.getMessage() for r in caplog.records if " skipped: " in r.getMessage()]
    assert skipped == [f"figure {kind} skipped: {needs}"
                       for kind, _, _, _, needs in figures.FIGURES]


def test_only_lottery_runs_give_no_lmc_or_pai_figures(drawn, tmp_path):
    table, _, _ = drawn
    only = dict(table, runs=[r for r in table["runs"] if r["experiment"] == "lottery"],
                rows=[r for r in table["rows"] if r["experiment"] == "lottery"],
                instability=[], statistics=[])
    out = str(tmp_path)
    for function in (accuracy.pai_accuracy, accuracy.pai_ablations, lmc.interpolation,
                     lmc.instability_vs_k, lmc.stable_k_vs_sparsity, pai.layer_sparsity,
                     pai.neuron_collapse):
        assert function(only, out) == []
    assert training.training_curves(only, out)
    assert sorted(os.listdir(out)) == sorted(
        f"training_curves__{r}.{e}" for r in ("lottery_0123456789", "lottery_aaaaaaaaaa",
                                              "lottery_bbbbbbbbbb") for e in ("png", "pdf"))


def test_dense_lmc_alone_has_no_stable_k_figure(drawn, tmp_path):
    table, _, _ = drawn
    dense = dict(table, runs=[r for r in table["runs"] if r["run"] == "lmc_dddddddddd"],
                 instability=[r for r in table["instability"] if r["run"] == "lmc_dddddddddd"])
    assert lmc.stable_k_vs_sparsity(dense, str(tmp_path)) == []
    assert len(lmc.instability_vs_k(dense, str(tmp_path))) == 2


def test_training_curves_show_every_level(drawn, tmp_path, monkeypatch):
    """One panel per level (7 here, more than the six the figure used to keep)."""
    table, _, _ = drawn
    figs = []
    monkeypatch.setattr(training.style, "save", lambda fig, out, name: figs.append(fig) or [])
    run = [r for r in table["runs"] if r["run"] == "lottery_aaaaaaaaaa"]
    training.training_curves(dict(table, runs=run), str(tmp_path))
    (fig,) = figs
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [t.split(":")[0] for t in titles] == [f"level {l}" for l in range(7)]
    assert titles[6] == "level 6: 26.2% remaining"
    labels = {t.get_text() for t in fig.legends[0].get_texts()}
    assert labels == {"IMP", "dense (level 0)", "random reinit"}


def test_summary_png_is_the_reports_accuracy_figure_titled_by_what_sets_the_run_apart(drawn):
    """The run directory's summary.png is the report's figure of that run drawn from the
    run directory alone; in the report, beside the other lottery runs, its title names the
    settings that tell it apart (#25 item 5), not only the hash."""
    from tflottery.reporting import summary
    table, figure_dir, _ = drawn
    (run,) = [r for r in table["runs"] if r["run"] == "lottery_aaaaaaaaaa"]
    png = summary.plot_run(run["run_dir"])
    assert png == os.path.join(run["run_dir"], "summary.png")
    alone = collect.collect(run["run_dir"])
    title = accuracy.lottery_accuracy_figure(alone, alone["runs"][0]).axes[0].get_title()
    assert title.endswith("run lottery_aaaaaaaaaa, mean of 2 replicates, bands min-max")
    in_report = accuracy.lottery_accuracy_figure(table, run).axes[0].get_title()
    assert "run lottery_aaaaaaaaaa (" in in_report and "rewind_step=500it" in in_report, in_report


def test_imp_reference_lines_of_the_dynamic_figure_are_labelled_by_their_settings(
        drawn, monkeypatch):
    """The dotted IMP lines beside RigL/SET/Dynamic IMP name each lottery run by the
    settings that tell it apart (#25 item 5), not by its hash."""
    from tflottery.reporting import ginconfig, groups
    from tflottery.reporting.figures import dynamic, style
    table, _, _ = drawn
    figs = []
    monkeypatch.setattr(style, "save", lambda fig, out_dir, name: figs.append(fig) or [name])
    dynamic.dynamic_accuracy(table, "unused")
    labels = [t.get_text().replace("\n", " ") for fig in figs for ax in fig.axes for t in
              (ax.get_legend().get_texts() if ax.get_legend() else [])
              if t.get_text().startswith("IMP, rewound to")]
    lottery = [r for r in table["runs"] if r["experiment"] == "lottery"]
    assert len(labels) == len(lottery) == 3
    assert not [label for label in labels if any(r["run"] in label for r in lottery)], labels
    assert sorted(labels) == sorted(
        f"IMP, rewound to {ginconfig.lookup(r['_values'], 'LotteryHparams.rewind_step')} "
        f"({groups.run_label(table, r)})" for r in lottery)
