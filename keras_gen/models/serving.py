"""Pieces of the SavedModel serving contract shared by every model (docs/design.md, Export).

A model's ``serving_endpoints()`` returns ``{name: (fn, input_signature)}``; keras_gen.export
turns them into SavedModel signatures. Seeded endpoints take ``num_images`` and ``seed``
(int32 scalars) and return ``{"images": float32 (N, 28, 28, 1) in [0, 1]}``.

Every input of every signature is validated in the graph, and the checks run *before* the work
they guard (control dependencies), so a bad call fails fast with ``InvalidArgumentError``:

- ``num_images``: 1 <= num_images <= MAX_IMAGES (`checked_num_images`);
- ``seed``: 0 <= seed (`checked_seed`; the int32 input already caps it at MAX_SEED = 2**31 - 1);
- ``z`` of ``decode`` / ``generate``: 1 to MAX_IMAGES rows, all finite, and for a conditional
  model one entry of ``labels`` per row (`checked_codes`);
- labels and guidance: `keras_gen.models.conditioning.checked_labels` / ``checked_guidance``;
- DDIM ``steps``: 1 <= steps <= T (`keras_gen.diffusion.samplers.ddim_timesteps_tf`).

The Python ``sample(n, seed)`` of every model checks the same things on the host with
`check_num_images` and `check_seed`, so a seed is accepted by both or by neither, and never wraps
around or gets truncated.
"""

import numbers

import tensorflow as tf

from keras_gen.diffusion.samplers import MAX_SEED  # the one seed range: [0, 2**31 - 1] (int32)

MAX_IMAGES = 4096  # one call may ask for at most this many images (memory guard)
# sample_trajectory returns (steps + 1) frames of num_images 32x32 float32 images (4 KB each):
# at most this many frames per call (256 MB), e.g. 64 images over 1000 steps or 1285 over 50.
MAX_TRAJECTORY_FRAMES = 2**16


def check_seed(seed, name="seed"):
    """``seed`` as a Python int in [0, MAX_SEED] (the int32 ``seed`` input of every export).

    Refuses, rather than wrapping modulo 2**32 or truncating: non-integers (bool, 1.5, "3", None)
    with TypeError, integers outside [0, 2**31 - 1] with ValueError. NumPy integers are accepted.
    """
    if isinstance(seed, (bool, float)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an integer in [0, {MAX_SEED}], got {seed!r} "
                        f"({type(seed).__name__})")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} must be an integer in [0, {MAX_SEED}] (int32, non-negative), got {seed}")
    return int(seed)


def check_num_images(n, name="n"):
    """``n`` (a number of images) as a Python int >= 1; TypeError for non-integers (2.5, True,
    "3"), ValueError for n < 1. Never truncates."""
    if isinstance(n, (bool, float)) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} (the number of images) must be a positive integer, got {n!r} "
                        f"({type(n).__name__})")
    if n < 1:
        raise ValueError(f"{name} (the number of images) must be >= 1, got {n}")
    return int(n)


def seeded_signature(*extra):
    """[num_images, seed, *extra] as int32 scalar TensorSpecs (extra: more TensorSpecs)."""
    return [tf.TensorSpec([], tf.int32, name="num_images"),
            tf.TensorSpec([], tf.int32, name="seed"), *extra]


def _count_checks(count, what):
    count = tf.cast(count, tf.int32)
    return [tf.debugging.assert_positive(count, message=f"{what} must be >= 1"),
            tf.debugging.assert_less_equal(
                count, tf.constant(MAX_IMAGES, tf.int32),
                message=f"{what} is capped at {MAX_IMAGES} per call; ask in several calls")]


def checked_num_images(num_images):
    """num_images with in-graph checks: 1 <= num_images <= MAX_IMAGES, else InvalidArgumentError."""
    # The checks must run *before* anything sized by num_images: without this dependency the
    # graph starts drawing 100000 images while the assertion is still pending (and crashed).
    with tf.control_dependencies(_count_checks(num_images, "num_images")):
        return tf.identity(num_images)


def checked_seed(seed):
    """An int32 seed with the in-graph check 0 <= seed (the host-side `check_seed` refuses
    negative seeds too; int32 caps it at MAX_SEED), else InvalidArgumentError."""
    seed = tf.cast(seed, tf.int32)
    check = tf.debugging.assert_non_negative(seed, message=f"seed must be in [0, {MAX_SEED}]")
    with tf.control_dependencies([check]):
        return tf.identity(seed)


def checked_codes(z, labels=None):
    """Latent codes z (N, latent_dim) of ``decode`` / ``generate`` with in-graph checks, and
    their labels (N,) if given: 1 <= N <= MAX_IMAGES, z finite, labels of length N.

    The row count is checked first and everything else waits for it, so a huge z fails without
    any work sized by it. Returns z, or (z, labels) when labels are given.
    """
    rows = tf.shape(z)[0]
    with tf.control_dependencies(_count_checks(rows, "the number of rows of z")):
        z = tf.identity(z)  # everything below waits for the row count: nothing sized by it runs first
        labels = None if labels is None else tf.identity(labels)
    z = tf.debugging.assert_all_finite(z, "z must be finite (no NaN or Inf)")
    if labels is None:
        return z
    check = tf.debugging.assert_equal(
        tf.shape(labels)[0], rows, message="labels must have one entry per row of z")
    with tf.control_dependencies([check]):
        return tf.identity(z), tf.identity(labels)


def checked_images(images, labels=None):
    """Images (N, H, W, C) in [0, 1] given to an export (a VAE's ``encode``) with in-graph checks:
    1 <= N <= MAX_IMAGES first, then values in [0, 1] (NaN fails too) and labels (N,) if given.
    Returns images, or (images, labels)."""
    rows = tf.shape(images)[0]
    with tf.control_dependencies(_count_checks(rows, "the number of images")):
        images = tf.identity(images)
        labels = None if labels is None else tf.identity(labels)
    in_range = tf.reduce_all((images >= 0.0) & (images <= 1.0))  # False for NaN
    checks = [tf.debugging.Assert(in_range, ["images must be in [0, 1] (no NaN)"])]
    if labels is not None:
        checks.append(tf.debugging.assert_equal(tf.shape(labels)[0], rows,
                                                message="labels must have one entry per image"))
    with tf.control_dependencies(checks):
        return tf.identity(images) if labels is None else (tf.identity(images), tf.identity(labels))


def checked_trajectory_size(num_images, steps):
    """num_images with the in-graph check num_images * (steps + 1) <= MAX_TRAJECTORY_FRAMES
    (the frames sample_trajectory returns), computed in int64 so it cannot overflow."""
    frames = tf.cast(num_images, tf.int64) * (tf.cast(steps, tf.int64) + 1)
    check = tf.debugging.assert_less_equal(
        frames, tf.constant(MAX_TRAJECTORY_FRAMES, tf.int64),
        message=f"sample_trajectory returns num_images * (steps + 1) frames, at most "
                f"{MAX_TRAJECTORY_FRAMES} per call; ask for fewer images or steps")
    with tf.control_dependencies([check]):
        return tf.identity(num_images)


def stateless_seed(seed, stream=0):
    """A stateless-RNG seed pair from an int32 scalar seed and a stream index."""
    return tf.stack([tf.cast(seed, tf.int32), tf.constant(stream, tf.int32)])


def prior_draws(num_images, latent_dim, seed):
    """z ~ N(0, I) of shape (num_images, latent_dim) from a seed (stateless: same seed, same z).

    Used by ``sample()`` and by the exported ``serving_default`` alike, so both give the same
    images for the same seed.
    """
    shape = tf.stack([tf.cast(num_images, tf.int32), tf.constant(latent_dim, tf.int32)])
    return tf.random.stateless_normal(shape, seed=stateless_seed(seed))


def latent_model_endpoints(latent_dim, to_images, z_endpoint, conditioning):
    """Endpoints of a latent-variable model (VAE, GAN) whose ``to_images(z[, labels])`` gives [0, 1]
    images: ``serving_default(num_images, seed)`` from prior draws, and ``z_endpoint(z)`` from given
    codes. A conditional model (keras_gen.models.conditioning.Conditioning) also gets
    ``sample_class(num_images, seed, label)``; its ``serving_default`` draws the classes in turn
    and ``z_endpoint`` takes ``labels``."""
    if not conditioning.conditional:
        def generate_seeded(num_images, seed):
            z = prior_draws(checked_num_images(num_images), latent_dim, checked_seed(seed))
            return {"images": tf.cast(to_images(z), tf.float32)}

        def from_codes(z):
            return {"images": tf.cast(to_images(checked_codes(z)), tf.float32)}

        return {"serving_default": (generate_seeded, seeded_signature()),
                z_endpoint: (from_codes, [tf.TensorSpec((None, latent_dim), tf.float32, name="z")])}

    def generate_seeded(num_images, seed):
        num_images = checked_num_images(num_images)
        z = prior_draws(num_images, latent_dim, checked_seed(seed))
        return {"images": tf.cast(to_images(z, conditioning.cycling(num_images)), tf.float32)}

    def sample_class(num_images, seed, label):
        num_images = checked_num_images(num_images)
        labels = tf.fill([num_images], conditioning.checked(label))
        z = prior_draws(num_images, latent_dim, checked_seed(seed))
        return {"images": tf.cast(to_images(z, labels), tf.float32)}

    def from_codes(z, labels):
        z, labels = checked_codes(z, labels)
        return {"images": tf.cast(to_images(z, conditioning.checked(labels)), tf.float32)}

    return {"serving_default": (generate_seeded, seeded_signature()),
            "sample_class": (sample_class, seeded_signature(tf.TensorSpec([], tf.int32, name="label"))),
            z_endpoint: (from_codes, [tf.TensorSpec((None, latent_dim), tf.float32, name="z"),
                                      tf.TensorSpec((None,), tf.int32, name="labels")])}
