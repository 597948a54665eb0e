"""The article's convolutional VAE ("Variational Autoencoders" section) as a subclassed keras.Model.

Differences from the article's notebook (docs/errata.md, errata 1-2):
- the KL term is summed over latent dimensions (then averaged over the batch), matching the
  reconstruction term that is summed over the 784 pixels; ``article_kl=True`` reproduces the
  article's mean over latent dimensions for comparison;
- ``call()`` is the reconstruction, so the model can be called, saved and exported.
"""

from __future__ import annotations

import numbers

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from keras_gen.models.conditioning import Conditioning
from keras_gen.models.kinds import ModelKind, register_model_kind
from keras_gen.models.optimizer_build import OptimizerBuiltOnCompile
from keras_gen.models.replicas import replica_share, step_logs
from keras_gen.models.serving import checked_images, latent_model_endpoints, prior_draws

IMAGE_SHAPE = (28, 28, 1)


@keras.saving.register_keras_serializable(package="keras_gen")
class Reparameterize(layers.Layer):
    """z = mean + exp(logvar / 2) * eps with eps ~ N(0, I) from the layer's own seed generator."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, mean, logvar):
        eps = keras.random.normal(ops.shape(mean), dtype=mean.dtype, seed=self.seed_generator)
        return mean + ops.exp(0.5 * logvar) * eps

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def build_encoder(latent_dim: int, conditioning: Conditioning = Conditioning()) -> keras.Model:
    """Conv2D(64, 3, s2, relu) x2 -> Flatten -> Dense(2 * latent_dim): [mean | logvar].

    A conditional model takes [image, label] and concatenates a label embedding to the
    flattened features before the Dense layer.
    """
    x_in = keras.Input(IMAGE_SHAPE, name="image")
    x = layers.Conv2D(64, 3, strides=2, activation="relu")(x_in)
    x = layers.Conv2D(64, 3, strides=2, activation="relu")(x)
    inputs, x = conditioning.embed(x_in, layers.Flatten()(x), "encoder_label_embedding")
    stats = layers.Dense(2 * latent_dim, name="mean_logvar")(x)
    return keras.Model(inputs, stats, name="encoder")


def build_decoder(latent_dim: int, conditioning: Conditioning = Conditioning()) -> keras.Model:
    """Dense(7*7*64) -> Reshape -> Conv2DTranspose(64, 3, s2) x2 -> Conv2DTranspose(1, 3, sigmoid).

    A conditional model takes [z, label] and concatenates a label embedding to z.
    """
    z_in = keras.Input((latent_dim,), name="z")
    inputs, h = conditioning.embed(z_in, z_in, "decoder_label_embedding")
    x = layers.Dense(7 * 7 * 64, activation="relu")(h)
    x = layers.Reshape((7, 7, 64))(x)
    x = layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(1, 3, strides=1, padding="same", activation="sigmoid")(x)
    return keras.Model(inputs, x, name="decoder")


def vae_loss_terms(x, x_hat, mean, logvar, *, article_kl=False):
    """Per-batch (reconstruction, kl) terms of the negative ELBO.

    reconstruction: binary cross-entropy summed over pixels, averaged over the batch.
    kl: KL(q(z|x) || N(0, I)) summed over latent dims (article_kl=True: averaged over them,
    as the article's code does), averaged over the batch.
    """
    bce = keras.losses.binary_crossentropy(x[..., None], x_hat[..., None])  # (B, H, W, C)
    reconstruction = ops.mean(ops.sum(ops.reshape(bce, (ops.shape(bce)[0], -1)), axis=1))
    kl_per_dim = -0.5 * (1.0 + logvar - ops.square(mean) - ops.exp(logvar))
    reduce = ops.mean if article_kl else ops.sum
    kl = ops.mean(reduce(kl_per_dim, axis=1))
    return reconstruction, kl


@keras.saving.register_keras_serializable(package="keras_gen")
class VAE(OptimizerBuiltOnCompile, keras.Model):
    """Convolutional VAE for 28x28x1 images in [0, 1] (binarised in the article).

    Train with ``compile(optimizer=...)`` and ``fit(dataset)``; the dataset yields images (or
    (images, labels), labels ignored). ``call(x)`` reconstructs x through the posterior mean.

    ``num_classes=C`` makes a conditional VAE: encoder and decoder see a label embedding, the
    dataset must yield (images, labels), ``call((x, labels))`` reconstructs, and
    ``sample(n, seed, labels=...)`` draws chosen classes.
    """

    kind = "vae"

    def __init__(self, latent_dim=2, article_kl=False, seed=None, num_classes=None, **kwargs):
        super().__init__(**kwargs)
        if (isinstance(latent_dim, bool) or not isinstance(latent_dim, numbers.Integral)
                or latent_dim <= 0):  # 2.5 or "2" must not be silently truncated or parsed
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim}")
        self.latent_dim = int(latent_dim)
        self.article_kl = bool(article_kl)
        self.seed = seed
        self.conditioning = Conditioning(num_classes)
        self.encoder = build_encoder(self.latent_dim, self.conditioning)
        self.decoder = build_decoder(self.latent_dim, self.conditioning)
        self.reparameterize = Reparameterize(seed=seed, name="reparameterize")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")
        self.built = True  # encoder and decoder are functional models, built at construction

    # ----------------------------------------------------------------- the probabilistic parts
    @property
    def num_classes(self):
        """Number of classes of a conditional VAE (None: unconditional)."""
        return self.conditioning.num_classes

    def _with_labels(self, x, labels):
        return self.conditioning.inputs(x, labels, "VAE")

    def encode(self, x, labels=None):
        """Posterior parameters (mean, logvar), each (B, latent_dim) (labels: conditional only)."""
        stats = self.encoder(self._with_labels(x, labels))
        return stats[:, : self.latent_dim], stats[:, self.latent_dim:]

    def decode(self, z, labels=None):
        """Bernoulli means (B, 28, 28, 1) in [0, 1] for latent codes z (B, latent_dim)."""
        return self.decoder(self._with_labels(z, labels))

    def call(self, inputs, training=False):
        """Reconstruction of x (unconditional) or of (x, labels) (conditional)."""
        x, labels = self.conditioning.unpack(inputs)
        mean, logvar = self.encode(x, labels)
        z = self.reparameterize(mean, logvar) if training else mean
        return self.decode(z, labels)

    def sample(self, n, seed=0, labels=None):
        """Decode n draws of z ~ N(0, I); the same seed gives the same images.

        ``n``: an int >= 1; ``seed``: an int in [0, 2**31 - 1] (TypeError / ValueError otherwise).
        ``labels`` (conditional VAE only): one class or n classes; default: the classes in turn.
        """
        from keras_gen.models.serving import check_num_images, check_seed

        n, seed = check_num_images(n), check_seed(seed)  # refused, never truncated or wrapped
        labels = self.conditioning.labels(labels, n)
        z = prior_draws(n, self.latent_dim, seed)
        return self.decode(z, labels)

    # ----------------------------------------------------------------- training
    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    def loss_terms(self, x, labels=None):
        mean, logvar = self.encode(x, labels)
        z = self.reparameterize(mean, logvar)
        x_hat = self.decode(z, labels)
        reconstruction, kl = vae_loss_terms(x, x_hat, mean, logvar, article_kl=self.article_kl)
        return reconstruction + kl, reconstruction, kl

    def _update_trackers(self, total, reconstruction, kl):
        self.loss_tracker.update_state(total)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return step_logs({m.name: m.result() for m in self.metrics})

    def train_step(self, data):
        x, labels = self.conditioning.split(data, "VAE")
        with tf.GradientTape() as tape:
            total, reconstruction, kl = self.loss_terms(x, labels)
            scaled = self.optimizer.scale_loss(replica_share(total))
        grads = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return self._update_trackers(total, reconstruction, kl)

    def test_step(self, data):
        return self._update_trackers(*self.loss_terms(*self.conditioning.split(data, "VAE")))

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "article_kl": self.article_kl,
                "seed": self.seed, **self.conditioning.config()}

    # ----------------------------------------------------------------- serving (export.py)
    def serving_endpoints(self):
        """Functions for the SavedModel serving contract (see keras_gen.export), plus
        ``encode(images[, labels])``: the posterior's mean and logvar (N, latent_dim) of images
        (N, 28, 28, 1) in [0, 1] (what the likelihood bounds need; it also puts the encoder's
        weights in the export)."""
        endpoints = latent_model_endpoints(self.latent_dim, self.decode, "decode", self.conditioning)
        image_spec = tf.TensorSpec((None, 28, 28, 1), tf.float32, name="images")

        def posterior(images, labels=None):
            mean, logvar = self.encode(images, labels)
            return {"mean": tf.cast(mean, tf.float32), "logvar": tf.cast(logvar, tf.float32)}

        if self.conditioning.conditional:
            def encode(images, labels):
                images, labels = checked_images(images, labels)
                return posterior(images, self.conditioning.checked(labels))
            endpoints["encode"] = (encode, [image_spec, tf.TensorSpec((None,), tf.int32, name="labels")])
        else:
            def encode(images):
                return posterior(checked_images(images))
            endpoints["encode"] = (encode, [image_spec])
        return endpoints


@register_model_kind
class VAEKind(ModelKind):
    """The VAE's contract: binarised [0, 1] inputs, Adam, the latent-manifold figures."""

    name = "vae"
    presets = {
        # Article, "Variational Autoencoders": latent 2, 200 epochs, batch 32, Adam 1e-4.
        "article": dict(latent_dim=2, epochs=200, batch_size=32, learning_rate=1e-4),
        # Classifier FID of 1000 samples after 12 epochs (benchmarks/fid_vs_wallclock.py):
        # latent 16: 54.8 (15 min), latent 100: 73.1 (16 min); latent 2 covers only 9 digits.
        "cpu": dict(latent_dim=16, epochs=12, batch_size=64, learning_rate=1e-3),
        "tiny": dict(latent_dim=2, epochs=2, batch_size=64, learning_rate=1e-3, limit=512),
    }
    sample_options = {"label": lambda value, info: Conditioning.of_info(info).label(value)}

    no_likelihood = None
    iwae_k = 100  # importance samples of the IWAE bound (Burda et al. 2016 report k = 5000 too)

    def data_options(self, config):
        return dict(binarize=True, value_range="0_1")

    def likelihood_unavailable(self, info):
        """The bounds need the encoder, which an export serves (and holds) only with ``encode``."""
        if "encode" not in info.get("signatures", []):
            return ("this export has no encode signature (it predates it), so it holds no encoder weights; "
                    "export the run's model.keras again (keras-gen export) or pass that file")
        return None

    def likelihood(self, model, images, *, seed=0, info=None):
        """-ELBO and -L_k (k = ``iwae_k``, Burda et al. 2016) in nats per image, on the images
        binarised as the VAE trains on them (pixel >= 128 -> 1), from the same k posterior draws."""
        from keras_gen.data import preprocess_images
        from keras_gen.likelihood import summary_row, vae_bounds

        missing = None if info is None else self.likelihood_unavailable(info)
        if missing:
            raise ValueError(f"vae: {missing}")
        if model.conditioning.conditional:
            raise ValueError("vae: the likelihood of a conditional VAE needs labels; only unconditional ones")
        x = preprocess_images(images, **self.data_options({})).numpy()
        bounds = vae_bounds(model, x, k=self.iwae_k, seed=seed)
        data = "binarised MNIST test images (pixel >= 128), not the 8-bit data"
        return [summary_row("-ELBO", -bounds["elbo"], "nats", data, k=self.iwae_k),
                summary_row(f"-IWAE (k={self.iwae_k})", -bounds["iwae"], "nats", data, k=self.iwae_k)]

    def build(self, config):
        return VAE(latent_dim=config["latent_dim"], article_kl=config.get("article_kl", False),
                   seed=config["seed"], num_classes=config.get("num_classes"))

    def figures(self, model, config, out):
        """latent_manifold.png and latent_scatter.png for an unconditional latent-2 VAE."""
        if model.latent_dim != 2 or model.conditioning.conditional:
            return []
        from keras_gen.data import load_dataset
        from keras_gen.plotting import latent_manifold, latent_scatter

        manifold, scatter = out / "latent_manifold.png", out / "latent_scatter.png"
        latent_manifold(lambda z: model.decode(z).numpy(), manifold,
                        title=f"VAE latent manifold ({config['dataset']})")
        images, labels = load_dataset(config["dataset"], "test")
        mean, _ = model.encode((images[:5000, ..., None] >= 128).astype("float32"))
        latent_scatter(np.asarray(mean), labels[:5000], scatter)
        return [manifold, scatter]
