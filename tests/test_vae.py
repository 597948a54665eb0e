"""VAE: shapes, the reparameterisation, the loss terms against NumPy, training, saving, sampling.

Errata pins (reference/ARTICLE_MAP.md): 1 (KL summed over latent dims, the article's mean only
with article_kl=True) and 2 (``call`` is the reconstruction, so the model can be called/saved).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers import assert_keras_round_trip, tiny_vae
from keras_gen.models.vae import VAE, Reparameterize, vae_loss_terms


@pytest.fixture(autouse=True)
def _seeded():
    """Weight initialisation draws from the global RNG: make every test reproducible."""
    keras.utils.set_random_seed(1234)


def binarized(images):
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in {0, 1}, as the VAE's training data."""
    return (images[..., None] >= 128).astype("float32")


# ----------------------------------------------------------------------------- shapes


def test_encoder_decoder_shapes_and_ranges(mnist_sample):
    model = VAE(latent_dim=3, seed=0)
    x = binarized(mnist_sample[0][:5])
    stats = np.asarray(model.encoder(x))
    assert stats.shape == (5, 6)
    mean, logvar = (np.asarray(t) for t in model.encode(x))
    assert mean.shape == logvar.shape == (5, 3)
    np.testing.assert_array_equal(mean, stats[:, :3])  # [mean | logvar] halves, in that order
    np.testing.assert_array_equal(logvar, stats[:, 3:])

    images = np.asarray(model.decode(np.random.default_rng(0).normal(size=(4, 3)).astype("float32")))
    assert images.shape == (4, 28, 28, 1)
    assert images.min() >= 0.0 and images.max() <= 1.0  # Bernoulli means (sigmoid)
    # the decoder ends in a sigmoid: huge codes saturate it instead of leaving [0, 1]
    big = np.asarray(model.decode(np.full((2, 3), 1e3, "float32")))
    assert big.min() >= 0.0 and big.max() <= 1.0


# ----------------------------------------------------------------------------- reparameterisation


def test_reparameterize_statistics():
    n = 20000
    mean = np.tile(np.array([[1.5, -2.0, 0.0]], "float32"), (n, 1))
    logvar = np.tile(np.log(np.array([[0.25, 4.0, 1.0]], "float32")), (n, 1))
    layer = Reparameterize(seed=1)
    z = np.asarray(layer(mean, logvar), dtype=np.float64)
    assert z.shape == (n, 3)
    std = np.array([0.5, 2.0, 1.0])
    # mean within 5 standard errors, std within 3 % (standard error of a std is std/sqrt(2n))
    np.testing.assert_array_less(np.abs(z.mean(axis=0) - [1.5, -2.0, 0.0]), 5 * std / np.sqrt(n))
    np.testing.assert_allclose(z.std(axis=0), std, rtol=0.03)
    # the components are independent draws
    assert abs(np.corrcoef(z.T)[0, 1]) < 0.05
    # the seed generator advances: a second call draws new noise; the same seed repeats the first
    z2 = np.asarray(layer(mean, logvar))
    assert not np.allclose(z2, z)
    np.testing.assert_array_equal(np.asarray(Reparameterize(seed=1)(mean, logvar)), z.astype("float32"))


def test_reparameterize_is_differentiable_in_mean_and_logvar():
    import tensorflow as tf

    mean = tf.Variable(tf.zeros((8, 2)))
    logvar = tf.Variable(tf.zeros((8, 2)))
    with tf.GradientTape() as tape:
        z = Reparameterize(seed=0)(mean, logvar)
        loss = tf.reduce_sum(z)
    g_mean, g_logvar = tape.gradient(loss, [mean, logvar])
    np.testing.assert_allclose(g_mean.numpy(), 1.0)  # dz/dmean = 1
    assert np.any(g_logvar.numpy() != 0.0)  # gradient flows through exp(logvar / 2) * eps


# ----------------------------------------------------------------------------- loss terms


def numpy_loss_terms(x, x_hat, mean, logvar, eps=1e-7):
    """The negative ELBO terms by hand: BCE summed over pixels, KL summed over dims.

    Predictions are clipped to [eps, 1 - eps] in float32 as Keras does (1 - 1e-7 rounds to
    1 - 2**-23 in float32), then everything is computed in float64."""
    p = np.clip(x_hat.astype(np.float32), np.float32(eps), np.float32(1 - eps)).astype(np.float64)
    x = x.astype(np.float64)
    bce = -(x * np.log(p) + (1 - x) * np.log(1 - p))
    reconstruction = bce.reshape(len(x), -1).sum(axis=1).mean()
    mean, logvar = mean.astype(np.float64), logvar.astype(np.float64)
    kl_per_dim = -0.5 * (1 + logvar - mean ** 2 - np.exp(logvar))
    return reconstruction, kl_per_dim.sum(axis=1).mean()


@pytest.fixture
def loss_batch(mnist_sample):
    rng = np.random.default_rng(42)
    x = binarized(mnist_sample[0][:3])
    x_hat = rng.uniform(0.02, 0.98, size=x.shape).astype("float32")
    mean = rng.normal(size=(3, 4)).astype("float32")
    logvar = rng.normal(scale=0.5, size=(3, 4)).astype("float32")
    return x, x_hat, mean, logvar


def test_loss_terms_match_numpy(loss_batch):
    x, x_hat, mean, logvar = loss_batch
    reconstruction, kl = (float(t) for t in vae_loss_terms(x, x_hat, mean, logvar))
    want_rec, want_kl = numpy_loss_terms(x, x_hat, mean, logvar)
    np.testing.assert_allclose(reconstruction, want_rec, rtol=1e-5)
    np.testing.assert_allclose(kl, want_kl, rtol=1e-5)
    # scale sanity: 784 pixels each contributing O(1) nats, not a per-pixel mean
    assert reconstruction > 100


def test_loss_terms_on_grey_targets_and_saturated_predictions(loss_batch):
    x, _, mean, logvar = loss_batch
    grey = np.linspace(0, 1, x.size, dtype="float32").reshape(x.shape)  # non-binary targets
    saturated = (np.arange(x.size) % 2).astype("float32").reshape(x.shape)  # exact 0s and 1s
    reconstruction, kl = (float(t) for t in vae_loss_terms(grey, saturated, mean, logvar))
    assert np.isfinite(reconstruction) and np.isfinite(kl)
    np.testing.assert_allclose(reconstruction, numpy_loss_terms(grey, saturated, mean, logvar)[0],
                               rtol=1e-4)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere(loss_batch):
    x, x_hat, mean, logvar = loss_batch
    _, kl0 = vae_loss_terms(x, x_hat, np.zeros_like(mean), np.zeros_like(logvar))
    assert abs(float(kl0)) < 1e-7
    _, kl = vae_loss_terms(x, x_hat, mean, logvar)
    assert float(kl) > 0


def test_kl_summed_over_latent_dims_not_averaged(loss_batch):
    """Erratum 1: the article averages the KL over latent dims; article_kl=True reproduces it."""
    x, x_hat, mean, logvar = loss_batch
    latent_dim = mean.shape[1]
    rec_sum, kl_sum = (float(t) for t in vae_loss_terms(x, x_hat, mean, logvar))
    rec_art, kl_art = (float(t) for t in vae_loss_terms(x, x_hat, mean, logvar, article_kl=True))
    assert rec_art == rec_sum  # only the KL reduction differs
    np.testing.assert_allclose(kl_art, kl_sum / latent_dim, rtol=1e-6)
    np.testing.assert_allclose(kl_sum, numpy_loss_terms(x, x_hat, mean, logvar)[1], rtol=1e-5)
    assert kl_sum > 3 * kl_art  # the default is the sum (would fail on the article's mean)


def test_model_loss_uses_the_article_kl_flag(mnist_sample):
    x = binarized(mnist_sample[0][:8])
    ours = VAE(latent_dim=4, seed=0)
    article = VAE(latent_dim=4, article_kl=True, seed=0)
    article.set_weights(ours.get_weights())
    total, reconstruction, kl = (float(t) for t in ours.loss_terms(x))
    _, _, kl_article = (float(t) for t in article.loss_terms(x))
    np.testing.assert_allclose(total, reconstruction + kl, rtol=1e-6)
    np.testing.assert_allclose(kl_article * 4, kl, rtol=1e-5)  # KL does not depend on the draw of z
    assert VAE.from_config(article.get_config()).article_kl is True


# ----------------------------------------------------------------------------- call


def test_call_is_the_deterministic_reconstruction(mnist_sample):
    """Erratum 2: the article's call() is `pass`; ours reconstructs x through the posterior mean."""
    model = tiny_vae()
    x = binarized(mnist_sample[0][:6])
    out = np.asarray(model(x))
    assert out.shape == (6, 28, 28, 1)
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(out, np.asarray(model(x)))  # inference is deterministic
    np.testing.assert_array_equal(out, np.asarray(model(x, training=False)))
    np.testing.assert_allclose(out, np.asarray(model.decode(model.encode(x)[0])), atol=1e-6)
    np.testing.assert_allclose(model.predict(x, verbose=0), out, atol=1e-6)  # usable by Keras too
    # training mode samples z, so it differs from the posterior-mean reconstruction
    assert not np.allclose(np.asarray(model(x, training=True)), out)


# ----------------------------------------------------------------------------- training


def test_tiny_vae_loss_falls_on_mnist(tiny_vae_run):
    history = tiny_vae_run.history
    assert set(history) >= {"loss", "reconstruction_loss", "kl_loss"}
    losses = np.array(history["loss"])
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.85 * losses[0], losses
    # the reported total is the sum of the two reported terms
    np.testing.assert_allclose(losses, np.add(history["reconstruction_loss"], history["kl_loss"]),
                               rtol=1e-4)
    assert np.all(np.array(history["kl_loss"]) >= 0)


def test_evaluate_reports_the_loss_terms(tiny_vae_run, mnist_sample):
    x = binarized(mnist_sample[0][1000:1128])
    result = tiny_vae_run.model.evaluate(x, batch_size=64, verbose=0, return_dict=True)
    assert set(result) >= {"loss", "reconstruction_loss", "kl_loss"}
    assert np.isfinite(result["loss"]) and result["loss"] > 0


# ----------------------------------------------------------------------------- sampling and saving


def test_sample_is_deterministic_per_seed(tiny_vae_run):
    model = tiny_vae_run.model
    a = np.asarray(model.sample(8, seed=3))
    assert a.shape == (8, 28, 28, 1) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, np.asarray(model.sample(8, seed=3)))
    assert not np.allclose(a, np.asarray(model.sample(8, seed=4)))
    # different images within one call too
    assert not np.allclose(a[0], a[1])


def test_keras_round_trip_gives_identical_outputs(tiny_vae_run, mnist_sample, tmp_path):
    model = tiny_vae_run.model
    x = binarized(mnist_sample[0][:5])
    loaded = assert_keras_round_trip(model, tmp_path, {"n": 6, "seed": 11},  # bit for bit
                                     outputs={"call": lambda m: m(x), "encode": lambda m: m.encode(x)})
    assert isinstance(loaded, VAE)
    assert (loaded.latent_dim, loaded.article_kl, loaded.seed) == (2, False, 0)
    # the optimizer comes back with its state, so training can resume where it stopped
    assert loaded.compiled
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) > 0


@pytest.mark.parametrize("latent_dim", [0, -2, 2.5, None])
def test_invalid_latent_dim_raises(latent_dim):
    with pytest.raises(ValueError, match="latent_dim"):
        VAE(latent_dim=latent_dim)
