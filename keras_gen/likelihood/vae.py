"""The ELBO and the importance-weighted bound (IWAE) of a VAE with a Bernoulli decoder.

For an image x and k draws z_j ~ q(z | x) = N(mean, diag exp(logvar)) (the encoder's posterior),
the log importance weights are

    log w_j = log p(x | z_j) + log N(z_j; 0, I) - log q(z_j | x).

Their mean estimates the ELBO; log (1/k) sum_j w_j is Burda et al.'s bound L_k (2016, eq. 8),
which is >= the ELBO for the same draws (Jensen), grows with k in expectation and tends to
log p(x). p(x | z) is the decoder's Bernoulli likelihood of the binarised pixels, with the
decoder's probabilities clipped to [1e-7, 1 - 1e-7] as Keras' binary cross-entropy (the training
loss) clips them.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

EPSILON = 1e-7  # keras.config.epsilon(), the clip of binary_crossentropy


def _gaussian_log_density(z, mean, logvar):
    """Sum over the last axis of log N(z; mean, exp(logvar))."""
    return -0.5 * tf.reduce_sum(math.log(2 * math.pi) + logvar + tf.square(z - mean) / tf.exp(logvar), axis=-1)


def vae_log_weights(model, x, k: int, seed: int = 0, labels=None):
    """(B, k) float64 log importance weights of binarised images ``x`` (B, 28, 28[, 1]) in {0, 1}.

    ``seed`` fixes the draws (stateless): the same seed gives the same weights."""
    x = tf.convert_to_tensor(x, tf.float32)
    if x.shape.rank == 3:
        x = x[..., None]
    mean, logvar = (tf.cast(t, tf.float32) for t in model.encode(x, labels))
    batch, latent = tf.shape(mean)[0], tf.shape(mean)[1]
    eps = tf.random.stateless_normal(tf.stack([k, batch, latent]), seed=[int(seed), 0])
    z = mean[None] + tf.exp(0.5 * logvar)[None] * eps  # (k, B, latent)
    flat = tf.reshape(z, [-1, latent])
    flat_labels = None if labels is None else tf.tile(tf.convert_to_tensor(labels), [k])
    probs = tf.clip_by_value(tf.cast(model.decode(flat, flat_labels), tf.float32), EPSILON, 1 - EPSILON)
    probs = tf.reshape(probs, tf.concat([[k, batch], tf.shape(x)[1:]], 0))
    bernoulli = x[None] * tf.math.log(probs) + (1 - x[None]) * tf.math.log(1 - probs)
    log_px_z = tf.reduce_sum(tf.reshape(bernoulli, [k, batch, -1]), axis=-1)
    log_pz = _gaussian_log_density(z, 0.0, tf.zeros_like(z))
    log_qz = _gaussian_log_density(z, mean[None], logvar[None])
    return tf.transpose(tf.cast(log_px_z + log_pz - log_qz, tf.float64)).numpy()


def vae_bounds(model, x, k: int = 100, seed: int = 0, batch_size: int = 100, labels=None) -> dict:
    """Per-image {"elbo": (N,), "iwae": (N,)} in nats for binarised images ``x``, from the same k
    draws per image (batch i of ``batch_size`` images uses seed + i)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    x = np.asarray(x)
    elbo, iwae = [], []
    for i, start in enumerate(range(0, len(x), batch_size)):
        batch_labels = None if labels is None else np.asarray(labels)[start:start + batch_size]
        w = vae_log_weights(model, x[start:start + batch_size], k, seed + i, batch_labels)
        elbo.append(w.mean(axis=1))
        top = w.max(axis=1, keepdims=True)
        iwae.append(top[:, 0] + np.log(np.exp(w - top).mean(axis=1)))
    return {"elbo": np.concatenate(elbo), "iwae": np.concatenate(iwae)}
