"""keras_gen: the VAE, DCGAN and DDPM of Cheigh & Yamada (2023) as a Keras 3 library."""

from keras_gen.data import load_dataset, make_dataset

__version__ = "0.1.0"

__all__ = ["load_dataset", "make_dataset", "__version__"]
