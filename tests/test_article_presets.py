"""The `article` presets are the article's settings (issue 19).

The oracle is the article itself: every expected value below was transcribed from the article's
code listings (../shared/reference/article.md, the Chinese translation: VAE lines 74-78 and 147,
DCGAN lines 215-218, 253 and 261, DDPM lines 435-447 and 477; the U-Net sizes from ARTICLE_MAP.md,
"the companion repository"), not from keras_gen. The models are built from the presets and
compiled by their kinds, so the test reads what training would really use, not only the dicts.
Our improvements belong to the `cpu` preset; a change that moves one into `article` fails here.
"""
import numpy as np
import tensorflow as tf
import pytest

from keras_gen.models.kinds import get_model_kind
from keras_gen.presets import get_preset

# Keras' Adam defaults, which the article's `Adam(learning_rate=...)` calls keep.
ADAM_DEFAULTS = dict(beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False)

ARTICLE = {
    "vae": dict(latent_dim=2, epochs=200, batch_size=32, learning_rate=1e-4),
    "dcgan": dict(latent_dim=100, epochs=100, batch_size=32, learning_rate=1e-4, loop="alternating"),
    "dcgan-latent2": dict(latent_dim=2, epochs=100, batch_size=32, learning_rate=1e-4, loop="alternating"),
    "ddpm": dict(timesteps=200, epochs=10, batch_size=64, learning_rate=1e-4, dim=64, dim_mults=(1, 2, 4, 8),
                 schedule="linear", data_mode="resize", sampler="ddpm", ema_decay=0.0),
}


def assert_article_adam(optimizer, learning_rate):
    assert type(optimizer).__name__ == "Adam"
    assert float(np.asarray(optimizer.learning_rate)) == pytest.approx(learning_rate, rel=1e-6)
    for key, value in ADAM_DEFAULTS.items():
        assert getattr(optimizer, key) == pytest.approx(value), key


@pytest.mark.parametrize("kind, preset, expected", [
    ("vae", "article", ARTICLE["vae"]),
    ("dcgan", "article", ARTICLE["dcgan"]),
    ("dcgan", "article-latent2", ARTICLE["dcgan-latent2"]),
    ("ddpm", "article", ARTICLE["ddpm"]),
])
def test_the_article_preset_holds_the_article_hyperparameters(kind, preset, expected):
    config = get_preset(kind, preset)
    got = {key: tuple(config[key]) if key == "dim_mults" else config[key] for key in expected}
    assert got == expected
    assert config["precision"] == "float32" and config["num_classes"] is None and config["dataset"] == "mnist"
    # Nothing of ours rides along: no warm-up, no decay, no EMA beyond the article's none.
    assert not config.get("warmup_steps") and config.get("lr_decay") is None


def test_the_article_vae_binarises_at_one_half_and_trains_with_plain_adam():
    kind, config = get_model_kind("vae"), get_preset("vae", "article")
    assert kind.data_options(config) == dict(binarize=True, value_range="0_1")
    model = kind.build(config)
    assert model.latent_dim == 2
    kind.compile(model, config)
    assert_article_adam(model.optimizer, 1e-4)


def test_the_article_dcgan_trains_with_its_alternating_loop_and_plain_adam():
    kind, config = get_model_kind("dcgan"), get_preset("dcgan", "article")
    model = kind.build(config)
    kind.compile(model, config)
    trainer = kind.trainer(model, config)
    assert type(trainer).__name__ == "AlternatingTrainer"  # the article's train_on_batch loop
    for optimizer in trainer.optimizers.values():  # D's and the stacked G->D model's
        assert_article_adam(optimizer, 1e-4)
    assert kind.data_options(config)["value_range"] == "-1_1"  # the tanh output's range
    # `--loop fit` is the way out of it, and the fit path's optimizers are the article's Adam too.
    fit_config = get_preset("dcgan", "article", loop="fit")
    assert kind.trainer(model, fit_config) is None
    for optimizer in (model.d_optimizer, model.g_optimizer):
        assert_article_adam(optimizer, 1e-4)


def test_the_article_ddpm_schedule_data_sampler_and_optimizer():
    kind, config = get_model_kind("ddpm"), get_preset("ddpm", "article")
    # The article's data: 28x28 bilinearly resized to 32x32, in [-1, 1].
    assert kind.data_options(config) == dict(value_range="-1_1", resize_to=32)
    # Building the 32.3M U-Net is tests/test_unet.py's; here a small one carries the article's
    # schedule, EMA and sampler settings through build_ddpm.
    small = dict(config, dim=8, dim_mults=(1, 2), attention_levels=(False, True))
    model = kind.build(small)
    np.testing.assert_allclose(model.schedule.betas, np.linspace(0.0001, 0.02, 200), rtol=0, atol=1e-12)
    assert (model.data_mode, model.sampler, model.ema_decay) == ("resize", "ddpm", 0.0)
    kind.compile(model, dict(config, steps_per_epoch=938))
    assert_article_adam(model.optimizer, 1e-4)
    # Its default sampling is the article's Algorithm 2 over all T steps: T network passes.
    info = {"config": model.get_config()}
    assert kind.network_passes(info) == 200
    assert kind.network_passes(info, {"sampler": "ddim", "steps": 50}) == 50


def test_the_article_ddpm_keeps_no_ema_and_samples_ancestrally_by_default():
    """ema_decay 0: after an update the sampling weights are the trained ones; sample() with no
    sampler runs the ancestral chain (the same images as sampler="ddpm", not DDIM's)."""
    kind = get_model_kind("ddpm")
    config = dict(get_preset("ddpm", "article"), dim=8, dim_mults=(1, 2), attention_levels=(False, True),
                  timesteps=4, ddim_steps=2)
    model = kind.build(config)
    for w in model.unet.weights:  # as if trained: the EMA copy from the build no longer matches
        w.assign(w * 0.5 + 0.01)
    model.update_ema(iterations=10_000)  # past the warm-up, where a real EMA would lag behind
    for ema_w, w in zip(model.ema_unet.weights, model.unet.weights):
        np.testing.assert_array_equal(np.asarray(ema_w), np.asarray(w))
    default = model.sample(2, seed=3, progress=False)
    np.testing.assert_array_equal(default, model.sample(2, seed=3, sampler="ddpm", progress=False))
    assert not np.array_equal(default, model.sample(2, seed=3, sampler="ddim", progress=False))
    # The export's serving_default runs the same default sampler (export.py saves these functions).
    serving_default, _ = model.serving_endpoints()["serving_default"]
    served = serving_default(tf.constant(2), tf.constant(3))["images"].numpy()
    np.testing.assert_allclose(served, default, atol=1e-5)
