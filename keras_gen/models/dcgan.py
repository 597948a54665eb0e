"""The article's DCGAN ("Deep Convolutional GANs" section): builders, a fused Keras model and the
article's alternating ``train_on_batch`` loop.

Two ways to train the same generator/discriminator pair:

- ``DCGAN.fit``: one compiled ``train_step`` updates D on real + fake, then G (the keras.io
  idiom). Fastest; works under tf.distribute; use it unless you want to follow the article.
- ``AlternatingTrainer`` / ``train_alternating``: the article's explicit loop of three ``train_on_batch`` calls per batch
  with D frozen inside a stacked G->D model. Kept for the tutorial; slower, single device.

Differences from the article's notebook (docs/errata.md, errata 3-5): plain ReLU in G
(``article_relu=True`` reproduces ``ReLU(max_value=0.2)``), ``sample()`` returns images, and the
discriminator loss is the mean of its real and fake BCE losses (not of [loss, accuracy] lists).
"""

from __future__ import annotations

import numbers

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops
from tqdm.auto import tqdm

from keras_gen.models.conditioning import Conditioning
from keras_gen.models.kinds import ModelKind, register_model_kind
from keras_gen.models.replicas import replica_share, step_logs
from keras_gen.models.serving import latent_model_endpoints, prior_draws

IMAGE_SHAPE = (28, 28, 1)


def build_generator(latent_dim: int = 100, article_relu: bool = False,
                    conditioning: Conditioning = Conditioning()) -> keras.Model:
    """z -> Dense(7*7*128) -> Conv2DTranspose(64, s2) -> BN -> ReLU -> Conv2DTranspose(64) -> BN
    -> ReLU -> Conv2DTranspose(1, s2, tanh): images in [-1, 1].

    A conditional model takes [z, label] and concatenates a label embedding to z.
    """
    def relu():
        return layers.ReLU(max_value=0.2) if article_relu else layers.ReLU()

    z = keras.Input((latent_dim,), name="z")
    inputs, h = conditioning.embed(z, z, "label_embedding")
    x = layers.Dense(7 * 7 * 128)(h)
    x = layers.Reshape((7, 7, 128))(x)
    x = layers.Conv2DTranspose(64, 3, strides=2, padding="same")(x)
    x = relu()(layers.BatchNormalization()(x))
    x = layers.Conv2DTranspose(64, 3, strides=1, padding="same")(x)
    x = relu()(layers.BatchNormalization()(x))
    x = layers.Conv2DTranspose(1, 3, strides=2, padding="same", activation="tanh")(x)
    return keras.Model(inputs, x, name="generator")


def build_discriminator(conditioning: Conditioning = Conditioning()) -> keras.Model:
    """Conv2D(64, s2) -> LeakyReLU(0.2) x2 -> Flatten -> Dense(1, sigmoid): P(real).

    A conditional one is a projection discriminator (Miyato & Koyama 2018) on [image, label]:
    P(real | label) = sigmoid(Dense(1)(h) + <embed(label), h>) for the flattened features h.
    """
    x_in = keras.Input(IMAGE_SHAPE, name="image")
    x = layers.LeakyReLU(0.2)(layers.Conv2D(64, 3, strides=2, padding="same")(x_in))
    x = layers.LeakyReLU(0.2)(layers.Conv2D(64, 3, strides=2, padding="same")(x))
    h = layers.Flatten()(x)
    if not conditioning.conditional:
        return keras.Model(x_in, layers.Dense(1, activation="sigmoid")(h), name="discriminator")
    label = keras.Input((), dtype="int32", name="label")
    embedded = layers.Embedding(conditioning.num_classes, h.shape[-1], name="label_projection")(label)
    logit = layers.Add()([layers.Dense(1)(h), layers.Dot(axes=1)([embedded, h])])
    return keras.Model([x_in, label], layers.Activation("sigmoid")(logit), name="discriminator")


def paired_labels(labels, batch):
    """The first half of ``labels`` twice (length ``batch``): images i and half + i of a generator
    batch then share a class, for the mode-seeking term."""
    half = batch // 2
    return ops.concatenate([labels[:half], labels[:batch - half]], axis=0)


def mode_seeking_penalty(images, z):
    """Mao et al. 2019 (MSGAN): 1 / (|G(z1) - G(z2)| / |z1 - z2|), mean over the pairs (first half,
    second half) of the batch. Small when different codes give different images; a generator that
    ignores z (every code -> the same image of its class) pays a large penalty."""
    half = ops.shape(images)[0] // 2
    images, z = ops.cast(images, "float32"), ops.cast(z, "float32")
    image_gap = ops.mean(ops.abs(images[:half] - images[half:2 * half]), axis=[1, 2, 3])
    z_gap = ops.mean(ops.abs(z[:half] - z[half:2 * half]), axis=1)
    return ops.mean(1.0 / (image_gap / z_gap + 1e-5))


def bce(targets, probabilities):
    """Batch-mean binary cross-entropy (a plain function: keras.losses.BinaryCrossentropy
    objects rescale themselves under tf.distribute, which replica_share does explicitly here)."""
    return ops.mean(keras.losses.binary_crossentropy(targets, probabilities))


@keras.saving.register_keras_serializable(package="keras_gen")
class DCGAN(keras.Model):
    """Generator + discriminator with a fused adversarial ``train_step`` (images in [-1, 1]).

    ``compile(d_optimizer=..., g_optimizer=...)`` then ``fit(dataset)``. ``sample(n, seed)``
    returns images in [0, 1].

    ``num_classes=C`` makes a conditional GAN: G takes [z, label], D is a projection
    discriminator on [image, label]; the dataset yields (images, labels) and G is trained on the
    real batch's labels. ``sample(n, seed, labels=...)`` draws chosen classes.

    ``mode_seeking``: weight of the mode-seeking term added to G's loss (`mode_seeking_penalty`).
    Default (None): 1.0 for a conditional GAN, 0 otherwise. Without it the conditional generator
    learned to ignore z within 500 steps and drew one image per class (measured: mean pixel gap
    between two codes of a class 0.028 without, 0.16 with, after 500 steps).
    """

    kind = "dcgan"

    def __init__(self, latent_dim=100, article_relu=False, seed=None, num_classes=None,
                 mode_seeking=None, **kwargs):
        super().__init__(**kwargs)
        if (isinstance(latent_dim, bool) or not isinstance(latent_dim, numbers.Integral)
                or latent_dim <= 0):  # 2.5 or "2" must not be silently truncated or parsed
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim}")
        self.latent_dim = int(latent_dim)
        self.article_relu = bool(article_relu)
        self.seed = seed
        self.conditioning = Conditioning(num_classes)
        if mode_seeking is None:
            mode_seeking = 1.0 if self.conditioning.conditional else 0.0
        if isinstance(mode_seeking, bool) or not isinstance(mode_seeking, numbers.Real) or not mode_seeking >= 0:
            raise ValueError(f"mode_seeking must be a number >= 0, got {mode_seeking!r}")
        self.mode_seeking = float(mode_seeking)
        self.generator = build_generator(self.latent_dim, self.article_relu, self.conditioning)
        self.discriminator = build_discriminator(self.conditioning)
        self.seed_generator = keras.random.SeedGenerator(seed)
        names = ("d_loss", "g_loss", "d_real_acc", "d_fake_acc") + (("mode_seeking",) if self.mode_seeking else ())
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.built = True  # both networks are functional models, built at construction

    # ----------------------------------------------------------------- generation
    @property
    def num_classes(self):
        """Number of classes of a conditional DCGAN (None: unconditional)."""
        return self.conditioning.num_classes

    def _with_labels(self, x, labels):
        return self.conditioning.inputs(x, labels, "DCGAN")

    def call(self, inputs, training=False):
        """Images in [-1, 1] for latent codes z (B, latent_dim), or for (z, labels) if conditional."""
        z, labels = self.conditioning.unpack(inputs)
        return self.generator(self._with_labels(z, labels), training=training)

    def generate(self, z, labels=None):
        """Images in [0, 1] for latent codes z (the article's generate(), returning the images)."""
        return (self.generator(self._with_labels(z, labels), training=False) + 1.0) / 2.0

    def sample(self, n, seed=0, labels=None):
        """n images in [0, 1] from z ~ N(0, I); the same seed gives the same images.

        ``n``: an int >= 1; ``seed``: an int in [0, 2**31 - 1] (TypeError / ValueError otherwise).
        ``labels`` (conditional DCGAN only): one class or n classes; default: the classes in turn.
        """
        from keras_gen.models.serving import check_num_images, check_seed

        n, seed = check_num_images(n), check_seed(seed)  # refused, never truncated or wrapped
        labels = self.conditioning.labels(labels, n)
        z = prior_draws(n, self.latent_dim, seed)
        return self.generate(z, labels)

    # ----------------------------------------------------------------- training
    def compile(self, d_optimizer=None, g_optimizer=None, **kwargs):
        """Keras compile with the two GAN optimizers, whose variables are created here: a
        ``.keras`` load then restores their saved state (iterations, Adam moments) instead of
        restarting them, and the first train step is traced once, not twice (see
        keras_gen.models.optimizer_build)."""
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer or keras.optimizers.Adam(1e-4)
        self.g_optimizer = g_optimizer or keras.optimizers.Adam(1e-4)
        if self.dtype_policy.name == "mixed_float16":  # float16 gradients need loss scaling
            self.d_optimizer = keras.optimizers.LossScaleOptimizer(self.d_optimizer)
            self.g_optimizer = keras.optimizers.LossScaleOptimizer(self.g_optimizer)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    def get_compile_config(self):
        return {"d_optimizer": keras.saving.serialize_keras_object(self.d_optimizer),
                "g_optimizer": keras.saving.serialize_keras_object(self.g_optimizer)}

    def compile_from_config(self, config):
        self.compile(d_optimizer=keras.optimizers.deserialize(config["d_optimizer"]),
                     g_optimizer=keras.optimizers.deserialize(config["g_optimizer"]))

    @property
    def metrics(self):
        return list(self.trackers.values())

    def train_step(self, data):
        real, labels = self.conditioning.split(data, "DCGAN")

        def G(z):
            return self.generator(self._with_labels(z, labels), training=True)

        def D(x):  # conditional: D judges images together with the batch's labels
            return self.discriminator(self._with_labels(x, labels), training=True)

        batch = ops.shape(real)[0]
        z = keras.random.normal((batch, self.latent_dim), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            fake = G(z)
            p_real = D(real)
            p_fake = D(fake)
            d_loss = 0.5 * (bce(ops.ones_like(p_real), p_real) + bce(ops.zeros_like(p_fake), p_fake))
            d_scaled = self.d_optimizer.scale_loss(replica_share(d_loss))
        d_vars = self.discriminator.trainable_weights
        self.d_optimizer.apply_gradients(zip(tape.gradient(d_scaled, d_vars), d_vars))

        z = keras.random.normal((batch, self.latent_dim), seed=self.seed_generator)
        if self.mode_seeking and labels is not None:  # pairs (i, half + i) share a class; G and D read it
            labels = paired_labels(labels, batch)
        with tf.GradientTape() as tape:
            generated = G(z)
            p_gen = D(generated)
            g_loss = bce(ops.ones_like(p_gen), p_gen)
            g_total = g_loss
            if self.mode_seeking:
                penalty = mode_seeking_penalty(generated, z)
                g_total = g_loss + self.mode_seeking * penalty
            g_scaled = self.g_optimizer.scale_loss(replica_share(g_total))
        g_vars = self.generator.trainable_weights
        self.g_optimizer.apply_gradients(zip(tape.gradient(g_scaled, g_vars), g_vars))

        self.trackers["d_loss"].update_state(d_loss)
        self.trackers["g_loss"].update_state(g_loss)
        self.trackers["d_real_acc"].update_state(ops.mean(ops.cast(p_real > 0.5, "float32")))
        self.trackers["d_fake_acc"].update_state(ops.mean(ops.cast(p_fake < 0.5, "float32")))
        if self.mode_seeking:
            self.trackers["mode_seeking"].update_state(penalty)
        return step_logs({name: m.result() for name, m in self.trackers.items()})

    def get_config(self):
        config = {**super().get_config(), "latent_dim": self.latent_dim,
                  "article_relu": self.article_relu, "seed": self.seed, **self.conditioning.config()}
        if self.conditioning.conditional or self.mode_seeking:
            config["mode_seeking"] = self.mode_seeking
        return config

    # ----------------------------------------------------------------- serving (export.py)
    def serving_endpoints(self):
        """Functions for the SavedModel serving contract (see keras_gen.export)."""
        return latent_model_endpoints(self.latent_dim, self.generate, "generate", self.conditioning)


class AlternatingTrainer:
    """The article's training loop on ``gan``'s own generator and discriminator.

    Per batch: ``D.train_on_batch(real, 1)``, ``G.predict_on_batch(z)``, ``D.train_on_batch(fake, 0)``,
    then ``GAN.train_on_batch(z, 1)`` on the stacked G->D model with D frozen. In Keras 3 a model
    reads its trainable weights when its train function is first traced, so D's ``trainable`` flag
    is set before each call (True for its own updates, False for the stacked update) rather than
    once before compiling as in Keras 2 recipes. Single-device only.

    The trainer owns what the loop adds to the model: D's and the stacked model's optimizers
    (``optimizers``) and the host RNG of the latent draws (``host_state``), so a checkpoint can
    save and restore them (keras_gen.checkpointing). It is the DCGAN kind's ``trainer`` for
    ``loop="alternating"``: keras_gen.training runs it like any custom loop.
    """

    def __init__(self, gan: DCGAN, *, learning_rate=1e-4, beta_1=0.9, seed=0):
        if gan.conditioning.conditional:
            raise ValueError("the article's alternating loop trains an unconditional DCGAN; train a "
                             "conditional one (num_classes set) with DCGAN.fit (loop='fit')")
        if tf.distribute.has_strategy() and tf.distribute.get_strategy().num_replicas_in_sync > 1:
            raise ValueError("train_alternating (the article's train_on_batch loop) runs on one device; "
                             "use DCGAN.fit to train under a tf.distribute strategy")
        self.gan = gan
        G, D = gan.generator, gan.discriminator
        D.trainable = True
        D.compile(optimizer=keras.optimizers.Adam(learning_rate, beta_1=beta_1),
                  loss="binary_crossentropy", metrics=["accuracy"])
        D.trainable = False
        self.stacked = keras.Sequential([G, D], name="stacked_gan")
        self.stacked.compile(optimizer=keras.optimizers.Adam(learning_rate, beta_1=beta_1),
                             loss="binary_crossentropy")
        D.trainable = True
        self.rng = np.random.default_rng(seed)

    @property
    def optimizers(self) -> dict:
        return {"alternating_d_optimizer": self.gan.discriminator.optimizer,
                "alternating_gan_optimizer": self.stacked.optimizer}

    def build_optimizers(self):
        """Create both optimizers' variables now (in the order train_on_batch would) for a restore."""
        D = self.gan.discriminator
        if not D.optimizer.built:
            D.optimizer.build(D.trainable_variables)
        if not self.stacked.optimizer.built:
            D.trainable = False
            self.stacked.optimizer.build(self.stacked.trainable_variables)
            D.trainable = True

    @property
    def host_state(self) -> dict:
        """The loop's host-side state (its NumPy RNG), JSON-able, for a checkpoint."""
        return {"rng": self.rng.bit_generator.state}

    @host_state.setter
    def host_state(self, state: dict):
        self.rng.bit_generator.state = state["rng"]

    def _step(self, real):
        G, D, gan = self.gan.generator, self.gan.discriminator, self.gan
        n = int(real.shape[0])
        ones, zeros = np.ones((n, 1), "float32"), np.zeros((n, 1), "float32")
        D.trainable = True
        d_real = D.train_on_batch(real, ones, return_dict=True)
        z = self.rng.standard_normal((n, gan.latent_dim)).astype("float32")
        fake = G.predict_on_batch(z)
        d_fake = D.train_on_batch(fake, zeros, return_dict=True)
        D.trainable = False
        z = self.rng.standard_normal((n, gan.latent_dim)).astype("float32")
        g_loss = self.stacked.train_on_batch(z, ones, return_dict=True)["loss"]
        D.trainable = True
        return {"d_loss": 0.5 * (d_real["loss"] + d_fake["loss"]), "g_loss": g_loss,
                "d_real_acc": d_real["accuracy"], "d_fake_acc": d_fake["accuracy"]}

    def fit(self, dataset, epochs: int, *, initial_epoch=0, steps_per_epoch=None, skip_batches=0,
            callbacks=None, progress=True) -> dict:
        """Train epochs [initial_epoch, epochs) on ``dataset``.

        Without ``steps_per_epoch`` every epoch is one pass over ``dataset``. With it, ``dataset``
        is one stream of all remaining batches (make_dataset(epochs=...)) and the first epoch is
        ``skip_batches`` short (a run resumed mid-epoch). Calls the callbacks' train/epoch/batch
        hooks like fit and stops when one sets ``stop_training``. Returns a Keras-like history
        dict of per-epoch means: d_loss (mean of the real and fake BCE losses: docs/errata.md,
        erratum 5), g_loss, d_real_acc, d_fake_acc.
        """
        self.gan.stop_training = False
        callback_list = keras.callbacks.CallbackList(callbacks or [], model=self.gan)
        history = {k: [] for k in ("d_loss", "g_loss", "d_real_acc", "d_fake_acc")}
        stream = iter(dataset) if steps_per_epoch else None
        callback_list.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            if steps_per_epoch:
                steps = steps_per_epoch - (skip_batches if epoch == initial_epoch else 0)
                batches_of_epoch = (next(stream) for _ in range(steps))
            else:
                steps, batches_of_epoch = None, iter(dataset)
            sums, batches = dict.fromkeys(history, 0.0), 0
            bar = tqdm(batches_of_epoch, total=steps, desc=f"epoch {epoch + 1}/{epochs}",
                       disable=not progress, leave=False)
            for batch, real in enumerate(bar):
                real = real[0] if isinstance(real, (tuple, list)) else real
                step = {k: float(v) for k, v in self._step(real).items()}
                for k, v in step.items():
                    sums[k] += v
                batches += 1
                bar.set_postfix(d_loss=f"{step['d_loss']:.3f}", g_loss=f"{step['g_loss']:.3f}")
                callback_list.on_train_batch_end(batch, step)
                if self.gan.stop_training:
                    break
            if self.gan.stop_training:
                break
            logs = {k: sums[k] / max(batches, 1) for k in history}
            for k, v in logs.items():
                history[k].append(v)
            if progress:
                print(f"epoch {epoch + 1}/{epochs} " + " ".join(f"{k}={v:.4f}" for k, v in logs.items()))
            callback_list.on_epoch_end(epoch, logs)
        callback_list.on_train_end()
        return history


def train_alternating(gan: DCGAN, dataset, epochs: int, *, learning_rate=1e-4, beta_1=0.9,
                      callbacks=None, seed=0, progress=True) -> dict:
    """The article's alternating train_on_batch loop for ``epochs`` passes over ``dataset``
    (AlternatingTrainer(gan, ...).fit(dataset, epochs)); returns the per-epoch history."""
    trainer = AlternatingTrainer(gan, learning_rate=learning_rate, beta_1=beta_1, seed=seed)
    return trainer.fit(dataset, epochs, callbacks=callbacks, progress=progress)


@register_model_kind
class DCGANKind(ModelKind):
    """The DCGAN's contract: [-1, 1] inputs in whole batches, one Adam per network, and the
    article's alternating loop as its own trainer (``loop="alternating"``)."""

    name = "dcgan"
    presets = {
        # Article, "Deep Convolutional GANs": latent 100, 100 epochs, batch 32, Adam 1e-4 (Keras
        # defaults otherwise) for both, trained with its alternating train_on_batch loop
        # (`--loop fit` trains the same networks with the fused step).
        "article": dict(latent_dim=100, epochs=100, batch_size=32, learning_rate=1e-4, beta_1=0.9,
                        loop="alternating"),
        # The article's latent-2 variant, for the manifold figure that shows mode collapse.
        "article-latent2": dict(latent_dim=2, epochs=100, batch_size=32, learning_rate=1e-4, beta_1=0.9,
                                loop="alternating"),
        # Classifier FID of 1000 samples by epoch (benchmarks/fid_vs_wallclock.py, loaded CPU):
        # 1: 131 (8 classes), 2: 93, 4: 71, 6: 71, 8: 66 (15 min), 10: 77 -> 8 epochs.
        "cpu": dict(latent_dim=100, epochs=8, batch_size=64, learning_rate=2e-4, beta_1=0.5),
        "tiny": dict(latent_dim=16, epochs=2, batch_size=64, learning_rate=2e-4, beta_1=0.5, limit=512),
    }
    sample_options = {"label": lambda value, info: Conditioning.of_info(info).label(value)}
    loops = ("fit", "alternating")
    no_likelihood = ("an implicit model: the generator maps noise to images and defines no density, "
                     "so there is no likelihood to evaluate (only samples)")

    def data_options(self, config):
        return dict(value_range="-1_1", drop_remainder=True)

    def build(self, config):
        return DCGAN(latent_dim=config["latent_dim"], article_relu=config.get("article_relu", False),
                     seed=config["seed"], num_classes=config.get("num_classes"))

    def check_config(self, config):
        if config.get("loop", "fit") not in self.loops:
            raise ValueError(f"loop must be one of {', '.join(self.loops)}, got {config.get('loop')!r}")
        if config.get("loop") == "alternating" and config.get("num_classes") is not None:
            raise ValueError("the article's alternating loop trains unconditional DCGANs only; "
                             "use --loop fit with --num-classes")

    def compile(self, model, config):
        """Adam for D and G for fit; the article's loop builds its own pair (AlternatingTrainer)."""
        def adam():
            return keras.optimizers.Adam(config["learning_rate"], beta_1=config.get("beta_1", 0.9))
        model.compile(d_optimizer=adam(), g_optimizer=adam())

    def optimizers(self, model):
        return {name: getattr(model, name) for name in ("d_optimizer", "g_optimizer")
                if getattr(model, name, None) is not None}

    def optimizer_targets(self, model):
        return [(model.d_optimizer, model.discriminator.trainable_variables),
                (model.g_optimizer, model.generator.trainable_variables)]

    def trainer(self, model, config):
        if config.get("loop", "fit") != "alternating":
            return None
        return AlternatingTrainer(model, learning_rate=config["learning_rate"],
                                  beta_1=config.get("beta_1", 0.9), seed=config["seed"])

    def figures(self, model, config, out):
        """latent_manifold.png for an unconditional latent-2 DCGAN (the article's collapse figure)."""
        if model.latent_dim != 2 or model.conditioning.conditional:
            return []
        from keras_gen.plotting import latent_manifold

        path = out / "latent_manifold.png"
        latent_manifold(lambda z: model.generate(z).numpy(), path,
                        title=f"DCGAN latent manifold ({config['dataset']})")
        return [path]
