"""The trilemma table: its columns, and the report's rows as fixed-width text.

One definition of the columns serves the table that ``keras-gen evaluate`` prints
(format_table) and the one on the report page (report_page.py, through table_cells), so the two
always show the same numbers with the same rounding.
"""

from __future__ import annotations


def _formatted(key: str, spec: str):
    """A cell: row[key] formatted with spec, empty where the row has no value (a reference's speed)."""
    return lambda row: "" if row.get(key) is None else format(row[key], spec)


# The table's columns: (header, width in the text table, cell text of a row). format_table and the
# report page (report_page.py) both read them, so the printed table and the page always agree.
TABLE_COLUMNS = (("model", 32, _formatted("label", "")), ("n", 6, _formatted("n", "d")),
                 ("NFE", 6, _formatted("nfe_per_sample", "g")), ("FID", 9, _formatted("fid", ".3f")),
                 ("KID", 8, _formatted("kid_mean", ".3f")), ("prec", 5, _formatted("precision", ".2f")),
                 ("rec", 5, _formatted("recall", ".2f")), ("cls>=2%", 7, _formatted("classes_covered", "d")),
                 ("H/logC", 6, _formatted("normalized_entropy", ".3f")),
                 ("IS", 5, _formatted("inception_score", ".2f")),
                 ("samples/s", 10, _formatted("samples_per_s", ".4g")))


def table_cells(row: dict) -> list[str]:
    """One row's cells, in the order of TABLE_COLUMNS."""
    return [cell(row) for _, _, cell in TABLE_COLUMNS]


def format_table(report: dict) -> str:
    """The report's rows (and references) as a fixed-width text table."""
    def line(cells):
        (label, label_width), *rest = zip(cells, [width for _, width, _ in TABLE_COLUMNS])
        return " ".join([f"{label[:label_width]:<{label_width}}", *(f"{c:>{w}}" for c, w in rest)])

    head = line([header for header, _, _ in TABLE_COLUMNS])
    lines = [head, "-" * len(head)]
    lines += [line(table_cells(r)) for r in report["rows"]]
    if report.get("references"):
        lines.append("-" * len(head))
        lines += [line(table_cells(r)) for r in report["references"]]
    return "\n".join(lines)
