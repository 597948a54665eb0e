"""Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion
Models") at MNIST scale: a diffusion model run in the small spatial latent of an autoencoder.

First stage, kind ``autoencoder``: `LatentAutoencoder`. Digits padded to 32x32 in [0, 1] -> a
convolution and two stride-2 convolutions -> a posterior N(mean, exp(logvar)) over an (8, 8, C)
latent -> the mirrored decoder with a sigmoid output. The loss is the pixels' binary cross-entropy
summed per image plus ``kl_weight`` times the KL divergence to N(0, I): LDM's "KL-f" models, whose
small KL weight keeps the latent smooth and bounded without asking it to *be* N(0, I) as a VAE's
must. ``kl_weight=0`` is the plain deterministic autoencoder (z = mean, no noise).
``sample()`` decodes z ~ N(0, I): what a prior that was never fitted to the latent gives.

Second stage, kind ``latent_ddpm``: `LatentDDPM`, keras_gen's `DDPM` whose data are the frozen
first stage's posterior means times ``scale_factor``, 1 / (their standard deviation on the
training images), LDM's normalisation, so the diffusion starts from unit-variance data as its
noise schedule assumes; it is measured once when the prior is built and kept in the config. Its
``to_images`` decodes. The model owns the first stage (frozen), so its ``.keras`` file and its
export hold the decoder, and every DDPM sampler, guidance and serving signature works unchanged.

Its distilled few-step student, kind ``distilled_latent``: `DistilledLatentDDPM`, what
``keras-gen distill`` makes of a latent DDPM teacher (keras_gen.models.distillation), on the same
frozen first stage.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from keras_gen.diffusion import NoiseSchedule
from keras_gen.models.conditioning import Conditioning
from keras_gen.models.ddpm import DDPM, DDPMKind, build_denoiser, ddpm_settings
from keras_gen.models.distillation import Distilled, DistilledKind
from keras_gen.models.kinds import ModelKind, register_model_kind
from keras_gen.models.optimizer_build import OptimizerBuiltOnCompile
from keras_gen.models.replicas import replica_share, step_logs
from keras_gen.models.serving import latent_model_endpoints, prior_draws
from keras_gen.models.vae import Reparameterize

INPUT_SIZE = 32  # 28x28 digits padded by 2 background pixels per side (lossless, cropped back)
DOWNSAMPLING = 4  # two stride-2 convolutions: 32x32 -> 8x8
SCALE_IMAGES = 4096  # training images whose latents set the scale factor


def build_first_stage_encoder(latent_channels: int, filters: int) -> keras.Model:
    """(32, 32, 1) in [0, 1] -> (8, 8, 2 C): the posterior's [mean | logvar] per latent pixel."""
    x_in = keras.Input((INPUT_SIZE, INPUT_SIZE, 1), name="image")
    x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x_in)
    x = layers.Conv2D(2 * filters, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(2 * filters, 3, strides=2, padding="same", activation="relu")(x)
    stats = layers.Conv2D(2 * latent_channels, 1, name="mean_logvar")(x)
    return keras.Model(x_in, stats, name="first_stage_encoder")


def build_first_stage_decoder(latent_channels: int, filters: int) -> keras.Model:
    """(8, 8, C) -> (32, 32, 1) in [0, 1], the encoder mirrored with transposed convolutions."""
    size = INPUT_SIZE // DOWNSAMPLING
    z_in = keras.Input((size, size, latent_channels), name="z")
    x = layers.Conv2D(2 * filters, 3, padding="same", activation="relu")(z_in)
    x = layers.Conv2DTranspose(2 * filters, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    return keras.Model(z_in, x, name="first_stage_decoder")


def crop_to_digits(x):
    """(B, 32, 32, 1) -> float32 (B, 28, 28, 1), the padding removed, clipped to [0, 1]."""
    off = (INPUT_SIZE - 28) // 2
    return tf.clip_by_value(tf.cast(x, tf.float32)[:, off:off + 28, off:off + 28, :], 0.0, 1.0)


@keras.saving.register_keras_serializable(package="keras_gen")
class LatentAutoencoder(OptimizerBuiltOnCompile, keras.Model):
    """The first stage of latent diffusion: a KL-regularised autoencoder with an (8, 8, C) latent.

    Args:
        latent_channels: C, the latent's channels (8 x 8 x C numbers per digit).
        filters: the first convolution's filters (the deeper ones have twice as many).
        kl_weight: weight of the KL term; 0 makes a deterministic autoencoder.
        seed: seed of the posterior draws during training.
    """

    kind = "autoencoder"

    def __init__(self, latent_channels=4, filters=32, kl_weight=1e-3, seed=None, **kwargs):
        super().__init__(**kwargs)
        if kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {kl_weight}")
        self.latent_channels, self.filters = int(latent_channels), int(filters)
        self.kl_weight, self.seed = float(kl_weight), seed
        self.encoder = build_first_stage_encoder(self.latent_channels, self.filters)
        self.decoder = build_first_stage_decoder(self.latent_channels, self.filters)
        self.reparameterize = Reparameterize(seed=seed, name="reparameterize")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")
        self.built = True  # the encoder and decoder are built functional models

    @property
    def latent_shape(self) -> tuple:
        size = INPUT_SIZE // DOWNSAMPLING
        return (size, size, self.latent_channels)

    def encode(self, x):
        """Images (B, 32, 32, 1) in [0, 1] -> the posterior's (mean, logvar), each (B, 8, 8, C)."""
        mean, logvar = ops.split(self.encoder(x), 2, axis=-1)
        return mean, ops.clip(logvar, -30.0, 20.0)  # LDM's bounds: exp() stays finite

    def decode(self, z):
        """Latents (B, 8, 8, C) -> images (B, 32, 32, 1) in [0, 1]."""
        return self.decoder(z)

    def call(self, x):
        """The reconstruction of x from its posterior mean."""
        return self.decode(self.encode(x)[0])

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    def loss_terms(self, x):
        """(total, reconstruction, kl) per image, averaged over the batch."""
        mean, logvar = self.encode(x)
        z = mean if self.kl_weight == 0 else self.reparameterize(mean, logvar)
        bce = keras.losses.binary_crossentropy(x[..., None], self.decode(z)[..., None])
        reconstruction = ops.mean(ops.sum(ops.reshape(bce, (ops.shape(bce)[0], -1)), axis=1))
        kl_terms = -0.5 * (1.0 + logvar - ops.square(mean) - ops.exp(logvar))
        kl = ops.mean(ops.sum(ops.reshape(kl_terms, (ops.shape(kl_terms)[0], -1)), axis=1))
        return reconstruction + self.kl_weight * kl, reconstruction, kl

    def _update_trackers(self, total, reconstruction, kl):
        for tracker, value in zip(self.metrics, (total, reconstruction, kl)):
            tracker.update_state(value)
        return step_logs({m.name: m.result() for m in self.metrics})

    def train_step(self, data):
        with tf.GradientTape() as tape:
            total, reconstruction, kl = self.loss_terms(data)
            scaled = self.optimizer.scale_loss(replica_share(total))
        grads = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return self._update_trackers(total, reconstruction, kl)

    def test_step(self, data):
        return self._update_trackers(*self.loss_terms(data))

    def _decode_flat(self, z):
        return crop_to_digits(self.decode(ops.reshape(z, (-1, *self.latent_shape))))

    def sample(self, n, seed=0, progress=None):
        """Decode n draws z ~ N(0, I) (the same draws as the export's serving_default for a seed):
        (n, 28, 28, 1) in [0, 1]. A first stage alone has no prior fitted to its latent, so these
        show what the latent DDPM has to fix."""
        z = prior_draws(n, int(np.prod(self.latent_shape)), seed)
        return self._decode_flat(z).numpy()

    def get_config(self):
        return {**super().get_config(), "latent_channels": self.latent_channels, "filters": self.filters,
                "kl_weight": self.kl_weight, "seed": self.seed}

    def serving_endpoints(self):
        """serving_default (decoded prior draws) and decode(z) with z flattened to (N, 64 C)."""
        return latent_model_endpoints(int(np.prod(self.latent_shape)), self._decode_flat, "decode", Conditioning())


@keras.saving.register_keras_serializable(package="keras_gen")
class LatentDDPM(DDPM):
    """A DDPM on the frozen first stage's scaled latents; samples are decoded to digits.

    Args:
        unet: the denoiser, with ``channels`` equal to the first stage's latent channels.
        schedule: the noise schedule (a NoiseSchedule or its config).
        first_stage: the trained `LatentAutoencoder` (frozen here).
        scale_factor: latents are multiplied by it before diffusion (1 / their std on the
            training images; `latent_scale_factor`) and divided by it before decoding.
        **kwargs: the other `DDPM` arguments (EMA, DDIM steps, guidance, ...).
    """

    kind = "latent_ddpm"
    # The scaled latents have unit std and no hard range: on 5000 training digits of the cpu
    # preset's first stage the largest |z| was 6.2 (99.99th percentile 4.5). 8 bounds what a
    # distillation target may be (keras_gen.models.distillation) without touching real latents.
    x0_bound = 8.0

    def __init__(self, unet, schedule, first_stage, scale_factor=1.0, **kwargs):
        kwargs.pop("image_size", None)
        if not scale_factor > 0:
            raise ValueError(f"scale_factor must be positive, got {scale_factor}")
        if unet.channels != first_stage.latent_channels:
            raise ValueError(f"the denoiser has {unet.channels} channels, the first stage's latent "
                             f"{first_stage.latent_channels}")
        super().__init__(unet, schedule, image_size=first_stage.latent_shape[0], **kwargs)
        self.first_stage = first_stage
        self.first_stage.trainable = False
        self.scale_factor = float(scale_factor)

    def latents(self, x0):
        """Images (B, 32, 32, 1) in [0, 1] -> the diffusion's data: posterior means times the scale."""
        return self.first_stage.encode(x0)[0] * self.scale_factor

    def diffusion_data(self, x):
        """The latents of the images ``x``, out of the gradient's reach (the first stage is frozen)."""
        return ops.stop_gradient(self.latents(x))

    def diffusion_data_layers(self) -> dict:
        return {"the first stage's encoder": self.first_stage.encoder}

    def space_kwargs(self) -> dict:
        return {"first_stage": self.first_stage, "scale_factor": self.scale_factor, "data_mode": self.data_mode}

    def to_images(self, x):
        """Latents from the sampler -> decoded digits (B, 28, 28, 1) in [0, 1]."""
        return crop_to_digits(self.first_stage.decode(tf.cast(x, tf.float32) / self.scale_factor))

    def get_config(self):
        config = super().get_config()
        config.pop("image_size")
        return {**config, "first_stage": keras.saving.serialize_keras_object(self.first_stage),
                "scale_factor": self.scale_factor}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["first_stage"] = keras.saving.deserialize_keras_object(config["first_stage"])
        return super().from_config(config)


def latent_scale_factor(first_stage: LatentAutoencoder, images) -> float:
    """1 / std of the posterior means of ``images`` (B, 32, 32, 1), over every latent number."""
    means = [first_stage.encode(images[i:i + 512])[0] for i in range(0, len(images), 512)]
    return float(1.0 / np.std(np.concatenate([np.asarray(m) for m in means])))


def load_first_stage(path) -> LatentAutoencoder:
    """The first stage from a ``keras-gen train autoencoder`` run folder or its model.keras."""
    if not path:
        raise ValueError("a latent DDPM needs its first stage: train one with `keras-gen train autoencoder "
                         "--out DIR`, then pass --first-stage DIR")
    path = Path(path)
    file = path / "model.keras" if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"{path} holds no model.keras (is it a finished `keras-gen train autoencoder` run?)")
    model = keras.saving.load_model(file, compile=False)  # frozen in the prior: no optimizer state to carry
    if not isinstance(model, LatentAutoencoder):
        raise ValueError(f"{file} holds a {getattr(model, 'kind', type(model).__name__)}, not an autoencoder "
                         "(the first stage of latent diffusion)")
    return model


def _digits(config, images, dataset_options):
    from keras_gen.data import load_dataset, preprocess_images

    raw, _ = load_dataset(config["dataset"], "train")
    return preprocess_images(raw[:images], **dataset_options).numpy()


@register_model_kind
class AutoencoderKind(ModelKind):
    """The first stage's contract: [0, 1] digits padded to 32x32, Adam, reconstruction figures."""

    name = "autoencoder"
    display_name = "KL autoencoder"
    no_likelihood = ("a first stage with a small KL weight is a compressor, not a density model; "
                     "its prior samples are what the latent DDPM fixes")
    presets = {
        # LDM's KL-f4 idea at MNIST size: 32x32 -> 8x8x4, KL weight small against the summed BCE.
        # 0.01 rather than 1e-3: the same reconstructions (classifier FID 3.9 vs 3.8 on 1000 test
        # digits), half the KL, and latent channel means near 0 instead of +-0.5 (README, "Latent diffusion").
        "cpu": dict(latent_channels=4, filters=32, kl_weight=0.01, epochs=5, batch_size=64, learning_rate=1e-3),
        "cpu-plain": dict(latent_channels=4, filters=32, kl_weight=0.0, epochs=5, batch_size=64,
                          learning_rate=1e-3),
        # tiny: 64 steps that halve the mean image's per-pixel error (tests/test_latent.py)
        "tiny": dict(latent_channels=2, filters=8, kl_weight=1e-3, epochs=2, batch_size=32, learning_rate=1e-2,
                     limit=1024),
    }

    def check_config(self, config):
        if config.get("num_classes") is not None:
            raise ValueError("the first stage is unconditional (labels condition the latent DDPM); drop --num-classes")
        if not config.get("kl_weight", 0.0) >= 0:
            raise ValueError(f"kl_weight must be >= 0, got {config['kl_weight']}")

    def data_options(self, config):
        return dict(value_range="0_1", pad_to=INPUT_SIZE)

    def build(self, config):
        return LatentAutoencoder(latent_channels=config["latent_channels"], filters=config["filters"],
                                 kl_weight=config["kl_weight"], seed=config["seed"])

    def figures(self, model, config, out):
        """reconstructions.png (test images over their reconstructions) and latent_channels.png."""
        from keras_gen.data import load_dataset, preprocess_images
        from keras_gen.plotting import image_strip

        images, _ = load_dataset(config["dataset"], "test")
        x = preprocess_images(images[:8], **self.data_options(config))
        mean, _ = model.encode(x)
        paths = [out / "reconstructions.png", out / "latent_channels.png"]
        image_strip([crop_to_digits(x).numpy(), crop_to_digits(model.decode(mean)).numpy()], paths[0],
                    row_labels=["test image", "reconstruction"], title="First stage: test images and reconstructions")
        channels = np.asarray(mean)
        low, high = channels.min(), channels.max()
        image_strip([[(channels[i, ..., c:c + 1] - low) / (high - low + 1e-8) for i in range(8)]
                     for c in range(model.latent_channels)], paths[1],
                    row_labels=[f"channel {c}" for c in range(model.latent_channels)],
                    title="The 8x8 latent's channels (posterior means) of the same digits")
        return paths


@register_model_kind
class LatentDDPMKind(DDPMKind):
    """The latent DDPM's contract: the DDPM's, on a first stage's latents (``first_stage``: its run
    folder), with the decoder's pass counted in ``network_passes`` and the latent figures."""

    name = "latent_ddpm"
    display_name = "latent DDPM"
    no_likelihood = ("its diffusion bound is on the first stage's latents, and the decoder has no "
                     "density: there is no bound on the pixels")
    presets = {
        # The pixel DDPM's cpu schedule and sampler (T=1000, DDIM-50 with eta 1, EMA), on 8x8x4
        # latents: one down level, attention at the 4x4 one. dim 64 and 16 epochs: dim 32 for 6
        # epochs (0.65M parameters) stopped at classifier FID 84 with its loss still falling.
        "cpu": dict(first_stage=None, dim=64, dim_mults=(1, 2), attention_levels=(False, True), timesteps=1000,
                    schedule="linear", epochs=16, batch_size=64, learning_rate=1e-3, warmup_steps=300,
                    lr_decay="cosine", ddim_steps=50, ddim_eta=1.0, ema_decay=0.995),
        # cpu at base width 32: a quarter of the parameters (an export of ~4 MB instead of ~11), 10
        # epochs; for where the export's size counts (the zoo's Fashion-MNIST prior: saved_models/
        # has a 60 MB budget).
        "cpu-compact": dict(first_stage=None, dim=32, dim_mults=(1, 2), attention_levels=(False, True),
                            timesteps=1000, schedule="linear", epochs=10, batch_size=64, learning_rate=1e-3,
                            warmup_steps=300, lr_decay="cosine", ddim_steps=50, ddim_eta=1.0, ema_decay=0.995),
        "tiny": dict(first_stage=None, dim=8, dim_mults=(1, 2), attention_levels=(False, True), timesteps=20,
                     epochs=2, batch_size=32, learning_rate=1e-3, ddim_steps=5, ema_decay=0.9, limit=256),
    }

    def check_config(self, config):
        super().check_config(config)
        if config.get("data_mode", "pad") != "pad":
            raise ValueError("a latent DDPM diffuses latents of padded digits: --data-mode does not apply")

    def data_options(self, config):
        return AutoencoderKind.data_options(self, config)

    def build(self, config):
        first_stage = load_first_stage(config.get("first_stage"))
        scale = config.get("scale_factor") or latent_scale_factor(
            first_stage, _digits(config, SCALE_IMAGES, self.data_options(config)))
        schedule = NoiseSchedule(timesteps=config["timesteps"], kind=config.get("schedule", "linear"))
        return LatentDDPM(build_denoiser(config, first_stage.latent_channels), schedule, first_stage, scale,
                          **ddpm_settings(config))

    def likelihood(self, model, images, *, seed=0, info=None):
        return ModelKind.likelihood(self, model, images, seed=seed, info=info)

    def network_passes(self, info, options=None):
        """The denoiser's passes plus one decoder pass."""
        return super().network_passes(info, options) + 1

    def figures(self, model, config, out):
        """prior_vs_noise.png: the prior's decoded samples beside decoded N(0, I) draws: what the prior adds."""
        from keras_gen.plotting import image_strip

        path = out / "prior_vs_noise.png"
        image_strip([model.sample(8, seed=0, progress=False), model.first_stage.sample(8, seed=0)], path,
                    row_labels=["latent DDPM", "decoded N(0, I)"],
                    title="Decoding the latent DDPM's samples vs decoding plain noise")
        return [path]

    def demo_figures(self, sampler, out, seed):
        return []  # its trajectory is in latent space; the sample grid is the demo


@keras.saving.register_keras_serializable(package="keras_gen")
class DistilledLatentDDPM(Distilled, LatentDDPM):
    """A distilled few-step student of a latent DDPM (`Distilled`): its steps run on the latents,
    then the shared first stage decodes."""

    kind = "distilled_latent"
    teacher_class = LatentDDPM


@register_model_kind
class DistilledLatentKind(DistilledKind):
    """The contract of a latent DDPM's distilled student: the distilled kind's, with the decoder's
    pass counted and no pixel likelihood (as for its teacher)."""

    name = "distilled_latent"
    display_name = "distilled latent DDPM"
    no_likelihood = LatentDDPMKind.no_likelihood

    def data_options(self, config):
        return AutoencoderKind.data_options(self, config)

    def likelihood(self, model, images, *, seed=0, info=None):
        return ModelKind.likelihood(self, model, images, seed=seed, info=info)

    def network_passes(self, info, options=None):
        """The student's steps plus one decoder pass."""
        return super().network_passes(info, options) + 1
