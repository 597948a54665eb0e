"""What a diffusion network predicts: the noise eps, the clean image x0, or the velocity v.

With alpha_t = sqrt(abar_t) and sigma_t = sqrt(1 - abar_t), a noisy image is
z_t = alpha_t x0 + sigma_t eps, and the three targets are interchangeable given z_t:

- ``"eps"`` (Ho et al. 2020): x0 = (z_t - sigma_t eps) / alpha_t.
- ``"x0"``: eps = (z_t - alpha_t x0) / sigma_t.
- ``"v"`` (Salimans & Ho 2022, appendix D): v = alpha_t eps - sigma_t x0, so
  x0 = alpha_t z_t - sigma_t v and eps = sigma_t z_t + alpha_t v (alpha_t^2 + sigma_t^2 = 1).

These are diffusers' ``prediction_type`` "epsilon", "sample" and "v_prediction". An eps network
is ill-conditioned where alpha_t is near 0 (its x0 divides by alpha_t): the first step of a 1-4
step sampler. x0 and v stay well defined there, which is why distilled students predict v.
The samplers convert every prediction to (eps, x0) with `eps_and_x0`.
"""

from __future__ import annotations

import tensorflow as tf

PREDICTIONS = ("eps", "x0", "v")


def check_prediction(prediction: str) -> str:
    """``prediction`` if it is one of PREDICTIONS, else ValueError."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    return prediction


def alpha_sigma(schedule, t, x):
    """(alpha_t, sigma_t) = (sqrt(abar_t), sqrt(1 - abar_t)) shaped to broadcast against ``x``."""
    return (schedule.extract("sqrt_alphas_cumprod", t, x),
            schedule.extract("sqrt_one_minus_alphas_cumprod", t, x))


def training_target(prediction, x0, noise, alpha, sigma):
    """The regression target of a network predicting ``prediction`` for z = alpha x0 + sigma noise."""
    check_prediction(prediction)
    if prediction == "eps":
        return noise
    if prediction == "x0":
        return x0
    return alpha * noise - sigma * x0


def target_from_x0(prediction, x0, z, alpha, sigma):
    """The ``prediction``-space value whose clean image is ``x0`` at z (distillation targets)."""
    check_prediction(prediction)
    if prediction == "x0":
        return x0
    eps = (z - alpha * x0) / sigma
    return eps if prediction == "eps" else alpha * eps - sigma * x0


def eps_and_x0(prediction, output, z, alpha, sigma):
    """(eps, x0) implied by a network ``output`` of kind ``prediction`` at noisy image ``z``."""
    check_prediction(prediction)
    output = tf.cast(output, z.dtype)
    if prediction == "eps":
        return output, (z - sigma * output) / alpha
    if prediction == "x0":
        return (z - alpha * output) / sigma, output
    return sigma * z + alpha * output, alpha * z - sigma * output
