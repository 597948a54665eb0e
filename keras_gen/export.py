"""SavedModel export with the serving contract of docs/design.md ("Export").

The SavedModel loads with ``tf.saved_model.load`` in a process that never imports keras_gen and
runs with ``saved_model_cli``. Besides the signatures it carries ``assets/keras_gen.json`` (model
kind, config, dataset, training facts, metrics). Writes are atomic: the export goes to a temporary
sibling directory that is renamed into place, so a failure leaves any previous export intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import keras

import keras_gen
from keras_gen.models.serving import MAX_IMAGES

ASSET_NAME = "keras_gen.json"
FORMAT_VERSION = 1


def export_saved_model(model, path, *, metadata=None):
    """Export ``model`` (a keras_gen VAE / DCGAN / DDPM) to a SavedModel directory at ``path``.

    Args:
        model: a model with ``serving_endpoints()`` and ``get_config()``.
        path: target directory; replaced atomically if it exists.
        metadata: extra JSON-able facts for the assets file (dataset, training steps, metrics...).
    Returns: the path as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Only the variables the endpoints use are saved (e.g. the DDPM's EMA U-Net, not its raw one).
    archive = keras.export.ExportArchive()
    for name, (fn, signature) in model.serving_endpoints().items():
        archive.add_endpoint(name=name, fn=fn, input_signature=signature)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        archive.write_out(str(tmp), verbose=False)
        assets = tmp / "assets"
        assets.mkdir(exist_ok=True)
        info = {"format_version": FORMAT_VERSION, "keras_gen_version": keras_gen.__version__,
                "kind": model.kind, "config": model.get_config(),
                "signatures": sorted(model.serving_endpoints()), **(metadata or {})}
        if getattr(model, "num_classes", None) is not None:  # a conditional model (sample_class)
            info["num_classes"] = model.num_classes
        (assets / ASSET_NAME).write_text(json.dumps(info, indent=2, default=str))
        _replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def export_keras_file(keras_path, path, *, ddim_eta=None) -> Path:
    """Export a saved ``.keras`` model (e.g. a run's model.keras or an epoch checkpoint) to ``path``.

    The training facts of the run (dataset, preset, config, steps, wall time, machine) are taken
    from the ``summary.json`` that ``keras-gen train`` writes beside model.keras, when present.
    For an epoch checkpoint (``<run>/checkpoints/epoch_XXX.keras``) the epochs, steps, wall time
    and metrics are those at the end of that epoch, from the run's history.csv.
    ``ddim_eta`` (DDPM only) replaces the model's default DDIM eta in the export (and its config).
    """
    import csv

    keras_path = Path(keras_path)
    if keras_path.suffix != ".keras" or not keras_path.is_file():
        raise ValueError(f"{keras_path} is not a .keras file")
    import keras_gen.models  # noqa: F401  (registers the classes load_model needs)
    model = keras.models.load_model(keras_path)
    if ddim_eta is not None:
        if model.kind != "ddpm":
            raise ValueError(f"ddim_eta applies to a DDPM, not to a {model.kind}")
        from keras_gen.models.ddpm import check_ddim_eta
        model.ddim_eta = check_ddim_eta(ddim_eta)
    epoch_file = keras_path.parent.name == "checkpoints" and keras_path.stem.startswith("epoch_")
    run_dir = keras_path.parent.parent if epoch_file else keras_path.parent
    metadata = {}
    if (run_dir / "summary.json").exists():
        facts = json.loads((run_dir / "summary.json").read_text())
        metadata = {k: facts[k] for k in ("dataset", "preset", "train_config", "training", "machine") if k in facts}
    if epoch_file and metadata and (run_dir / "history.csv").exists():
        epochs = int(keras_path.stem.split("_")[1])
        with open(run_dir / "history.csv") as f:
            row = next(r for r in csv.DictReader(f) if int(r["epoch"]) + 1 == epochs)
        steps_per_epoch = metadata["training"]["steps"] // metadata["training"]["epochs"]
        metadata["training"] = {"epochs": epochs, "steps": epochs * steps_per_epoch,
                                "wall_seconds": round(float(row["wall_seconds"]), 1),
                                "final_metrics": {k: float(v) for k, v in row.items()
                                                  if k not in ("epoch", "wall_seconds") and v not in ("", "NA")},
                                "checkpoint_of": f"{metadata['training']['epochs']}-epoch run"}
        metadata["train_config"] = {**metadata.get("train_config", {}), "epochs": epochs}
    return export_saved_model(model, path, metadata=metadata)


def _replace_dir(new: Path, target: Path):
    """Move ``new`` to ``target``; an existing target is swapped out first and removed after."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_export_info(path) -> dict:
    """The assets/keras_gen.json of an export, with clear errors for what is not one."""
    path = Path(path)
    if not (path / "saved_model.pb").exists():
        raise ValueError(f"{path} is not an exported SavedModel (no saved_model.pb)")
    asset = path / "assets" / ASSET_NAME
    if not asset.exists():
        raise ValueError(f"{path} has no assets/{ASSET_NAME}: not a keras_gen export")
    try:
        info = json.loads(asset.read_text())
    except ValueError as exc:
        raise ValueError(f"{asset} is not valid JSON: {exc}") from exc
    if int(info.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path} was exported by a newer keras_gen (format "
                         f"{info['format_version']} > {FORMAT_VERSION}); upgrade keras_gen")
    return info


def load_sampler(path):
    """A function ``sample(n, seed, **options) -> float32 (n, 28, 28, 1) in [0, 1]`` for a model.

    Every keras_gen model's ``sample()`` and every export's signatures return that format.

    ``path`` is an exported SavedModel directory (called through its signatures) or a ``.keras``
    file (loaded with keras and sampled directly). DDPM options: sampler="ddpm"|"ddim", steps.
    Conditional models: ``label`` (one class for all n images; an export's ``sample_class``) and,
    for a DDPM, ``guidance`` (default: the model's).
    """
    import numpy as np
    import tensorflow as tf

    path = Path(path)
    if path.suffix == ".keras" and path.is_file():
        import keras_gen.models  # noqa: F401  (registers the classes load_model needs)
        model = keras.models.load_model(path)

        def sample_keras(n, seed, label=None, guidance=None, **options):
            if label is not None:
                options["labels"] = label
            if guidance is not None:
                if model.kind != "ddpm":
                    raise ValueError(f"guidance applies to a conditional DDPM, not to a {model.kind}")
                options["guidance"] = guidance
            return np.asarray(model.sample(n, seed, **options), dtype=np.float32)
        return sample_keras
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if not path.is_dir():
        raise ValueError(f"{path} is neither an exported SavedModel directory nor a .keras file")
    info = read_export_info(path)
    loaded = tf.saved_model.load(str(path))

    def sample_export(n, seed, sampler=None, steps=None, label=None, guidance=None, **options):
        if not 1 <= int(n) <= MAX_IMAGES:
            raise ValueError(f"an export draws 1 to {MAX_IMAGES} images per call, got {n}; "
                             "ask in several calls")
        if options:
            raise ValueError(f"unsupported options for a {info['kind']} export: {sorted(options)}")
        args = dict(num_images=tf.constant(n, tf.int32), seed=tf.constant(seed, tf.int32))
        num_classes = info.get("num_classes")
        if label is None and guidance is not None:
            raise ValueError("guidance needs a label (sample_class)")
        if label is not None:
            if num_classes is None:
                raise ValueError(f"{path} is an unconditional {info['kind']}: it takes no label")
            if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < num_classes:
                raise ValueError(f"label must be an integer in [0, {num_classes}), got {label!r}")
            if sampler is not None or steps is not None:
                raise ValueError("an export's sample_class runs its default sampler; sampler/steps "
                                 "cannot be combined with a label (sample the .keras file for that)")
            args["label"] = tf.constant(label, tf.int32)
            if info["kind"] == "ddpm":
                w = info["config"]["guidance"] if guidance is None else guidance  # recorded by DDPM.get_config
                args["guidance"] = tf.constant(w, tf.float32)
            elif guidance is not None:
                raise ValueError(f"guidance applies to DDPM exports, not to a {info['kind']}")
            return loaded.signatures["sample_class"](**args)["images"].numpy()
        if info["kind"] != "ddpm":
            if sampler is not None or steps is not None:
                raise ValueError(f"sampler/steps apply to DDPM exports, not to a {info['kind']}")
            signature = loaded.signatures["serving_default"]
        elif sampler == "ddpm":
            if steps is not None:
                raise ValueError("the DDPM sampler runs all T steps; use sampler='ddim' to set steps")
            signature = loaded.signatures["sample_ddpm"]
        elif steps is not None:
            timesteps = info["config"]["schedule"]["timesteps"]
            if not 1 <= steps <= timesteps:
                raise ValueError(f"DDIM steps must be in [1, {timesteps}] for this model, got {steps}")
            args["steps"] = tf.constant(steps, tf.int32)
            signature = loaded.signatures["sample_ddim"]
        else:
            signature = loaded.signatures["serving_default"]
        return signature(**args)["images"].numpy()
    sample_export.info = info
    return sample_export
