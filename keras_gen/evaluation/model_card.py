"""Model cards for exported models: evaluation numbers recorded in the export, and a README table.

``record_evaluation(report)`` writes each evaluated export's rows (quality, coverage, speed) into
its ``assets/keras_gen.json`` under "evaluation", so a SavedModel carries its own numbers.
``model_card(paths)`` renders the table of saved_models/README.md from those assets: size on disk,
parameters, training time, classifier FID, coverage, samples/s. ``zoo_listing(models)`` is the
short form ``keras-gen models`` prints for the shipped models by name. Nothing in the tables is
typed in.
"""

from __future__ import annotations

from pathlib import Path

from keras_gen.export import read_export_info, write_export_info
from keras_gen.files import atomic_write_bytes

ROW_KEYS = ("label", "sampler", "steps", "nfe_per_sample", "n", "fid", "kid_mean", "precision", "recall",
            "classes_covered", "normalized_entropy", "min_class_fraction", "inception_score",
            "samples_per_s")


def record_evaluation(report: dict) -> list[Path]:
    """Store each export's report rows in its assets json ("evaluation"); returns the paths.

    .keras files in the report are skipped (they have no assets folder).
    """
    by_path: dict[str, list] = {}
    for row in report["rows"]:
        by_path.setdefault(row["path"], []).append({k: row.get(k) for k in ROW_KEYS})
    written = []
    for path, rows in by_path.items():
        path = Path(path)
        if not path.is_dir():
            continue
        info = read_export_info(path)
        info["evaluation"] = {"dataset": report["dataset"], "classifier": report["classifier"],
                              "real": report["real"], "seed": report["seed"],
                              "created": report["created"], "rows": rows}
        write_export_info(path, info)
        written.append(path)
    return written


def export_size_bytes(path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def export_parameters(path) -> int:
    """Number of scalars stored in an export's variables (what is shipped, e.g. EMA weights only)."""
    import numpy as np
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(Path(path) / "variables" / "variables"))
    return int(sum(np.prod(shape) for name, shape in reader.get_variable_to_shape_map().items()
                   if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")))


def default_row(info: dict) -> dict | None:
    """The evaluation row of the export's default sampler (serving_default): the row with its
    ``network_passes`` (a DDPM's DDIM steps, not its full chain), else the first."""
    from keras_gen.models.kinds import get_model_kind

    rows = (info.get("evaluation") or {}).get("rows") or []
    passes = info.get("network_passes") or get_model_kind(info["kind"]).network_passes(info)  # older exports
    rows = [r for r in rows if r.get("nfe_per_sample") == passes and r.get("sampler") != "ddpm"] or rows
    return rows[0] if rows else None


def sampler_cell(row: dict) -> str:
    """"one pass (1)" for a one-pass generator, else e.g. "DDIM 50 (50)"."""
    if not row.get("sampler"):
        return f"one pass ({row['nfe_per_sample']})"
    return f"{row['sampler'].upper()} {row['steps']} ({row['nfe_per_sample']})"


def train_time_cell(info: dict) -> str:
    """Training minutes and epochs; for a distilled student also the whole distillation's time."""
    training = info.get("training") or {}
    minutes = training.get("wall_seconds")
    cell = f"{_fmt(None if minutes is None else minutes / 60, '.1f')} min, {training.get('epochs')} epochs"
    distillation = info.get("distillation")
    if distillation:
        cell += (f" (this round; {distillation['wall_seconds_total'] / 60:.0f} min over "
                 f"{len(distillation['rounds'])} rounds from the teacher)")
    return cell


def _fmt(value, spec):
    return "not measured" if value is None else format(value, spec)


def model_card(paths) -> str:
    """A markdown table, one line per export (and per extra DDPM sampler row), from the assets."""
    head = ("| model | sampler (NFE) | size | parameters | train time | classifier FID (n) | "
            "classes >= 2% | class entropy | samples/s |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for path in paths:
        info = read_export_info(path)
        base = (f"| {Path(path).name} ({info['kind'].upper()}, {info.get('preset', '?')} preset) | {{sampler}} | "
                f"{export_size_bytes(path) / 2**20:.1f} MB | {export_parameters(path):,} | "
                f"{train_time_cell(info)} |")
        default = default_row(info)
        rows = (info.get("evaluation") or {}).get("rows") or []
        ordered = ([default] if default else []) + [r for r in rows if r is not default]
        if not ordered:
            lines.append(base.format(sampler="-") + " not measured | | | |")
        for row in ordered:
            sampler = sampler_cell(row)
            if row.get("eta"):
                sampler += f", eta {row['eta']:g}"
            if row is not default:
                sampler += ", not the default"
            lines.append(base.format(sampler=sampler) +
                         f" {row['fid']:.1f} ({row['n']}) | {row['classes_covered']} | "
                         f"{row['normalized_entropy']:.3f} | {_fmt(row.get('samples_per_s'), '.3g')} |")
    return "\n".join(lines) + likelihood_table(paths)


def likelihood_table(paths) -> str:
    """The recorded likelihoods (`keras-gen evaluate --likelihood --record`) as a second table
    ("" when no export has one); a kind without a likelihood gets its reason."""
    lines = []
    for path in paths:
        record = read_export_info(path).get("likelihood")
        if not record:
            continue
        name = f"{Path(path).name} ({record['kind'].upper()})"
        if not record["rows"]:
            lines.append(f"| {name} | none: {record['none']} | | | | |")
        for row in record["rows"]:
            stderr = f" +- {row['stderr']:.3f}" if row.get("stderr") is not None else ""
            lines.append(f"| {name} | {row['bound']} | {row['value']:.3f}{stderr} | {row['unit']} | {row['n']} | "
                         f"{row['data']} |")
    if not lines:
        return ""
    head = "| model | likelihood | value | unit | test images | data |\n|---|---|---|---|---|---|"
    return "\n\n" + "\n".join([head] + lines)


def zoo_listing(models) -> str:
    """An aligned text table of named exports (keras_gen.zoo.ShippedModel): name, kind, dataset,
    conditioning, the recorded classifier FID of the default sampler (when the assets hold an
    evaluation), size on disk and folder."""
    lines = [("name", "kind", "dataset", "conditional", "classifier FID (n), sampler (NFE)", "size", "folder")]
    for model in models:
        row = default_row(model.info)
        fid = "not measured" if row is None else f"{row['fid']:.1f} ({row['n']}), {sampler_cell(row)}"
        classes = "no" if model.num_classes is None else f"yes, {model.num_classes} classes (--label)"
        lines.append((model.name, model.kind, model.dataset, classes, fid,
                      f"{export_size_bytes(model.path) / 2**20:.1f} MB", str(model.path)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) + "  " + line[-1]
                     for line in lines)


def markers(name: str) -> tuple[str, str]:
    """The start and end comments that delimit a generated block called ``name`` in markdown."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


CARD_START, CARD_END = markers("model-card")


def write_model_card(path, table: str, block: str = "model-card") -> Path:
    """Put ``table`` into the markdown file at ``path``: between the ``block``'s markers (default
    the model card's, ``<!-- model-card:start/end -->``) when the file has them (the prose around
    stays), else appended to the file (a new file holds just the table); nothing else in the file
    is changed. Written atomically."""
    path = Path(path)
    start, end = markers(block)
    text = path.read_text() if path.exists() else ""
    block = f"{start}\n{table}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + block + "\n"
    atomic_write_bytes(path, text.encode())
    return path
