"""Jupyter notebooks from the tutorials' `# %%` cells: `make notebooks` (or `--check`).

A tutorial is a plain script in the percent format that Jupyter, VS Code and jupytext read:
`# %% [markdown]` starts a prose cell (its lines are `# ` comments), `# %%` a code cell. This
writes `notebooks/<tutorial>.ipynb` (nbformat 4, no outputs) for readers who prefer a notebook;
the scripts stay the source. `--check` writes nothing and fails when a notebook is missing or
differs from its script (tests/test_docs.py runs it), so the two cannot drift apart.
"""
import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CELL = re.compile(r"^# %%(?: \[(markdown)\])?\s*$")


def _markdown_line(line: str, where: str) -> str:
    if line.startswith("# "):
        return line[2:]
    if line.rstrip() == "#":
        return ""
    raise ValueError(f"{where}: a markdown cell line must be a '# ' comment, got {line!r}")


def _cell(kind: str, lines: list[str], where: str) -> dict | None:
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return None
    if kind == "markdown":
        lines = [_markdown_line(line, where) for line in lines]
    source = [line + "\n" for line in lines[:-1]] + [lines[-1]]
    cell = {"cell_type": kind, "metadata": {}, "source": source}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def notebook(script: Path) -> dict:
    """The notebook of one percent-format script (text before the first `# %%` is refused)."""
    cells, kind, lines, start = [], None, [], 0
    for number, line in enumerate(script.read_text().splitlines(), 1):
        match = CELL.match(line)
        if match:
            if kind is not None and (cell := _cell(kind, lines, f"{script.name}:{start}")):
                cells.append(cell)
            kind, lines, start = (match.group(1) or "code"), [], number
        elif kind is None:
            if line.strip():
                raise ValueError(f"{script.name}:{number}: text before the first '# %%' cell")
        else:
            lines.append(line)
    if kind is not None and (cell := _cell(kind, lines, f"{script.name}:{start}")):
        cells.append(cell)
    for number, cell in enumerate(cells):
        cell["id"] = f"{script.stem}-{number}"  # nbformat 4.5 cell ids, stable across runs
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "language_info": {"name": "python"}}}


def render(script: Path) -> str:
    return json.dumps(notebook(script), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def stale(tutorials: Path = ROOT / "tutorials", notebooks: Path = ROOT / "notebooks") -> list[str]:
    """Names of the notebooks that are missing, differ from their script, or have no script."""
    scripts = sorted(tutorials.glob("[0-9]*.py"))
    wanted = {notebooks / f"{s.stem}.ipynb": render(s) for s in scripts}
    bad = [p.name for p, text in wanted.items() if not p.exists() or p.read_text() != text]
    bad += [p.name for p in sorted(notebooks.glob("*.ipynb")) if p not in wanted]
    return bad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a notebook is not current")
    args = parser.parse_args(argv)
    notebooks = ROOT / "notebooks"
    if args.check:
        bad = stale()
        if bad:
            print(f"not current: {', '.join(bad)}; run `make notebooks`", file=sys.stderr)
            return 1
        print("notebooks are current")
        return 0
    notebooks.mkdir(exist_ok=True)
    for old in notebooks.glob("*.ipynb"):
        if not (ROOT / "tutorials" / f"{old.stem}.py").exists():
            old.unlink()
    for script in sorted((ROOT / "tutorials").glob("[0-9]*.py")):
        (notebooks / f"{script.stem}.ipynb").write_text(render(script))
        print("wrote", (notebooks / f"{script.stem}.ipynb").relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
