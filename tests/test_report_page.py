"""The report page and its command line: `python -m tflottery.report ROOT`
writes report.md and report.html referencing every figure, lists unreadable
files by name, includes the training-speed section (a failing one is a
problem, not a crash), and fails with exit status 2 and
one line for a missing root or a root without runs."""
import csv
import glob
import json
import os

import gin
import pytest

import synthetic_runs
from conftest import SMALL_RUN, run_module
from tflottery.reporting import collect, page


def run_report(*args, timeout=240):
    return run_module("tflottery.report", *args, timeout=timeout)


def test_markdown_to_html():
    md = ("# Title\n\nSome **bold** and `a<b>` text with [a link](x.pdf).\n\n"
          "| a | b \\| c |\n|---|---|\n| 1 | <2> |\n\n- one\n- two\n\n"
          "![fig](figures/f.png)\n\n<details markdown=\"1\"><summary>run x</summary>\n\n```\nA.b = '<c>'\n```"
          "\n\n</details>\n")
    html = page.to_html(md, "T")
    assert html.startswith("<!DOCTYPE html>") and "<title>T</title>" in html
    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong>" in html and "<code>a&lt;b&gt;</code>" in html
    assert '<a href="x.pdf">a link</a>' in html
    assert "<th>b | c</th>" in html and "<td>&lt;2&gt;</td>" in html
    assert "<li>one</li>\n<li>two</li>" in html
    assert '<img alt="fig" src="figures/f.png" />' in html
    # The collapsed config: Markdown inside <details markdown="1"> (md_in_html).
    assert "<summary>run x</summary>" in html and "</details>" in html
    assert "<pre><code>A.b = '&lt;c&gt;'\n</code></pre>" in html


def test_report_cli(tmp_path):
    """A root with a corrupt final.json, a truncated mask.npz and a run without
    config.gin (the whole synthetic root is reported in test_report_figures)."""
    full, root = tmp_path / "full", tmp_path / "root"
    expected = synthetic_runs.build(str(full))
    root.mkdir()
    for name in ("lottery_aaaaaaaaaa", "pai_badbadbad0", "train_9999999999"):
        os.rename(full / name, root / name)
    out = str(tmp_path / "out")
    result = run_report(str(root), f"--out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    md_path, html_path = os.path.join(out, "report.md"), os.path.join(out, "report.html")
    assert f"report: {md_path}" in result.stdout and f"report: {html_path}" in result.stdout
    md, html = open(md_path).read(), open(html_path).read()
    pictures = sorted(glob.glob(os.path.join(out, "figures", "*.png")))
    assert [os.path.basename(p) for p in pictures] == [
        "lottery_accuracy__lottery_aaaaaaaaaa.png",
        "pai_accuracy__lenet_300_100_on_cifar10_pruned_at_0it.png",
        "training_curves__lottery_aaaaaaaaaa.png"]
    for path in pictures + [p[:-4] + ".pdf" for p in pictures]:
        rel = os.path.relpath(path, out)
        assert os.path.exists(path) and rel in md and rel in html, rel
    # Unreadable files: named on stderr and in the page, and skipped.
    corrupt = [p.replace(str(full), str(root)) for p in expected["corrupt"]
               if "lottery_aaaaaaaaaa" in p or "pai_badbadbad0" in p]
    assert len(corrupt) == 2
    for path in corrupt:
        assert f"warning: skipped {path}" in result.stderr
        assert path in md
    assert "train_9999999999: no config.gin" in md
    with open(os.path.join(out, "results.csv")) as f:
        assert len(list(csv.DictReader(f))) == 2 * (1 + 7 + 6 * 5) - 1 + 1 + 1


def test_report_cli_fills_unset_settings_from_the_experiments_classes(tmp_path):
    """An old run's config.gin leaves DstHparams.grow unset: the report command line
    takes its default from DstHparams, which lives beside its experiment (#23)."""
    full, root = tmp_path / "full", tmp_path / "root"
    synthetic_runs.build(str(full))
    root.mkdir()
    os.rename(full / "dst_1111111111", root / "dst_1111111111")
    out = str(tmp_path / "out")
    result = run_report(str(root), f"--out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| dst_1111111111 | RigL | conv_2 on cifar10 |" in open(
        os.path.join(out, "report.md")).read()


def test_errors_are_one_line_with_status_2(tmp_path, capsys):
    """Run in-process (the exit status is what sys.exit gets; absl passes it on)."""
    from absl import flags
    from tflottery import report
    flags.FLAGS(["report"])
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    for root, message in ((tmp_path / "nope", f"error: no such directory {tmp_path}/nope"),
                          (tmp_path / "empty", f"error: {tmp_path}/empty holds no runs")):
        with pytest.raises(SystemExit) as exit_:
            report.main(["report", str(root)])
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(message)
    assert not (tmp_path / "empty" / "report").exists()


@pytest.fixture
def small_table(tmp_path):
    root = tmp_path / "root"
    synthetic_runs.build(str(root))
    keep = tmp_path / "keep"
    keep.mkdir()
    os.rename(root / "train_ffffffffff", keep / "train_ffffffffff")
    return collect.collect(str(keep))


def _fake_speed(monkeypatch, report_section):
    monkeypatch.setattr(page.speed, "report_section", report_section)


def test_speed_section_is_included(monkeypatch, small_table, tmp_path):
    seen = {}

    def report_section(table, out_dir, page_dir=None):
        seen["rows"] = len(table["rows"])
        seen["dirs"] = (out_dir, page_dir)
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "speed_dilation.png")
        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n")
        return "### Dilation\n\nThe smallest dilation factor is **0.6**.", [path]
    _fake_speed(monkeypatch, report_section)
    written = page.write_report(small_table, str(tmp_path / "out"))
    md = open(written["markdown"]).read()
    html = open(written["html"]).read()
    assert seen["rows"] == 2
    # The speed figures go with the others into figures/, linked from the page's directory.
    assert seen["dirs"] == (str(tmp_path / "out" / "figures"), str(tmp_path / "out"))
    assert "## Training speed" in md and "smallest dilation factor is **0.6**" in md
    assert "![speed_dilation.png](figures/speed_dilation.png)" in md
    assert 'src="figures/speed_dilation.png"' in html and "<strong>0.6</strong>" in html
    assert written["figures"][-1].endswith("speed_dilation.png")


def test_failing_speed_section_is_a_problem_not_a_crash(monkeypatch, small_table, tmp_path):
    def report_section(table, out_dir, page_dir=None):
        raise ValueError("no holdout")
    _fake_speed(monkeypatch, report_section)
    written = page.write_report(small_table, str(tmp_path / "out"))
    assert "report_section failed: no holdout" in open(written["markdown"]).read()


def test_real_lottery_run_then_report(tmp_path):
    """End to end: a tiny real IMP run (1 level + random reinit), then the CLI."""
    from tflottery import gin_files, runner
    gin.clear_config()
    try:
        gin_files.parse([], SMALL_RUN + ["ExperimentHparams.name = 'lottery'",
                                         "PruningHparams.levels = 1",
                                         "BranchHparams.names = ('random_reinit',)"])
        runner.run(str(tmp_path / "runs"))
    finally:
        gin.clear_config()
    result = run_report(str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "runs" / "report"
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "lottery_*"))
    run = os.path.basename(run_dir)
    for name in (f"lottery_accuracy__{run}", f"training_curves__{run}"):
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{name}.{ext}").exists()
    data = json.load(open(out / "results.json"))
    phases = sorted(r["phase"] for r in data["rows"])
    assert phases == ["level_0/train", "level_1/branch_random_reinit/train", "level_1/train",
                      "pretrain"]
    assert all(r["status"] == "done" and 0 <= r["test_accuracy"] <= 1 for r in data["rows"])
    assert [r["density"] for r in data["rows"] if r["phase"] == "level_1/train"] == \
        [pytest.approx(0.8, abs=1e-3)]
    assert data["problems"] == [] and data["runs"][0]["status"] == "done"
    assert f"| {run} | lottery | lenet_300_100 on synthetic | - | 1 | 4 | 0 |" in open(
        out / "report.md").read()
