"""SavedModel export with the serving contract of docs/design.md ("Export").

The SavedModel loads with ``tf.saved_model.load`` in a process that never imports keras_gen and
runs with ``saved_model_cli``. Besides the signatures it carries ``assets/keras_gen.json`` (model
kind, config, dataset, training facts, metrics, and ``network_passes``: the network evaluations
per sample of ``serving_default``). Writes are atomic: the export goes to a temporary sibling
directory that is renamed into place, so a failure leaves any previous export intact. An export
never replaces what it did not write: an existing target must be an earlier keras_gen export
(and ``overwrite=True``) or an empty folder.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import keras

import keras_gen
from keras_gen.files import atomic_write_bytes, replace_directory
from keras_gen.models.precision import float32_model

ASSET_NAME = "keras_gen.json"
FORMAT_VERSION = 1


def is_export(path) -> bool:
    """True for a folder holding a keras_gen SavedModel (saved_model.pb and our assets file)."""
    path = Path(path)
    return (path / "saved_model.pb").is_file() and (path / "assets" / ASSET_NAME).is_file()


def check_export_target(path, overwrite: bool = False):
    """Refuse (ValueError naming it) a target that is not ours to replace: a file, a non-empty
    folder that is not a keras_gen export, or an export when ``overwrite`` is False."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir() or path.is_symlink():
        raise ValueError(f"{path} exists and is not a folder: choose another export path")
    if is_export(path):
        if not overwrite:
            raise ValueError(f"{path} already holds an export: pass --force (Python: overwrite=True) to "
                             "replace it, or choose another path")
        return
    if any(path.iterdir()):
        raise ValueError(f"{path} is a folder that is not a keras_gen export: refusing to replace it; "
                         "choose a new or empty path")


def _one_trace_archive():
    """A keras.export.ExportArchive that traces each endpoint once instead of twice.

    ExportArchive traces every endpoint to list the variables it reads, then tf.saved_model.save
    traces it again: a function traced inside a SavedModel save context has another cache key
    (the save's variable policy), so the first trace is not reused. Listing the variables inside
    the same (default) save context lets the save reuse that trace, the very one it would have
    made: the saved graphs are unchanged, and a DDPM export costs about half as much. (Without
    the private hook, the plain archive is used.)
    """
    try:
        import tensorflow as tf
        from tensorflow.python.saved_model import save_context
    except ImportError:  # pragma: no cover - a TensorFlow without the module
        return keras.export.ExportArchive()

    class OneTraceArchive(type(keras.export.ExportArchive())):  # the backend's archive class
        def _filter_and_track_resources(self):
            with save_context.save_context(tf.saved_model.SaveOptions()):
                return super()._filter_and_track_resources()

    return OneTraceArchive()


def export_saved_model(model, path, *, metadata=None, overwrite: bool = False):
    """Export ``model`` (any registered model kind) to a SavedModel directory at ``path``.

    Args:
        model: a model with ``serving_endpoints()`` and ``get_config()``; a mixed-precision model
            is exported as its float32 copy (`float32_model`).
        path: target directory: new, empty, or (with ``overwrite=True``) an earlier export, which
            is then replaced atomically; anything else is refused (see `check_export_target`).
        metadata: extra JSON-able facts for the assets file (dataset, training steps, metrics...).
        overwrite: replace an existing export at ``path``.
    Returns: the path as a Path.
    """
    from keras_gen.models.kinds import kind_of

    path = Path(path)
    check_export_target(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = float32_model(model)
    # Only the variables the endpoints use are saved (e.g. the DDPM's EMA U-Net, not its raw one).
    endpoints = model.serving_endpoints()
    archive = _one_trace_archive()
    for name, (fn, signature) in endpoints.items():
        archive.add_endpoint(name=name, fn=fn, input_signature=signature)
    info = {"format_version": FORMAT_VERSION, "keras_gen_version": keras_gen.__version__,
            "kind": model.kind, "config": model.get_config(), "signatures": sorted(endpoints)}
    if getattr(model, "num_classes", None) is not None:  # a conditional model (sample_class)
        info["num_classes"] = model.num_classes
    info["network_passes"] = kind_of(model).network_passes(info)
    info.update(metadata or {})
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        archive.write_out(str(tmp), verbose=False)
        atomic_write_bytes(tmp / "assets" / ASSET_NAME, json.dumps(info, indent=2, default=str).encode())
        check_export_target(path, overwrite)  # again: the target may have appeared meanwhile
        replace_directory(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def export_keras_file(keras_path, path, *, overwrite: bool = False, **options) -> Path:
    """Export a saved ``.keras`` model (e.g. a run's model.keras or an epoch checkpoint) to ``path``.

    The training facts of the run (dataset, preset, config, steps, wall time, machine) come from
    the run folder the file belongs to (keras_gen.runs.RunFolder.training_facts), when it has them;
    for an epoch checkpoint, those at the end of that epoch. ``options`` change the model's
    serving defaults first, as its kind allows (``ModelKind.export_options``: a DDPM's
    ``ddim_eta``); None values are ignored.
    """
    from keras_gen.models.kinds import kind_of
    from keras_gen.runs import RunFolder
    from keras_gen.sampling import load_keras_model

    keras_path = Path(keras_path)
    check_export_target(path, overwrite)
    model = load_keras_model(keras_path)
    kind_of(model).apply_export_options(model, {k: v for k, v in options.items() if v is not None})
    run, epoch = RunFolder.of_keras_file(keras_path)
    return export_saved_model(model, path, metadata=run.training_facts(epoch), overwrite=overwrite)


# Facts an export's assets hold about its training and the data it models: a re-export keeps them.
# Its "evaluation" is not kept: it measured the old graph (re-measure with `keras-gen evaluate --record`).
TRAINING_FACTS = ("dataset", "preset", "train_config", "training", "machine", "likelihood", "distillation")


def reexport(export_dir, path, *, overwrite: bool = False) -> Path:
    """Write an earlier keras_gen export again with this release's exporter, from its own weights
    (`keras_gen.sampling.model_from_export`), keeping its training facts (`TRAINING_FACTS`).

    Why: an older exporter's graph can be larger (a network inlined in every sampling loop) or
    carry the training machine's precision (casts to bfloat16 from a mixed-precision model); the
    weights are the same. ``path`` may be ``export_dir`` itself with ``overwrite=True``: the
    weights are read into memory before the atomic replacement.
    """
    from keras_gen.sampling import model_from_export

    info = read_export_info(export_dir)
    check_export_target(path, overwrite)
    model = model_from_export(export_dir)
    facts = {key: info[key] for key in TRAINING_FACTS if key in info}
    facts["reexported"] = {"from_keras_gen_version": info.get("keras_gen_version"),
                           "evaluation_dropped": "evaluation" in info}
    return export_saved_model(model, path, metadata=facts, overwrite=overwrite)


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
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{asset} is not valid JSON ({exc}): re-export the model") from exc
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict) or "kind" not in info:
        raise ValueError(f"{asset} lacks the kind and config of the model: re-export the model")
    if int(info.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path} was exported by a newer keras_gen (format "
                         f"{info['format_version']} > {FORMAT_VERSION}); upgrade keras_gen")
    return info


def write_export_info(path, info: dict):
    """Replace an export's assets/keras_gen.json (atomically): e.g. to record its evaluation."""
    atomic_write_bytes(Path(path) / "assets" / ASSET_NAME, json.dumps(info, indent=2, default=str).encode())
