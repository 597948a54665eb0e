"""The documents the code cites exist in the repository, and docs/errata.md names real tests."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
ERRATA = DOCS / "errata.md"
CITING = sorted((REPO / "keras_gen").rglob("*.py")) + sorted((REPO / "tutorials").glob("*.py"))

TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
DOCS_REF = re.compile(r"\bdocs/[\w./-]*\w")
# "erratum 7", "errata 1-2", "Errata 6, 11", "Erratum 10 (..."
ERRATUM_REF = re.compile(r"\berrat(?:um|a) (\d+(?:\s*(?:-|,)\s*\d+)*)", re.IGNORECASE)


def errata_rows() -> dict[int, str]:
    """{erratum number: its table row} from docs/errata.md."""
    rows = {}
    for line in ERRATA.read_text().splitlines():
        match = re.match(r"\|\s*(\d+)\s*\|", line)
        if match:
            rows[int(match.group(1))] = line
    return rows


def test_errata_table_has_one_row_per_erratum():
    rows = errata_rows()
    assert sorted(rows) == list(range(1, len(rows) + 1)) and len(rows) >= 11
    for number, row in rows.items():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert len(cells) == 4 and all(cells), f"erratum {number}: {cells}"
        assert TEST_REF.search(cells[3]) or "no test yet" in cells[3], f"erratum {number}: {cells[3]}"


def test_every_test_the_errata_page_names_exists():
    refs = TEST_REF.findall(ERRATA.read_text())
    assert refs
    for file, name in refs:
        path = REPO / file
        assert path.is_file(), file
        tree = ast.parse(path.read_text())
        functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert name in functions, f"{file}::{name} is not a test function in {file}"


def test_every_document_the_code_cites_exists():
    cited = {}
    for path in CITING:
        text = path.read_text()
        for ref in DOCS_REF.findall(text):
            cited.setdefault(ref, []).append(str(path.relative_to(REPO)))
        # the documents outside the repository, which the code used to cite
        for outside in ("ARTICLE_MAP.md", "DESIGN.md"):
            assert outside not in text, f"{path.relative_to(REPO)} cites {outside}: cite docs/ instead"
    assert {"docs/errata.md", "docs/design.md"} <= set(cited)
    for ref, where in cited.items():
        assert (REPO / ref).is_file(), f"{ref} (cited in {', '.join(where)}) does not exist"


def test_every_erratum_number_the_code_cites_is_on_the_page():
    rows = errata_rows()
    for path in CITING:
        for match in ERRATUM_REF.finditer(path.read_text()):
            numbers = set()
            for part in re.split(r"\s*,\s*", match.group(1)):
                low, _, high = part.partition("-")
                numbers.update(range(int(low), int(high or low) + 1))
            assert numbers <= set(rows), f"{path.relative_to(REPO)}: {match.group(0)}"


def test_links_between_the_docs_resolve():
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+)\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name} links to missing {target}"


# ----------------------------------------------------------------------------- notebooks
def _notebooks_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("notebooks_tool", REPO / "tools" / "notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_notebooks_are_current():
    """notebooks/*.ipynb are `make notebooks` of tutorials/*.py, one each, nothing stale."""
    import nbformat

    assert _notebooks_tool().stale() == []
    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    assert len(notebooks) == len(list((REPO / "tutorials").glob("[0-9]*.py")))
    for path in notebooks:  # valid for Jupyter: nbformat's own schema check
        nbformat.validate(nbformat.read(path, as_version=4))


def test_a_percent_script_becomes_markdown_and_code_cells(tmp_path):
    tool = _notebooks_tool()
    script = tmp_path / "01_demo.py"
    script.write_text("# %% [markdown]\n# # Title\n#\n# Some *prose*.\n\n# %%\nimport os\nx = 1\n\n"
                      "# %%\nprint(x)\n")
    nb = tool.notebook(script)
    assert [c["cell_type"] for c in nb["cells"]] == ["markdown", "code", "code"]
    assert nb["cells"][0]["source"] == ["# Title\n", "\n", "Some *prose*."]
    assert nb["cells"][1]["source"] == ["import os\n", "x = 1"]
    assert nb["cells"][2] == {"cell_type": "code", "metadata": {}, "source": ["print(x)"], "id": "01_demo-2",
                              "execution_count": None, "outputs": []}
    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    assert tool.stale(tmp_path, notebooks) == ["01_demo.ipynb"]  # missing
    (notebooks / "01_demo.ipynb").write_text(tool.render(script))
    assert tool.stale(tmp_path, notebooks) == []
    script.write_text(script.read_text() + "print(2)\n")  # the script changed: stale again
    assert tool.stale(tmp_path, notebooks) == ["01_demo.ipynb"]
    bad = tmp_path / "02_bad.py"
    bad.write_text("# %% [markdown]\nnot a comment\n")
    import pytest

    with pytest.raises(ValueError, match="must be a '# ' comment"):
        tool.notebook(bad)


ARTICLE_URL = "https://towardsdatascience.com/generating-images-using-vaes-gans-and-diffusion-models-48963ddeb2b2"


def tutorial_cells(path):
    """[(cell_type, source)] of a tutorial, as tools/notebooks.py turns it into a notebook."""
    return [(cell["cell_type"], "".join(cell["source"])) for cell in _notebooks_tool().notebook(path)["cells"]]


def test_every_tutorial_is_in_tutobook_form():
    """Header with the article's section and URL; keras_gen's own key code printed from its source
    (inspect.getsource, so it cannot go stale); a closing "What we learned" markdown cell followed
    by the code cell that prints this run's measured numbers."""
    tutorials = sorted((REPO / "tutorials").glob("[0-9]*.py"))
    assert len(tutorials) >= 7
    for path in tutorials:
        cells = tutorial_cells(path)
        kind, header = cells[0]
        assert kind == "markdown" and header.startswith("# Tutorial "), path.name
        assert ARTICLE_URL in header and re.search(r"Article sections?: \"[^\"]+\"", header), path.name
        assert any(k == "code" and "inspect.getsource(" in src for k, src in cells), path.name
        titles = [i for i, (k, src) in enumerate(cells) if k == "markdown" and src.startswith("## What we learned")]
        assert titles and titles[-1] == len(cells) - 2, f"{path.name}: 'What we learned' is not the closing cell"
        assert cells[-1][0] == "code" and "print(" in cells[-1][1], path.name


def test_figures_display_inline_in_a_real_notebook_kernel(tmp_path):
    """A `# %%` cell run by a Jupyter kernel shows the PNG it writes; the same call in a script
    only writes the file (the tutorials' figures are saved either way)."""
    import nbclient
    import nbformat

    cell = ("import numpy as np\nfrom keras_gen import plotting\n"
            "plotting.image_grid(np.ones((4, 28, 28)), 'grid.png', title='ones')\nNone")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    nbclient.NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    images = [o for o in nb.cells[0].outputs if o.get("output_type") == "display_data" and "image/png" in o["data"]]
    assert len(images) == 1
    import base64

    assert base64.b64decode(images[0]["data"]["image/png"]) == (tmp_path / "grid.png").read_bytes()
    from keras_gen import plotting

    assert not plotting.in_notebook_kernel()  # pytest itself is a script: nothing to display
