"""A multi-scale normalizing flow for 28x28x1 images: RealNVP (Dinh, Sohl-Dickstein & Bengio 2017).

An invertible map f from images x in [0, 1)^784 to latents z of the same size, with a standard
normal base p(z); by the change of variables (Dinh et al. section 3.1)

    log p(x) = log N(f(x); 0, I) + log |det df/dx|,

exact, so the flow trains on the negative log-likelihood itself. The pieces, in order:

- uniform dequantisation (section 4.1; Theis et al. 2016): the 8-bit pixel k becomes
  x = (k + u) / 256, u ~ U[0, 1), drawn in every training step, so the continuous density bounds
  the discrete likelihood: -log2 P(k) / 784 <= 8 - E_u[log p(x)] / (784 ln 2) (bits per dimension);
- logit pre-processing (section 4.1): y = logit(alpha + (1 - 2 alpha) x), its log-Jacobian counted;
- per scale (section 3.6): affine couplings with checkerboard masks, a squeeze 2x2 -> channels,
  couplings with channel masks, then half of the channels are factored out to the base;
  the last scale has checkerboard couplings only;
- each coupling (section 3.3) keeps one part x_a and maps the other,
  x_b -> x_b * exp(s(x_a)) + t(x_a), with s bounded by a learned scale times tanh (stability,
  section 4.1) and s, t from a small residual conv net whose last conv starts at zero (the flow
  starts as the identity); an actnorm (Glow, Kingma & Dhariwal 2018 section 3.1: a per-channel
  affine map) before each coupling.

Everything computes in float32 (float64 in the tests): log-determinants summed over 784 pixels
lose too much in bfloat16 / float16.
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from keras_gen.models.kinds import ModelKind, register_model_kind
from keras_gen.models.optimizer_build import OptimizerBuiltOnCompile, learning_rate_schedule
from keras_gen.models.replicas import replica_share, step_logs
from keras_gen.models.serving import (MAX_IMAGES, check_num_images, check_seed, checked_num_images,
                                      checked_seed, seeded_signature, stateless_seed)

IMAGE_SHAPE = (28, 28, 1)
NUM_DIMS = 28 * 28
MAX_TEMPERATURE = 2.0  # T > 1 only widens the base; 2 is far past any useful sample
SAMPLE_BATCH = 500  # images per inverse pass in sample() (memory: activations at 28x28)


def check_temperature(value, info=None) -> float:
    """A sampling temperature (the base's standard deviation) as a float in (0, MAX_TEMPERATURE],
    else ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or not 0.0 < value <= MAX_TEMPERATURE:
        raise ValueError(f"temperature must be a finite number in (0, {MAX_TEMPERATURE:g}], got {value!r}")
    return float(value)


def checked_temperature(temperature):
    """A float32 temperature with the in-graph check 0 < t <= MAX_TEMPERATURE (finite)."""
    temperature = tf.cast(temperature, tf.float32)
    message = f"temperature must be a finite number in (0, {MAX_TEMPERATURE:g}]"
    checks = [tf.debugging.assert_all_finite(temperature, message),
              tf.debugging.assert_positive(temperature, message=message),
              tf.debugging.assert_less_equal(temperature, MAX_TEMPERATURE, message=message)]
    with tf.control_dependencies(checks):
        return tf.identity(temperature)


def checked_images(images):
    """Images of ``log_prob`` with in-graph checks before any work: 1 to MAX_IMAGES rows, finite,
    every value in [0, 1) (dequantised pixels)."""
    rows = tf.shape(images)[0]
    counts = [tf.debugging.assert_positive(rows, message="images must have at least one row"),
              tf.debugging.assert_less_equal(rows, MAX_IMAGES, message=f"images are capped at {MAX_IMAGES} "
                                             "per call; ask in several calls")]
    with tf.control_dependencies(counts):
        images = tf.identity(images)
    message = "images must be finite values in [0, 1): dequantised pixels (k + u) / 256"
    values = [tf.debugging.assert_all_finite(images, message),
              tf.debugging.assert_greater_equal(images, 0.0, message=message),
              tf.debugging.assert_less(images, 1.0, message=message)]
    with tf.control_dependencies(values):
        return tf.identity(images)


def per_example_sum(x):
    """Sum over every axis but the batch axis: (N, ...) -> (N,)."""
    return tf.reduce_sum(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def standard_normal_log_density(z):
    """log N(z; 0, I) per example, in nats."""
    log_2pi = tf.constant(math.log(2.0 * math.pi), z.dtype)
    return per_example_sum(-0.5 * (tf.square(z) + log_2pi))


def dequantize(pixels, noise):
    """(k + u) / 256 for 8-bit values k and u in [0, 1), kept below 1 (float32 rounds (255 + u) / 256
    up to 1 for u near 1)."""
    x = (tf.cast(pixels, noise.dtype) + noise) / 256.0
    return tf.minimum(x, tf.constant(np.nextafter(1.0, 0.0, dtype=noise.dtype.as_numpy_dtype), noise.dtype))


def bits_per_dim(log_prob):
    """bits/dim of 8-bit images from the log-density (nats, w.r.t. Lebesgue measure on [0, 1)^784)
    of their dequantised values: 8 - log_prob / (784 ln 2) (the density scaled to the 256^784 bins)."""
    return 8.0 - log_prob / (NUM_DIMS * math.log(2.0))


# ------------------------------------------------------------------------------- flow layers
# Each layer maps forward(x) -> (y, log|det dy/dx| per example) and back with inverse(y) -> x.


@keras.saving.register_keras_serializable(package="keras_gen")
class LogitTransform(layers.Layer):
    """y = logit(alpha + (1 - 2 alpha) x) for x in [0, 1): pixel values near 0 and 1 stay at a
    finite distance (Dinh et al. section 4.1). log|det| = sum log((1 - 2 alpha) / (s (1 - s)))."""

    def __init__(self, alpha=0.05, **kwargs):
        super().__init__(**kwargs)
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 < alpha < 0.5:
            raise ValueError(f"logit_alpha must be a number in (0, 0.5) (or None: no logit), got {alpha!r}")
        self.alpha = float(alpha)
        self.built = True

    def forward(self, x):
        s = self.alpha + (1.0 - 2.0 * self.alpha) * x
        y = tf.math.log(s) - tf.math.log1p(-s)
        log_det = per_example_sum(math.log(1.0 - 2.0 * self.alpha) - tf.math.log(s) - tf.math.log1p(-s))
        return y, log_det

    def inverse(self, y):
        return (tf.sigmoid(y) - self.alpha) / (1.0 - 2.0 * self.alpha)

    def call(self, x):
        return self.forward(x)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="keras_gen")
class ActNorm(layers.Layer):
    """y = (x + b) * exp(log_scale), per channel (Glow section 3.1), starting as the identity.
    log|det| = H * W * sum(log_scale)."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.bias = self.add_weight(shape=(self.channels,), initializer="zeros", name="bias")
        self.log_scale = self.add_weight(shape=(self.channels,), initializer="zeros", name="log_scale")
        self.built = True

    def forward(self, x):
        pixels = float(x.shape[1] * x.shape[2])
        log_det = tf.fill([tf.shape(x)[0]], pixels * tf.reduce_sum(self.log_scale))
        return (x + self.bias) * tf.exp(self.log_scale), log_det

    def inverse(self, y):
        return y * tf.exp(-self.log_scale) - self.bias

    def call(self, x):
        return self.forward(x)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable(package="keras_gen")
class Squeeze(layers.Layer):
    """(H, W, C) -> (H/2, W/2, 4C): each 2x2 patch becomes 4 channels (Dinh et al. section 3.6), a
    permutation (log|det| = 0) that lets channel masks mix neighbouring pixels."""

    def forward(self, x):
        return tf.nn.space_to_depth(x, 2), tf.zeros([tf.shape(x)[0]], x.dtype)

    def inverse(self, y):
        return tf.nn.depth_to_space(y, 2)

    def call(self, x):
        return self.forward(x)


@keras.saving.register_keras_serializable(package="keras_gen")
class CouplingNet(layers.Layer):
    """The s and t of a coupling: conv 3x3 -> ``num_blocks`` residual blocks (ReLU, conv, ReLU,
    conv) -> ReLU -> conv 3x3 to 2 * ``out_channels``, the last conv zero-initialised so the coupling
    starts as the identity. Returns (raw_s, t)."""

    def __init__(self, out_channels, filters, num_blocks, **kwargs):
        super().__init__(**kwargs)
        self.out_channels, self.filters, self.num_blocks = int(out_channels), int(filters), int(num_blocks)

        def conv(channels, name, **options):
            return layers.Conv2D(channels, 3, padding="same", dtype=self.dtype_policy, name=name, **options)

        self.conv_in = conv(self.filters, "conv_in")
        self.blocks = [(conv(self.filters, f"block{i}_a"), conv(self.filters, f"block{i}_b"))
                       for i in range(self.num_blocks)]
        self.conv_out = conv(2 * self.out_channels, "conv_out", kernel_initializer="zeros")

    def call(self, x):
        h = self.conv_in(x)
        for conv_a, conv_b in self.blocks:
            h = h + conv_b(tf.nn.relu(conv_a(tf.nn.relu(h))))
        out = self.conv_out(tf.nn.relu(h))
        return out[..., :self.out_channels], out[..., self.out_channels:]

    def get_config(self):
        return {**super().get_config(), "out_channels": self.out_channels, "filters": self.filters,
                "num_blocks": self.num_blocks}


MASKS = ("checkerboard", "channel")


def checkerboard(height, width, parity, dtype):
    """(1, H, W, 1) mask, 1 where (row + column + parity) is even: the pixels a coupling keeps."""
    rows, cols = np.indices((height, width))
    return tf.constant(((rows + cols + parity) % 2 == 0)[None, :, :, None], dtype)


@keras.saving.register_keras_serializable(package="keras_gen")
class AffineCoupling(layers.Layer):
    """An affine coupling (Dinh et al. section 3.3): the masked-in part x_a passes through, the rest
    becomes x_b * exp(s) + t with (s, t) = net(x_a) and s = scale * tanh(raw_s) (scale learned per
    channel, starting at 1). log|det| = sum(s) over the changed entries.

    ``mask="checkerboard"``: x_a are the pixels of one colour (``parity`` 0 or 1) of a checkerboard,
    all channels; the net also sees the mask. ``mask="channel"``: x_a is the first half of the
    channels (parity 0) or the second (parity 1).
    """

    def __init__(self, mask, parity, channels, filters, num_blocks, **kwargs):
        super().__init__(**kwargs)
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
        if mask == "channel" and channels % 2:
            raise ValueError(f"a channel mask needs an even number of channels, got {channels}")
        self.mask, self.parity, self.channels = mask, int(parity) % 2, int(channels)
        changed = self.channels if mask == "checkerboard" else self.channels // 2
        self.net = CouplingNet(changed, filters, num_blocks, dtype=self.dtype_policy, name="net")
        self.scale = self.add_weight(shape=(changed,), initializer="ones", name="scale")

    def _shift_and_log_scale(self, x_a, mask=None):
        net_input = x_a if mask is None else tf.concat([x_a, tf.broadcast_to(mask, tf.shape(x_a[..., :1]))], -1)
        raw_s, t = self.net(net_input)
        s = self.scale * tf.tanh(raw_s)
        return (s, t) if mask is None else (s * (1.0 - mask), t * (1.0 - mask))

    def _split(self, x):
        half = self.channels // 2
        first, second = x[..., :half], x[..., half:]
        return (first, second) if self.parity == 0 else (second, first)

    def _join(self, x_a, x_b):
        return tf.concat([x_a, x_b] if self.parity == 0 else [x_b, x_a], axis=-1)

    def forward(self, x):
        if self.mask == "checkerboard":
            mask = checkerboard(x.shape[1], x.shape[2], self.parity, x.dtype)
            s, t = self._shift_and_log_scale(x * mask, mask)
            return x * tf.exp(s) + t, per_example_sum(s)
        x_a, x_b = self._split(x)
        s, t = self._shift_and_log_scale(x_a)
        return self._join(x_a, x_b * tf.exp(s) + t), per_example_sum(s)

    def inverse(self, y):
        if self.mask == "checkerboard":
            mask = checkerboard(y.shape[1], y.shape[2], self.parity, y.dtype)
            s, t = self._shift_and_log_scale(y * mask, mask)
            return (y - t) * tf.exp(-s)
        y_a, y_b = self._split(y)
        s, t = self._shift_and_log_scale(y_a)
        return self._join(y_a, (y_b - t) * tf.exp(-s))

    def call(self, x):
        return self.forward(x)

    def get_config(self):
        return {**super().get_config(), "mask": self.mask, "parity": self.parity, "channels": self.channels,
                "filters": self.net.filters, "num_blocks": self.net.num_blocks}


# ------------------------------------------------------------------------------- the model


def _count(key, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@keras.saving.register_keras_serializable(package="keras_gen")
class RealNVP(OptimizerBuiltOnCompile, keras.Model):
    """A multi-scale RealNVP on 28x28x1 images in [0, 1) (module docstring).

    Args:
        num_scales: 1 to 3 (28 -> 14 -> 7); every scale but the last ends in a squeeze, channel
            couplings and a factor-out of half the channels.
        stage_couplings: couplings per mask type in each scale but the last (RealNVP: 3).
        final_couplings: checkerboard couplings of the last scale (RealNVP: 4).
        filters, num_blocks: width and residual blocks of the couplings' nets at 28x28; the width
            doubles with every halving of the resolution (RealNVP section 4.1), so each
            resolution costs about the same.
        logit_alpha: the logit pre-processing's alpha (RealNVP: 0.05); None: no pre-processing.
        seed: seed of the in-graph dequantisation noise of training.
    With no couplings and no logit the flow is the identity (a permutation of the pixels).

    ``fit`` takes batches of 8-bit images scaled to [0, 1] (k / 255, the shared pipeline's "0_1";
    k is recovered exactly) and minimises the dequantised negative log-likelihood in bits/dim
    (metric "loss"). ``log_prob(x)`` is the log-density of x in [0, 1)^784 in nats, ``bits_per_dim``
    that bound for uint8 images, ``sample(n, seed, temperature)`` draws images.
    """

    kind = "flow"

    def __init__(self, num_scales=2, stage_couplings=3, final_couplings=4, filters=32, num_blocks=2,
                 logit_alpha=0.05, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # never a mixed policy: see the module docstring
        super().__init__(**kwargs)
        self.num_scales = _count("num_scales", num_scales, 1)
        if self.num_scales > 3:
            raise ValueError(f"num_scales must be 1, 2 or 3 (28 = 2 * 2 * 7 squeezes twice), got {num_scales}")
        self.stage_couplings = _count("stage_couplings", stage_couplings)
        self.final_couplings = _count("final_couplings", final_couplings)
        self.filters, self.num_blocks = _count("filters", filters, 1), _count("num_blocks", num_blocks)
        self.logit_alpha, self.seed = logit_alpha, seed
        policy = self.dtype_policy
        self.preprocess = None if logit_alpha is None else LogitTransform(logit_alpha, dtype=policy, name="logit")
        self.scales, self.latent_shapes = self._build_scales()
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.log_prob(tf.fill((1,) + IMAGE_SHAPE, tf.constant(0.5, self.compute_dtype)))  # creates the nets' weights
        self.built = True

    def _build_scales(self):
        """[[flow layers of scale i]], and the (H, W, C) of each latent part (factored out, then last)."""
        (height, width, channels), policy = IMAGE_SHAPE, self.dtype_policy
        scales, shapes = [], []

        def couplings(mask, count, channels, prefix):
            filters = self.filters * (IMAGE_SHAPE[0] // height)  # doubled per halving: same cost per scale
            pairs = []
            for j in range(count):
                pairs += [ActNorm(channels, dtype=policy, name=f"{prefix}_actnorm{j}"),
                          AffineCoupling(mask, j, channels, filters, self.num_blocks, dtype=policy,
                                         name=f"{prefix}_{mask}{j}")]
            return pairs

        for i in range(self.num_scales):
            if i == self.num_scales - 1:
                scales.append(couplings("checkerboard", self.final_couplings, channels, f"scale{i}"))
                shapes.append((height, width, channels))
                break
            scale = couplings("checkerboard", self.stage_couplings, channels, f"scale{i}")
            scale.append(Squeeze(dtype=policy, name=f"scale{i}_squeeze"))
            height, width, channels = height // 2, width // 2, channels * 4
            scale += couplings("channel", self.stage_couplings, channels, f"scale{i}")
            scales.append(scale)
            channels //= 2  # factored out: half the channels go to the base
            shapes.append((height, width, channels))
        return scales, shapes

    # ----------------------------------------------------------------- the bijection
    def forward(self, x):
        """x (N, 28, 28, 1) -> ([latent parts], log|det df/dx| (N,)); the parts have latent_shapes."""
        log_det = tf.zeros([tf.shape(x)[0]], x.dtype)
        h = x
        if self.preprocess is not None:
            h, log_det = self.preprocess(h)
        latents = []
        for i, scale in enumerate(self.scales):
            for layer in scale:
                h, layer_log_det = layer(h)  # through __call__: the first call names the nets' weights
                log_det = log_det + layer_log_det
            if i < len(self.scales) - 1:
                half = h.shape[-1] // 2
                latents.append(h[..., :half])
                h = h[..., half:]
        latents.append(h)
        return latents, log_det

    def inverse(self, latents):
        """[latent parts] -> x: the inverse of ``forward`` (before any clipping)."""
        h = latents[-1]
        for i in reversed(range(len(self.scales))):
            if i < len(self.scales) - 1:
                h = tf.concat([latents[i], h], axis=-1)
            for layer in reversed(self.scales[i]):
                h = layer.inverse(h)
        return h if self.preprocess is None else self.preprocess.inverse(h)

    def flatten_latents(self, latents):
        """[latent parts] -> z (N, 784)."""
        return tf.concat([tf.reshape(z, [tf.shape(z)[0], -1]) for z in latents], axis=1)

    def unflatten_latents(self, z):
        """z (N, 784) -> [latent parts] of latent_shapes."""
        sizes = [int(np.prod(shape)) for shape in self.latent_shapes]
        return [tf.reshape(part, (-1,) + shape) for part, shape in zip(tf.split(z, sizes, axis=1), self.latent_shapes)]

    def encode(self, x):
        """Images in [0, 1) -> z (N, 784) in the base's space."""
        latents, _ = self.forward(tf.convert_to_tensor(x, self.compute_dtype))
        return self.flatten_latents(latents)

    def decode(self, z):
        """z (N, 784) -> images (N, 28, 28, 1) clipped to [0, 1]."""
        x = self.inverse(self.unflatten_latents(tf.convert_to_tensor(z, self.compute_dtype)))
        return tf.clip_by_value(x, 0.0, 1.0)

    # ----------------------------------------------------------------- likelihood
    def log_prob(self, x):
        """log p(x) in nats (N,) for x (N, 28, 28, 1) in [0, 1): the base's log-density of f(x) plus
        log|det df/dx| (logit pre-processing included), w.r.t. Lebesgue measure on [0, 1)^784."""
        latents, log_det = self.forward(tf.convert_to_tensor(x, self.compute_dtype))
        return tf.add_n([standard_normal_log_density(z) for z in latents]) + log_det

    def call(self, x):
        """The log-density of x (see log_prob)."""
        return self.log_prob(x)

    def bits_per_dim(self, images, seed=0, batch_size=500, draws=1):
        """The dequantised bound on -log2 P(k) / 784 of uint8 images (N, 28, 28[, 1]), averaged over
        the images and ``draws`` draws of the uniform noise u per image (seeded: the same seed and
        batch_size give the same number): mean of 8 - log p((k + u) / 256) / (784 ln 2)."""
        return float(self.bits_per_dim_per_image(images, seed, batch_size, draws).mean())

    def bits_per_dim_per_image(self, images, seed=0, batch_size=500, draws=1):
        """`bits_per_dim` of each image, (N,) float64 (its mean over the ``draws``)."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.shape[1:3] != (28, 28) or images.shape[3:] not in ((), (1,)) \
                or not len(images):
            raise ValueError(f"bits_per_dim takes uint8 images (N, 28, 28) or (N, 28, 28, 1), got "
                             f"{images.dtype} {images.shape}")
        seed, draws = check_seed(seed), check_num_images(draws, "draws")
        batch_size = check_num_images(batch_size, "batch_size")
        log_prob = tf.function(self.log_prob, reduce_retracing=True)
        pixels = images.reshape((-1,) + IMAGE_SHAPE)
        per_image = []
        for start in range(0, len(pixels), batch_size):
            k = tf.constant(pixels[start:start + batch_size])
            total = 0.0
            for draw in range(draws):
                u = tf.random.stateless_uniform(tf.shape(k), seed=[seed, start * draws + draw],
                                                dtype=self.compute_dtype)
                total += bits_per_dim(log_prob(dequantize(k, u))).numpy().astype(np.float64)
            per_image.append(total / draws)
        return np.concatenate(per_image)

    # ----------------------------------------------------------------- training
    @property
    def metrics(self):
        return [self.loss_tracker]

    def dequantized_loss(self, data):
        """Mean bits/dim of a batch of k / 255 images, dequantised with fresh noise."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        pixels = tf.round(tf.cast(x, self.compute_dtype) * 255.0)
        noise = keras.random.uniform(tf.shape(pixels), dtype=self.compute_dtype, seed=self.seed_generator)
        return tf.reduce_mean(bits_per_dim(self.log_prob(dequantize(pixels, noise))))

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss = self.dequantized_loss(data)
            scaled = self.optimizer.scale_loss(replica_share(loss))
        grads = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.loss_tracker.update_state(loss)
        return step_logs({"loss": self.loss_tracker.result()})

    def test_step(self, data):
        self.loss_tracker.update_state(self.dequantized_loss(data))
        return step_logs({"loss": self.loss_tracker.result()})

    # ----------------------------------------------------------------- sampling
    def base_draws(self, num_images, seed):
        """z ~ N(0, I) (num_images, 784) from a seed (stateless: sample() and the exports agree)."""
        shape = tf.stack([tf.cast(num_images, tf.int32), tf.constant(NUM_DIMS, tf.int32)])
        return tf.random.stateless_normal(shape, seed=stateless_seed(seed), dtype=self.compute_dtype)

    def sample(self, n, seed=0, temperature=1.0):
        """n images (n, 28, 28, 1) float32 in [0, 1]: decode(temperature * z), z ~ N(0, I); the same
        seed gives the same images. ``temperature`` in (0, 2]: below 1 draws fewer, cleaner strokes.
        ``n``: an int >= 1; ``seed``: an int in [0, 2**31 - 1] (TypeError / ValueError otherwise)."""
        n, seed, temperature = check_num_images(n), check_seed(seed), check_temperature(temperature)
        z = self.base_draws(n, seed) * temperature
        return np.concatenate([np.asarray(self.decode(z[i:i + SAMPLE_BATCH]), np.float32)
                               for i in range(0, n, SAMPLE_BATCH)])

    def get_config(self):
        return {**super().get_config(), "num_scales": self.num_scales, "stage_couplings": self.stage_couplings,
                "final_couplings": self.final_couplings, "filters": self.filters, "num_blocks": self.num_blocks,
                "logit_alpha": self.logit_alpha, "seed": self.seed}

    # ----------------------------------------------------------------- serving (export.py)
    def serving_endpoints(self):
        """serving_default(num_images, seed) at temperature 1, sample_temperature(num_images, seed,
        temperature) and log_prob(images) -> {"log_prob": (N,) nats}; every input checked in the
        graph before any work (num_images, seed as in keras_gen.models.serving; temperature finite in
        (0, MAX_TEMPERATURE]; images 1 to MAX_IMAGES rows, finite, in [0, 1))."""

        def draw(num_images, seed, temperature):
            z = self.base_draws(checked_num_images(num_images), checked_seed(seed))
            return {"images": tf.cast(self.decode(z * temperature), tf.float32)}

        def serving_default(num_images, seed):
            return draw(num_images, seed, 1.0)

        def sample_temperature(num_images, seed, temperature):
            return draw(num_images, seed, checked_temperature(temperature))

        def log_prob(images):
            return {"log_prob": tf.cast(self.log_prob(checked_images(images)), tf.float32)}

        return {"serving_default": (serving_default, seeded_signature()),
                "sample_temperature": (sample_temperature, seeded_signature(
                    tf.TensorSpec([], tf.float32, name="temperature"))),
                "log_prob": (log_prob, [tf.TensorSpec((None,) + IMAGE_SHAPE, tf.float32, name="images")])}


@register_model_kind
class FlowKind(ModelKind):
    """The flow's contract: [0, 1] inputs (k / 255; the model dequantises them), Adam with warm-up
    and gradient clipping, float32 only, unconditional, the temperature sampling option."""

    name = "flow"
    display_name = "RealNVP flow"
    presets = {
        # Measured (benchmarks/flow_candidates.py, 1.5-2 minutes each on the 2-core CPU beside other
        # jobs): this size (417k parameters) trained at 236 images/s at load 6 (141 at load 11-14),
        # 2.79 test bits/dim after 333 steps; 2 scales (113k): 390 (203); 3 couplings per stage: 80,
        # filters 24: 64 at load 14. 8 epochs: ~35 minutes at 236 images/s. Gradient norms spike to
        # ~150 in the first hundreds of steps: clipped at 50.
        "cpu": dict(num_scales=3, stage_couplings=2, final_couplings=2, filters=16, num_blocks=1,
                    logit_alpha=0.05, epochs=8, batch_size=64, learning_rate=1e-3, warmup_steps=200,
                    lr_decay="cosine", clipnorm=50.0, precision="float32"),
        "tiny": dict(num_scales=2, stage_couplings=1, final_couplings=1, filters=8, num_blocks=1,
                     logit_alpha=0.05, epochs=2, batch_size=32, learning_rate=1e-3, limit=256,
                     precision="float32"),
    }
    sample_options = {"temperature": check_temperature}

    def check_config(self, config):
        if config.get("num_classes") is not None:
            raise ValueError("the flow is unconditional; drop --num-classes")
        if config.get("precision", "float32") != "float32":
            raise ValueError("a flow trains in float32 only (log-determinants summed over 784 pixels lose "
                             "too much in 16-bit floats); drop --mixed-precision")

    no_likelihood = None

    def data_options(self, config):
        return dict(value_range="0_1")

    def likelihood(self, model, images, *, seed=0, info=None):
        """The dequantised bound on -log2 P(k) / 784 (exact log-density of one uniform
        dequantisation draw per image), in bits per dimension of the 8-bit images."""
        from keras_gen.likelihood import summary_row

        return [summary_row("dequantised NLL", model.bits_per_dim_per_image(images, seed=seed), "bits/dim",
                            "8-bit test images, one uniform dequantisation draw each")]

    def build(self, config):
        return RealNVP(num_scales=config["num_scales"], stage_couplings=config["stage_couplings"],
                       final_couplings=config["final_couplings"], filters=config["filters"],
                       num_blocks=config["num_blocks"], logit_alpha=config.get("logit_alpha", 0.05),
                       seed=config["seed"])

    def compile(self, model, config):
        """Adam with a linear warm-up over ``warmup_steps``, then (``lr_decay="cosine"``) cosine
        decay to ``lr_floor`` times the rate; ``clipnorm``: the gradients' global norm bound."""
        model.compile(optimizer=keras.optimizers.Adam(learning_rate_schedule(config),
                                                      global_clipnorm=config.get("clipnorm")))

    def export_call(self, info, options):
        if "temperature" in options:
            return "sample_temperature", {"temperature": ("float32", options["temperature"])}
        return "serving_default", {}

    def figures(self, model, config, out):
        """temperatures.png (the same draws at T = 0.5, 0.75, 1) and latent_interpolation.png (test
        digits mapped to z, the straight line between two of them mapped back)."""
        from keras_gen.data import load_dataset
        from keras_gen.plotting import image_strip

        temperatures = (0.5, 0.75, 1.0)
        paths = [out / "temperatures.png", out / "latent_interpolation.png"]
        image_strip([model.sample(10, 0, temperature=t) for t in temperatures], paths[0],
                    row_labels=[f"T = {t:g}" for t in temperatures], title="flow samples by temperature")
        images, _ = load_dataset(config["dataset"], "test")
        z = model.encode(dequantize(images[:8, ..., None], tf.fill((8,) + IMAGE_SHAPE, 0.5)))
        weights = np.linspace(0.0, 1.0, 8, dtype=np.float32)[:, None]
        rows = [model.decode((1.0 - weights) * z[i] + weights * z[i + 1]).numpy() for i in range(0, 8, 2)]
        image_strip(rows, paths[1], col_labels=[f"{w:.2f}" for w in weights[:, 0]],
                    title="test digits -> z -> straight line -> images")
        return paths
