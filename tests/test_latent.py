"""Latent diffusion (keras_gen.models.latent): the first stage's latents and reconstructions, the
scale factor, a prior fitted on frozen first-stage weights, and both stages trained through the
CLI, saved, reloaded and served without keras_gen.

The CLI runs are the session's (conftest.tiny_train_runs "autoencoder" and "latent_ddpm", the
latter on the former's first stage; test_resume.py kills a copy of the latent DDPM's run and checks
that the resumed run ends bitwise equal).
"""

from __future__ import annotations

import csv
import json

import keras
import numpy as np
import pytest

from helpers import assert_keras_round_trip, check_export_in_child, export_call, weights_of
from keras_gen.data import load_dataset, preprocess_images
from keras_gen.models.ddpm import build_denoiser, ddpm_settings
from keras_gen.models.latent import (LatentAutoencoder, LatentDDPM, crop_to_digits, latent_scale_factor,
                                     load_first_stage)
from keras_gen.presets import get_preset
from subprocess_jobs import explain


def padded(images):
    """uint8 digits -> the first stage's input: (N, 32, 32, 1) in [0, 1]."""
    return preprocess_images(images, value_range="0_1", pad_to=32)


@pytest.fixture(scope="module")
def cli_runs(tiny_train_runs):
    """The session's tiny autoencoder and latent DDPM runs: (ae_run, ldm_run), each rc 0."""
    runs = tuple(tiny_train_runs.result(name) for name in ("autoencoder", "latent_ddpm"))
    for run in runs:
        assert run.rc == 0, explain(run)
    return runs


@pytest.fixture(scope="module")
def models(cli_runs):
    """The two runs' model.keras files, loaded: (autoencoder, latent DDPM)."""
    return tuple(keras.saving.load_model(run.out / "model.keras") for run in cli_runs)


def test_the_tiny_first_stage_reconstructs_test_digits(models, mnist_sample):
    """Per-pixel squared error of decode(encode(x)) on 256 real digits the run never saw: well under
    an untrained first stage's and under that of predicting the mean digit."""
    autoencoder, _ = models
    x = padded(mnist_sample[0][:256])
    digits = crop_to_digits(x).numpy()

    def error(model):
        return float(np.mean((crop_to_digits(model(x)).numpy() - digits) ** 2))

    untrained = LatentAutoencoder(**{k: autoencoder.get_config()[k] for k in ("latent_channels", "filters")})
    mean_digit = float(np.mean((digits - digits.mean(axis=0)) ** 2))
    trained = error(autoencoder)
    assert trained < 0.6 * mean_digit and trained < 0.5 * error(untrained), (trained, mean_digit)
    assert autoencoder.latent_shape == (8, 8, 2)
    mean, logvar = autoencoder.encode(x[:4])
    assert mean.shape == logvar.shape == (4, 8, 8, 2)


def test_the_recorded_scale_factor_gives_unit_std_latents_on_other_training_digits(models):
    """The prior's scale was measured on the first 4096 training digits; on 2048 others the scaled
    posterior means have std within 10% of 1 (and the measurement is 1 / std, by numpy)."""
    autoencoder, ldm = models
    assert json.loads(json.dumps(ldm.get_config()))["scale_factor"] == ldm.scale_factor > 0
    images, _ = load_dataset("mnist", "train")
    other = padded(images[20_000:22_048])
    scaled = ldm.latents(other).numpy()
    assert scaled.shape == (2048, 8, 8, 2)
    assert abs(scaled.std() - 1.0) < 0.1, scaled.std()
    means = autoencoder.encode(other)[0].numpy()
    assert latent_scale_factor(autoencoder, other.numpy()) == pytest.approx(1.0 / means.std(), rel=1e-5)
    np.testing.assert_allclose(scaled, means * ldm.scale_factor, rtol=1e-5, atol=1e-6)


def test_the_prior_is_fitted_on_frozen_first_stage_weights(models, mnist_sample):
    """A fit of a fresh (conditional) latent DDPM changes its U-Net and leaves every first-stage
    weight as it was."""
    autoencoder, trained_ldm = models
    config = get_preset("latent_ddpm", "tiny", seed=0, num_classes=10)
    first_stage = LatentAutoencoder.from_config(autoencoder.get_config())
    first_stage.set_weights(autoencoder.get_weights())
    ldm = LatentDDPM(build_denoiser(config, first_stage.latent_channels), trained_ldm.schedule, first_stage,
                     1.7, **ddpm_settings(config))
    frozen = {id(w) for w in first_stage.weights}
    assert not first_stage.trainable and not frozen & {id(w) for w in ldm.trainable_weights}
    ldm.compile(optimizer=keras.optimizers.Adam(1e-2), run_eagerly=True)
    images, labels = mnist_sample
    before_stage, before_unet = weights_of(first_stage), weights_of(ldm.unet, trainable_only=True)
    ldm.fit(padded(images[:64]).numpy(), labels[:64], batch_size=32, epochs=1, verbose=0, shuffle=False)
    after_stage, after_unet = weights_of(first_stage), weights_of(ldm.unet, trainable_only=True)
    assert len(before_stage) == len(after_stage) > 0
    for before, after in zip(before_stage, after_stage):
        np.testing.assert_array_equal(after, before)
    assert any(not np.array_equal(b, a) for b, a in zip(before_unet, after_unet))
    # labels condition the prior: the conditional model serves sample_class
    assert "sample_class" in ldm.serving_endpoints() and ldm.conditioning.num_classes == 10


def test_a_v_predicting_prior_trains_and_samples_through_the_kind(cli_runs, mnist_sample):
    """`--prediction v` (and `--schedule cosine`) on a latent DDPM: the kind builds it on the
    first stage (the pixel DDPM's target conversions apply to latents unchanged), fit runs and its
    DDIM samples are finite digits in [0, 1]; `--data-mode` stays refused."""
    from keras_gen.models.latent import LatentDDPMKind

    ae_run, _ = cli_runs
    kind = LatentDDPMKind()
    config = get_preset("latent_ddpm", "tiny", seed=0, prediction="v", schedule="cosine", first_stage=str(ae_run.out))
    kind.check_config(config)
    model = kind.build(config)
    assert model.prediction == "v" and model.schedule.kind == "cosine"
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(padded(mnist_sample[0][:64]).numpy(), batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    images = np.asarray(model.sample(3, seed=0, progress=False))
    assert images.shape == (3, 28, 28, 1) and np.isfinite(images).all()
    assert 0.0 <= images.min() and images.max() <= 1.0
    with pytest.raises(ValueError, match="--data-mode"):
        kind.check_config({**config, "data_mode": "resize"})


def test_cli_runs_of_both_stages(cli_runs, models):
    ae_run, ldm_run = cli_runs
    autoencoder, ldm = models
    assert isinstance(autoencoder, LatentAutoencoder) and isinstance(ldm, LatentDDPM)
    for run, figures in ((ae_run, ("reconstructions.png", "latent_channels.png")), (ldm_run, ("prior_vs_noise.png",))):
        for name in (*figures, "samples.png", "history.csv", "saved_model/saved_model.pb"):
            assert (run.out / name).stat().st_size > 0, (run.out, name)
    with open(ae_run.out / "history.csv") as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 2 and losses[1] < losses[0], losses
    # the prior's first stage is the autoencoder run's, weight for weight
    for got, want in zip(ldm.first_stage.get_weights(), autoencoder.get_weights()):
        np.testing.assert_array_equal(got, want)
    summary = json.loads((ldm_run.out / "summary.json").read_text())
    assert summary["kind"] == "latent_ddpm" and summary["train_config"]["first_stage"].endswith("autoencoder")
    # network_passes: the denoiser's DDIM steps plus one decoder pass; the autoencoder decodes once
    for run, passes in ((ldm_run, ldm.ddim_steps + 1), (ae_run, 1)):
        info = json.loads((run.out / "saved_model/assets/keras_gen.json").read_text())
        assert info["network_passes"] == passes, run.out


def test_keras_round_trips(models, tmp_path, mnist_sample):
    autoencoder, ldm = models
    x = padded(mnist_sample[0][:4])
    assert_keras_round_trip(autoencoder, tmp_path, {"n": 3, "seed": 2}, outputs={"call": lambda m: m(x)},
                            filename="autoencoder.keras")
    loaded = assert_keras_round_trip(ldm, tmp_path, [{"n": 2, "seed": 1}, {"n": 2, "seed": 1, "steps": 2}])
    assert loaded.scale_factor == ldm.scale_factor and not loaded.first_stage.trainable


def test_exports_serve_the_same_images_as_sample_without_keras_gen(cli_runs, models, tmp_path):
    ae_run, ldm_run = cli_runs
    autoencoder, ldm = models
    z = np.random.default_rng(0).normal(size=(3, 8 * 8 * 2)).astype("float32")
    calls = {"ldm": export_call("serving_default", export="ldm", output="images", num_images=3, seed=5),
             "ldm_ddim2": export_call("sample_ddim", export="ldm", output="images", num_images=2, seed=5,
                                      steps=2),
             "ae": export_call("serving_default", export="ae", output="images", num_images=3, seed=5),
             "ae_decode": export_call("decode", export="ae", output="images", z=z)}
    served = check_export_in_child(
        {"ldm": ldm_run.out / "saved_model", "ae": ae_run.out / "saved_model"}, calls, tmp_path,
        while_running=lambda: {"ldm": ldm.sample(3, seed=5), "ldm_ddim2": ldm.sample(2, seed=5, steps=2),
                               "ae": autoencoder.sample(3, seed=5),
                               "ae_decode": crop_to_digits(autoencoder.decode(z.reshape(3, 8, 8, 2))).numpy()})
    for name, want in served.expected.items():
        assert served.arrays[name].shape == want.shape, name
        np.testing.assert_allclose(served.arrays[name], want, rtol=0, atol=2e-5, err_msg=name)
    assert {"serving_default", "sample_ddim"} <= set(served.result["exports"]["ldm"]["signatures"])


def test_a_first_stage_must_be_a_finished_autoencoder_run(cli_runs, tmp_path):
    ae_run, ldm_run = cli_runs
    assert isinstance(load_first_stage(ae_run.out), LatentAutoencoder)
    with pytest.raises(ValueError, match="first stage"):
        load_first_stage(None)
    with pytest.raises(ValueError, match="no model.keras"):
        load_first_stage(tmp_path)
    with pytest.raises(ValueError, match="not an autoencoder"):
        load_first_stage(ldm_run.out)


def test_an_export_lacks_the_encoder_and_distill_refuses_it(cli_runs, models, tmp_path, capsys):
    """An export keeps what sampling reads: a latent DDPM rebuilt from one gets its decoder and EMA
    U-Net back, not its encoder (nor its raw U-Net), and says so. `keras-gen distill`, which
    encodes its training images with that encoder, refuses the export before writing anything
    (unless told to distil on the teacher's own samples: tests/test_distillation.py's CLI runs)."""
    from keras_gen.cli import main
    from keras_gen.export_weights import weight_names
    from keras_gen.sampling import model_from_export

    _, ldm_run = cli_runs
    _, trained = models
    rebuilt = model_from_export(ldm_run.out / "saved_model")
    names = weight_names(rebuilt)
    encoder, decoder = rebuilt.first_stage.encoder, rebuilt.first_stage.decoder
    assert set(rebuilt.not_restored_from_export) == {names[id(w)] for w in encoder.weights + rebuilt.unet.weights}
    for got, want in zip(decoder.get_weights() + rebuilt.ema_unet.get_weights(),
                         trained.first_stage.decoder.get_weights() + trained.ema_unet.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert list(rebuilt.diffusion_data_layers().values()) == [encoder]

    out = tmp_path / "distill"
    rc = main(["distill", str(ldm_run.out / "saved_model"), "--out", str(out), "--preset", "tiny",
               "--from-steps", "2", "--to-steps", "1", "--fid-n", "0", "--verbose", "0"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "does not hold the weights of the first stage's encoder" in err, err
    assert "distillation encodes its training images with it" in err
    assert "`keras-gen distill RUN/model.keras`" in err and "`--data teacher`" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing written, nothing trained
