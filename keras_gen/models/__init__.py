"""The three generative models of the article (imported in the article's order, which is the
order of their kinds in the registry: keras_gen.models.kinds)."""

from keras_gen.models.vae import VAE  # isort: skip
from keras_gen.models.dcgan import DCGAN, AlternatingTrainer, build_discriminator, build_generator, train_alternating  # isort: skip
from keras_gen.models.ddpm import DDPM, build_ddpm  # isort: skip

__all__ = ["AlternatingTrainer", "DCGAN", "DDPM", "VAE", "build_ddpm", "build_discriminator", "build_generator", "train_alternating"]
