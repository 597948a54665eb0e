"""`keras-gen evaluate --likelihood`: each model's likelihood bounds on the real test images,
through the model contract (``ModelKind.likelihood``; a kind without one says why), recorded
into an export's assets on request."""

from __future__ import annotations

import time
from pathlib import Path


def load_model_of(path):
    """The Keras model of a .keras file or of an export (rebuilt from its config and weights)."""
    from keras_gen.sampling import load_keras_model, model_from_export

    path = Path(path)
    return load_keras_model(path) if path.suffix == ".keras" else model_from_export(path)


def measure_likelihood(path, n: int | None = None, seed: int = 0, dataset: str | None = None) -> dict:
    """{path, kind, dataset, n, rows (the kind's bounds) or none (why not), cpu_seconds, command}
    for the model at ``path`` on the first ``n`` test images (default all 10,000)."""
    from keras_gen.data import load_dataset
    from keras_gen.export import is_export, read_export_info
    from keras_gen.models.kinds import kind_of

    model = load_model_of(path)
    kind = kind_of(model)
    info = read_export_info(path) if is_export(path) else {}
    dataset = dataset or info.get("dataset", "mnist")
    images, _ = load_dataset(dataset, "test")
    images = images[:n] if n else images
    result = {"path": str(path), "kind": kind.name, "dataset": dataset, "n": len(images), "seed": seed}
    if kind.no_likelihood is not None:
        return {**result, "rows": [], "none": kind.no_likelihood}
    start = time.process_time()
    result["rows"] = kind.likelihood(model, images, seed=seed, info=info or None)
    result["cpu_seconds"] = round(time.process_time() - start, 1)
    return result


def record_likelihood(result: dict):
    """Store a measure_likelihood result in the export's assets (info["likelihood"])."""
    from keras_gen.export import read_export_info, write_export_info

    info = read_export_info(result["path"])
    info["likelihood"] = {k: v for k, v in result.items() if k != "path"}
    write_export_info(result["path"], info)


def format_likelihoods(results) -> str:
    """A plain-text table of measure_likelihood results."""
    lines = [f"{'model':<28} {'bound':<18} {'value':>10} {'+-':>7} {'unit':<9} {'n':>6}  data"]
    for r in results:
        name = f"{Path(r['path']).name} ({r['kind']})"
        if not r["rows"]:
            lines.append(f"{name:<28} none: {r['none']}")
        for row in r["rows"]:
            stderr = f"{row['stderr']:.3f}" if row["stderr"] is not None else "-"
            lines.append(f"{name:<28} {row['bound']:<18} {row['value']:10.3f} {stderr:>7} {row['unit']:<9} "
                         f"{row['n']:>6}  {row['data']}")
    return "\n".join(lines)
