"""The families table (keras_gen.evaluation.families, `python benchmarks/families.py`): one row
per export and per swept kind, every number taken from its source, a dash with the recorded
reason where a source has none, and a rewrite of the README that changes nothing on a rerun.

No model is loaded or trained: fabricated assets in tmp_path test the logic, the committed
assets and stability summary test the real table (and that the README holds it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from keras_gen.evaluation import family_rows, families_table, write_families
from keras_gen.zoo import family_models
from keras_gen.evaluation.model_card import markers
from keras_gen.models.kinds import get_model_kind, model_kinds

REPO = Path(__file__).resolve().parent.parent
STABILITY = REPO / "benchmarks" / "results" / "stability" / "stability.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_export(folder: Path, kind: str, **info) -> Path:
    """A folder that read_export_info accepts: an empty saved_model.pb and the assets json."""
    (folder / "assets").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"")
    (folder / "assets" / "keras_gen.json").write_text(json.dumps({"kind": kind, "config": {}, **info}))
    return folder


def evaluation_row(**values) -> dict:
    return {"sampler": None, "steps": None, "nfe_per_sample": 1, "n": 200, "fid": 31.25, "precision": 0.625,
            "recall": 0.375, "classes_covered": 9, "samples_per_s": 812.0, **values}


def stability_entry(fids, covering) -> dict:
    import statistics

    return {"seeds": list(range(len(fids))), "fid": fids, "fid_mean": statistics.mean(fids),
            "fid_std": statistics.stdev(fids) if len(fids) > 1 else None, "seeds_covering_all_ten": covering,
            "cpu_minutes_budget": [7.5], "n": 300}


def table_line(table: str, name: str, export: str = "") -> str:
    """The table's one row of family ``name`` (and, where a family has several shipped exports,
    of the export folder named ``export``)."""
    (line,) = [line for line in table.splitlines()
               if line.startswith(f"| {name} (") and (not export or f"/{export}`" in line)]
    return line


def note_of(table: str, cell: str) -> str:
    """The text of the note a cell's "[k]" refers to."""
    number = cell.rsplit("[", 1)[1].rstrip("]")
    (line,) = [line for line in table.splitlines() if line.startswith(f"{number}. ")]
    return line


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_rows_take_each_number_from_its_source_and_say_why_one_is_missing(tmp_path):
    flow = fake_export(tmp_path / "m" / "flow", "flow", preset="tiny", signatures=["log_prob"], network_passes=1,
                       training={"wall_seconds": 90.0, "epochs": 3},
                       evaluation={"rows": [evaluation_row()]},
                       likelihood={"rows": [{"bound": "dequantised NLL", "value": 3.25, "stderr": 0.125, "n": 40,
                                             "unit": "bits/dim", "data": "fake digits"}]})
    vae = fake_export(tmp_path / "m" / "vae", "vae", preset="cpu", signatures=["decode", "serving_default"],
                      training={"wall_seconds": 60.0, "epochs": 1})  # predates encode; never evaluated
    dcgan = fake_export(tmp_path / "m" / "dcgan", "dcgan", preset="cpu", network_passes=1,
                        evaluation={"rows": [evaluation_row(fid=44.5)]},
                        likelihood={"rows": [], "none": "no density in this fake"})
    stability = {"flow": stability_entry([10.0, 14.0, 12.0], 3), "ddpm": stability_entry([99.0], 0)}

    rows = family_rows([flow, vae, dcgan], stability)
    kinds = [row["kind"] for row in rows]
    assert sorted(kinds) == ["dcgan", "ddpm", "flow", "vae"]  # every export and the swept kind without one
    assert kinds == sorted(kinds, key=model_kinds().index)  # the registry's order
    table = families_table(rows)

    line = cells(table_line(table, get_model_kind("flow").label()))
    assert line[0] == f"{get_model_kind('flow').label()} (`m/flow`, tiny preset)"
    assert line[1].startswith("3.250 bits/dim (dequantised NLL) [")
    assert "+- 0.125" in note_of(table, line[1]) and "40 images: fake digits" in note_of(table, line[1])
    assert line[2:6] == ["31.2 (200)", "0.62 / 0.38", "9", "812 (1)"]
    assert line[6:8] == ["12.0 +- 2.0", "3 (3)"]  # mean +- sample sd of 10, 14, 12; all three cover ten
    assert line[8] == "1.5 min, 3 epochs"

    line = cells(table_line(table, "VAE"))
    assert line[1].startswith("- not recorded [")
    assert note_of(table, line[1]).endswith(get_model_kind("vae").likelihood_unavailable({"signatures": []}))
    assert line[2].startswith("- not evaluated [") and line[3:6] == ["-", "-", "-"]
    assert "`keras-gen evaluate m/vae --record`" in note_of(table, line[2])
    assert line[6].startswith("- not swept [") and line[7] == "-"

    line = cells(table_line(table, "DCGAN"))
    assert line[1].startswith("- none [") and note_of(table, line[1]).endswith("no density in this fake")
    assert line[2] == "44.5 (200)"

    line = cells(table_line(table, "DDPM"))
    assert line[0] == "DDPM (no export)" and line[6:8] == ["99.0 (one seed: no spread)", "1 (0)"]
    assert line[1].startswith("- no export [")
    assert "7.5 CPU-minutes" in table and "FID of 300 samples" in table


def test_writing_twice_changes_nothing_and_leaves_the_rest_of_the_file(tmp_path):
    flow = fake_export(tmp_path / "flow", "flow", training={"wall_seconds": 60.0, "epochs": 1})
    stability = tmp_path / "stability.json"
    stability.write_text(json.dumps({"vae": stability_entry([5.0, 6.0], 1)}))
    readme = tmp_path / "README.md"
    card_start, card_end = markers("model-card")
    start, end = markers("families")
    prose = f"# title\n\n{start}\nold table\n{end}\n\nbetween\n\n{card_start}\nthe card\n{card_end}\n"
    readme.write_text(prose)
    figure = tmp_path / "families.png"

    table, _ = write_families(readme, [flow], stability, figure)
    first = readme.read_text()
    assert first == prose.replace("old table", table)  # only the families block changed
    write_families(readme, [flow], stability)
    assert readme.read_text() == first
    assert figure.read_bytes()[:8] == PNG_MAGIC


def test_the_committed_table_holds_the_committed_assets_and_stability_summary(tmp_path):
    exports = [model.path for model in family_models()]
    stability = json.loads(STABILITY.read_text())
    rows = family_rows(exports, stability)
    assert {row["kind"] for row in rows} == {json.loads((p / "assets" / "keras_gen.json").read_text())["kind"]
                                            for p in exports} | set(stability)
    table = families_table(rows)
    for path in exports:
        info = json.loads((path / "assets" / "keras_gen.json").read_text())
        line = cells(table_line(table, get_model_kind(info["kind"]).label(), path.name))
        record = info.get("likelihood")
        if record and record["rows"]:
            for bound in record["rows"]:
                assert f"{bound['value']:.3f} {bound['unit']} ({bound['bound']})" in line[1]
        elif record:
            assert line[1].startswith("- none [") and note_of(table, line[1]).endswith(record["none"])
        else:
            assert line[1].startswith("- not recorded [")
        passes = info.get("network_passes") or get_model_kind(info["kind"]).network_passes(info)  # older exports
        default = [r for r in info["evaluation"]["rows"] if r["nfe_per_sample"] == passes and r["sampler"] != "ddpm"][0]
        assert line[2] == f"{default['fid']:.1f} ({default['n']})"
        assert line[5].endswith(f"({default['nfe_per_sample']})")
        assert line[8].startswith(f"{info['training']['wall_seconds'] / 60:.1f} min")
        entry = stability.get(info["kind"])
        if entry:
            assert line[6].startswith(f"{entry['fid_mean']:.1f}")
            assert line[7] == f"{len(entry['seeds'])} ({entry['seeds_covering_all_ten']})"
    # The README holds exactly this table (regenerate it with `python benchmarks/families.py`).
    start, end = markers("families")
    readme = (REPO / "README.md").read_text()
    assert readme.split(start, 1)[1].split(end, 1)[0].strip() == table
    copy = tmp_path / "README.md"
    shutil.copy(REPO / "README.md", copy)
    write_families(copy, exports, STABILITY)
    assert copy.read_text() == readme
