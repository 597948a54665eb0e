"""One sampler interface for every model file: ``.keras`` models and exported SavedModels alike.

``load_sampler(path)`` returns a `Sampler`; ``sampler(n, seed, **options)`` gives float32
(n, 28, 28, 1) images in [0, 1]. The options and their checks come from the model's kind
(``ModelKind.sample_options``: e.g. ``label`` for a conditional model; ``sampler``, ``steps``,
``guidance`` for a DDPM) and are the same for both file types: a ``.keras`` model is sampled with
``model.sample``, an export through the signature its kind names for those options
(``ModelKind.export_call``). ``keras-gen sample``, ``keras-gen demo``, evaluation and the
tutorials all draw through it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from keras_gen.models.serving import MAX_IMAGES, check_num_images, check_seed


def check_count_and_seed(n, seed) -> tuple[int, int]:
    """(n, seed) as ints, 1 <= n <= MAX_IMAGES (the exports' cap, for .keras files too) and seed
    in [0, 2**31 - 1], checked as the models' own sample() checks them (never wrapped)."""
    n = check_num_images(n)
    if n > MAX_IMAGES:
        raise ValueError(f"n must be an integer in [1, {MAX_IMAGES}] per call, got {n}; ask in several calls")
    return n, check_seed(seed)


def load_keras_model(path):
    """keras.models.load_model for a keras_gen ``.keras`` file, with one-line errors."""
    import keras

    from keras_gen.models.kinds import model_kinds

    path = Path(path)
    if path.suffix != ".keras" or not path.is_file():
        raise ValueError(f"{path} is not a .keras file")
    model_kinds()  # registers the built-in and plugin classes load_model needs
    try:
        model = keras.models.load_model(path)
    except (zipfile.BadZipFile, OSError, KeyError, EOFError) as exc:
        raise ValueError(f"cannot load {path}: the file is damaged or not a Keras model ({exc})") from exc
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot load {path}: {str(exc).splitlines()[0]}") from exc
    if not hasattr(model, "sample") or not hasattr(model, "kind"):
        raise ValueError(f"{path} is a Keras model but not a keras_gen generator (no sample())")
    return model


def model_from_export(path):
    """The Keras model of a keras_gen export: rebuilt from the config in its assets, with the
    exported weights (e.g. to distill or fine-tune a shipped model that has no ``.keras`` file).

    An export holds only what its signatures use: a DDPM's EMA U-Net, not the raw one, which keeps
    its initial weights (sampling and distillation read the EMA); a latent DDPM's first-stage
    decoder, not its encoder. The names of the weights left at their initial values
    (`checkpointing.variable_names`) are the model's ``not_restored_from_export`` (a tuple), for
    code that needs more than sampling to check (e.g. keras_gen.distill, against
    ``DDPM.diffusion_data_layers``). The result is checked: its ``serving_default`` must draw the
    export's images for seed 0, else ValueError.
    """
    import keras
    import tensorflow as tf

    from keras_gen.export import read_export_info
    from keras_gen.export_weights import copy_export_weights
    from keras_gen.models.kinds import model_kinds

    info = read_export_info(path)
    model_kinds()
    classes = [c for c in keras.saving.get_custom_objects().values()
               if isinstance(c, type) and getattr(c, "kind", None) == info["kind"] and hasattr(c, "from_config")]
    if not classes:
        raise ValueError(f"{path}: no model class of kind {info['kind']!r} is registered")
    model = classes[0].from_config(info["config"])
    not_restored = copy_export_weights(model, path)
    loaded = tf.saved_model.load(str(path))
    args = dict(num_images=tf.constant(2), seed=tf.constant(0))
    expected = loaded.signatures["serving_default"](**args)["images"].numpy()
    fn, signature = model.serving_endpoints()["serving_default"]
    got = tf.function(fn, input_signature=signature, autograph=False)(**args)["images"].numpy()
    if not np.allclose(got, expected, atol=1e-3):
        raise ValueError(f"{path}: the rebuilt model does not reproduce the export's images "
                         f"(max difference {np.abs(got - expected).max():.3g})")
    model.not_restored_from_export = not_restored
    return model


class Sampler:
    """Draws images from one model file with its kind's option checks (see the module docstring).

    Attributes: ``path``, ``kind`` (the ModelKind), ``info`` (kind, config, num_classes and, for
    an export, everything in its assets JSON).
    """

    def __init__(self, path, kind, info: dict, draw):
        self.path, self.kind, self.info, self._draw = Path(path), kind, info, draw

    def check(self, n, seed, **options) -> tuple[int, int, dict]:
        n, seed = check_count_and_seed(n, seed)
        return n, seed, self.kind.check_sample_options(options, self.info)

    def __call__(self, n, seed=0, **options) -> np.ndarray:
        n, seed, options = self.check(n, seed, **options)
        return np.asarray(self._draw(n, seed, options), dtype=np.float32)

    def network_passes(self, **options) -> int:
        """Network evaluations per sample of a call with these options."""
        return self.kind.network_passes(self.info, self.kind.check_sample_options(options, self.info))

    def __repr__(self):
        return f"Sampler({str(self.path)!r}, kind={self.kind.name!r})"


def _keras_sampler(path) -> Sampler:
    from keras_gen.models.kinds import kind_of

    model = load_keras_model(path)
    info = {"kind": model.kind, "config": model.get_config(), "num_classes": getattr(model, "num_classes", None)}

    def draw(n, seed, options):
        options = dict(options)
        if "label" in options:
            options["labels"] = options.pop("label")
        return model.sample(n, seed, **options)

    sampler = Sampler(path, kind_of(model), info, draw)
    sampler.model = model
    return sampler


def _export_sampler(path) -> Sampler:
    import tensorflow as tf

    from keras_gen.export import read_export_info
    from keras_gen.models.kinds import get_model_kind

    info = read_export_info(path)
    kind = get_model_kind(info["kind"])
    try:
        loaded = tf.saved_model.load(str(path))
    except (OSError, ValueError, tf.errors.OpError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot load the SavedModel {path}: {first}; re-export the model") from exc

    def draw(n, seed, options):
        name, extra = kind.export_call(info, options)
        if name not in loaded.signatures:
            raise ValueError(f"{path} has no {name!r} signature (it has {', '.join(sorted(loaded.signatures))})")
        args = {"num_images": tf.constant(n, tf.int32), "seed": tf.constant(seed, tf.int32)}
        args.update({key: tf.constant(value, dtype) for key, (dtype, value) in extra.items()})
        try:
            return loaded.signatures[name](**args)["images"].numpy()
        except tf.errors.InvalidArgumentError as exc:
            raise ValueError(f"{path}: {exc.message.strip().splitlines()[0]}") from None

    sampler = Sampler(path, kind, info, draw)
    sampler.loaded = loaded
    return sampler


def load_sampler(path) -> Sampler:
    """The `Sampler` of an exported SavedModel directory or a ``.keras`` file."""
    path = Path(path)
    if path.suffix == ".keras" and path.is_file():
        return _keras_sampler(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if not path.is_dir():
        raise ValueError(f"{path} is neither an exported SavedModel directory nor a .keras file")
    return _export_sampler(path)
