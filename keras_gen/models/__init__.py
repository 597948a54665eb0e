"""The generative models: the article's three (imported in the article's order, which is the
order of their kinds in the registry: keras_gen.models.kinds), then the distilled diffusion student,
the normalizing flow and latent diffusion (its first-stage autoencoder and its latent DDPM)."""

from keras_gen.models.vae import VAE  # isort: skip
from keras_gen.models.dcgan import DCGAN, AlternatingTrainer, build_discriminator, build_generator, train_alternating  # isort: skip
from keras_gen.models.ddpm import DDPM, build_ddpm  # isort: skip
from keras_gen.models.distillation import DistilledDDPM, ProgressiveDistillation  # isort: skip
from keras_gen.models.flow import RealNVP  # isort: skip
from keras_gen.models.latent import LatentAutoencoder, LatentDDPM  # isort: skip

__all__ = ["AlternatingTrainer", "DCGAN", "DDPM", "DistilledDDPM", "LatentAutoencoder", "LatentDDPM", "ProgressiveDistillation", "RealNVP", "VAE", "build_ddpm", "build_discriminator", "build_generator", "train_alternating"]
