"""Pieces of the SavedModel serving contract shared by every model (docs/design.md, Export).

A model's ``serving_endpoints()`` returns ``{name: (fn, input_signature)}``; keras_gen.export
turns them into SavedModel signatures. Seeded endpoints take ``num_images`` and ``seed``
(int32 scalars) and return ``{"images": float32 (N, 28, 28, 1) in [0, 1]}``.
"""

import tensorflow as tf

MAX_IMAGES = 4096  # one call may ask for at most this many images (memory guard)


def seeded_signature(*extra):
    """[num_images, seed, *extra] as int32 scalar TensorSpecs (extra: more TensorSpecs)."""
    return [tf.TensorSpec([], tf.int32, name="num_images"),
            tf.TensorSpec([], tf.int32, name="seed"), *extra]


def checked_num_images(num_images):
    """num_images with in-graph checks: 1 <= num_images <= MAX_IMAGES, else InvalidArgumentError."""
    checks = [tf.debugging.assert_positive(num_images, message="num_images must be >= 1"),
              tf.debugging.assert_less_equal(
                  num_images, tf.constant(MAX_IMAGES, tf.int32),
                  message=f"num_images is capped at {MAX_IMAGES} per call; ask in several calls")]
    # The checks must run *before* anything sized by num_images: without this dependency the
    # graph starts drawing 100000 images while the assertion is still pending (and crashed).
    with tf.control_dependencies(checks):
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


def latent_model_endpoints(latent_dim, to_images, z_endpoint, num_classes=None):
    """Endpoints of a latent-variable model (VAE, GAN) whose ``to_images(z[, labels])`` gives [0, 1]
    images: ``serving_default(num_images, seed)`` from prior draws, and ``z_endpoint(z)`` from given
    codes. A conditional model (``num_classes`` set) also gets ``sample_class(num_images, seed,
    label)``; its ``serving_default`` draws the classes in turn and ``z_endpoint`` takes ``labels``."""
    from keras_gen.models.conditioning import checked_labels, cycling_labels

    if num_classes is None:
        def generate_seeded(num_images, seed):
            z = prior_draws(checked_num_images(num_images), latent_dim, seed)
            return {"images": tf.cast(to_images(z), tf.float32)}

        def from_codes(z):
            return {"images": tf.cast(to_images(z), tf.float32)}

        return {"serving_default": (generate_seeded, seeded_signature()),
                z_endpoint: (from_codes, [tf.TensorSpec((None, latent_dim), tf.float32, name="z")])}

    def generate_seeded(num_images, seed):
        num_images = checked_num_images(num_images)
        z = prior_draws(num_images, latent_dim, seed)
        return {"images": tf.cast(to_images(z, cycling_labels(num_images, num_classes)), tf.float32)}

    def sample_class(num_images, seed, label):
        num_images = checked_num_images(num_images)
        labels = tf.fill([num_images], checked_labels(label, num_classes))
        return {"images": tf.cast(to_images(prior_draws(num_images, latent_dim, seed), labels), tf.float32)}

    def from_codes(z, labels):
        return {"images": tf.cast(to_images(z, checked_labels(labels, num_classes)), tf.float32)}

    return {"serving_default": (generate_seeded, seeded_signature()),
            "sample_class": (sample_class, seeded_signature(tf.TensorSpec([], tf.int32, name="label"))),
            z_endpoint: (from_codes, [tf.TensorSpec((None, latent_dim), tf.float32, name="z"),
                                      tf.TensorSpec((None,), tf.int32, name="labels")])}
