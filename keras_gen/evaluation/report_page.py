"""The evaluation report as one web page: ``DIR/index.html`` beside the report's files.

``keras-gen evaluate ... --report DIR`` writes the JSON report, the trilemma chart and, per row, a
sample grid and a predicted-class histogram into DIR (report.draw_report). A folder of PNGs is
hard to read side by side and to pass on, so this module puts all of it on one page: the table
(the printed table's columns, from table.py), the chart, every row's samples and histogram, the
notes, what the columns mean, the exact command and the machine it ran on. The page is
self-contained (PNGs embedded as data: URIs, inline CSS, no scripts, fonts or links out), so it
opens from the file system, offline, and can be sent on as a single file. Every text taken from
the report is escaped.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from keras_gen.evaluation.table import TABLE_COLUMNS, table_cells
from keras_gen.files import atomic_write_bytes

PAGE_NAME = "index.html"

CSS = """
body { font-family: sans-serif; max-width: 72rem; margin: 1.5rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
h3 { font-size: 1rem; margin-bottom: 0.3rem; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #e3e3e3; }
th { background: #f3f3f3; text-align: right; } th:first-child, td:first-child { text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody.references td { color: #666; font-style: italic; }
tr.corner td { background: #eef6ee; font-weight: bold; }
img { max-width: 100%; height: auto; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
.figures img { max-height: 22rem; width: auto; }
pre { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; white-space: pre-wrap; }
dt { font-weight: bold; } dd { margin: 0 0 0.4rem 1.5rem; }
"""


def data_uri(path) -> str:
    """A PNG file as a data: URI, so the page carries the image itself."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _text(value) -> str:
    """Any report value as escaped text (lists joined with commas; None as a dash)."""
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    return html.escape(str(value))


def _image(path, alt: str) -> str:
    return f'<img src="{data_uri(path)}" alt="{html.escape(alt)}">'


def _table(report: dict, anchors: dict) -> str:
    head = "".join(f"<th>{html.escape(header)}</th>" for header, _, _ in TABLE_COLUMNS)

    def body(rows, css_class):
        lines = []
        for row in rows:
            label, *numbers = table_cells(row)
            corner = ' class="corner"' if row["label"] == report.get("nearest_the_corner") else ""
            cells = "".join(f'<td class="num">{html.escape(cell)}</td>' for cell in numbers)
            lines.append(f'<tr{corner}><td><a href="#{anchors[row["label"]]}">{html.escape(label)}</a></td>'
                         f"{cells}</tr>")
        return f'<tbody class="{css_class}">{"".join(lines)}</tbody>' if lines else ""

    return (f'<table id="trilemma-table"><thead><tr>{head}</tr></thead>'
            f'{body(report["rows"], "models")}{body(report.get("references", []), "references")}</table>')


def _row_sections(rows, figures: dict, anchors: dict) -> str:
    sections = []
    for row in rows:
        label, files = row["label"], figures.get("rows", {}).get(row["label"], {})
        images = "".join(_image(files[name], f"{caption}: {label}")
                         for name, caption in (("samples", "samples"), ("histogram", "predicted classes"))
                         if name in files)
        sections.append(f'<section id="{anchors[label]}"><h3>{html.escape(label)}</h3>'
                        f'<div class="figures">{images}</div></section>')
    return "\n".join(sections)


def render_report_page(report: dict, figures: dict) -> str:
    """The page's HTML for a report (evaluate_paths' dict) and its figures (draw_report's dict)."""
    all_rows = report["rows"] + report.get("references", [])
    anchors = {row["label"]: f"row-{i}" for i, row in enumerate(all_rows)}
    classifier = report.get("classifier", {})
    summary = (f"Up to {report['n']} samples per row (the n column gives each row's; seed {report.get('seed')}), "
               f"scored with the {_text(report['dataset'])} "
               f"classifier (test accuracy {_text(classifier.get('test_accuracy'))}) against "
               f"{_text(report.get('real', {}).get('n'))} real test images; written {_text(report.get('created'))}.")
    corner = report.get("nearest_the_corner")
    parts = [
        f"<h1>The generative trilemma on {_text(report['dataset'])}</h1>", f"<p>{summary}</p>",
        "<h2>Quality, speed and coverage</h2>", _table(report, anchors),
        f"<p>Nearest the corner of quality, speed and coverage: <b>{_text(corner)}</b>.</p>" if corner else "",
        "<h2>The trilemma chart</h2>",
        _image(figures["trilemma"], "trilemma chart") if "trilemma" in figures else "",
    ]
    if report.get("notes"):
        parts += ["<h2>Notes</h2><ul>", *(f"<li>{_text(note)}</li>" for note in report["notes"]), "</ul>"]
    parts += ["<h2>Samples and predicted classes, row by row</h2>", _row_sections(all_rows, figures, anchors)]
    if report.get("metrics"):
        parts += ["<h2>What the columns measure</h2><dl>",
                  *(f"<dt>{_text(name)}</dt><dd>{_text(text)}</dd>" for name, text in report["metrics"].items()),
                  "</dl>"]
    parts += ["<h2>Command</h2>", f"<pre id=\"command\">{_text(report.get('command'))}</pre>",
              "<h2>Machine</h2>", '<table id="machine">',
              *(f"<tr><td>{_text(key)}</td><td>{_text(value)}</td></tr>"
                for key, value in report.get("machine", {}).items()), "</table>"]
    title = f"keras_gen evaluation: {report['dataset']}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(part for part in parts if part) + "\n</body></html>\n")


def write_report_page(report: dict, report_dir, figures: dict) -> Path:
    """Write ``report_dir/index.html`` (atomically) and return its path."""
    path = Path(report_dir) / PAGE_NAME
    atomic_write_bytes(path, render_report_page(report, figures).encode("utf-8"))
    return path
