"""keras_gen: the VAE, DCGAN and DDPM of Cheigh & Yamada (2023) as a Keras 3 library.

Public API: the models (VAE, DCGAN, DDPM), the data (load_dataset, make_dataset), presets
(get_preset), export (export_saved_model, load_sampler), and the modules plotting, callbacks,
diffusion.
"""

__version__ = "0.1.0"

from keras_gen import callbacks, diffusion, plotting  # noqa: E402
from keras_gen.data import load_dataset, make_dataset
from keras_gen.export import export_saved_model
from keras_gen.models.kinds import ModelKind, get_model_kind, model_kinds, register_model_kind
from keras_gen.runs import RunFolder
from keras_gen.sampling import Sampler, load_sampler
from keras_gen.models import (DCGAN, DDPM, VAE, AlternatingTrainer, build_discriminator, build_generator,
                              train_alternating)
from keras_gen.presets import get_preset  # noqa: E402

__all__ = ["ModelKind", "RunFolder", "Sampler", "get_model_kind", "model_kinds", "register_model_kind",
           "AlternatingTrainer", "DCGAN", "DDPM", "VAE", "build_discriminator", "build_generator", "callbacks", "diffusion",
           "export_saved_model", "get_preset", "load_dataset", "load_sampler", "make_dataset",
           "plotting", "train_alternating", "__version__"]
