"""The report's Markdown turned into one self-contained HTML page.

The report is written once, as Markdown (readable in a terminal, on
GitHub, in a notebook), and this converts the small subset it uses, so the
HTML page needs no Markdown package: headings, paragraphs, bullet lists,
pipe tables, fenced code, images, links, `code` and **bold**, and raw
<details>/<summary> lines (collapsed configs).  Everything else is escaped
text.
"""
import html
import re
from typing import List

_STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1, h2, h3 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: 0.85em; }
code { background: #f3f3f3; padding: 0 .2em; }
details { margin: .4em 0; }
summary { cursor: pointer; }
"""

_RAW = re.compile(r"^\s*</?(details|summary)\b.*>\s*$")


def inline(text: str) -> str:
    """Escape, then render `code`, images, links and **bold**."""
    out, pos = [], 0
    for match in re.finditer(r"`([^`]+)`", text):
        out.append(_spans(text[pos:match.start()]))
        out.append(f"<code>{html.escape(match.group(1))}</code>")
        pos = match.end()
    out.append(_spans(text[pos:]))
    return "".join(out)


def _spans(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)",
                  lambda m: f'<img src="{html.escape(m.group(2))}" alt="{m.group(1)}">', text)
    text = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)",
                  lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def _cells(line: str) -> List[str]:
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", body)]


def _table(lines: List[str]) -> str:
    header, rows = _cells(lines[0]), lines[1:]
    if rows and re.fullmatch(r"\|?[\s:|-]+\|?", rows[0].strip()):
        rows = rows[1:]
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in header) +
           "</tr></thead>", "<tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in _cells(row)) + "</tr>")
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


def to_html(markdown: str, title: str) -> str:
    """A complete HTML page for `markdown`."""
    lines = markdown.splitlines()
    out, i, paragraph = [], 0, []

    def flush():
        if paragraph:
            out.append("<p>" + inline(" ".join(paragraph)) + "</p>")
            paragraph.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            out.append("<pre><code>" + html.escape("\n".join(lines[i + 1:j])) + "</code></pre>")
            i = j + 1
            continue
        if not stripped:
            flush()
        elif _RAW.match(line):
            flush()
            out.append(_raw_line(stripped))
        elif re.match(r"#{1,6} ", stripped):
            flush()
            level = len(stripped.split(" ", 1)[0])
            text = stripped[level + 1:]
            anchor = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
            out.append(f'<h{level} id="{anchor}">{inline(text)}</h{level}>')
        elif stripped.startswith("|"):
            flush()
            j = i
            while j < len(lines) and lines[j].strip().startswith("|"):
                j += 1
            out.append(_table(lines[i:j]))
            i = j
            continue
        elif re.match(r"[-*] ", stripped):
            flush()
            j, items = i, []
            while j < len(lines) and re.match(r"[-*] ", lines[j].strip()):
                items.append(lines[j].strip()[2:])
                j += 1
            out.append("<ul>" + "".join(f"<li>{inline(t)}</li>" for t in items) + "</ul>")
            i = j
            continue
        else:
            paragraph.append(stripped)
        i += 1
    flush()
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(out) + "\n</body>\n</html>\n")


def _raw_line(line: str) -> str:
    """<details>/<summary> lines pass through, their text escaped."""
    match = re.fullmatch(r"(.*<summary>)(.*)(</summary>.*)", line)
    if match:
        return match.group(1) + inline(match.group(2)) + match.group(3)
    return line
