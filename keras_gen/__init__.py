"""keras_gen: the VAE, DCGAN and DDPM of Cheigh & Yamada (2023) as a Keras 3 library.

Public API: the models (VAE, DCGAN, DDPM, the distilled few-step DistilledDDPM with the
ProgressiveDistillation that trains it, the normalizing flow RealNVP, and latent diffusion's
LatentAutoencoder and LatentDDPM), the model kinds
(register_model_kind, get_model_kind, model_kinds, ModelKind), the data (load_dataset, make_dataset), presets (get_preset), run folders
(RunFolder), export and sampling (export_saved_model, Sampler, load_sampler), the shipped models
by name (from_preset, shipped_models), and the modules plotting, callbacks, diffusion.

``import keras_gen`` is light: it imports neither TensorFlow nor matplotlib. Each public name, and
each submodule (``keras_gen.models``, ``keras_gen.evaluation``...), is imported the first time it
is used (PEP 562 module ``__getattr__``), so that ``keras_gen.cli`` can configure TensorFlow's
logging before TensorFlow is loaded.
"""

import importlib
import importlib.util

__version__ = "0.1.0"

# public name -> the module that defines it. A name mapped to its own module path is that module.
_LAZY = {
    # modules
    "callbacks": "keras_gen.callbacks",
    "diffusion": "keras_gen.diffusion",
    "plotting": "keras_gen.plotting",
    # models
    "AlternatingTrainer": "keras_gen.models",
    "DCGAN": "keras_gen.models",
    "DDPM": "keras_gen.models",
    "DistilledDDPM": "keras_gen.models",
    "LatentAutoencoder": "keras_gen.models",
    "LatentDDPM": "keras_gen.models",
    "ProgressiveDistillation": "keras_gen.models",
    "RealNVP": "keras_gen.models",
    "VAE": "keras_gen.models",
    "build_discriminator": "keras_gen.models",
    "build_generator": "keras_gen.models",
    "train_alternating": "keras_gen.models",
    # model kinds
    "ModelKind": "keras_gen.models.kinds",
    "get_model_kind": "keras_gen.models.kinds",
    "model_kinds": "keras_gen.models.kinds",
    "register_model_kind": "keras_gen.models.kinds",
    # data, presets, runs
    "load_dataset": "keras_gen.data",
    "make_dataset": "keras_gen.data",
    "get_preset": "keras_gen.presets",
    "RunFolder": "keras_gen.runs",
    # export and sampling
    "export_saved_model": "keras_gen.export",
    "Sampler": "keras_gen.sampling",
    "load_sampler": "keras_gen.sampling",
    # shipped models by name
    "from_preset": "keras_gen.zoo",
    "shipped_models": "keras_gen.zoo",
    "family_models": "keras_gen.zoo",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    module_name = _LAZY.get(name)
    if module_name is None:
        # Any submodule, as when this file imported them all: keras_gen.models.build_ddpm, ...
        if name.startswith("_") or importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module 'keras_gen' has no attribute {name!r}")
        module_name = f"{__name__}.{name}"
    module = importlib.import_module(module_name)
    value = module if module_name == f"{__name__}.{name}" else getattr(module, name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
