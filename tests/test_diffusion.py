"""NoiseSchedule and the DDPM / DDIM samplers: identities, step algebra, compilation, seeding."""

import json

import numpy as np
import pytest
import tensorflow as tf

from keras_gen.diffusion import (
    NoiseSchedule,
    ddim_step,
    ddim_timesteps,
    ddim_timesteps_tf,
    ddpm_step,
    denoise_from,
    initial_noise,
    sample,
    sample_graph,
    samplers,
)


def normal(shape, seed):
    return tf.random.stateless_normal(shape, seed=[seed, 7])


def toy_eps_fn(x, t):
    """A cheap deterministic 'noise predictor' that depends on both x and t."""
    return 0.3 * x + 0.001 * tf.cast(t, x.dtype)[:, None, None, None]


def oracle_eps_fn(schedule, x0):
    """The noise that would turn x0 into x at timestep t: a perfect noise predictor for x0."""
    return lambda x, t: ((x - schedule.extract("sqrt_alphas_cumprod", t, x) * x0)
                         / schedule.extract("sqrt_one_minus_alphas_cumprod", t, x))


# --- NoiseSchedule ---------------------------------------------------------------------------

def test_linear_schedule_identities():
    s = NoiseSchedule(200)
    assert all(getattr(s, name).dtype == np.float64 and getattr(s, name).shape == (200,)
               for name in ("betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev"))
    np.testing.assert_allclose(s.betas[[0, -1]], [1e-4, 0.02])
    np.testing.assert_allclose(s.alphas, 1.0 - s.betas)
    np.testing.assert_allclose(s.alphas_cumprod, np.cumprod(1.0 - s.betas), rtol=1e-12)
    # Erratum 7: the article's shifted alpha-bar would give alphas_cumprod[0] == 1 (no noise at t=0).
    assert s.alphas_cumprod[0] == pytest.approx(1.0 - s.betas[0])
    assert s.alphas_cumprod_prev[0] == 1.0
    np.testing.assert_allclose(s.alphas_cumprod_prev[1:], s.alphas_cumprod[:-1])


def test_posterior_variance_matches_reference_values():
    # The numbers diffusers pins for the same linear schedule (test_scheduler_ddpm.py::test_variance).
    s = NoiseSchedule(1000)
    np.testing.assert_allclose(s.posterior_variance[[0, 487, 999]], [0.0, 0.00979, 0.02], atol=1e-5)
    np.testing.assert_allclose(
        s.posterior_variance, s.betas * (1 - s.alphas_cumprod_prev) / (1 - s.alphas_cumprod))


def test_cosine_schedule_endpoints():
    s = NoiseSchedule(1000, kind="cosine")
    assert np.all(s.betas > 0) and s.betas.max() <= 0.999
    assert s.betas[-1] == pytest.approx(0.999)  # the clip is active at the end
    assert np.all(np.diff(s.alphas_cumprod) < 0)
    assert s.alphas_cumprod[0] > 0.9999 and s.alphas_cumprod[-1] < 1e-6
    np.testing.assert_allclose(s.alphas_cumprod, np.cumprod(1.0 - s.betas), rtol=1e-12)


@pytest.mark.parametrize("kwargs", [
    dict(timesteps=0), dict(timesteps=2.5), dict(timesteps=True), dict(kind="quadratic"),
    dict(beta_start=0.0), dict(beta_start=0.03, beta_end=0.02), dict(beta_end=1.0),
])
def test_schedule_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        NoiseSchedule(**kwargs)


def test_schedule_config_round_trip():
    s = NoiseSchedule(50, kind="cosine")
    config = json.loads(json.dumps(s.get_config()))
    restored = NoiseSchedule.from_config(config)
    assert restored == s
    np.testing.assert_array_equal(restored.betas, s.betas)


def test_gather_and_extract():
    s = NoiseSchedule(10)
    t = tf.constant([0, 9], tf.int32)
    np.testing.assert_allclose(s.gather("betas", t).numpy(), s.betas[[0, 9]], rtol=1e-6)
    assert s.extract("betas", t, tf.zeros((2, 4, 4, 1))).shape == (2, 1, 1, 1)
    assert s.extract("betas", 3, tf.zeros((2, 4, 4, 1))).shape == ()
    with pytest.raises(ValueError):
        s.gather("nope", t)


def test_q_sample_moments():
    s = NoiseSchedule(200)
    t = tf.constant([0, 20, 100, 199])
    x0 = tf.fill((4, 40000), 0.7)
    x_t = s.q_sample(x0, t, normal((4, 40000), 0)).numpy()
    abar = s.alphas_cumprod[[0, 20, 100, 199]]
    np.testing.assert_allclose(x_t.mean(axis=1), np.sqrt(abar) * 0.7, atol=0.02)
    np.testing.assert_allclose(x_t.var(axis=1), 1 - abar, rtol=0.05, atol=1e-5)


def test_q_sample_then_predict_x0_round_trip():
    s = NoiseSchedule(200)
    x0, eps = normal((3, 4, 4, 1), 1), normal((3, 4, 4, 1), 2)
    t = tf.constant([0, 50, 150])
    np.testing.assert_allclose(s.predict_x0(s.q_sample(x0, t, eps), t, eps), x0, atol=1e-4)


# --- ddpm_step -------------------------------------------------------------------------------

def test_ddpm_step_at_t0_with_true_noise_returns_x0():
    s = NoiseSchedule(200)
    x0, eps = normal((2, 4, 4, 1), 1), normal((2, 4, 4, 1), 2)
    x_t = s.q_sample(x0, tf.constant([0, 0]), eps)
    for t in (0, tf.constant(0), tf.constant([0, 0])):
        np.testing.assert_allclose(ddpm_step(s, eps, t, x_t, normal((2, 4, 4, 1), 3)), x0, atol=1e-5)


def test_ddpm_step_mean_is_the_posterior_mean():
    s = NoiseSchedule(200)
    t_np = np.array([1, 17, 120, 199])
    x0, eps = normal((4, 3, 3, 1), 1), normal((4, 3, 3, 1), 2)
    x_t = s.q_sample(x0, tf.constant(t_np), eps)
    mean = ddpm_step(s, eps, tf.constant(t_np), x_t, tf.zeros_like(x_t)).numpy()
    coef1 = s.posterior_mean_coef1[t_np][:, None, None, None]
    coef2 = s.posterior_mean_coef2[t_np][:, None, None, None]
    np.testing.assert_allclose(mean, coef1 * x0.numpy() + coef2 * x_t.numpy(), atol=1e-4)


def test_ddpm_step_adds_noise_except_at_t0():
    s = NoiseSchedule(200)
    x, eps = normal((2, 4, 4, 1), 1), normal((2, 4, 4, 1), 2)
    noise_a, noise_b = normal((2, 4, 4, 1), 3), normal((2, 4, 4, 1), 4)
    np.testing.assert_array_equal(ddpm_step(s, eps, 0, x, noise_a), ddpm_step(s, eps, 0, x, noise_b))
    t = tf.constant([0, 5])
    out_a, out_b = ddpm_step(s, eps, t, x, noise_a).numpy(), ddpm_step(s, eps, t, x, noise_b).numpy()
    np.testing.assert_array_equal(out_a[0], out_b[0])
    # sigma_t^2 = beta_t elsewhere.
    np.testing.assert_allclose(out_a[1] - out_b[1], np.sqrt(s.betas[5]) * (noise_a - noise_b)[1], atol=1e-6)


# --- ddim ------------------------------------------------------------------------------------

def test_ddim_step_with_true_noise_inverts_q_sample():
    s = NoiseSchedule(200)
    x0, eps = normal((3, 4, 4, 1), 1), normal((3, 4, 4, 1), 2)
    t = tf.constant([10, 100, 180])
    x_t = s.q_sample(x0, t, eps)
    np.testing.assert_allclose(ddim_step(s, eps, t, -1, x_t), x0, atol=1e-4)
    t_prev = tf.constant([3, 50, -1])
    expected = s.q_sample(x0, tf.maximum(t_prev, 0), eps).numpy()
    expected[2] = x0[2]
    np.testing.assert_allclose(ddim_step(s, eps, t, t_prev, x_t), expected, atol=1e-4)


def test_ddim_eta0_is_deterministic_and_eta1_has_posterior_variance():
    s = NoiseSchedule(200)
    x, eps = normal((2, 4, 4, 1), 1), normal((2, 4, 4, 1), 2)
    noise_a, noise_b = normal((2, 4, 4, 1), 3), normal((2, 4, 4, 1), 4)
    plain = ddim_step(s, eps, 50, 40, x)
    np.testing.assert_array_equal(ddim_step(s, eps, 50, 40, x, eta=0.0, noise=noise_a), plain)
    diff = ddim_step(s, eps, 50, 49, x, eta=1.0, noise=noise_a) - ddim_step(s, eps, 50, 49, x, eta=1.0,
                                                                         noise=noise_b)
    np.testing.assert_allclose(diff, np.sqrt(s.posterior_variance[50]) * (noise_a - noise_b), atol=1e-6)
    with pytest.raises(ValueError, match="noise"):
        ddim_step(s, eps, 50, 40, x, eta=0.5)


@pytest.mark.parametrize("timesteps, steps, expected", [
    (10, 10, list(range(9, -1, -1))),
    (10, 1, [9]),
    (10, 3, [9, 4, 0]),
    (200, 4, [199, 133, 66, 0]),
    (1, 1, [0]),
])
def test_ddim_timesteps_values(timesteps, steps, expected):
    np.testing.assert_array_equal(ddim_timesteps(timesteps, steps), expected)


@pytest.mark.parametrize("timesteps, steps", [(1000, 50), (1000, 1000), (1000, 999), (200, 7), (7, 2)])
def test_ddim_timesteps_properties_and_graph_version(timesteps, steps):
    ts = ddim_timesteps(timesteps, steps)
    assert len(ts) == steps and ts[0] == timesteps - 1 and ts[-1] == 0
    assert np.all(np.diff(ts) < 0)
    np.testing.assert_array_equal(ddim_timesteps_tf(timesteps, tf.constant(steps)), ts)


@pytest.mark.parametrize("steps", [0, 11, -1, 2.5, None])
def test_ddim_timesteps_rejects_bad_steps(steps):
    with pytest.raises(ValueError, match="steps"):
        ddim_timesteps(10, steps)


def test_ddim_timesteps_tf_rejects_bad_tensor_steps():
    with pytest.raises(tf.errors.InvalidArgumentError):
        ddim_timesteps_tf(10, tf.constant(11))


# --- whole-chain sampling --------------------------------------------------------------------

def test_sample_traces_the_step_once():
    s = NoiseSchedule(50)
    x_T = initial_noise((2, 4, 4, 1), seed=0)
    before = samplers.step_trace_count
    x0 = sample(toy_eps_fn, x_T, s, seed=0, progress=False)
    assert samplers.step_trace_count - before == 1
    assert x0.shape == (2, 4, 4, 1) and np.all(np.isfinite(x0))


def test_sample_is_reproducible_from_the_seed():
    s = NoiseSchedule(20)
    x_T = initial_noise((2, 4, 4, 1), seed=3)
    np.testing.assert_array_equal(initial_noise((2, 4, 4, 1), seed=3), x_T)
    a = sample(toy_eps_fn, x_T, s, seed=1, progress=False)
    b = sample(toy_eps_fn, x_T, s, seed=1, progress=False)
    c = sample(toy_eps_fn, x_T, s, seed=2, progress=False)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # DDIM with eta=0 uses no noise at all.
    d1 = sample(toy_eps_fn, x_T, s, "ddim", steps=5, seed=1, progress=False)
    d2 = sample(toy_eps_fn, x_T, s, "ddim", steps=5, seed=2, progress=False)
    np.testing.assert_array_equal(d1, d2)


@pytest.mark.parametrize("sampler, steps, eta", [("ddpm", None, 0.0), ("ddim", 7, 0.0),
                                                 ("ddim", 5, 0.5), ("ddim", None, 1.0)])
def test_sample_graph_matches_step_by_step_sample(sampler, steps, eta):
    s = NoiseSchedule(30)
    x_T = initial_noise((2, 4, 4, 1), seed=5)
    expected = sample(toy_eps_fn, x_T, s, sampler, steps=steps, eta=eta, seed=11, progress=False)

    @tf.function
    def run(x_T, steps, eta, seed):
        return sample_graph(toy_eps_fn, x_T, s, sampler, steps=steps, eta=eta, seed=seed)

    steps_arg = None if steps is None else tf.constant(steps)
    got = run(x_T, steps_arg, tf.constant(eta), tf.constant(11))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_sample_returns_the_trajectory():
    s = NoiseSchedule(12)
    x_T = initial_noise((1, 4, 4, 1), seed=0)
    x0, traj = sample(toy_eps_fn, x_T, s, "ddim", steps=4, seed=0, progress=False, return_trajectory=True)
    assert traj.shape == (5, 1, 4, 4, 1)
    np.testing.assert_array_equal(traj[0], x_T)
    np.testing.assert_array_equal(traj[-1], x0)


@pytest.mark.parametrize("sampler, steps", [("ddpm", None), ("ddim", 4), ("ddim", None)])
def test_denoise_from_with_a_perfect_noise_predictor_recovers_the_image(sampler, steps):
    # The article's "reverse engineering": noise an image to t_start, then run the chain back.
    s = NoiseSchedule(40)
    x0 = normal((2, 4, 4, 1), 1)
    x_t = s.q_sample(x0, tf.constant([25, 25]), normal((2, 4, 4, 1), 2))
    out = denoise_from(oracle_eps_fn(s, x0), x_t, 25, s, sampler, steps=steps, seed=0, progress=False)
    np.testing.assert_allclose(out, x0, atol=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(sampler="euler"), "sampler"),
    (dict(sampler="ddpm", steps=10), "ddim"),
    (dict(sampler="ddpm", eta=0.5), "eta"),
    (dict(sampler="ddim", eta=1.5), "eta"),
    (dict(sampler="ddim", steps=21), "steps"),
    (dict(seed=-1), "seed"),
])
def test_sample_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample(toy_eps_fn, tf.zeros((1, 4, 4, 1)), NoiseSchedule(20), progress=False, **kwargs)


def test_denoise_from_rejects_bad_t_start():
    with pytest.raises(ValueError, match="t_start"):
        denoise_from(toy_eps_fn, tf.zeros((1, 4, 4, 1)), 20, NoiseSchedule(20), progress=False)
