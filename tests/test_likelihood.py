"""Likelihood bounds: the VAE's ELBO and IWAE against a brute-force integral of p(x | z) p(z), the
flow's row against its own bits/dim, the contract's refusals, the VAE's `encode` export and
`keras-gen evaluate --likelihood-only --record` through the CLI."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_gen.data import preprocess_images
from keras_gen.likelihood import nats_to_bits_per_dim, summary_row, vae_bounds, vae_log_weights
from keras_gen.likelihood.vae import EPSILON
from keras_gen.models.kinds import get_model_kind
from subprocess_jobs import explain, run_all

KERAS_GEN = str(Path(sys.executable).parent / "keras-gen")


def logsumexp(values):
    top = values.max()
    return top + np.log(np.exp(values - top).sum())


@pytest.fixture(scope="module")
def binarised(mnist_sample):
    return preprocess_images(mnist_sample[0][:6], binarize=True).numpy()


def brute_force_log_px(model, x, points=101, width=8.0):
    """log p(x) = log of the integral of p(x | z) N(z; 0, I) over a grid of the 2-D latent space
    (points^2 cells spanning the posterior's mean +- width standard deviations; a wider span
    than the posterior, where the integrand is negligible; 101 points agree with 201 to 0.003 nats)."""
    mean, logvar = (t.numpy()[0] for t in model.encode(x[None]))
    sd = np.exp(0.5 * logvar)
    axes = [np.linspace(m - width * s, m + width * s, points) for m, s in zip(mean, sd)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2).astype("float32")
    probs = np.concatenate([model.decode(tf.constant(grid[i:i + 4096])).numpy().reshape(-1, 784)
                            for i in range(0, len(grid), 4096)])
    probs = np.clip(probs, EPSILON, 1 - EPSILON)
    pixels = x.reshape(1, -1)
    log_px_z = (pixels * np.log(probs) + (1 - pixels) * np.log(1 - probs)).sum(1)
    log_pz = -0.5 * (grid ** 2).sum(1) - np.log(2 * np.pi)
    cell = np.prod([a[1] - a[0] for a in axes])
    return float(logsumexp(log_px_z + log_pz) + np.log(cell))


def test_the_vae_bounds_approach_the_brute_force_likelihood(tiny_vae_run, binarised):
    """ELBO <= log p(x) (by the KL gap), and L_k -> log p(x) as k grows (Burda et al. 2016, thm 1)."""
    model = tiny_vae_run.model  # latent 2: the integral is a 2-D grid sum
    for x in binarised[:2]:
        log_px = brute_force_log_px(model, x)
        bounds = vae_bounds(model, x[None], k=4000, seed=0)
        assert bounds["elbo"][0] < log_px
        assert abs(bounds["iwae"][0] - log_px) < 0.1, (bounds["iwae"][0], log_px)


def test_iwae_is_at_least_the_elbo_and_grows_with_k(tiny_vae_run, binarised):
    model = tiny_vae_run.model
    one = vae_bounds(model, binarised, k=1, seed=3)
    np.testing.assert_allclose(one["iwae"], one["elbo"], rtol=0, atol=1e-9)  # k = 1: the same number
    means = []
    for k in (1, 10, 100):
        runs = [vae_bounds(model, binarised, k=k, seed=s) for s in range(8)]
        for run in runs:  # on the same draws, log-mean-exp >= mean (Jensen)
            assert np.all(run["iwae"] >= run["elbo"] - 1e-9)
        means.append(np.mean([run["iwae"] for run in runs]))
    assert means[0] < means[1] < means[2]


def test_the_log_weights_are_seeded(tiny_vae_run, binarised):
    model = tiny_vae_run.model
    a, b = (vae_log_weights(model, binarised, 5, seed=1) for _ in range(2))
    assert a.shape == (len(binarised), 5) and np.array_equal(a, b)
    assert not np.array_equal(a, vae_log_weights(model, binarised, 5, seed=2))


def test_units_and_summary_rows():
    assert float(nats_to_bits_per_dim(-784 * np.log(2.0))) == pytest.approx(1.0)
    row = summary_row("-ELBO", [1.0, 3.0], "nats", "data", k=4)
    assert row == {"bound": "-ELBO", "value": 2.0, "stderr": pytest.approx(1.0), "n": 2, "unit": "nats",
                   "data": "data", "k": 4}


def test_the_vae_kind_reports_negative_bounds_in_nats(tiny_vae_run, mnist_sample):
    rows = get_model_kind("vae").likelihood(tiny_vae_run.model, mnist_sample[0][:8], seed=0)
    assert [r["bound"] for r in rows] == ["-ELBO", "-IWAE (k=100)"]
    assert all(r["unit"] == "nats" and r["n"] == 8 and "binarised" in r["data"] for r in rows)
    assert rows[1]["value"] <= rows[0]["value"]  # the tighter bound gives the smaller NLL
    with pytest.raises(ValueError, match="no encode signature"):
        get_model_kind("vae").likelihood(tiny_vae_run.model, mnist_sample[0][:8], info={"signatures": ["decode"]})


def test_the_flow_kind_reports_its_bits_per_dim(mnist_sample):
    from keras_gen.presets import get_preset

    kind = get_model_kind("flow")
    model = kind.build(get_preset("flow", "tiny"))
    images = mnist_sample[0][:12]
    (row,) = kind.likelihood(model, images, seed=4)
    assert row["unit"] == "bits/dim" and row["n"] == 12 and row["stderr"] > 0
    assert row["value"] == pytest.approx(model.bits_per_dim(images, seed=4), abs=1e-9)


def test_kinds_without_a_likelihood_say_why(tiny_dcgan_run, mnist_sample):
    with pytest.raises(ValueError, match="implicit model"):
        get_model_kind("dcgan").likelihood(tiny_dcgan_run.model, mnist_sample[0][:4])
    assert get_model_kind("vae").no_likelihood is None and get_model_kind("flow").no_likelihood is None


def test_the_encode_export_and_its_rebuilt_model_match_the_encoder(tiny_exports, tiny_vae_run, binarised):
    from keras_gen.sampling import model_from_export

    want = [t.numpy() for t in tiny_vae_run.model.encode(binarised)]
    served = tf.saved_model.load(str(tiny_exports["vae"])).signatures["encode"](images=tf.constant(binarised))
    np.testing.assert_allclose(served["mean"].numpy(), want[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(served["logvar"].numpy(), want[1], rtol=0, atol=1e-5)
    rebuilt = model_from_export(tiny_exports["vae"])  # the encoder's weights come back too
    for got, expected in zip(rebuilt.encode(binarised), want):
        np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"in \[0, 1\]"):
        tf.saved_model.load(str(tiny_exports["vae"])).signatures["encode"](images=tf.constant(binarised * 2))


def test_cli_likelihood_only_records_the_bounds(tiny_exports, tmp_path):
    vae, dcgan = tmp_path / "vae", tmp_path / "dcgan"
    shutil.copytree(tiny_exports["vae"], vae)  # --record writes the assets: not the shared export's
    shutil.copytree(tiny_exports["dcgan"], dcgan)
    (result,) = run_all({"cli": [KERAS_GEN, "evaluate", str(vae), str(dcgan), "--likelihood-only",
                                 "--likelihood-n", "16", "--record"]}, tmp_path, tmp_path).values()
    assert result.rc == 0, explain(result)
    assert "implicit model" in result.stdout and "-IWAE (k=100)" in result.stdout
    recorded = json.loads((vae / "assets" / "keras_gen.json").read_text())["likelihood"]
    assert recorded["kind"] == "vae" and recorded["n"] == 16 and recorded["dataset"] == "mnist"
    assert [r["bound"] for r in recorded["rows"]] == ["-ELBO", "-IWAE (k=100)"]
    assert "evaluation" not in recorded and recorded["cpu_seconds"] >= 0
    assert json.loads((dcgan / "assets" / "keras_gen.json").read_text())["likelihood"]["rows"] == []
    from keras_gen.evaluation import model_card
    card = model_card([vae, dcgan])  # the model card's second table comes from these records
    assert "| model | likelihood | value | unit | test images | data |" in card
    assert "| vae (VAE) | -IWAE (k=100) |" in card and "| dcgan (DCGAN) | none: an implicit model" in card


# ----------------------------------------------------------------------------- the DDPM's bound


@pytest.fixture(scope="module")
def tiny_bound(mnist_sample):
    """A tiny DDPM (T = helpers.TINY_T), its DiffusionBound and 4 real digits as its inputs."""
    import keras

    from helpers import tiny_ddpm
    from keras_gen.likelihood.diffusion import DiffusionBound

    keras.utils.set_random_seed(0)
    model = tiny_ddpm(ddim_steps=2)
    x0 = preprocess_images(mnist_sample[0][:4], value_range="-1_1", pad_to=32)
    return model, DiffusionBound(model), x0


def test_the_discretised_decoder_against_numerical_integration():
    from keras_gen.likelihood.diffusion import discretized_gaussian_log_likelihood

    k = np.array([0, 1, 100, 254, 255])
    x = 2 * k / 255 - 1
    mean, std = 0.1, 0.3
    got = discretized_gaussian_log_likelihood(tf.constant(x, tf.float32), mean, std).numpy()
    for value, x_k in zip(got, x):  # integrate the density over the bin (open at the two ends)
        low = -10.0 if x_k <= -1 else x_k - 1 / 255
        high = 10.0 if x_k >= 1 else x_k + 1 / 255
        grid = np.linspace(low, high, 200001)
        density = np.exp(-0.5 * ((grid - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi))
        assert value == pytest.approx(np.log(np.trapezoid(density, grid)), abs=1e-4)


def test_gaussian_kl_closed_form():
    from keras_gen.likelihood.diffusion import gaussian_kl

    assert float(gaussian_kl(0.0, 1.0, 1.0, 4.0)) == pytest.approx(0.5 * (np.log(4.0) + 2.0 / 4.0 - 1.0))
    assert float(gaussian_kl(0.3, 0.2, 0.3, 0.2)) == pytest.approx(0.0, abs=1e-7)


def test_every_term_is_finite_and_non_negative(tiny_bound):
    model, bound, x0 = tiny_bound
    terms = bound.all_terms(x0, seed=0).numpy()
    assert terms.shape == (model.schedule.timesteps + 1, 4, 32, 32, 1)
    assert np.isfinite(terms).all() and terms.min() >= -1e-6  # KLs and -log P(bin) are >= 0


def test_a_perfect_denoisers_step_terms_are_the_variance_mismatch_only(tiny_bound):
    """If the network returned the true x_0, p's mean would be q's: the KL is then the variance
    mismatch 0.5 (log(beta / beta~) + beta~ / beta - 1) per pixel."""
    model, bound, x0 = tiny_bound
    oracle = type(bound)(model)
    oracle._x0_prediction = lambda x_t, t: x0
    t = tf.fill([4], 5)
    got = oracle.step_term(x0, t, tf.random.stateless_normal(tf.shape(x0), seed=[1, 1])).numpy()
    beta, beta_tilde = model.schedule.betas[5], model.schedule.posterior_variance[5]
    np.testing.assert_allclose(got, 0.5 * (np.log(beta / beta_tilde) + beta_tilde / beta - 1), rtol=1e-4)


def test_the_stratified_estimate_is_unbiased(tiny_bound):
    """Mean of the stratified estimate over seeds = mean of the full sum over every timestep."""
    _, bound, x0 = tiny_bound
    full = np.array([bound.all_terms(x0, seed=s).numpy().sum(axis=(0, 2, 3, 4)) for s in range(6)])
    strat = np.array([bound.stratified(x0, strata=4, seed=s).numpy().sum(axis=(1, 2, 3)) for s in range(40)])
    difference = strat.mean(0) - full.mean(0)
    error = np.sqrt(strat.var(0, ddof=1) / len(strat) + full.var(0, ddof=1) / len(full))
    assert np.all(np.abs(difference) < 4 * error + 1e-3 * np.abs(full.mean(0))), (difference, error)


def test_the_ddpm_kind_reports_bits_per_dim_with_the_padding_share(tiny_bound, mnist_sample):
    model, _, _ = tiny_bound
    (row,) = get_model_kind("ddpm").likelihood(model, mnist_sample[0][:8], seed=0)
    assert row["unit"] == "bits/dim" and row["n"] == 8 and np.isfinite(row["value"])
    assert 0 < row["padding_bits_per_dim"] < row["value"] and row["strata"] == 10
