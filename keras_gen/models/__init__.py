"""The three generative models of the article."""

from keras_gen.models.ddpm import DDPM, build_ddpm
from keras_gen.models.dcgan import DCGAN, AlternatingTrainer, build_discriminator, build_generator, train_alternating
from keras_gen.models.vae import VAE

__all__ = ["AlternatingTrainer", "DCGAN", "DDPM", "VAE", "build_ddpm", "build_discriminator", "build_generator", "train_alternating"]
