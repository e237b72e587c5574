"""One report page (report.md + report.html) for everything under a root.

The page puts together what a reader needs to judge a sweep without the
code: what ran and how far it got, the summary tables, every figure the
results support (with a caption saying what it shows), the training-speed
section (reporting/speed.py; its failure is a problem, not a crash), each run's config
(collapsed), and the files that could not be read.
"""
import html
import os
import posixpath
from typing import List, Tuple

import markdown as python_markdown
from absl import logging

from tflottery.reporting import collect, figures, speed, tables
from tflottery.runs import io

FIGURE_DIR = "figures"
# tables: pipe tables; fenced_code: the configs; md_in_html: Markdown inside the
# collapsed <details markdown="1"> blocks.
MARKDOWN_EXTENSIONS = ("tables", "fenced_code", "md_in_html")
_STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1, h2, h3 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
.table-box { max-width: 100%; overflow-x: auto; margin: .8em 0; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left;
         overflow-wrap: break-word; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; box-sizing: border-box; border: 1px solid #eee; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: 0.85em; }
code { background: #f3f3f3; padding: 0 .2em; }
details { margin: .4em 0; }
summary { cursor: pointer; }
"""


def to_html(markdown: str, title: str) -> str:
    """The report's Markdown as one self-contained HTML page (python-markdown)."""
    body = python_markdown.markdown(markdown, extensions=list(MARKDOWN_EXTENSIONS))
    # Each table in a box of the text column's width that scrolls sideways: a table
    # wider than the window scrolls inside it instead of running past the page's edge.
    body = body.replace("<table>", '<div class="table-box">\n<table>').replace(
        "</table>", "</table>\n</div>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            f"{body}\n</body>\n</html>\n")


def speed_section(table: dict, out_dir: str) -> Tuple[str, List[str]]:
    """(markdown, figure paths) of speed.report_section, its figures in out_dir/figures
    with the others; ('', []) if it fails."""
    try:
        markdown, paths = speed.report_section(table, os.path.join(out_dir, FIGURE_DIR),
                                               page_dir=out_dir)
    except Exception as err:  # noqa: BLE001 -- its failure must not cost the report
        logging.warning("speed section failed: %s", err)
        table["problems"].append({"file": "tflottery/reporting/speed.py",
                                  "error": f"report_section failed: {err}"})
        return "", []
    return markdown or "", list(paths or [])


def _figure_markdown(entry: dict, out_dir: str) -> str:
    lines = [f"### {entry['title']}", "", entry["caption"], ""]
    pngs = [p for p in entry["files"] if p.endswith(".png")]
    for png in pngs:
        rel = tables.link(png, out_dir)
        pdf = png[:-4] + ".pdf"
        name = posixpath.basename(rel)[:-4]
        lines += [f"![{name}]({rel})", "", f"`{name}` ([PNG]({rel})" + (
            f", [PDF]({tables.link(pdf, out_dir)}))" if pdf in entry["files"] else ")"), ""]
    return "\n".join(lines)


def _config_markdown(table: dict) -> str:
    parts = []
    for run in table["runs"]:
        what = run.get("config_text_file") or "no config.gin"
        text = run.get("config_text") or "(no configuration file)"
        summary = html.escape(f"{run['run']} ({run['experiment']}, {what})")
        parts.append(f"<details markdown=\"1\"><summary>{summary}</summary>"
                     f"\n\n```\n{text.rstrip()}\n```\n\n</details>")
    return "\n\n".join(parts)


def build_markdown(table: dict, drawn: List[dict], speed: Tuple[str, List[str]],
                   out_dir: str, data_files: List[str]) -> str:
    root = table["root"]
    sections = [f"# Report: {root}", "",
                f"{len(table['runs'])} run(s), "
                f"{sum(r['status'] == 'done' for r in table['rows'])} finished training "
                f"phase(s), {sum(r['status'] == 'partial' for r in table['rows'])} partial. "
                "Accuracies are test accuracies in %. Tables of every phase: " +
                ", ".join(f"[{posixpath.basename(p)}]({tables.link(p, out_dir)})" for p in data_files)
                + ".", "", "## Runs", "", tables.runs_overview(table), ""]
    for title, text in (("Lottery runs: highest matching sparsity", tables.lottery_summary),
                        ("Instability: earliest stable and matching rewinding step",
                         tables.lmc_summary),
                        ("Pruning at initialisation: accuracy by method and sparsity",
                         tables.pai_summary),
                        ("Dynamic sparsity: RigL, SET and Dynamic IMP", tables.dynamic_summary),
                        ("Dense and gradual-pruning runs", tables.train_summary)):
        body = text(table)
        if body:
            sections += [f"## {title}", "", body, ""]
    speed_md, speed_paths = speed
    if speed_md or speed_paths:
        heading = [] if speed_md.lstrip().startswith("## ") else ["## Training speed", ""]
        sections += heading + [speed_md.strip(), ""]
        for path in speed_paths:
            rel = tables.link(path, out_dir)
            if path.endswith(".png") and rel not in speed_md:
                sections += [f"![{posixpath.basename(rel)}]({rel})", ""]
    if drawn:
        sections += ["## Figures", ""]
        sections += [_figure_markdown(entry, out_dir) for entry in drawn]
    problems = tables.problems(table)
    if problems:
        sections += ["## Problems and notes", "",
                     "Files that could not be read were skipped; the rest is reported.", "",
                     problems, ""]
    sections += ["## Configurations", "", _config_markdown(table), ""]
    return "\n".join(sections)


def write_report(table: dict, out_dir: str) -> dict:
    """Draw the figures, write results.json/csv, report.md and report.html.

    Returns {'markdown', 'html', 'figures': [paths], 'data': [paths]}."""
    io.makedirs(out_dir)
    figure_dir = os.path.join(out_dir, FIGURE_DIR)
    drawn = figures.draw_all(table, figure_dir)
    speed = speed_section(table, out_dir)
    data_files = collect.write(table, out_dir)
    markdown = build_markdown(table, drawn, speed, out_dir, data_files)
    md_path, html_path = os.path.join(out_dir, "report.md"), os.path.join(out_dir, "report.html")
    io.atomic_write_text(md_path, markdown + "\n")
    io.atomic_write_text(html_path, to_html(markdown, f"Report: {table['root']}"))
    files = [p for entry in drawn for p in entry["files"]] + list(speed[1])
    return {"markdown": md_path, "html": html_path, "figures": files, "data": data_files}
