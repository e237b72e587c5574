"""Screenshots of a report page at 1280 px, and the page's layout as the browser measures it.

    python benchmarks/report_screenshots.py [REPORT_HTML_OR_ROOT] [--out DIR] [--width 1280]

With no argument, a small showcase root (tests/synthetic_runs.py: every experiment's
layout, a training-speed run, two pai sweeps of one network that differ in one
setting, an lmc run with alignment) is written to a temporary directory and its report
made with `python -m tflottery.report`'s code.  Given a root, its report is made into
ROOT/report; given a report.html, that page is used as it is.

Headless Chromium (Debian's `chromium`, or CHROMIUM=/path) then renders the page at
--width px and writes into --out (default /tmp/report_screenshots):

    page.png                  the whole page
    NN_<section>.png          one picture per `##` section of the page, cut from it
                              (per figure, `###`, in a long section)
    layout.json               what the browser measured: the page's width, every
                              table's box, anything that sticks out past the right
                              edge of the text column, images that did not load

It prints the sections and any overflow found, for a person to look at the
pictures.  tests/test_report_browser.py uses `measure` to check the layout.
"""
import argparse
import html as _html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

# Run in the browser after the page (and its images) have loaded: it writes what it
# measured as JSON into <pre id="layout-report">, which --dump-dom returns.
_MEASURE_JS = r"""
window.addEventListener('load', function () {
  var doc = document.documentElement, body = document.body;
  var bs = getComputedStyle(body), br = body.getBoundingClientRect();
  var left = br.left + parseFloat(bs.paddingLeft), right = br.right - parseFloat(bs.paddingRight);
  function heading(el) {           // the nearest heading above an element
    var all = document.querySelectorAll('h1, h2, h3'), found = null;
    for (var i = 0; i < all.length; i++) {
      if (all[i].compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING) found = all[i];
    }
    return found ? found.textContent.trim() : '';
  }
  function scroller(el) {          // the nearest ancestor that scrolls or clips sideways
    for (var p = el.parentElement; p && p !== body; p = p.parentElement) {
      var o = getComputedStyle(p).overflowX;
      if (o === 'auto' || o === 'scroll' || o === 'hidden') return p;
    }
    return null;
  }
  function shown(el) { var r = el.getBoundingClientRect(); return r.width > 0 || r.height > 0; }
  var out = {viewport: doc.clientWidth, page_width: doc.scrollWidth, height: doc.scrollHeight,
             text_left: left, text_right: right, tables: [], overflowing: [], images: [],
             sections: []};
  document.querySelectorAll('table').forEach(function (t) {
    var box = scroller(t), r = t.getBoundingClientRect();
    var boxRight = box ? box.getBoundingClientRect().right : right;
    out.tables.push({heading: heading(t), first_header: (t.querySelector('th') || {}).textContent,
                     left: r.left, right: r.right, width: r.width, in_scroll_box: !!box,
                     box_right: boxRight, shown: shown(t),
                     overflows: shown(t) && (box ? boxRight > right + 1 : r.right > right + 1)});
  });
  var outer = [];                  // only the outermost element that sticks out
  body.querySelectorAll('*').forEach(function (el) {
    if (el.id === 'layout-report' || !shown(el)) return;
    if (outer.some(function (o) { return o.contains(el); })) return;
    var r = el.getBoundingClientRect(), box = scroller(el);
    if (r.right > right + 1 && !box) {
      outer.push(el);
      out.overflowing.push({tag: el.tagName.toLowerCase(), heading: heading(el),
                            text: (el.textContent || el.getAttribute('src') || '').trim().slice(0, 80),
                            right: r.right});
    }
  });
  document.querySelectorAll('img').forEach(function (img) {
    out.images.push({src: img.getAttribute('src'), loaded: img.complete && img.naturalWidth > 0,
                     natural_width: img.naturalWidth, width: img.getBoundingClientRect().width});
  });
  document.querySelectorAll('h2, h3').forEach(function (h) {
    out.sections.push({title: h.textContent.trim(), level: h.tagName === 'H2' ? 2 : 3,
                       top: h.getBoundingClientRect().top + window.scrollY});
  });
  var pre = document.createElement('pre');
  pre.id = 'layout-report';
  pre.textContent = JSON.stringify(out);
  body.appendChild(pre);
});
"""
MARK = re.compile(r'<pre id="layout-report">(.*?)</pre>', re.S)


def find_chromium():
    """The path of a Chromium (or Chrome) to run headless, or None."""
    for name in filter(None, (os.environ.get("CHROMIUM"), "chromium", "chromium-browser",
                              "google-chrome", "google-chrome-stable")):
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium(chromium, *args, timeout=60):
    # --no-sandbox: root in a container has no user namespace for the sandbox.
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--allow-file-access-from-files", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)


def _measuring_copy(html_path: str) -> str:
    """A copy of the page beside it (so that its relative links still work) that measures
    itself; the caller removes it."""
    with open(html_path, encoding="utf-8") as f:
        text = f.read()
    text = text.replace("</body>", f"<script>{_MEASURE_JS}</script>\n</body>", 1)
    fd, path = tempfile.mkstemp(prefix=".measure_", suffix=".html",
                                dir=os.path.dirname(os.path.abspath(html_path)))
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def measure(html_path: str, width: int = 1280, chromium: str = None) -> dict:
    """The page's layout at `width` px as headless Chromium measures it (see _MEASURE_JS):
    {viewport, page_width, height, text_right, tables: [...], overflowing: [...],
    images: [...], sections: [{title, top}]}."""
    chromium = chromium or find_chromium()
    copy = _measuring_copy(html_path)
    try:
        done = _chromium(chromium, f"--window-size={width},1000", "--virtual-time-budget=20000",
                         "--dump-dom", "file://" + os.path.abspath(copy))
    finally:
        os.remove(copy)
    found = MARK.search(done.stdout)
    if not found:
        raise RuntimeError("the page did not report its layout; chromium said:\n"
                           + done.stderr[-2000:])
    return json.loads(_html.unescape(found.group(1)))


def problems(layout: dict) -> list:
    """What a reader would see go wrong: the page wider than the window, a table past the
    right edge of its box, anything else sticking out, an image that did not load."""
    out = []
    if layout["page_width"] > layout["viewport"]:
        out.append(f"the page is {layout['page_width']} px wide in a "
                   f"{layout['viewport']} px window")
    out += [f"table under '{t['heading']}' (first column '{t['first_header']}') ends at "
            f"{t['box_right'] if t['in_scroll_box'] else t['right']:.0f} px, past the text "
            f"column's right edge at {layout['text_right']:.0f} px"
            for t in layout["tables"] if t["overflows"]]
    out += [f"<{e['tag']}> under '{e['heading']}' ({e['text']!r}) ends at {e['right']:.0f} px, "
            f"past {layout['text_right']:.0f} px" for e in layout["overflowing"]
            if e["tag"] != "table"]     # tables: above, with their box
    out += [f"image {i['src']} did not load" for i in layout["images"] if not i["loaded"]]
    return out


def _pieces(headings: list, height: int, tallest: int = 2400) -> list:
    """(title, top, bottom) of the pictures to cut from the page: one per `##` section;
    a section taller than `tallest` px one per `###` heading in it instead (a figure
    each); pieces still taller are cut every `tallest` px."""
    marks = [{"title": "top", "level": 2, "top": 0}] + list(headings)
    sections = [i for i, m in enumerate(marks) if m["level"] == 2] + [len(marks)]
    out = []
    for first, after in zip(sections, sections[1:]):
        bottom = marks[after]["top"] if after < len(marks) else height
        cuts = marks[first:after] if bottom - marks[first]["top"] > tallest else [marks[first]]
        for k, mark in enumerate(cuts):
            end = int(cuts[k + 1]["top"] if k + 1 < len(cuts) else bottom)
            name = mark["title"] if k == 0 else f"{cuts[0]['title']} - {mark['title']}"
            for j, start in enumerate(range(int(mark["top"]), end, tallest)):
                out.append((name + (f" {j + 1}" if j else ""), max(0, start - 8),
                            min(end, start + tallest) - 8))
    return [p for p in out if p[2] > p[1]]


def screenshots(html_path: str, out_dir: str, width: int = 1280, chromium: str = None) -> dict:
    """page.png and one NN_<section>.png per `##` section into out_dir; returns
    {'layout': measure(...), 'files': [paths]}."""
    from PIL import Image
    chromium = chromium or find_chromium()
    layout = measure(html_path, width, chromium)
    os.makedirs(out_dir, exist_ok=True)
    page = os.path.join(out_dir, "page.png")
    height = int(layout["height"]) + 20
    _chromium(chromium, f"--window-size={width},{height}", "--virtual-time-budget=20000",
              f"--screenshot={page}", "file://" + os.path.abspath(html_path), timeout=120)
    files = [page]
    image = Image.open(page)
    for i, (title, top, bottom) in enumerate(_pieces(layout["sections"], image.height)):
        name = re.sub(r"[^A-Za-z0-9]+", "_", title).strip("_").lower()[:50] or "section"
        path = os.path.join(out_dir, f"{i:02d}_{name}.png")
        image.crop((0, top, image.width, bottom)).save(path)
        files.append(path)
    with open(os.path.join(out_dir, "layout.json"), "w") as f:
        json.dump(layout, f, indent=1)
    return {"layout": layout, "files": files}


def showcase_report(root: str) -> str:
    """Write the showcase root (tests/synthetic_runs.build_showcase) and its report;
    returns the report.html path."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "tests"))
    import synthetic_runs
    synthetic_runs.build_showcase(root)
    return make_report(root)


def make_report(root: str) -> str:
    from tflottery.reporting import collect, page
    return page.write_report(collect.collect(root), os.path.join(root, "report"))["html"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", nargs="?", help="report.html, or a root to report on; "
                        "default: the showcase root in a temporary directory")
    parser.add_argument("--out", default="/tmp/report_screenshots")
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print("no chromium found (apt-get install chromium, or set CHROMIUM=/path)",
              file=sys.stderr)
        return 2
    if args.page is None:
        html_path = showcase_report(os.path.join(tempfile.mkdtemp(prefix="showcase_"), "root"))
    elif os.path.isdir(args.page):
        html_path = make_report(args.page)
    else:
        html_path = args.page
    result = screenshots(html_path, args.out, args.width, chromium)
    print(f"page: {html_path}")
    for path in result["files"]:
        print(f"screenshot: {path}")
    found = problems(result["layout"])
    for problem in found:
        print(f"overflow: {problem}")
    print(f"{len(found)} layout problem(s) at {args.width} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
