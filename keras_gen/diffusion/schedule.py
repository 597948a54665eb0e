"""The DDPM noise schedule: betas, cumulative alphas, the forward process and posterior terms.

Indexing is 0-based: t = 0 is the first noising step and ``alphas_cumprod[t]`` is the product of
``alphas[0..t]`` inclusive, so x_0 is the data and x_t (t = 0..T-1) has had t + 1 noising steps.
The article's notebook shifts alpha-bar by one (``concat([1], cumprod(alpha)[:-1])``), which
leaves t = 0 noise-free (docs/errata.md, erratum 7); keras_gen does not.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

KINDS = ("linear", "cosine")
COSINE_OFFSET = 0.008  # s in Nichol & Dhariwal (2021), eq. 17
MAX_BETA = 0.999  # Nichol & Dhariwal clip betas here to avoid a singularity at t = T

# Per-timestep arrays that gather() can read in a TensorFlow graph.
TABLES = (
    "betas",
    "alphas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "posterior_variance",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)


def batch_broadcast(values, x):
    """Shape a scalar or per-image (B,) tensor to broadcast against ``x`` (B, ...), in x's dtype."""
    values = tf.convert_to_tensor(values)
    if values.shape.rank == 1:
        values = tf.reshape(values, [-1] + [1] * (x.shape.rank - 1))
    return tf.cast(values, x.dtype)


def _cosine_betas(timesteps):
    steps = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    f = np.cos((steps + COSINE_OFFSET) / (1.0 + COSINE_OFFSET) * math.pi / 2.0) ** 2
    alpha_bar = f / f[0]
    return np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], MAX_BETA)


class NoiseSchedule:
    """Variance schedule of a DDPM (Ho et al. 2020) with its derived per-timestep tables.

    All tables are NumPy float64 arrays of length ``timesteps``:
    ``betas``, ``alphas = 1 - betas``, ``alphas_cumprod[t] = prod(alphas[:t + 1])``,
    ``alphas_cumprod_prev[t] = alphas_cumprod[t - 1]`` (1 at t = 0),
    ``sqrt_alphas_cumprod``, ``sqrt_one_minus_alphas_cumprod``, and the posterior
    q(x_{t-1} | x_t, x_0) = N(coef1 * x_0 + coef2 * x_t, posterior_variance):
    ``posterior_variance``, ``posterior_mean_coef1``, ``posterior_mean_coef2``.
    ``gather(name, t)`` reads any of them as float32 inside a TensorFlow graph.

    Args:
        timesteps: int. Number of diffusion steps T. Defaults to 1000 (the article uses 200).
        kind: str. ``"linear"`` (Ho et al.: betas evenly spaced from ``beta_start`` to
            ``beta_end``) or ``"cosine"`` (Nichol & Dhariwal 2021, s = 0.008, betas clipped at
            0.999; ``beta_start`` and ``beta_end`` are then unused).
        beta_start: float. First beta of the linear schedule. Defaults to 1e-4.
        beta_end: float. Last beta of the linear schedule. Defaults to 0.02.

    Example:
        >>> schedule = NoiseSchedule(200)
        >>> x_t = schedule.q_sample(x0, t, tf.random.normal(tf.shape(x0)))

    References:
        Ho et al. 2020, https://arxiv.org/abs/2006.11239;
        Nichol & Dhariwal 2021, https://arxiv.org/abs/2102.09672.
    """

    def __init__(self, timesteps=1000, kind="linear", beta_start=1e-4, beta_end=0.02):
        if isinstance(timesteps, bool) or not isinstance(timesteps, (int, np.integer)) or timesteps < 1:
            raise ValueError(f"timesteps must be a positive integer, got {timesteps!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not 0.0 < beta_start <= beta_end < 1.0:
            raise ValueError(
                f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start!r}, beta_end={beta_end!r}"
            )
        self.timesteps = int(timesteps)
        self.kind = kind
        self.beta_start = float(beta_start)
        self.beta_end = float(beta_end)

        if kind == "linear":
            betas = np.linspace(self.beta_start, self.beta_end, self.timesteps, dtype=np.float64)
        else:
            betas = _cosine_betas(self.timesteps)
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(self.alphas)
        self.alphas_cumprod_prev = np.concatenate([[1.0], self.alphas_cumprod[:-1]])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        one_minus_ac = 1.0 - self.alphas_cumprod
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / one_minus_ac
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / one_minus_ac
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(self.alphas) / one_minus_ac
        self._float32 = {name: getattr(self, name).astype(np.float32) for name in TABLES}

    def gather(self, name, t):
        """float32 tensor of table ``name`` at int timesteps ``t`` (any shape; usable in graphs)."""
        if name not in self._float32:
            raise ValueError(f"unknown schedule table {name!r}; choose from {TABLES}")
        return tf.gather(self._float32[name], tf.cast(t, tf.int32))

    def extract(self, name, t, x):
        """Table ``name`` at ``t``, cast to ``x``'s dtype and shaped to broadcast against ``x``.

        ``t`` may be a Python int, a scalar tensor or a (B,) tensor (one timestep per image).
        """
        return batch_broadcast(self.gather(name, t), tf.convert_to_tensor(x))

    def q_sample(self, x0, t, noise):
        """Sample x_t ~ q(x_t | x_0) = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise (closed form).

        Args:
            x0: float tensor (B, ...). Clean data.
            t: int tensor (B,) (or scalar). 0-based timesteps.
            noise: tensor like ``x0``, standard normal.
        """
        x0 = tf.convert_to_tensor(x0)
        noise = tf.cast(noise, x0.dtype)
        return (self.extract("sqrt_alphas_cumprod", t, x0) * x0
                + self.extract("sqrt_one_minus_alphas_cumprod", t, x0) * noise)

    def predict_x0(self, x_t, t, eps):
        """x_0 implied by x_t and its noise: (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
        x_t = tf.convert_to_tensor(x_t)
        eps = tf.cast(eps, x_t.dtype)
        return ((x_t - self.extract("sqrt_one_minus_alphas_cumprod", t, x_t) * eps)
                / self.extract("sqrt_alphas_cumprod", t, x_t))

    def get_config(self):
        """Plain dict of the constructor arguments (JSON-serializable)."""
        return {"timesteps": self.timesteps, "kind": self.kind,
                "beta_start": self.beta_start, "beta_end": self.beta_end}

    @classmethod
    def from_config(cls, config):
        """Rebuild a schedule from ``get_config()``'s dict."""
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, NoiseSchedule) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash(tuple(sorted(self.get_config().items())))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"NoiseSchedule({args})"
