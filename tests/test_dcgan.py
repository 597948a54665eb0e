"""DCGAN: the two networks, sampling, the fused train_step, the article's alternating loop, saving.

Errata pins (reference/ARTICLE_MAP.md): 3 (plain ReLU in G; article_relu=True caps it at 0.2),
4 (sample()/generate() return images), 5 (d_loss = mean of the real and fake BCE losses, not of
[loss, accuracy] lists). Keras 3 pitfall (anchors_and_pitfalls.md section 5, item 7): in the
train_on_batch loop D must really learn in its own calls and stay frozen in the stacked update.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers import assert_keras_round_trip, tiny_dcgan, weights_changed, weights_of
from keras_gen.data import dataset_from_arrays
from keras_gen.models.dcgan import DCGAN, build_discriminator, build_generator, train_alternating


@pytest.fixture(autouse=True)
def _seeded():
    """Weight initialisation draws from the global RNG: make every test reproducible."""
    keras.utils.set_random_seed(1234)


def normal(n, dim, seed=0, scale=1.0):
    return (scale * np.random.default_rng(seed).normal(size=(n, dim))).astype("float32")


# ----------------------------------------------------------------------------- networks


def test_generator_shape_and_tanh_range():
    generator = build_generator(latent_dim=8)
    images = np.asarray(generator(normal(6, 8), training=False))
    assert images.shape == (6, 28, 28, 1)
    assert images.min() >= -1.0 and images.max() <= 1.0
    # At initialisation (zero biases, BN identity) G is positively homogeneous before its output
    # activation, so large codes push it to saturation: a tanh lands on both -1 and +1 and
    # never beyond (a linear or sigmoid output would fail one of these).
    big = np.asarray(generator(normal(6, 8, scale=1e4), training=False))
    assert big.min() >= -1.0 and big.max() <= 1.0
    assert big.min() < -0.99 and big.max() > 0.99


def test_discriminator_outputs_probabilities(mnist_sample):
    discriminator = build_discriminator()
    real = mnist_sample[0][:8, ..., None].astype("float32") / 127.5 - 1.0
    p = np.asarray(discriminator(real))
    assert p.shape == (8, 1)
    assert p.min() >= 0.0 and p.max() <= 1.0
    # scaled inputs scale the logits (zero biases at init): a linear output would leave [0, 1],
    # a sigmoid saturates inside it
    noise = np.random.default_rng(0).normal(size=(16, 28, 28, 1)).astype("float32")
    p_big = np.asarray(discriminator(1000.0 * noise))
    assert p_big.min() >= 0.0 and p_big.max() <= 1.0
    assert np.mean((p_big < 0.01) | (p_big > 0.99)) >= 0.5


def relu_layers(generator):
    return [layer for layer in generator.layers if isinstance(layer, keras.layers.ReLU)]


def relu_activations(generator, z):
    probe = keras.Model(generator.input, [layer.output for layer in relu_layers(generator)])
    return [np.asarray(a) for a in probe(z, training=False)]


def test_generator_uses_plain_relu_by_default():
    """Erratum 3: the article caps G's ReLUs at 0.2; the DCGAN guideline is a plain ReLU."""
    generator = tiny_dcgan().generator
    relus = relu_layers(generator)
    assert len(relus) == 2
    assert all(layer.max_value is None for layer in relus)
    activations = relu_activations(generator, normal(32, 8, scale=100.0))
    assert max(a.max() for a in activations) > 1.0  # nothing caps them at 0.2


def test_article_relu_caps_activations_at_0_2():
    model = DCGAN(latent_dim=8, article_relu=True, seed=0)
    relus = relu_layers(model.generator)
    assert len(relus) == 2
    assert all(layer.max_value == pytest.approx(0.2) for layer in relus)
    for a in relu_activations(model.generator, normal(32, 8, scale=100.0)):
        assert a.min() >= 0.0
        assert a.max() <= 0.2 + 1e-6
        assert a.max() > 0.2 - 1e-6  # the cap is reached, so it is what bounds them
    rebuilt = DCGAN.from_config(model.get_config())  # the flag survives the config
    assert rebuilt.article_relu and all(l.max_value == pytest.approx(0.2) for l in relu_layers(rebuilt.generator))


# ----------------------------------------------------------------------------- sampling


def test_sample_returns_images_in_0_1():
    """Erratum 4: the article's generate() returns the function object, not images."""
    model = tiny_dcgan()
    images = model.sample(5, seed=1)
    assert not callable(images)
    images = np.asarray(images)
    assert images.shape == (5, 28, 28, 1) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    z = normal(4, 8, scale=1e4)  # saturated tanh: the [-1, 1] -> [0, 1] mapping reaches 0 and 1
    generated = np.asarray(model.generate(z))
    np.testing.assert_allclose(generated, (np.asarray(model.generator(z, training=False)) + 1) / 2, atol=1e-6)
    assert generated.min() >= 0.0 and generated.max() <= 1.0
    assert generated.min() < 0.01 and generated.max() > 0.99
    np.testing.assert_allclose(np.asarray(model(z)), 2 * generated - 1, atol=1e-6)  # call: [-1, 1]


def test_sample_is_deterministic_per_seed(tiny_dcgan_run):
    model = tiny_dcgan_run.model
    a = np.asarray(model.sample(6, seed=5))
    np.testing.assert_array_equal(a, np.asarray(model.sample(6, seed=5)))
    assert not np.allclose(a, np.asarray(model.sample(6, seed=6)))
    assert a.min() >= 0.0 and a.max() <= 1.0


@pytest.mark.parametrize("latent_dim", [0, -1, 2.5, None])
def test_invalid_latent_dim_raises(latent_dim):
    with pytest.raises(ValueError, match="latent_dim"):
        DCGAN(latent_dim=latent_dim)


# ----------------------------------------------------------------------------- fused train_step


def test_one_fused_train_step_updates_both_networks(tiny_dcgan_run):
    run = tiny_dcgan_run
    for name in ("generator", "discriminator"):
        assert weights_changed(run.before[name], run.after_one_step[name]), f"{name} did not move"


def test_tiny_dcgan_trains_on_mnist_without_nan(tiny_dcgan_run):
    history = tiny_dcgan_run.history
    assert set(history) >= {"d_loss", "g_loss", "d_real_acc", "d_fake_acc"}
    for key, values in history.items():
        assert len(values) == 2 and np.all(np.isfinite(values)), (key, values)
    for key in ("d_real_acc", "d_fake_acc"):
        assert all(0.0 <= v <= 1.0 for v in history[key])
    assert all(v > 0 for v in history["d_loss"] + history["g_loss"])
    model = tiny_dcgan_run.model
    assert all(np.all(np.isfinite(w)) for w in weights_of(model))
    assert np.all(np.isfinite(np.asarray(model.sample(8, seed=0))))


# ----------------------------------------------------------------------------- the article's loop


@pytest.fixture(scope="module")
def alternating_run(mnist_sample):
    """train_alternating for 2 epochs x 3 batches of real MNIST, every train_on_batch observed.

    keras.Model.train_on_batch is wrapped to snapshot G's and D's weights around each call; each
    record: (which model: "D" | "stacked" | other name, G changed, D changed, returned logs).
    """
    keras.utils.set_random_seed(0)
    images, labels = mnist_sample
    dataset = dataset_from_arrays(images[:96], labels[:96], 32, value_range="-1_1",
                                  drop_remainder=True, seed=0)
    gan = tiny_dcgan()
    G, D = gan.generator, gan.discriminator
    original = keras.Model.train_on_batch
    calls = []

    def observed(self, *args, **kwargs):
        g0, d0 = weights_of(G), weights_of(D)
        logs = original(self, *args, **kwargs)
        who = "D" if self is D else ("stacked" if self.name == "stacked_gan" else self.name)
        calls.append((who, weights_changed(g0, weights_of(G)), weights_changed(d0, weights_of(D)), dict(logs)))
        return logs

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(keras.Model, "train_on_batch", observed)
        history = train_alternating(gan, dataset, 2, seed=0, progress=False)
    return gan, calls, history


def test_alternating_loop_calls_d_twice_then_the_stacked_gan(alternating_run):
    _, calls, _ = alternating_run
    assert [who for who, *_ in calls] == ["D", "D", "stacked"] * 6  # 2 epochs x 3 batches


def test_alternating_d_learns_in_its_own_calls(alternating_run):
    """Keras 3 reads trainable weights when train_on_batch is first traced: D must not be frozen."""
    _, calls, _ = alternating_run
    d_calls = [c for c in calls if c[0] == "D"]
    assert all(d_changed for _, _, d_changed, _ in d_calls)
    assert not any(g_changed for _, g_changed, _, _ in d_calls)  # G untouched by D's updates


def test_alternating_stacked_update_moves_g_only(alternating_run):
    _, calls, _ = alternating_run
    stacked = [c for c in calls if c[0] == "stacked"]
    assert all(g_changed for _, g_changed, _, _ in stacked)
    assert not any(d_changed for _, _, d_changed, _ in stacked)  # D frozen inside the stacked GAN


def test_alternating_d_loss_is_mean_of_real_and_fake_bce(alternating_run):
    """Erratum 5: the article averages [loss, acc] lists; d_loss must be (real + fake BCE) / 2."""
    gan, calls, history = alternating_run
    per_batch = [calls[i:i + 3] for i in range(0, len(calls), 3)]
    want = {k: [] for k in ("d_loss", "g_loss", "d_real_acc", "d_fake_acc", "article")}
    for epoch in range(2):
        batches = per_batch[3 * epoch:3 * epoch + 3]
        real = [b[0][3] for b in batches]
        fake = [b[1][3] for b in batches]
        stacked = [b[2][3] for b in batches]
        want["d_loss"].append(np.mean([0.5 * (r["loss"] + f["loss"]) for r, f in zip(real, fake)]))
        want["g_loss"].append(np.mean([s["loss"] for s in stacked]))
        want["d_real_acc"].append(np.mean([r["accuracy"] for r in real]))
        want["d_fake_acc"].append(np.mean([f["accuracy"] for f in fake]))
        want["article"].append(np.mean([np.mean([r["loss"], r["accuracy"], f["loss"], f["accuracy"]])
                                         for r, f in zip(real, fake)]))
    for key in ("d_loss", "g_loss", "d_real_acc", "d_fake_acc"):
        np.testing.assert_allclose(history[key], want[key], rtol=1e-6, err_msg=key)
    assert not np.allclose(history["d_loss"], want["article"], rtol=1e-3)
    assert all(np.isfinite(v) for values in history.values() for v in values)
    assert gan.discriminator.trainable  # the loop leaves D trainable for later fit() calls


def test_alternating_generator_step_draws_a_fresh_z(mnist_sample):
    """Difference from the article (docs/errata.md, 12): its G step trains on the z of the fake
    batch; keras_gen's loop draws a new z for it from the loop's host RNG."""
    from keras_gen.models.dcgan import AlternatingTrainer

    images, _ = mnist_sample
    real = (images[:16, :, :, None].astype("float32") / 127.5) - 1.0
    trainer = AlternatingTrainer(tiny_dcgan(), seed=3)
    seen = {}
    G, stacked = trainer.gan.generator, trainer.stacked
    predict, train = G.predict_on_batch, stacked.train_on_batch

    def predict_recording(z, **kwargs):  # the fake batch's z
        seen["fake_z"] = np.array(z)
        return predict(z, **kwargs)

    def train_recording(z, y, **kwargs):  # the generator step's z
        seen["g_z"] = np.array(z)
        return train(z, y, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(G, "predict_on_batch", predict_recording)
        mp.setattr(stacked, "train_on_batch", train_recording)
        trainer._step(real)
    rng = np.random.default_rng(3)  # the loop's two draws, in order, from its seed
    np.testing.assert_array_equal(seen["fake_z"], rng.standard_normal((16, 8)).astype("float32"))
    np.testing.assert_array_equal(seen["g_z"], rng.standard_normal((16, 8)).astype("float32"))
    assert not np.array_equal(seen["fake_z"], seen["g_z"])


def test_batch_norm_in_the_generator_only_as_in_the_article():
    """Difference from the article's DCGAN guidelines (docs/errata.md, 13): the article's D has no
    batch norm although its guidelines ask for it; keras_gen keeps the article's networks."""
    gan = tiny_dcgan()

    def batch_norms(model):
        return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(batch_norms(gan.generator)) == 2
    assert batch_norms(gan.discriminator) == []


# ----------------------------------------------------------------------------- saving


def test_keras_round_trip_restores_model_and_compile(tiny_dcgan_run, tmp_path):
    model = tiny_dcgan_run.model
    z = normal(3, 8)
    loaded = assert_keras_round_trip(model, tmp_path, {"n": 6, "seed": 9}, outputs={  # bit for bit
        "generate": lambda m: m.generate(z),
        "discriminator": lambda m: m.discriminator(2 * np.asarray(m.sample(4, seed=1)) - 1)})
    assert isinstance(loaded, DCGAN)
    assert (loaded.latent_dim, loaded.article_relu, loaded.seed) == (8, False, 0)
    # the custom compile comes back (get_compile_config / compile_from_config) ...
    assert loaded.compiled
    for name in ("d_optimizer", "g_optimizer"):
        got, want = getattr(loaded, name), getattr(model, name)
        assert type(got) is type(want)
        assert float(got.learning_rate) == pytest.approx(float(want.learning_rate))
        assert got.beta_1 == pytest.approx(want.beta_1)
        # ... with its state (step count, Adam moments), so training resumes where it stopped
        assert int(got.iterations) == int(want.iterations) > 0
        assert len(got.variables) == len(want.variables)
        for a, b in zip(got.variables, want.variables):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
