"""The families table: every family on the survey's four axes, assembled from recorded numbers.

Surveys of the field rate the VAE, the GAN, the flow and diffusion on
likelihood, training stability, fidelity and generation speed by hand. This module puts the
measured numbers side by side; it computes nothing itself. Its sources:

- each export's ``assets/keras_gen.json``: "likelihood" (``keras-gen evaluate --likelihood-only
  --record``), "evaluation" (``keras-gen evaluate --record``; the default sampler's row, as the
  model card picks it), "network_passes" and "training";
- the stability summary of ``benchmarks/stability.py --summary`` (``{kind: {fid, fid_mean,
  fid_std, seeds, seeds_covering_all_ten, cpu_minutes_budget, n, ...}}``), whatever seeds it holds.

There is one row per export, in the registry's kind order, then one per kind that only the
stability summary has; rows are named by the model contract (``ModelKind.label``). A value the
sources lack is a dash with a numbered note saying why (the kind's recorded reason for having no
likelihood, an export too old for it, a kind not in the sweep), so the table never guesses.
"""

from __future__ import annotations

from pathlib import Path

from keras_gen.evaluation.model_card import default_row, train_time_cell, write_model_card

BLOCK = "families"  # the README's <!-- families:start/end --> markers
SAMPLING_KEYS = ("fid", "n", "precision", "recall", "classes_covered", "samples_per_s", "nfe_per_sample")


def _kind(name: str):
    """The registered ModelKind called ``name``, or None (a summary may name a plugin not loaded)."""
    from keras_gen.models.kinds import get_model_kind, model_kinds

    return get_model_kind(name) if name in model_kinds() else None


def _likelihood(info: dict, path) -> tuple[list, tuple | None]:
    """(recorded bound rows, None) or ([], (short reason, reason))."""
    record = info.get("likelihood")
    if record and record["rows"]:
        return record["rows"], None
    if record:
        return [], ("none", record["none"])
    kind = _kind(info["kind"])
    reason = kind.likelihood_unavailable(info) if kind else None
    if reason:
        return [], ("not recorded", reason)
    return [], ("not recorded", f"not measured yet: `keras-gen evaluate {_short_path(path)} --likelihood-only --record`")


def _export_row(path) -> dict:
    from keras_gen.export import read_export_info

    info = read_export_info(path)
    likelihood, likelihood_missing = _likelihood(info, path)
    sampling = default_row(info)
    row = {"kind": info["kind"], "export": str(path), "preset": info.get("preset"),
           "likelihood": likelihood, "sampling": None, "training": train_time_cell(info),
           "missing": {}}
    if likelihood_missing:
        row["missing"]["likelihood"] = likelihood_missing
    if sampling:
        row["sampling"] = {key: sampling.get(key) for key in SAMPLING_KEYS}
        row["sampling"]["nfe_per_sample"] = info.get("network_passes") or sampling.get("nfe_per_sample")
    else:
        row["missing"]["sampling"] = ("not evaluated", f"`keras-gen evaluate {_short_path(path)} --record` fills it in")
    return row


def family_rows(exports, stability: dict | None) -> list[dict]:
    """The table's rows: {kind, name, export, preset, likelihood (recorded bound rows), sampling
    (the default sampler's FID, n, precision, recall, classes_covered, samples_per_s,
    nfe_per_sample), training (cell text), stability (the summary's entry of the kind), missing
    ({column: (short reason, reason)})} for each export in ``exports`` and each kind of the
    ``stability`` summary without one; registry order, unregistered kinds last."""
    from keras_gen.models.kinds import model_kinds

    stability = stability or {}
    rows = [_export_row(path) for path in exports]
    covered = {row["kind"] for row in rows}
    for kind in stability:
        if kind not in covered:
            rows.append({"kind": kind, "export": None, "preset": None, "likelihood": [], "sampling": None,
                         "training": None, "missing": {column: ("no export", "no export of this kind was given")
                                                       for column in ("likelihood", "sampling", "training")}})
    order = {name: i for i, name in enumerate(model_kinds())}
    rows.sort(key=lambda row: order.get(row["kind"], len(order)))  # stable: exports keep their order
    for row in rows:
        kind = _kind(row["kind"])
        row["name"] = kind.label() if kind else row["kind"]
        row["stability"] = stability.get(row["kind"])
        if row["stability"] is None:
            row["missing"]["stability"] = ("not swept", f"not in the stability summary: "
                                           f"`python benchmarks/stability.py --kinds {row['kind']}`")
    return rows


def _speed(value) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


class _Notes:
    """Numbered notes under the table; the same text gets the same number."""

    def __init__(self):
        self.texts: list[str] = []

    def ref(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"

    def missing(self, row: dict, column: str, *, cells: int = 1) -> list[str]:
        short, reason = row["missing"][column]
        note = self.ref(f"{row['name']}, {column}: {reason}")
        return [f"- {short} {note}"] + ["-"] * (cells - 1)


def _likelihood_cell(row: dict, notes: _Notes) -> str:
    parts = []
    for bound in row["likelihood"]:
        stderr = f" +- {bound['stderr']:.3f} (standard error)" if bound.get("stderr") is not None else ""
        note = notes.ref(f"{row['name']}, {bound['bound']}{stderr} over {bound['n']} images: {bound['data']}")
        parts.append(f"{bound['value']:.3f} {bound['unit']} ({bound['bound']}) {note}")
    return "; ".join(parts)


def _stability_cells(row: dict) -> list[str]:
    entry = row["stability"]
    spread = f" +- {entry['fid_std']:.1f}" if entry.get("fid_std") is not None else " (one seed: no spread)"
    return [f"{entry['fid_mean']:.1f}{spread}", f"{len(entry['seeds'])} ({entry['seeds_covering_all_ten']})"]


def _short_path(path) -> str:
    """An export named by its folder and that folder's parent (``saved_models/vae``): the same text
    wherever the command runs from."""
    path = Path(path).resolve()
    return f"{path.parent.name}/{path.name}"


HEADER = ("| family (export) | likelihood of the test set | FID (n) | precision / recall | classes >= 2% | "
          "samples/s (network passes) | FID over seeds, mean +- sd | seeds (all ten digits) | training (shipped run) |")


def families_table(rows: list[dict]) -> str:
    """The markdown table of ``family_rows`` with its numbered notes and a line naming the sources."""
    notes = _Notes()
    lines = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    for row in rows:
        where = f"`{_short_path(row['export'])}`, {row['preset']} preset" if row["export"] else "no export"
        cells = [f"{row['name']} ({where})"]
        cells.append(_likelihood_cell(row, notes) if row["likelihood"] else notes.missing(row, "likelihood")[0])
        sampling = row["sampling"]
        if sampling:
            cells += [f"{sampling['fid']:.1f} ({sampling['n']})",
                      f"{sampling['precision']:.2f} / {sampling['recall']:.2f}", str(sampling["classes_covered"]),
                      f"{_speed(sampling['samples_per_s'])} ({sampling['nfe_per_sample']})"]
        else:
            cells += notes.missing(row, "sampling", cells=4)
        cells += _stability_cells(row) if row["stability"] else notes.missing(row, "stability", cells=2)
        cells.append(row["training"] or notes.missing(row, "training")[0])
        lines.append("| " + " | ".join(cells) + " |")
    swept = [row["stability"] for row in rows if row["stability"]]
    budgets = sorted({b for entry in swept for b in entry.get("cpu_minutes_budget", [])})
    sizes = sorted({entry["n"] for entry in swept})
    sources = ("Sources: each export's `assets/keras_gen.json` (likelihood, evaluation of its default sampler, "
               "network passes, training wall time)")
    if swept:
        sources += (f"; FID over seeds from the stability summary (`benchmarks/stability.py`: every run stopped "
                    f"at {', '.join(f'{b:g}' for b in budgets)} CPU-minutes of training, FID of "
                    f"{', '.join(map(str, sizes))} samples)")
    lines += ["", sources + "."]
    if notes.texts:
        lines += [""] + [f"{i}. {text}" for i, text in enumerate(notes.texts, 1)]
    return "\n".join(lines)


def write_families(readme, exports, stability_path, figure=None) -> tuple[str, list[dict]]:
    """Regenerate the families table between the ``<!-- families:start/end -->`` markers of the
    markdown file ``readme`` (the model card's mechanism) from ``exports`` and the stability summary
    at ``stability_path`` (a missing file: no stability columns), and draw the figure at ``figure``
    (keras_gen.plotting.families_chart) when given; returns (table, rows). Rerunning it on the same
    sources leaves the file unchanged."""
    import json

    stability_path = Path(stability_path)
    stability = json.loads(stability_path.read_text()) if stability_path.exists() else {}
    rows = family_rows(exports, stability)
    table = families_table(rows)
    write_model_card(readme, table, block=BLOCK)
    if figure is not None:
        from keras_gen.plotting import families_chart

        families_chart(rows, figure)
    return table, rows
