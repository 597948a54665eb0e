"""Reverse-process samplers: DDPM ancestral sampling and DDIM strided sampling.

Two drivers run the same per-step maths (`ddpm_step` / `ddim_step` plus one call of the noise
predictor):

- `sample` / `denoise_from`: a Python loop over steps with a tqdm bar; the per-step work is one
  `tf.function`, traced once and reused for later calls with the same ``eps_fn`` (timesteps are
  passed as tensors, so no retracing per step).
- `sample_graph`: the whole loop inside one `tf.while_loop`, for SavedModel export; the number of
  DDIM steps may be a tensor.

Randomness is stateless: the noise added at timestep t is
``tf.random.stateless_normal(shape, seed=[seed, t + 1])`` and `initial_noise` uses
``seed=[seed, 0]``, so a seed gives the same images in both drivers, on every call.

Conditioning: every driver takes ``cond``, a tuple of tensors passed on to the noise predictor as
``eps_fn(x_t, t_batch, *cond)`` (e.g. class labels and a guidance scale); being step inputs, new
values do not retrace the compiled step.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from keras_gen.diffusion.schedule import batch_broadcast
from keras_gen.diffusion.targets import alpha_sigma, check_prediction, eps_and_x0

SAMPLERS = ("ddpm", "ddim")
# How `ddim_timesteps` spreads its steps (diffusers' timestep_spacing of the same names).
SPACINGS = ("linspace", "trailing")
MAX_SEED = 2**31 - 1

# Number of times `sample` / `denoise_from` traced their per-step function (for tests and
# diagnostics: a whole sampling run should add exactly 1).
step_trace_count = 0


def ddpm_step(schedule, eps, t, x_t, noise):
    """One ancestral DDPM step x_t -> x_{t-1} (Ho et al. 2020, Algorithm 2, sigma_t^2 = beta_t).

    x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) * eps) / sqrt(alpha_t) + sigma_t * noise, with no
    noise added at t = 0 (the step that produces x_0).

    Args:
        schedule: `NoiseSchedule`.
        eps: tensor like ``x_t``. Predicted noise eps_theta(x_t, t).
        t: Python int, scalar int tensor or (B,) int tensor. 0-based timestep of ``x_t``.
        x_t: float tensor (B, ...).
        noise: tensor like ``x_t``, standard normal.

    Returns:
        x_{t-1}, same shape and dtype as ``x_t``.
    """
    x_t = tf.convert_to_tensor(x_t)
    eps = tf.cast(eps, x_t.dtype)
    noise = tf.cast(noise, x_t.dtype)
    t = tf.cast(t, tf.int32)
    betas = schedule.extract("betas", t, x_t)
    mean = ((x_t - betas / schedule.extract("sqrt_one_minus_alphas_cumprod", t, x_t) * eps)
            / tf.sqrt(schedule.extract("alphas", t, x_t)))
    sigma = tf.sqrt(betas) * batch_broadcast(tf.cast(t > 0, x_t.dtype), x_t)
    return mean + sigma * noise


def ddim_step(schedule, eps, t, t_prev, x_t, eta=0.0, noise=None, x0=None):
    """One DDIM step x_t -> x_{t_prev} (Song et al. 2021, eq. 12).

    x_prev = sqrt(abar_prev) * x0_pred + sqrt(1 - abar_prev - sigma^2) * eps + sigma * noise with
    x0_pred = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) and
    sigma = eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev).
    eta = 0 is deterministic; eta = 1 with t_prev = t - 1 has the DDPM posterior variance.

    Args:
        schedule: `NoiseSchedule`.
        eps: tensor like ``x_t``. Predicted noise.
        t: Python int, scalar or (B,) int tensor. Timestep of ``x_t``.
        t_prev: like ``t``. Timestep to jump to, < t; -1 means x_0 (abar_prev = 1).
        x_t: float tensor (B, ...).
        eta: float or scalar tensor in [0, 1]. Defaults to 0.0.
        noise: tensor like ``x_t``, standard normal; needed when eta > 0.
        x0: tensor like ``x_t`` or None. The network's own clean-image estimate (an x0- or
            v-predicting network, keras_gen.diffusion.targets); None derives it from ``eps``.

    Returns:
        x_{t_prev}, same shape and dtype as ``x_t``.
    """
    if noise is None and not (isinstance(eta, (int, float)) and eta == 0):
        raise ValueError("ddim_step needs `noise` when eta is not 0")
    x_t = tf.convert_to_tensor(x_t)
    eps = tf.cast(eps, x_t.dtype)
    t = tf.cast(t, tf.int32)
    t_prev = tf.cast(t_prev, tf.int32)
    abar = schedule.extract("alphas_cumprod", t, x_t)
    abar_prev = batch_broadcast(
        tf.where(t_prev >= 0, schedule.gather("alphas_cumprod", tf.maximum(t_prev, 0)), 1.0), x_t)
    x0_pred = (x_t - tf.sqrt(1.0 - abar) * eps) / tf.sqrt(abar) if x0 is None else tf.cast(x0, x_t.dtype)
    sigma = tf.cast(eta, x_t.dtype) * tf.sqrt((1.0 - abar_prev) / (1.0 - abar) * (1.0 - abar / abar_prev))
    x_prev = tf.sqrt(abar_prev) * x0_pred + tf.sqrt(tf.maximum(1.0 - abar_prev - sigma**2, 0.0)) * eps
    if noise is not None:
        x_prev += sigma * tf.cast(noise, x_t.dtype)
    return x_prev


def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def _check_spacing(spacing):
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")


def ddim_timesteps(timesteps, steps, spacing="linspace"):
    """The descending timesteps a `steps`-step DDIM run visits in a `timesteps`-step schedule.

    ``spacing="linspace"`` (the default, what every released model uses): evenly spaced from
    T - 1 down to 0, both included (``steps=1`` gives just ``[T - 1]``):
    t_j = (T - 1) - round_half_up(j * (T - 1) / (steps - 1)) for j = 0..steps-1.
    ``spacing="trailing"`` (Lin et al. 2024, "Common diffusion noise schedules and sample steps
    are flawed"; diffusers' "trailing"): t_i = round(i * T / steps) - 1 for i = steps..1 (halves
    rounded to even, as diffusers' np.round), so it always starts at T - 1 and the grid of N steps is every other timestep of
    the grid of 2N steps: what progressive distillation halves (keras_gen.models.distillation).
    Both are computed in exact integer arithmetic so that `ddim_timesteps_tf` gives the same
    sequence in a graph. The last step goes from the final timestep to x_0. ``steps=T`` visits
    every timestep with either spacing.

    Args:
        timesteps: int. T of the schedule.
        steps: int in [1, T]. Number of network evaluations.
        spacing: ``"linspace"`` or ``"trailing"``.

    Returns:
        int64 NumPy array of length ``steps``, strictly decreasing.
    """
    _check_int("timesteps", timesteps, 1, np.iinfo(np.int32).max)
    _check_int("steps", steps, 1, timesteps)
    _check_spacing(spacing)
    return _spaced(np.int64(timesteps), np.arange(steps, dtype=np.int64), np.int64(steps), spacing, np.maximum,
                   lambda b: np.asarray(b, np.int64))


def _spaced(timesteps, j, steps, spacing, maximum, to_int):
    """The integer maths of `ddim_timesteps` for NumPy or TensorFlow int64 values (``maximum``
    and ``to_int``, booleans to int64, from either library)."""
    if spacing == "trailing":  # round(i T / steps) - 1, halves to even as NumPy's (and diffusers') round
        numerator = (steps - j) * timesteps
        quotient, remainder = numerator // steps, numerator % steps
        up = (2 * remainder > steps) | ((2 * remainder == steps) & (quotient % 2 == 1))
        return quotient + to_int(up) - 1
    d = maximum(steps - 1, 1)
    return (timesteps - 1) - (2 * j * (timesteps - 1) + d) // (2 * d)


def ddim_timesteps_tf(timesteps, steps, spacing="linspace"):
    """`ddim_timesteps` in a TensorFlow graph: ``steps`` may be an int tensor; int32 (steps,)."""
    if not tf.is_tensor(steps):
        return tf.constant(ddim_timesteps(timesteps, steps, spacing), tf.int32)
    _check_int("timesteps", timesteps, 1, np.iinfo(np.int32).max)
    _check_spacing(spacing)
    steps = tf.cast(steps, tf.int64)
    checks = [
        tf.debugging.assert_greater_equal(steps, tf.constant(1, tf.int64), message="steps must be >= 1"),
        tf.debugging.assert_less_equal(
            steps, tf.constant(timesteps, tf.int64), message=f"steps must be <= timesteps ({timesteps})"),
    ]
    with tf.control_dependencies(checks):
        j = tf.range(steps, dtype=tf.int64)
    return tf.cast(_spaced(tf.constant(timesteps, tf.int64), j, steps, spacing, tf.maximum,
                           lambda b: tf.cast(b, tf.int64)), tf.int32)


def trailing_grid_point(i, steps, timesteps):
    """t_i = round(i * T / steps) - 1 of the trailing grid (`ddim_timesteps`) for an int tensor of
    grid indices i in [0, steps], in a graph; i = 0 gives -1 (the clean image). int32."""
    i, n = tf.cast(i, tf.int64), tf.constant(steps, tf.int64)
    return tf.cast(_spaced(tf.constant(timesteps, tf.int64), n - i, n, "trailing", tf.maximum,
                           lambda b: tf.cast(b, tf.int64)), tf.int32)


def initial_noise(shape, seed):
    """x_T ~ N(0, I) of ``shape`` from an int ``seed`` (stateless: same seed, same noise)."""
    return tf.random.stateless_normal(shape, seed=tf.stack([tf.cast(seed, tf.int32), 0]))


def _reverse_step(eps_fn, schedule, sampler, x, t, t_prev, eta, seed, cond=(), prediction="eps"):
    """One network evaluation and one sampler step at scalar int32 tensors t, t_prev.

    The network's output is read as ``prediction`` (keras_gen.diffusion.targets); an x0 or v
    network hands DDIM its own x0 rather than one recomputed through eps."""
    output = tf.cast(eps_fn(x, tf.fill([tf.shape(x)[0]], t), *cond), x.dtype)
    x0 = None
    if prediction == "eps":
        eps = output
    else:
        eps, x0 = eps_and_x0(prediction, output, x, *alpha_sigma(schedule, t, x))
    noise = tf.random.stateless_normal(tf.shape(x), seed=tf.stack([seed, t + 1]), dtype=x.dtype)
    if sampler == "ddpm":
        return ddpm_step(schedule, eps, t, x, noise)
    return ddim_step(schedule, eps, t, t_prev, x, eta, noise, x0=x0)


def _compiled_step(eps_fn, schedule, sampler, prediction):
    """The tf.function running one reverse step of ``sampler`` with ``eps_fn``.

    It is cached on ``eps_fn`` itself (so it lives and dies with it): a model that samples every
    epoch traces its step once, not once per call. Callables that take no attributes get a fresh
    step each call.
    """
    cache = getattr(eps_fn, "_keras_gen_steps", None)
    key = (sampler, schedule, prediction)
    if cache is not None and key in cache:
        return cache[key]

    @tf.function(reduce_retracing=True)
    def step(x, t, t_prev, eta, seed, cond):
        global step_trace_count
        step_trace_count += 1
        return _reverse_step(eps_fn, schedule, sampler, x, t, t_prev, eta, seed, cond, prediction)

    try:
        if cache is None:
            cache = {}
            eps_fn._keras_gen_steps = cache
        cache[key] = step
    except AttributeError:
        pass
    return step


def _check_sampler_args(sampler, steps, eta, prediction="eps", spacing="linspace"):
    check_prediction(prediction)
    _check_spacing(spacing)
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if sampler == "ddpm" and steps is not None:
        raise ValueError("sampler='ddpm' runs every timestep; use sampler='ddim' to choose `steps` "
                         "(eta=1.0 gives a stochastic strided sampler)")
    if tf.is_tensor(eta):
        return
    if sampler == "ddpm" and eta != 0:
        raise ValueError("eta applies to sampler='ddim' only")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta!r}")


def _chain(sampler, t_start, steps, spacing):
    """(timesteps, previous timesteps) of a reverse run from t_start to x_0, as int32 arrays."""
    if sampler == "ddpm":
        ts = np.arange(t_start, -1, -1)
    else:
        ts = ddim_timesteps(t_start + 1, t_start + 1 if steps is None else steps, spacing)
    return ts.astype(np.int32), np.append(ts[1:], -1).astype(np.int32)


def denoise_from(eps_fn, x_t, t_start, schedule, sampler="ddpm", steps=None, eta=0.0, seed=None,
                 progress=True, return_trajectory=False, cond=(), prediction="eps", spacing="linspace"):
    """Run the reverse chain from timestep ``t_start`` down to x_0.

    This is the article's "reverse engineering" experiment when ``x_t`` comes from
    ``schedule.q_sample(x0, t_start, noise)``; `sample` is the case t_start = T - 1.

    Args:
        eps_fn: callable ``eps_fn(x_t, t_batch) -> eps`` with ``t_batch`` int32 (B,); must be
            traceable by `tf.function` (e.g. ``lambda x, t: unet((x, t), training=False)``).
        x_t: float array or tensor (B, H, W, C) at timestep ``t_start``.
        t_start: int in [0, T - 1].
        schedule: `NoiseSchedule`.
        sampler: ``"ddpm"`` (every timestep) or ``"ddim"``.
        steps: int or None. DDIM steps (`ddim_timesteps(t_start + 1, steps)`); None means every
            timestep. Must be None for ``"ddpm"``.
        eta: float in [0, 1]. DDIM stochasticity; must be 0 for ``"ddpm"``.
        seed: int in [0, 2**31 - 1] or None (a random seed). Same seed, same result.
        progress: bool. Show a tqdm bar over steps.
        return_trajectory: bool. Also return every intermediate x.
        cond: tuple of tensors passed on as ``eps_fn(x_t, t_batch, *cond)``. Defaults to ().
        prediction: what ``eps_fn`` returns: ``"eps"`` (default), ``"x0"`` or ``"v"``
            (keras_gen.diffusion.targets); converted to eps and x0 at every step.
        spacing: DDIM timestep spacing, ``"linspace"`` (default) or ``"trailing"`` (`ddim_timesteps`).

    Returns:
        x_0 as a float32 tensor, or ``(x_0, trajectory)`` where trajectory is a NumPy array
        (n_steps + 1, B, H, W, C) from ``x_t`` to x_0.
    """
    _check_sampler_args(sampler, steps, eta, prediction, spacing)
    _check_int("t_start", t_start, 0, schedule.timesteps - 1)
    if seed is None:
        seed = int(np.random.default_rng().integers(MAX_SEED))
    _check_int("seed", seed, 0, MAX_SEED)
    ts, t_prevs = _chain(sampler, t_start, steps, spacing)

    step = _compiled_step(eps_fn, schedule, sampler, prediction)
    x = tf.cast(x_t, tf.float32)
    eta = tf.constant(eta, tf.float32)
    seed = tf.constant(seed, tf.int32)
    cond = tuple(tf.convert_to_tensor(c) for c in cond)
    trajectory = [x.numpy()] if return_trajectory else None
    for t, t_prev in tqdm(zip(ts, t_prevs), total=len(ts), desc=f"{sampler} sampling",
                          unit="step", disable=not progress):
        x = step(x, tf.constant(t), tf.constant(t_prev), eta, seed, cond)
        if return_trajectory:
            trajectory.append(x.numpy())
    return (x, np.stack(trajectory)) if return_trajectory else x


def sample(eps_fn, x_T, schedule, sampler="ddpm", steps=None, eta=0.0, seed=None, progress=True,
           return_trajectory=False, cond=(), prediction="eps", spacing="linspace"):
    """Generate x_0 from noise x_T by running the whole reverse process.

    ``sampler="ddpm"``: Ho et al. Algorithm 2 over all T timesteps (T network passes).
    ``sampler="ddim"``: Song et al. over `ddim_timesteps(T, steps)` (``steps`` passes; all T when
    None). The per-step work is compiled once per call; noise is stateless from ``seed``.
    Draw ``x_T`` with `initial_noise` to make a seed reproduce the exported model's images.

    Args:
        eps_fn: callable ``eps_fn(x_t, t_batch) -> eps`` with ``t_batch`` int32 (B,).
        x_T: float array or tensor (B, H, W, C) of standard normal noise.
        schedule: `NoiseSchedule`.
        sampler, steps, eta, seed, progress, return_trajectory, cond, prediction, spacing: as in
            `denoise_from`.

    Returns:
        x_0 (float32 tensor), or ``(x_0, trajectory)`` with trajectory (n_steps + 1, B, H, W, C).

    Example:
        >>> x_T = initial_noise((16, 32, 32, 1), seed=0)
        >>> images = sample(lambda x, t: unet((x, t)), x_T, schedule, "ddim", steps=50, seed=0)
    """
    return denoise_from(eps_fn, x_T, schedule.timesteps - 1, schedule, sampler=sampler, steps=steps,
                        eta=eta, seed=seed, progress=progress, return_trajectory=return_trajectory,
                        cond=cond, prediction=prediction, spacing=spacing)


def sample_graph(eps_fn, x_T, schedule, sampler="ddpm", steps=None, eta=0.0, seed=0,
                 return_trajectory=False, cond=(), prediction="eps", spacing="linspace"):
    """`sample` as one graph loop (`tf.while_loop`), for use inside an exported `tf.function`.

    Gives the same images as `sample` for the same ``x_T`` and ``seed``. ``steps``, ``eta`` and
    ``seed`` may be scalar tensors (e.g. signature inputs); the DDIM timesteps are then computed
    in-graph by `ddim_timesteps_tf`, and an invalid tensor ``steps`` fails a graph assertion.

    Args:
        eps_fn, x_T, schedule, sampler: as in `sample`.
        steps: int, scalar int tensor or None. DDIM steps; None means all T; None for ``"ddpm"``.
        eta: float or scalar float tensor. DDIM stochasticity.
        seed: int or scalar int tensor.
        return_trajectory: bool. Also return every intermediate x as one tensor.
        cond: tuple of tensors passed on as ``eps_fn(x_t, t_batch, *cond)``.
        prediction, spacing: as in `denoise_from`.

    Returns:
        x_0, float32 tensor shaped like ``x_T``, or ``(x_0, trajectory)`` with trajectory
        (n_steps + 1, B, H, W, C) from ``x_T`` to x_0.
    """
    _check_sampler_args(sampler, steps, eta, prediction, spacing)
    if sampler == "ddpm":
        ts = tf.range(schedule.timesteps - 1, -1, -1, dtype=tf.int32)
        t_prevs = ts - 1
    else:
        ts = ddim_timesteps_tf(schedule.timesteps, schedule.timesteps if steps is None else steps, spacing)
        t_prevs = tf.concat([ts[1:], [-1]], axis=0)
    eta = tf.cast(eta, tf.float32)
    seed = tf.cast(seed, tf.int32)

    x_T = tf.cast(x_T, tf.float32)
    trajectory = tf.TensorArray(tf.float32, size=tf.size(ts) + 1, element_shape=x_T.shape).write(0, x_T)

    def body(i, x, trajectory):
        x = _reverse_step(eps_fn, schedule, sampler, x, ts[i], t_prevs[i], eta, seed, cond, prediction)
        return i + 1, x, trajectory.write(i + 1, x) if return_trajectory else trajectory

    _, x, trajectory = tf.while_loop(lambda i, *_: i < tf.size(ts), body, (tf.constant(0), x_T, trajectory))
    return (x, trajectory.stack()) if return_trajectory else x
