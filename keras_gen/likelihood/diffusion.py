"""The variational bound of a DDPM on -log P(x_0) of 8-bit images (Ho et al. 2020, eq. 5).

With keras_gen's 0-based timesteps (x at index t has had t + 1 noising steps; Ho et al.'s t is
our t + 1), the bound on -log P(x_0) in nats is

    L = L_prior + sum_{t=1}^{T-1} L_t + L_decoder,
    L_prior   = KL(q(x_{T-1} | x_0) || N(0, I)),
    L_t       = E_q KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)),
    L_decoder = -E_q log p(x_0 | x at index 0).

Both distributions of L_t are diagonal Gaussians: the posterior of the schedule's tables, and the
model's step with the mean its prediction implies and the ancestral sampler's variance beta_t
(samplers.ddpm_step). The decoder is Ho et al.'s discretised Gaussian (section 3.3): the 8-bit
value k sits in the bin [x - 1/255, x + 1/255] of x = 2k / 255 - 1, the outer bins reaching to
-inf and +inf; its variance is the posterior variance of the second step (the first one's is 0).
These are the "fixed large" variances of Ho et al.'s released code; beta_1 at the decoder would
define another decoder and another bound (on the shipped DDPM 2.455 bits/dim against 2.390).

Each L_t needs a network pass, so the sum over t is estimated, unbiased, by stratified sampling:
the timesteps 1..T-1 are cut into strata of geometrically growing width (the terms are largest at
small t), one t is drawn per stratum and image, and its term is weighted by the stratum's width.
The prior term is exact and the decoder term takes one draw.

Every term is a sum over the model's pixels. A DDPM that pads 28x28 digits to 32x32 models the
padding too; its terms are kept, so the bound (divided by the 784 real pixels) stays an upper
bound on the real pixels' bits/dim (P(k) >= P(k, padding = 0)); the padding's share is reported
beside it.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from keras_gen.diffusion.targets import alpha_sigma, eps_and_x0

BIN = 1.0 / 255.0  # half a bin of the 8-bit data in [-1, 1]


def geometric_strata(timesteps: int, strata: int) -> np.ndarray:
    """Edges e_0 = 1 < e_1 < ... < e_m = T of strata [e_i, e_{i+1}) of the timesteps 1..T-1, of
    geometrically growing width (m <= ``strata``: equal rounded edges merge)."""
    if timesteps < 2:
        raise ValueError(f"the bound needs T >= 2 timesteps, got {timesteps}")
    edges = np.unique(np.round(np.geomspace(1, timesteps, strata + 1)).astype(np.int64))
    return edges


def gaussian_kl(mean_q, var_q, mean_p, var_p):
    """KL(N(mean_q, var_q) || N(mean_p, var_p)) per element (nats)."""
    return 0.5 * (tf.math.log(var_p / var_q) + (var_q + tf.square(mean_q - mean_p)) / var_p - 1.0)


def _log_normal_cdf(z):
    return tf.math.log(tf.maximum(0.5 * tf.math.erfc(-z / math.sqrt(2.0)), 1e-30))


def discretized_gaussian_log_likelihood(x, mean, std):
    """log P(bin of x) per element under N(mean, std^2), for x on the 8-bit grid in [-1, 1]: the
    bin [x - 1/255, x + 1/255], with the edge bins of -1 and 1 open to -inf / +inf. Computed in
    float64: a narrow bin's probability is a difference of two close CDF values."""
    dtype = tf.convert_to_tensor(x).dtype
    x, mean, std = (tf.cast(v, tf.float64) for v in (x, mean, std))
    upper = (x + BIN - mean) / std
    lower = (x - BIN - mean) / std
    cdf_upper = 0.5 * tf.math.erfc(-upper / math.sqrt(2.0))
    cdf_lower = 0.5 * tf.math.erfc(-lower / math.sqrt(2.0))
    middle = tf.math.log(tf.maximum(cdf_upper - cdf_lower, 1e-30))
    log_below = _log_normal_cdf(upper)  # P(X <= upper): the bin of -1
    log_above = _log_normal_cdf(-lower)  # P(X >= lower): the bin of 1
    return tf.cast(tf.where(x < -1.0 + 1e-3, log_below, tf.where(x > 1.0 - 1e-3, log_above, middle)), dtype)


class DiffusionBound:
    """The terms of the bound for a DDPM ``model`` (its EMA network, unconditional): see the
    module docstring. Images are the model's inputs: x_0 in [-1, 1] on the 8-bit grid, (B, H, W, 1)."""

    def __init__(self, model):
        if model.conditioning.conditional:
            raise ValueError("the variational bound is implemented for unconditional DDPMs only")
        self.model, self.schedule = model, model.schedule
        self.eps_fn = tf.function(model.eps_fn(use_ema=True), reduce_retracing=True)
        self.timesteps = self.schedule.timesteps

    def _table(self, name, t, x):
        return self.schedule.extract(name, t, x)

    def prior_term(self, x0):
        """(B, H, W, C) KL(q(x_{T-1} | x_0) || N(0, I)) per pixel."""
        t = tf.fill([tf.shape(x0)[0]], self.timesteps - 1)
        alpha, sigma = alpha_sigma(self.schedule, t, x0)
        return gaussian_kl(alpha * x0, tf.square(sigma), 0.0, 1.0)

    def _x0_prediction(self, x_t, t):
        output = self.eps_fn(x_t, t)
        return eps_and_x0(self.model.prediction, output, x_t, *alpha_sigma(self.schedule, t, x_t))[1]

    def step_term(self, x0, t, noise):
        """(B, H, W, C) KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) per pixel, x_t drawn with
        ``noise``; t (B,) int32 in [1, T-1]."""
        x_t = self.schedule.q_sample(x0, t, noise)
        coef1, coef2 = self._table("posterior_mean_coef1", t, x0), self._table("posterior_mean_coef2", t, x0)
        mean_q = coef1 * x0 + coef2 * x_t
        mean_p = coef1 * self._x0_prediction(x_t, t) + coef2 * x_t
        return gaussian_kl(mean_q, self._table("posterior_variance", t, x0), mean_p, self._table("betas", t, x0))

    def decoder_term(self, x0, noise):
        """(B, H, W, C) -log p(x_0 | x at index 0) per pixel (discretised Gaussian)."""
        t = tf.zeros([tf.shape(x0)[0]], tf.int32)
        x_t = self.schedule.q_sample(x0, t, noise)
        mean = self._x0_prediction(x_t, t)  # the posterior mean at t = 0 is the predicted x_0
        std = tf.sqrt(tf.cast(self.schedule.posterior_variance[1], tf.float32))
        return -discretized_gaussian_log_likelihood(x0, mean, std)

    def all_terms(self, x0, seed: int = 0):
        """Every term of one draw, (T + 1, B, H, W, C): prior, steps t = T-1 .. 1, decoder (for
        tests on small T: the network runs T times)."""
        batch = tf.shape(x0)[0]
        terms = [self.prior_term(x0)]
        for t in range(self.timesteps - 1, 0, -1):
            noise = tf.random.stateless_normal(tf.shape(x0), seed=[seed, t])
            terms.append(self.step_term(x0, tf.fill([batch], t), noise))
        terms.append(self.decoder_term(x0, tf.random.stateless_normal(tf.shape(x0), seed=[seed, 0])))
        return tf.stack(terms)

    def stratified(self, x0, strata: int = 10, seed: int = 0):
        """(B, H, W, C) per-pixel estimate of the whole bound (nats): exact prior, one draw of the
        decoder, and the step terms' sum estimated with one t per geometric stratum."""
        batch = tf.shape(x0)[0]
        edges = geometric_strata(self.timesteps, strata)
        total = self.prior_term(x0)
        total += self.decoder_term(x0, tf.random.stateless_normal(tf.shape(x0), seed=[seed, 0]))
        for i, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
            t = tf.random.stateless_uniform([batch], seed=[seed, 2 * i + 1], minval=int(low), maxval=int(high),
                                            dtype=tf.int32)
            noise = tf.random.stateless_normal(tf.shape(x0), seed=[seed, 2 * i + 2])
            total += float(high - low) * self.step_term(x0, t, noise)
        return total


def ddpm_bound(model, x0, *, strata: int = 10, seed: int = 0, batch_size: int = 250, real_pixels=None):
    """Per-image (N,) nats of the stratified bound of ``x0`` (N, H, W, 1) model inputs, and of the
    part of it in the pixels outside ``real_pixels`` (a boolean (H, W) mask; None: all real).
    Batch i uses seed + i. Returns {"nats": ..., "padding_nats": ...}."""
    bound = DiffusionBound(model)
    x0 = np.asarray(x0, np.float32)
    mask = np.ones(x0.shape[1:3], bool) if real_pixels is None else np.asarray(real_pixels, bool)
    nats, padding = [], []
    for i, start in enumerate(range(0, len(x0), batch_size)):
        per_pixel = bound.stratified(tf.constant(x0[start:start + batch_size]), strata, seed + i).numpy()
        per_pixel = per_pixel.sum(axis=-1).astype(np.float64)  # (B, H, W)
        nats.append(per_pixel.sum(axis=(1, 2)))
        padding.append(per_pixel[:, ~mask].sum(axis=1))
    return {"nats": np.concatenate(nats), "padding_nats": np.concatenate(padding)}
