"""keras_gen: the VAE, DCGAN and DDPM of Cheigh & Yamada (2023) as a Keras 3 library.

Public API: the models (VAE, DCGAN, DDPM), the data (load_dataset, make_dataset), presets
(get_preset), export (export_saved_model, load_sampler), and the modules plotting, callbacks,
diffusion.

Names are imported on first use (PEP 562), so ``import keras_gen`` and the command line's
argument checks do not wait for TensorFlow to load.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "callbacks": "keras_gen.callbacks", "diffusion": "keras_gen.diffusion", "plotting": "keras_gen.plotting",
    "load_dataset": "keras_gen.data", "make_dataset": "keras_gen.data",
    "export_saved_model": "keras_gen.export", "load_sampler": "keras_gen.export",
    "DCGAN": "keras_gen.models", "DDPM": "keras_gen.models", "VAE": "keras_gen.models",
    "build_discriminator": "keras_gen.models", "build_generator": "keras_gen.models",
    "train_alternating": "keras_gen.models", "get_preset": "keras_gen.presets",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'keras_gen' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    value = module if module.__name__.endswith("." + name) else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
