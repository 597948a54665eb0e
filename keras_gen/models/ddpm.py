"""The article's DDPM ("Diffusion Models" section): a U-Net noise predictor trained with
Algorithm 1 and sampled with Algorithm 2 (DDPM) or DDIM strides.

Differences from the article's notebook (docs/errata.md, errata 6-11): the network sees x_t and is
trained to predict the noise (not the reverse); alpha-bar is not shifted; sampling runs all T
steps with no noise at the last one; timesteps and noise are drawn in-graph in a compiled
``train_step``; images are padded 28 -> 32 (``data_mode="resize"`` reproduces the article's
bilinear resize). An exponential moving average (EMA) of the weights is kept for sampling.

Class-conditional DDPM with classifier-free guidance (Ho & Salimans 2022): give the U-Net
``num_classes``; training replaces a share ``label_dropout`` of the labels with the null class
(index num_classes), and sampling mixes the two predictions as
eps = eps_uncond + w * (eps_cond - eps_uncond) (w = 0: unconditional, w = 1: plain conditional).
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_gen.diffusion import NoiseSchedule
from keras_gen.diffusion.schedule import KINDS as SCHEDULE_KINDS
from keras_gen.diffusion import samplers
from keras_gen.diffusion.targets import alpha_sigma, check_prediction, training_target
from keras_gen.layers.unet import UNet
from keras_gen.models.conditioning import Conditioning, check_guidance
from keras_gen.models.kinds import ModelKind, register_model_kind
from keras_gen.models.optimizer_build import OptimizerBuiltOnCompile, learning_rate_schedule
from keras_gen.models.replicas import replica_share, step_logs
from keras_gen.models.serving import checked_num_images, seeded_signature

DATA_MODES = ("pad", "resize")


def check_ddim_eta(eta) -> float:
    """A DDIM eta as a float in [0, 1], else ValueError."""
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not 0.0 <= eta <= 1.0:
        raise ValueError(f"ddim_eta must be a number in [0, 1], got {eta!r}")
    return float(eta)


@keras.saving.register_keras_serializable(package="keras_gen")
class DDPM(OptimizerBuiltOnCompile, keras.Model):
    """Denoising diffusion model on (image_size, image_size, 1) images in [-1, 1].

    Args:
        unet: the noise predictor ``unet((x_t, t)) -> eps`` (a keras_gen UNet); a UNet with
            ``num_classes`` makes the DDPM class-conditional (``unet((x_t, t, y))``, batches of
            (images, labels), ``sample(..., labels=, guidance=)``).
        schedule: a `NoiseSchedule` (or its config dict).
        image_size: 32 (MNIST padded or resized from 28).
        data_mode: "pad" (lossless, default) or "resize" (the article); how 28x28 maps to 32x32,
            undone by ``sample()``.
        ema_decay: decay of the weight EMA used for sampling (warmed up over the first steps).
        ddim_steps: default number of DDIM steps of the exported ``serving_default``.
        sampler: the default sampler of ``sample()``, ``serving_default`` and ``sample_class``:
            ``"ddim"`` (``ddim_steps`` strided steps, default) or ``"ddpm"`` (all T ancestral
            steps, Algorithm 2: the article's sampler, its ``article`` preset).
        ddim_eta: default DDIM stochasticity eta of ``sample()`` and of every DDIM export
            signature: 0 (Song et al.'s deterministic DDIM, the default) to 1 (fresh noise each
            step, DDPM-like variance). The cpu preset uses 1: its briefly trained network gave
            clearly better DDIM-50 samples with it (README, "DDIM eta").
        seed: seed of the in-graph RNG for timesteps and noise during training.
        label_dropout: conditional only: probability that a training label is replaced by the
            null class, which teaches the unconditional prediction guidance needs.
        guidance: conditional only: the default guidance scale w of ``sample`` and the exports.
        prediction: what the U-Net is trained to predict: ``"eps"`` (the article, default),
            ``"x0"`` or ``"v"`` (keras_gen.diffusion.targets); every sampler and export converts.
        timestep_spacing: which timesteps a DDIM run of N steps visits: ``"linspace"`` (default)
            or ``"trailing"`` (the nested grid of distilled students; `samplers.ddim_timesteps`).
    """

    kind = "ddpm"
    x0_bound = 1.0  # the diffusion data's range is [-x0_bound, x0_bound] (pixels in [-1, 1])

    def __init__(self, unet, schedule, image_size=32, data_mode="pad", ema_decay=0.999,
                 ddim_steps=50, seed=None, label_dropout=0.1, guidance=3.0, ddim_eta=0.0, prediction="eps",
                 timestep_spacing="linspace", sampler="ddim", **kwargs):
        super().__init__(**kwargs)
        if data_mode not in DATA_MODES:
            raise ValueError(f"data_mode must be one of {DATA_MODES}, got {data_mode!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.schedule = schedule if isinstance(schedule, NoiseSchedule) else NoiseSchedule(**schedule)
        if not 1 <= int(ddim_steps) <= self.schedule.timesteps:
            raise ValueError(f"ddim_steps must be in [1, {self.schedule.timesteps}], got {ddim_steps}")
        if not 0.0 <= label_dropout < 1.0:
            raise ValueError(f"label_dropout must be in [0, 1), got {label_dropout}")
        self.ddim_eta = check_ddim_eta(ddim_eta)
        self.prediction = check_prediction(prediction)
        samplers.ddim_timesteps(self.schedule.timesteps, 1, timestep_spacing)  # checks the name
        self.timestep_spacing = timestep_spacing
        if sampler not in samplers.SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(samplers.SAMPLERS)}, got {sampler!r}")
        self.sampler = sampler
        self.unet = unet
        self.image_size, self.data_mode = int(image_size), data_mode
        self.ema_decay, self.ddim_steps, self.seed = float(ema_decay), int(ddim_steps), seed
        self.label_dropout = float(label_dropout)
        self.guidance = check_guidance(guidance)
        self.conditioning = Conditioning(getattr(unet, "num_classes", None))
        self.ema_unet = UNet.from_config(unet.get_config())
        shape = (None, self.image_size, self.image_size, unet.channels)
        specs = [keras.KerasTensor(shape), keras.KerasTensor((None,), dtype="int32")]
        if self.conditioning.conditional:
            specs.append(keras.KerasTensor((None,), dtype="int32"))
        for net in (self.unet, self.ema_unet):
            net(tuple(specs))
        # Updated by update_ema(), never by the optimizer. Set after the build: sublayers that
        # ResnetBlock / attention create in build() would otherwise stay trainable, and their
        # variables would join model.trainable_variables (the optimizer a .keras load rebuilds).
        self.ema_unet.trainable = False
        for ema_w, w in zip(self.ema_unet.weights, self.unet.weights):
            ema_w.assign(w)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self._eps_fns = {use_ema: self._make_eps_fn(net) for use_ema, net in
                         ((True, self.ema_unet), (False, self.unet))}
        self.built = True

    @property
    def num_classes(self):
        """The U-Net's number of classes (None: unconditional)."""
        return self.conditioning.num_classes

    def _make_eps_fn(self, net):
        """The samplers' network function; it returns this model's ``prediction`` (eps, x0 or v)."""
        if not self.conditioning.conditional:
            def eps_fn(x, t):
                return tf.cast(net((x, t), training=False), tf.float32)
            return eps_fn
        null_class = self.conditioning.null_class

        def guided_eps_fn(x, t, labels, guidance):
            """eps_uncond + w (eps_cond - eps_uncond), both predictions from one doubled batch."""
            n = tf.shape(x)[0]
            eps = tf.cast(net((tf.concat([x, x], 0), tf.concat([t, t], 0),
                               tf.concat([tf.cast(labels, tf.int32), tf.fill([n], null_class)], 0)),
                              training=False), tf.float32)
            eps_cond, eps_uncond = eps[:n], eps[n:]
            return eps_uncond + tf.cast(guidance, tf.float32) * (eps_cond - eps_uncond)
        return guided_eps_fn

    def optimizer_variables(self):
        """The U-Net's trainable weights (the EMA copy is updated by update_ema, not the optimizer)."""
        return self.unet.trainable_variables

    # ----------------------------------------------------------------- the network
    def call(self, inputs, training=False):
        """Predicted noise for ``(x_t, t)`` (the training network, not the EMA)."""
        return self.unet(inputs, training=training)

    def sampler_options(self):
        """The samplers' keyword arguments that describe this network: prediction and spacing."""
        return {"prediction": self.prediction, "spacing": self.timestep_spacing}

    def eps_fn(self, use_ema=True):
        """``eps_fn(x_t, t_batch)`` for the samplers (EMA weights by default), returning the
        network's ``prediction`` (pass `sampler_options()` along); for a conditional
        DDPM ``eps_fn(x_t, t_batch, labels, guidance)``, the guided prediction (see `guidance_cond`).

        The same function object is returned every time, so the samplers' compiled step is reused.
        """
        return self._eps_fns[bool(use_ema)]

    # ----------------------------------------------------------------- training (Algorithm 1)
    @property
    def metrics(self):
        return [self.loss_tracker]

    def guidance_cond(self, labels, guidance=None):
        """The samplers' ``cond`` for a conditional DDPM: (int32 labels, float32 guidance scale)."""
        w = self.guidance if guidance is None else guidance
        return (tf.convert_to_tensor(labels, tf.int32), tf.convert_to_tensor(w, tf.float32))

    def diffusion_data(self, x):
        """A training batch (the kind's ``data_options``) -> what the diffusion runs on: the
        images themselves here; a latent DDPM's encoded latents."""
        return x

    def diffusion_data_layers(self) -> dict:
        """{what it is: layer} for each layer whose weights `diffusion_data` reads: none here.
        Sampling never reads them, so an export may not hold them; whatever trains on data
        (distillation) needs them trained (see sampling.model_from_export)."""
        return {}

    def space_kwargs(self) -> dict:
        """The constructor arguments that fix the diffusion's data space (beyond U-Net and
        schedule): what a distilled student copies from its teacher."""
        return {"image_size": self.image_size, "data_mode": self.data_mode}

    def diffusion_loss(self, x0, labels=None, training=True):
        """MSE between the U-Net's prediction and its target (the noise, x0 or v: ``prediction``)
        at uniformly drawn timesteps.

        A conditional DDPM gets ``labels``; while training a share ``label_dropout`` of them is
        replaced by the null class (classifier-free guidance).
        """
        x0 = self.diffusion_data(x0)
        batch = ops.shape(x0)[0]
        t = keras.random.randint((batch,), 0, self.schedule.timesteps, seed=self.seed_generator,
                                 dtype="int32")
        noise = keras.random.normal(ops.shape(x0), seed=self.seed_generator)
        x_t = self.schedule.q_sample(x0, t, noise)
        if not self.conditioning.conditional:
            eps = self.unet((x_t, t), training=training)
        else:
            if training and self.label_dropout > 0:
                drop = keras.random.uniform((batch,), seed=self.seed_generator) < self.label_dropout
                labels = ops.where(drop, self.conditioning.null_class, labels)
            eps = self.unet((x_t, t, labels), training=training)
        target = training_target(self.prediction, x0, noise, *alpha_sigma(self.schedule, t, x0))
        return ops.mean(ops.square(target - ops.cast(eps, "float32")))

    def train_step(self, data):
        x0, labels = self.conditioning.split(data, "DDPM")
        with tf.GradientTape() as tape:
            loss = self.diffusion_loss(x0, labels)
            scaled = self.optimizer.scale_loss(replica_share(loss))
        weights = self.unet.trainable_weights
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, weights), weights))
        self.update_ema()
        self.loss_tracker.update_state(loss)
        return step_logs({"loss": self.loss_tracker.result()})

    def test_step(self, data):
        x0, labels = self.conditioning.split(data, "DDPM")
        self.loss_tracker.update_state(self.diffusion_loss(x0, labels, training=False))
        return step_logs({"loss": self.loss_tracker.result()})

    def update_ema(self, iterations=None):
        """ema = d * ema + (1 - d) * w, with d warmed up as min(decay, (1 + n) / (10 + n)); n is
        ``iterations`` (default: this model's optimizer's step count)."""
        n = ops.cast(self.optimizer.iterations if iterations is None else iterations, "float32")
        decay = ops.minimum(self.ema_decay, (1.0 + n) / (10.0 + n))
        for ema_w, w in zip(self.ema_unet.weights, self.unet.weights):
            ema_w.assign(decay * ema_w + (1.0 - decay) * ops.cast(w, ema_w.dtype))

    # ----------------------------------------------------------------- sampling (Algorithm 2 / DDIM)
    def to_images(self, x):
        """Model space (B, 32, 32, 1) in [-1, 1] -> float32 (B, 28, 28, 1) in [0, 1]."""
        x = tf.cast(x, tf.float32)
        if self.data_mode == "pad":
            off = (self.image_size - 28) // 2
            x = x[:, off:off + 28, off:off + 28, :]
        else:
            x = tf.image.resize(x, (28, 28), method="bilinear")
        return tf.clip_by_value((x + 1.0) / 2.0, 0.0, 1.0)

    def noise(self, n, seed):
        return samplers.initial_noise((n, self.image_size, self.image_size, self.unet.channels), seed)

    def reconstruct(self, x0, t, seed=0, sampler="ddpm", steps=None, progress=False, labels=None,
                    guidance=None):
        """Noise model-space images x0 to timestep t, then run the reverse chain back to x_0.

        Returns (x_t, recovered), both in model space ([-1, 1], image_size): the article's
        "reverse engineering" figure. A conditional DDPM denoises unconditionally (null class)
        unless ``labels`` (and ``guidance``) are given.
        """
        from keras_gen.models.serving import check_seed

        seed = check_seed(seed)  # refused, never truncated or wrapped
        x0 = tf.convert_to_tensor(x0, tf.float32)
        n = int(x0.shape[0])
        noise = tf.random.stateless_normal(tf.shape(x0), seed=[seed, 1])
        x_t = self.schedule.q_sample(x0, tf.fill([n], int(t)), noise)
        guidance = self.conditioning.guidance(guidance)
        cond = ()
        if self.conditioning.conditional:  # labels None: the null class, unconditional denoising
            labels = (tf.fill([n], self.conditioning.null_class) if labels is None
                      else self.conditioning.labels(labels, n))
            cond = self.guidance_cond(labels, guidance)
        else:
            self.conditioning.labels(labels, n)
        recovered = samplers.denoise_from(self.eps_fn(), x_t, int(t), self.schedule, sampler=sampler,
                                          steps=steps, seed=seed, progress=progress, cond=cond,
                                          **self.sampler_options())
        return x_t.numpy(), recovered.numpy()

    def default_eta(self, sampler):
        """The eta a sampler runs with unless told otherwise: ``ddim_eta`` for DDIM, 0 for the
        ancestral DDPM sampler (which has no eta)."""
        return self.ddim_eta if sampler == "ddim" else 0.0

    def sample(self, n, seed=0, sampler=None, steps=None, eta=None, return_trajectory=False,
               progress=True, use_ema=True, batch_size=256, labels=None, guidance=None):
        """n images in [0, 1] (n, 28, 28, 1); the same seed gives the same images.

        sampler (default: the model's ``sampler``): "ddim" runs ``steps`` strided steps (default
        ``ddim_steps``); "ddpm" runs all T ancestral steps (Algorithm 2). ``eta``: DDIM stochasticity (default
        the model's ``ddim_eta``). ``return_trajectory`` also returns the model-space chain (steps+1, n, ...).
        Conditional DDPM: ``labels`` (one class or n; default the classes in turn) and the
        guidance scale ``guidance`` (default: the model's ``guidance``; 0 = unconditional).
        ``n``: an int >= 1; ``seed``: an int in [0, 2**31 - 1] (TypeError / ValueError otherwise).
        """
        from keras_gen.models.serving import check_num_images, check_seed

        n, seed = check_num_images(n), check_seed(seed)  # refused, never truncated or wrapped
        labels = self.conditioning.labels(labels, n)
        guidance = self.conditioning.guidance(guidance)
        sampler = self.sampler if sampler is None else sampler
        if sampler == "ddim" and steps is None:
            steps = self.ddim_steps
        if eta is None:
            eta = self.default_eta(sampler)
        batch_size = check_num_images(batch_size, name="batch_size")
        if return_trajectory and n > batch_size:
            raise ValueError(f"return_trajectory supports at most batch_size={batch_size} images")
        # Chunk 0 uses `seed` for its step noise (as the export does for a single call); later
        # chunks use seed + chunk so their step noise is not a copy of chunk 0's. That must not
        # wrap around past 2**31 - 1 (it would silently reuse other seeds' noise): refused.
        last_chunk = (n - 1) // batch_size
        if seed + last_chunk > samplers.MAX_SEED:
            raise ValueError(f"seed={seed} is too large for {last_chunk + 1} chunks of batch_size="
                             f"{batch_size}: chunk c uses the step-noise seed seed + c, which must stay "
                             f"<= {samplers.MAX_SEED}; pass seed <= {samplers.MAX_SEED - last_chunk} "
                             "or a larger batch_size")
        x_T = self.noise(n, seed)
        outputs, trajectory = [], None
        for chunk, start in enumerate(range(0, n, batch_size)):
            cond = () if labels is None else self.guidance_cond(labels[start:start + batch_size], guidance)
            result = samplers.sample(self.eps_fn(use_ema), x_T[start:start + batch_size], self.schedule,
                                     sampler=sampler, steps=steps, eta=eta,
                                     seed=seed + chunk,
                                     progress=progress, return_trajectory=return_trajectory, cond=cond,
                                     **self.sampler_options())
            if return_trajectory:
                result, trajectory = result
            outputs.append(self.to_images(result))
        images = tf.concat(outputs, axis=0).numpy()
        return (images, trajectory) if return_trajectory else images

    # ----------------------------------------------------------------- serialization
    def get_config(self):
        config = {**super().get_config(), "unet": keras.saving.serialize_keras_object(self.unet),
                  "schedule": self.schedule.get_config(), "image_size": self.image_size,
                  "data_mode": self.data_mode, "ema_decay": self.ema_decay,
                  "ddim_steps": self.ddim_steps, "seed": self.seed}
        if self.conditioning.conditional:  # unconditional configs stay as they were before
            config.update(label_dropout=self.label_dropout, guidance=self.guidance)
        if self.ddim_eta:  # so do configs of deterministic-DDIM models
            config["ddim_eta"] = self.ddim_eta
        if self.prediction != "eps":  # and of eps models
            config["prediction"] = self.prediction
        if self.timestep_spacing != "linspace":
            config["timestep_spacing"] = self.timestep_spacing
        if self.sampler != "ddim":  # and of models that sample with DDIM by default
            config["sampler"] = self.sampler
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["unet"] = keras.saving.deserialize_keras_object(config["unet"])
        return cls(**config)

    # ----------------------------------------------------------------- serving (export.py)
    def serving_endpoints(self):
        """serving_default (the default ``sampler``: DDIM with ``ddim_steps``, or all T ancestral
        steps), sample_ddim(steps), sample_ddpm (all T) and sample_trajectory(steps): the DDIM chain
        in model space ([-1, 1], 32x32) for figures.

        A conditional DDPM draws the classes in turn there (with its default ``guidance``) and
        adds sample_class(num_images, seed, label, guidance) (the default sampler).

        Every input is checked in the graph before any work (InvalidArgumentError): num_images
        in [1, MAX_IMAGES], seed >= 0, steps in [1, T], label in [0, num_classes), guidance finite
        in [MIN_GUIDANCE, MAX_GUIDANCE], and sample_trajectory's num_images * (steps + 1) frames
        at most MAX_TRAJECTORY_FRAMES (keras_gen.models.serving)."""
        from keras_gen.models.conditioning import checked_guidance
        from keras_gen.models.serving import checked_seed, checked_trajectory_size

        # One traced network call shared by every endpoint's sampling loop (a SavedModel stores
        # it once): tracing the U-Net once per signature was most of an export's time.
        eps_fn = tf.function(self.eps_fn(use_ema=True), reduce_retracing=True)

        def default_cond(num_images):
            if not self.conditioning.conditional:
                return ()
            return self.guidance_cond(self.conditioning.cycling(num_images))

        def run(num_images, seed, sampler, steps, cond=None):
            num_images, seed = checked_num_images(num_images), checked_seed(seed)
            x_T = self.noise(num_images, seed)
            cond = default_cond(num_images) if cond is None else cond
            x0 = samplers.sample_graph(eps_fn, x_T, self.schedule, sampler=sampler, steps=steps,
                                       eta=self.default_eta(sampler), seed=seed, cond=cond,
                                       **self.sampler_options())
            return {"images": self.to_images(x0)}

        default_steps = self.ddim_steps if self.sampler == "ddim" else None

        def serving_default(num_images, seed):
            return run(num_images, seed, self.sampler, default_steps)

        def sample_ddim(num_images, seed, steps):
            return run(num_images, seed, "ddim", steps)

        def sample_ddpm(num_images, seed):
            return run(num_images, seed, "ddpm", None)

        def sample_trajectory(num_images, seed, steps):
            # steps itself (1 <= steps <= T) is checked by samplers.ddim_timesteps_tf
            num_images = checked_trajectory_size(checked_num_images(num_images), steps)
            seed = checked_seed(seed)
            x_T = self.noise(num_images, seed)
            _, trajectory = samplers.sample_graph(eps_fn, x_T, self.schedule, sampler="ddim", steps=steps,
                                                  eta=self.ddim_eta, seed=seed, return_trajectory=True,
                                                  cond=default_cond(num_images), **self.sampler_options())
            return {"trajectory": tf.clip_by_value(tf.cast(trajectory, tf.float32), -1.0, 1.0)}

        steps_spec = tf.TensorSpec([], tf.int32, name="steps")
        endpoints = {"serving_default": (serving_default, seeded_signature()),
                     "sample_ddim": (sample_ddim, seeded_signature(steps_spec)),
                     "sample_ddpm": (sample_ddpm, seeded_signature()),
                     "sample_trajectory": (sample_trajectory, seeded_signature(steps_spec))}
        if self.conditioning.conditional:
            def sample_class(num_images, seed, label, guidance):
                labels = tf.fill([checked_num_images(num_images)], self.conditioning.checked(label))
                cond = self.guidance_cond(labels, checked_guidance(guidance))
                return run(num_images, seed, self.sampler, default_steps, cond)

            endpoints["sample_class"] = (sample_class, seeded_signature(
                tf.TensorSpec([], tf.int32, name="label"), tf.TensorSpec([], tf.float32, name="guidance")))
        return endpoints


def build_denoiser(config, channels: int = 1) -> UNet:
    """The U-Net of a preset-style config (``dim``, ``dim_mults``, ``attention_levels``,
    ``num_classes``) for data with ``channels`` channels."""
    return UNet(dim=config["dim"], dim_mults=tuple(config["dim_mults"]), channels=channels,
                attention_levels=tuple(config["attention_levels"]) if config.get("attention_levels") else None,
                num_classes=config.get("num_classes"))


def ddpm_settings(config) -> dict:
    """The `DDPM` keyword arguments of a preset-style config besides the denoiser, the schedule and
    the data's geometry (EMA, DDIM steps and eta, guidance, prediction, sampler, seed)."""
    return dict(ema_decay=config.get("ema_decay", 0.999), ddim_steps=config.get("ddim_steps", 50),
                seed=config["seed"], label_dropout=config.get("label_dropout", 0.1),
                guidance=config.get("guidance", 3.0), ddim_eta=config.get("ddim_eta", 0.0),
                prediction=config.get("prediction", "eps"), sampler=config.get("sampler", "ddim"))


def build_ddpm(config) -> DDPM:
    """A DDPM from a preset-style config dict (see keras_gen.presets)."""
    schedule = NoiseSchedule(timesteps=config["timesteps"], kind=config.get("schedule", "linear"))
    return DDPM(build_denoiser(config), schedule, image_size=32, data_mode=config.get("data_mode", "pad"),
                **ddpm_settings(config))


def _timesteps(info) -> int:
    return int(info["config"]["schedule"]["timesteps"])


def _conditional(info) -> bool:
    return Conditioning.of_info(info).conditional


def _check_sampler(value, info):
    if value not in samplers.SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(samplers.SAMPLERS)}, got {value!r}")
    return value


def _check_steps(value, info):
    T = _timesteps(info)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value <= T:
        raise ValueError(f"DDIM steps must be in [1, {T}] for this model, got {value!r}")
    return int(value)


@register_model_kind
class DDPMKind(ModelKind):
    """The DDPM's contract: [-1, 1] inputs padded to 32x32, Adam with warm-up / cosine decay, the
    article's three diffusion figures, and the sampler / steps / guidance sampling options."""

    name = "ddpm"
    no_likelihood = None
    bound_strata = 10  # timestep strata of the bound's estimator (keras_gen.likelihood.diffusion)
    presets = {
        # Article, "Diffusion Models": T=200 linear betas 1e-4..0.02, batch 64, Adam 1e-4, 10 epochs,
        # U-Net dim 64, mults (1, 2, 4, 8) (32.3M parameters), 28x28 resized to 32x32 bilinearly
        # (`--data-mode pad` is lossless: docs/errata.md, erratum 10), no weight EMA (ema_decay 0:
        # the sampling weights are the trained ones) and the ancestral sampler over all T steps
        # (Algorithm 2). Our improvements (EMA, DDIM, padding) are the cpu preset's.
        "article": dict(dim=64, dim_mults=(1, 2, 4, 8), attention_levels=None, timesteps=200,
                        schedule="linear", epochs=10, batch_size=64, learning_rate=1e-4, ddim_steps=50,
                        ema_decay=0.0, sampler="ddpm", data_mode="resize"),
        # Measured (benchmarks/unet_candidates.py): attention at 16x16 made a 1.3M U-Net 2-3x
        # slower than this 1.8M one with attention only at 8x8 and 4x4; bf16 gave ~1.3-1.9x.
        # ddim_eta=1: classifier FID of 400 DDIM-50 samples of a 3-epoch checkpoint, 65.0 at eta 0,
        # 64.5 at 0.5, 49.6 at 1 (eta 0 drew many stroke tangles; README "DDIM eta").
        "cpu": dict(dim=32, dim_mults=(1, 2, 2, 2), attention_levels=(False, False, True, True),
                    timesteps=1000, schedule="linear", epochs=3, batch_size=32, learning_rate=1e-3,
                    warmup_steps=300, lr_decay="cosine", ddim_steps=50, ddim_eta=1.0, ema_decay=0.995,
                    precision="mixed"),
        "tiny": dict(dim=8, dim_mults=(1, 2), attention_levels=(False, True), timesteps=20,
                     epochs=2, batch_size=32, learning_rate=1e-3, ddim_steps=5, ema_decay=0.9,
                     limit=256),
    }
    conditional_defaults = dict(label_dropout=0.1, guidance=3.0)
    export_options = {"ddim_eta": lambda model, eta: setattr(model, "ddim_eta", check_ddim_eta(eta))}
    sample_options = {"sampler": _check_sampler, "steps": _check_steps,
                      "label": lambda value, info: Conditioning.of_info(info).label(value),
                      "guidance": lambda value, info: Conditioning.of_info(info).guidance(value)}

    def check_config(self, config):
        check_prediction(config.get("prediction", "eps"))
        if config.get("schedule", "linear") not in SCHEDULE_KINDS:
            raise ValueError(f"schedule must be one of {SCHEDULE_KINDS}, got {config['schedule']!r}")

    def data_options(self, config):
        """Padded 28 -> 32 (lossless) unless data_mode="resize" reproduces the article."""
        if config.get("data_mode", "pad") == "resize":
            return dict(value_range="-1_1", resize_to=32)
        return dict(value_range="-1_1", pad_to=32)

    def build(self, config):
        return build_ddpm(config)

    def likelihood(self, model, images, *, seed=0, info=None):
        """The variational bound (Ho et al. 2020, eq. 5; discretised decoder) in bits/dim of the 8-bit
        digits, stratified over the timesteps (keras_gen.likelihood.diffusion); the padding's
        share is in the row (``padding_bits_per_dim``)."""
        from keras_gen.data import preprocess_images
        from keras_gen.likelihood import summary_row
        from keras_gen.likelihood.diffusion import ddpm_bound
        from keras_gen.likelihood.units import PIXELS

        if model.data_mode != "pad":
            raise ValueError("ddpm: the bound needs the 8-bit pixels themselves; a data_mode='resize' model "
                             "sees interpolated ones")
        x0 = preprocess_images(images, **self.data_options({"data_mode": "pad"})).numpy()
        pad = (x0.shape[1] - 28) // 2
        real = np.zeros(x0.shape[1:3], bool)
        real[pad:pad + 28, pad:pad + 28] = True
        bound = ddpm_bound(model, x0, strata=self.bound_strata, seed=seed, real_pixels=real)
        to_bpd = 1.0 / (PIXELS * math.log(2.0))
        return [summary_row("variational bound", bound["nats"] * to_bpd, "bits/dim",
                            "8-bit test images (padded to 32x32: the padding's terms included)",
                            strata=self.bound_strata,
                            padding_bits_per_dim=float(bound["padding_nats"].mean() * to_bpd))]

    def compile(self, model, config):
        """Adam with a linear warm-up to the preset's learning rate, then (``lr_decay="cosine"``)
        cosine decay to ``lr_floor`` times it over the rest of the run."""
        model.compile(optimizer=keras.optimizers.Adam(learning_rate_schedule(config)))

    def optimizer_targets(self, model):
        return [(model.optimizer, model.optimizer_variables())]

    def figures(self, model, config, out):
        """The article's three diffusion figures: forward strip, reverse strip, reverse engineering."""
        from keras_gen.data import load_dataset, preprocess_images
        from keras_gen.plotting import forward_process_strip, reverse_engineering, reverse_process_strip

        images, _ = load_dataset(config["dataset"], "test")
        x0 = preprocess_images(images[:4], **self.data_options(config)).numpy()
        paths = [out / "forward_process.png", out / "reverse_process.png", out / "reverse_engineering.png"]
        forward_process_strip(model.schedule, x0, paths[0])
        _, trajectory = model.sample(4, seed=0, sampler="ddim", return_trajectory=True, progress=False)
        reverse_process_strip(trajectory, paths[1])
        t = model.schedule.timesteps // 2
        noised, recovered = model.reconstruct(x0, t, seed=0)
        reverse_engineering(x0, noised, recovered, paths[2], t=t)
        return paths

    def demo_figures(self, sampler, out, seed):
        """<name>_reverse_process.png: the DDIM chain of 4 samples, `demo_steps` steps (an export's
        sample_trajectory signature, or the .keras model's sample)."""
        from keras_gen.plotting import reverse_process_strip

        steps = self.demo_steps(sampler.info)
        if hasattr(sampler, "loaded"):
            trajectory = sampler.loaded.signatures["sample_trajectory"](
                num_images=tf.constant(4), seed=tf.constant(seed), steps=tf.constant(steps))["trajectory"].numpy()
        else:
            _, trajectory = sampler.model.sample(4, seed, sampler="ddim", steps=steps, return_trajectory=True,
                                                 progress=False)
        path = out / f"{sampler.path.name}_reverse_process.png"
        reverse_process_strip(trajectory, path)
        return [path]

    def demo_steps(self, info) -> int:
        """DDIM steps of the demo's reverse-process figure."""
        return min(50, _timesteps(info))

    def check_sample_options(self, options, info):
        options = super().check_sample_options(options, info)
        if options.get("sampler") == "ddpm" and "steps" in options:
            raise ValueError("the DDPM sampler runs all T steps; use sampler='ddim' to set steps")
        if "guidance" in options and "label" not in options:
            raise ValueError("guidance needs a label (sample_class)")
        return options

    def export_call(self, info, options):
        if "label" in options:
            if "sampler" in options or "steps" in options:
                raise ValueError("an export's sample_class runs its default sampler; sampler/steps "
                                 "cannot be combined with a label (sample the .keras file for that)")
            guidance = options.get("guidance", info["config"].get("guidance"))
            return "sample_class", {"label": ("int32", options["label"]), "guidance": ("float32", guidance)}
        if options.get("sampler") == "ddpm":
            return "sample_ddpm", {}
        if "steps" in options:
            return "sample_ddim", {"steps": ("int32", options["steps"])}
        return "serving_default", {}

    def network_passes(self, info, options=None):
        options = options or {}
        T = _timesteps(info)
        sampler = options.get("sampler") or ("ddim" if "steps" in options else info["config"].get("sampler", "ddim"))
        if sampler == "ddpm":
            steps = T
        else:
            steps = len(samplers.ddim_timesteps(T, options.get("steps") or info["config"].get("ddim_steps", 50)))
        return steps * (2 if _conditional(info) else 1)  # guidance: conditional + unconditional pass

    def evaluation_runs(self, info, *, ddim_steps=(), full_chain=True, full_chain_n=None):
        T = _timesteps(info)
        eta = float(info["config"].get("ddim_eta") or 0.0)
        runs = [dict(short_label=f"DDPM {T}", options={"sampler": "ddpm"}, n=full_chain_n, slow=True,
                     row=dict(sampler="ddpm", steps=T))] if full_chain else []
        notes = []
        for s in ddim_steps:
            if not 1 <= int(s) <= T:
                notes.append(f"DDIM with {s} steps skipped (the schedule has T={T})")
                continue
            runs.append(dict(short_label=f"DDIM {s}", options={"sampler": "ddim", "steps": int(s)},
                             n=None, row=dict(sampler="ddim", steps=int(s), eta=eta)))
        return runs, notes
