"""Class-conditional models (num_classes): unchanged unconditional behaviour, label validation,
classifier-free guidance, training on real labelled MNIST, conditional exports (sample_class in a
process without keras_gen), the conditional evaluation and the `--num-classes` / `--label` CLI.

The tiny conditional models are trained and exported once per session on the committed real MNIST
sample (conftest.conditional_trained / conditional_exports) and shared read-only.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import (CONDITIONAL_CLASSES, CONDITIONAL_DDIM_STEPS, TINY_T, assert_keras_round_trip,
                     check_export_in_child, export_call, tiny_dcgan, tiny_ddpm, tiny_unet, tiny_vae, unnumbered,
                     unnumbered_layout)
from keras_gen.data import dataset_from_arrays, preprocess_images
from keras_gen.diffusion import NoiseSchedule
from keras_gen.evaluation import class_accuracy, conditional_metrics, guidance_sweep, per_class_fid
from keras_gen.export import read_export_info
from keras_gen.sampling import load_sampler
from keras_gen.layers.unet import UNet
from keras_gen.models import DCGAN, DDPM
from keras_gen.models.dcgan import mode_seeking_penalty, paired_labels
from keras_gen.presets import get_preset

DATA = Path(__file__).parent / "data"
C = 10
T = TINY_T
DDIM_STEPS = 3  # as in tests/data/unconditional_golden.json
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def build(kind, num_classes=None):
    """The models of tests/data/unconditional_golden.* (made by the code before num_classes)."""
    if kind == "vae":
        return tiny_vae(num_classes)
    if kind == "dcgan":
        return tiny_dcgan(num_classes)
    return tiny_ddpm(num_classes=num_classes, ddim_steps=DDIM_STEPS)


# ----------------------------------------------------------------------------- trained models


@pytest.fixture(scope="module")
def trained(conditional_trained):
    """A conditional VAE, DCGAN and DDPM, each trained with fit on real labelled MNIST digits (the
    session's conftest.conditional_trained, shared with test_serving_guards.py)."""
    assert CONDITIONAL_CLASSES == C and CONDITIONAL_DDIM_STEPS == DDIM_STEPS
    return conditional_trained


@pytest.fixture(scope="module")
def fresh():
    """Untrained models of each kind: {kind: {None: unconditional, C: conditional}}."""
    return {kind: {None: build(kind), C: build(kind, C)} for kind in ("vae", "dcgan", "ddpm")}


# ----------------------------------------------------------------------------- num_classes=None


@pytest.fixture(scope="module")
def golden():
    with np.load(DATA / "unconditional_golden.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, json.loads((DATA / "unconditional_golden.json").read_text())


def fill(model):
    """The deterministic weights tests/data/unconditional_golden.* were made with."""
    for i, w in enumerate(model.weights):
        w.assign((0.1 * np.sin(np.arange(np.prod(w.shape)) * 0.37 + i)).reshape(w.shape).astype(w.dtype))


@pytest.mark.parametrize("kind", ["vae", "dcgan", "ddpm"])
def test_unconditional_models_are_unchanged(golden, fresh, kind):
    """Same weights (names, shapes, order), config and outputs as the code before num_classes."""
    arrays, meta = golden
    model = fresh[kind][None]
    assert model.num_classes is None
    # auto-generated layer names are numbered per process: compare without the numbers
    assert unnumbered_layout((w.path, w.shape) for w in model.weights) == unnumbered_layout(meta[kind]["weights"])
    assert unnumbered(model.get_config()) == unnumbered(meta[kind]["config"])
    fill(model)
    if kind == "ddpm":
        np.testing.assert_allclose(model.sample(2, 3, steps=3, progress=False), arrays["ddpm_sample"], atol=1e-5)
        x = tf.constant(np.linspace(-1, 1, 2 * 32 * 32).reshape(2, 32, 32, 1), tf.float32)
        np.testing.assert_allclose(model.unet((x, tf.constant([3, 17], tf.int32))), arrays["ddpm_eps"], atol=1e-5)
    else:
        np.testing.assert_allclose(model.sample(3, 3), arrays[f"{kind}_sample"], atol=1e-6)
    # a config saved before num_classes existed (no such key) rebuilds the unconditional model
    rebuilt = type(model).from_config(meta[kind]["config"])
    assert rebuilt.num_classes is None and rebuilt.count_params() == model.count_params()


@pytest.mark.parametrize("kind", ["vae", "dcgan", "ddpm"])
def test_conditional_models_add_label_weights_and_record_num_classes(fresh, kind):
    plain, conditional = fresh[kind][None], fresh[kind][C]
    assert conditional.num_classes == C and conditional.count_params() > plain.count_params()
    config = conditional.get_config()
    if kind == "ddpm":
        assert config["unet"]["config"]["num_classes"] == C
        assert config["label_dropout"] == 0.1 and config["guidance"] == 3.0
    else:
        assert config["num_classes"] == C
    assert type(conditional).from_config(config).count_params() == conditional.count_params()


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("num_classes", [0, 1, 2.5, "10", True])
@pytest.mark.parametrize("kind", ["vae", "dcgan", "ddpm"])
def test_invalid_num_classes(kind, num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        build(kind, num_classes)


@pytest.mark.parametrize("labels, match", [
    (10, r"must lie in \[0, 10\).*got 10"), (-1, r"must lie in \[0, 10\).*got -1"),
    ([1, 2], "one int or 3 ints"), ([[1, 2, 3]], r"shape \(1, 3\)"), (np.array([1.0, 2.0, 3.0]), "integers"),
    ([True, False, True], "integers")])
@pytest.mark.parametrize("kind", ["vae", "dcgan", "ddpm"])
def test_bad_labels_are_named(fresh, kind, labels, match):
    model = fresh[kind][C]
    with pytest.raises(ValueError, match=match):
        model.sample(3, 0, labels=labels)


@pytest.mark.parametrize("kind", ["vae", "dcgan", "ddpm"])
def test_unconditional_models_refuse_labels(fresh, kind):
    with pytest.raises(ValueError, match="unconditional"):
        fresh[kind][None].sample(2, 0, labels=1)


def test_guidance_needs_a_conditional_ddpm(fresh):
    with pytest.raises(ValueError, match="conditional DDPM"):
        fresh["ddpm"][None].sample(2, 0, guidance=3.0, progress=False)
    with pytest.raises(ValueError, match="guidance must be a finite number"):
        fresh["ddpm"][C].sample(2, 0, guidance=float("nan"), progress=False)
    with pytest.raises(ValueError, match="label_dropout"):
        DDPM(tiny_unet(C), NoiseSchedule(T), ddim_steps=DDIM_STEPS, label_dropout=1.0)


@pytest.mark.parametrize("kind", ["vae", "dcgan", "ddpm"])
def test_conditional_training_needs_labelled_batches(fresh, kind):
    model = fresh[kind][C]
    size = 32 if kind == "ddpm" else 28
    images = tf.data.Dataset.from_tensor_slices(np.zeros((4, size, size, 1), "float32")).batch(4)
    if kind == "dcgan":
        model.compile(jit_compile=False)
    else:
        model.compile(optimizer="adam", jit_compile=False)
    with pytest.raises(ValueError, match="with_labels=True"):
        model.fit(images, epochs=1, verbose=0)


def test_unet_input_count_must_match_num_classes():
    x, t = tf.zeros((2, 32, 32, 1)), tf.zeros((2,), tf.int32)
    with pytest.raises(ValueError, match=r"\(x, t, labels\)"):
        tiny_unet(C)((x, t))
    with pytest.raises(ValueError, match=r"\(x, t\)"):
        tiny_unet()((x, t, t))


def test_presets_take_num_classes():
    for kind in ("vae", "dcgan", "ddpm"):
        assert get_preset(kind, "cpu", num_classes=10)["num_classes"] == 10
        assert get_preset(kind, "cpu")["num_classes"] is None
    assert get_preset("ddpm", "cpu", num_classes=10)["guidance"] == 3.0
    with pytest.raises(ValueError, match="num_classes"):
        get_preset("vae", "cpu", num_classes=1)
    with pytest.raises(ValueError, match="alternating"):
        get_preset("dcgan", "cpu", num_classes=10, loop="alternating")


# ----------------------------------------------------------------------------- guidance


def test_guidance_zero_is_the_null_label_prediction(trained):
    """eps = eps_uncond + w (eps_cond - eps_uncond): w=0 is the null-class (unconditional) U-Net
    output, w=1 the conditional one, and other w extrapolate linearly between them."""
    model = trained["ddpm"].model
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(4, 32, 32, 1)), tf.float32)
    t = tf.constant([0, 5, 12, 19], tf.int32)
    labels = tf.constant([0, 3, 7, 9], tf.int32)
    null = tf.fill([4], C)
    eps_uncond = model.ema_unet((x, t, null)).numpy()
    eps_cond = model.ema_unet((x, t, labels)).numpy()
    assert np.abs(eps_cond - eps_uncond).max() > 1e-4  # the label does reach the network
    guided = model.eps_fn()
    np.testing.assert_allclose(guided(x, t, labels, 0.0), eps_uncond, atol=1e-5)
    np.testing.assert_allclose(guided(x, t, labels, 1.0), eps_cond, atol=1e-5)
    np.testing.assert_allclose(guided(x, t, labels, 3.0), eps_uncond + 3.0 * (eps_cond - eps_uncond), atol=1e-4)


def test_sampling_with_guidance_zero_ignores_the_labels(trained):
    model = trained["ddpm"].model
    a = model.sample(3, 5, labels=[1, 2, 3], guidance=0.0, progress=False)
    b = model.sample(3, 5, labels=[7, 8, 9], guidance=0.0, progress=False)
    np.testing.assert_allclose(a, b, atol=1e-5)
    c = model.sample(3, 5, labels=[7, 8, 9], guidance=3.0, progress=False)
    assert np.abs(c - b).max() > 1e-3


def test_label_dropout_sends_that_share_to_the_null_class(mnist_sample):
    """In the training loss, label_dropout of the labels reach the U-Net as the null class;
    in the evaluation loss none do."""
    seen = []

    class RecordingUNet(UNet):
        def call(self, inputs):
            if tf.executing_eagerly():  # not while the DDPM builds it symbolically
                seen.append(np.asarray(inputs[2]))
            return super().call(inputs)

    model = DDPM(tiny_unet(C, RecordingUNet), NoiseSchedule(T), ddim_steps=DDIM_STEPS, label_dropout=0.5, seed=0)
    images, labels = mnist_sample
    x0 = preprocess_images(images[:160], value_range="-1_1", pad_to=32)
    y = tf.constant(labels[:160], tf.int32)
    seen.clear()
    model.diffusion_loss(x0, y, training=True)
    dropped = seen[-1] == C
    assert 0.3 < dropped.mean() < 0.7  # 0.5 +- 5 standard deviations
    np.testing.assert_array_equal(seen[-1][~dropped], labels[:160][~dropped])  # the rest unchanged
    model.diffusion_loss(x0, y, training=False)
    np.testing.assert_array_equal(seen[-1], labels[:160])


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("kind", ["vae", "ddpm"])
def test_conditional_loss_falls_on_real_mnist(trained, kind):
    loss = trained[kind].history["loss"]
    assert np.all(np.isfinite(loss)) and loss[-1] < 0.9 * loss[0]


def test_conditional_dcgan_trains_both_networks(trained):
    run = trained["dcgan"]
    history = run.history
    assert all(np.all(np.isfinite(v)) for v in history.values())
    assert history["d_loss"][-1] < 0.69  # D beats chance (log 2) on real vs fake, given labels
    after = [w.numpy() for w in run.model.discriminator.trainable_weights]
    names = [w.path for w in run.model.discriminator.trainable_weights]
    projection = names.index(next(n for n in names if "label_projection" in n))
    assert not np.array_equal(after[projection], run.d_before[projection])  # the label projection learns


def test_mode_seeking_penalty_punishes_a_generator_that_ignores_z():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 8)).astype("float32")
    images = rng.uniform(-1, 1, (6, 28, 28, 1)).astype("float32")
    image_gap = np.abs(images[:3] - images[3:]).mean(axis=(1, 2, 3))
    z_gap = np.abs(z[:3] - z[3:]).mean(axis=1)
    want = np.mean(1 / (image_gap / z_gap + 1e-5))
    np.testing.assert_allclose(float(mode_seeking_penalty(images, z)), want, rtol=1e-5)
    collapsed = np.repeat(images[:1], 6, axis=0)  # every code gives the same image
    assert float(mode_seeking_penalty(collapsed, z)) > 1e4 * want
    labels = tf.constant([4, 7, 1, 9, 2], tf.int32)  # odd batch: pairs (0, 2), (1, 3); 4 is unpaired
    np.testing.assert_array_equal(paired_labels(labels, 5).numpy(), [4, 7, 4, 7, 1])


def test_mode_seeking_defaults_and_config():
    assert DCGAN(latent_dim=8, num_classes=C).mode_seeking == 1.0
    assert DCGAN(latent_dim=8).mode_seeking == 0.0
    assert "mode_seeking" not in DCGAN(latent_dim=8).get_config()
    model = DCGAN(latent_dim=8, num_classes=C, mode_seeking=0.5)
    assert DCGAN.from_config(model.get_config()).mode_seeking == 0.5
    for bad in (-1, "1", True, float("nan")):
        with pytest.raises(ValueError, match="mode_seeking"):
            DCGAN(latent_dim=8, num_classes=C, mode_seeking=bad)


def test_mode_seeking_term_enters_the_generator_update(trained, mnist_sample):
    """The conditional DCGAN logs the penalty, and one step with weight 1 moves G differently
    from the same step with a negligible weight (same weights, data, seeds and label pairing)."""
    assert np.all(np.isfinite(trained["dcgan"].history["mode_seeking"]))
    images, labels = mnist_sample
    data = dataset_from_arrays(images[:64], labels[:64], 64, value_range="-1_1", with_labels=True,
                               shuffle=False)
    generators = []
    for weight in (1e-9, 1.0):
        keras.utils.set_random_seed(1)
        model = tiny_dcgan(C, mode_seeking=weight)
        model.compile(d_optimizer=keras.optimizers.SGD(0.1), g_optimizer=keras.optimizers.SGD(0.1),
                      run_eagerly=True)  # one step: tracing would cost more than it
        model.fit(data, epochs=1, verbose=0)
        generators.append([w.numpy() for w in model.generator.trainable_weights])
    assert any(not np.allclose(a, b) for a, b in zip(*generators))


@pytest.mark.parametrize("kind", ["vae", "dcgan", "ddpm"])
def test_labels_change_the_samples(trained, kind):
    model = trained[kind].model
    options = {"progress": False} if kind == "ddpm" else {}
    three = np.asarray(model.sample(4, 1, labels=3, **options))
    eight = np.asarray(model.sample(4, 1, labels=8, **options))
    assert three.shape == (4, 28, 28, 1) and three.min() >= 0 and three.max() <= 1
    assert np.abs(three - eight).mean() > 0.005
    np.testing.assert_array_equal(np.asarray(model.sample(4, 1, labels=[3] * 4, **options)), three)
    default = np.asarray(model.sample(12, 1, **options))  # the classes in turn: 0..9, 0, 1
    np.testing.assert_allclose(default, np.asarray(model.sample(12, 1, labels=np.arange(12) % C, **options)),
                               atol=1e-6)


def test_conditional_vae_draws_the_requested_digits(trained):
    """Scored by the shipped MNIST classifier: most samples are of the class asked for."""
    model = trained["vae"].model
    labels = np.repeat(np.arange(C), 20)
    accuracy = class_accuracy(np.asarray(model.sample(len(labels), 0, labels=labels)), labels)
    assert accuracy > 0.8, accuracy  # chance: 0.1


@pytest.mark.parametrize("kind", ["vae", "dcgan", "ddpm"])
def test_keras_round_trip_keeps_the_conditioning(trained, kind, tmp_path):
    model = trained[kind].model
    options = {"progress": False, "guidance": 2.0} if kind == "ddpm" else {}
    loaded = assert_keras_round_trip(model, tmp_path, {"n": 4, "seed": 3, "labels": [1, 5, 7, 9], **options},
                                     atol=1e-5)
    assert loaded.num_classes == C
    if kind == "ddpm":
        assert (loaded.label_dropout, loaded.guidance) == (model.label_dropout, model.guidance)


# ----------------------------------------------------------------------------- evaluation


def test_conditional_metrics_on_real_digits(mnist_sample):
    """True labels: high accuracy and small per-class FID; labels shifted by one class: neither."""
    images, labels = mnist_sample[0][:300], mnist_sample[1][:300]
    right = conditional_metrics(images, labels, "mnist", kid_subsets=2)
    wrong = conditional_metrics(images, (labels + 1) % C, "mnist", kid_subsets=2)
    assert right["accuracy"] > 0.95 and wrong["accuracy"] < 0.05
    assert set(right["per_class_fid"]) == set(range(C))
    assert right["mean_class_fid"] < 0.5 * wrong["mean_class_fid"]
    assert right["fid"] == pytest.approx(wrong["fid"])  # the overall FID ignores the labels
    assert per_class_fid(images, labels) == pytest.approx(right["per_class_fid"])
    assert class_accuracy(images, labels) == pytest.approx(right["accuracy"])
    with pytest.raises(ValueError, match="labels must be 300 integers"):
        class_accuracy(images, labels[:10])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        class_accuracy(images, labels + 5)


def test_guidance_sweep_rows(trained):
    model = trained["ddpm"].model
    def sample_fn(n, seed, label, **options):
        return model.sample(n, seed, labels=label, progress=False, **options)

    rows = guidance_sweep(sample_fn, C, scales=(0, 3), n_per_class=2)
    assert [r["guidance"] for r in rows] == [0.0, 3.0]
    for row in rows:
        assert row["n"] == 2 * C and 0 <= row["accuracy"] <= 1 and np.isfinite(row["fid"])
        assert set(row["per_class_fid"]) == set(range(C)) and 0 <= row["recall"] <= 1


# ----------------------------------------------------------------------------- export


LATENT_SIGNATURE = {"vae": "decode", "dcgan": "generate"}


def codes(latent_dim):
    """Three fixed latent codes for decode / generate."""
    return np.linspace(-2, 2, 3 * latent_dim, dtype="float32").reshape(3, latent_dim)


def export_calls(trained):
    """The calls the export child makes: sample_class and serving_default of each export, and
    decode (VAE) / generate (DCGAN) from given codes with labels; the same with a bad label."""
    calls, errors = {}, {}
    for kind, run in trained.items():
        args = dict(num_images=5, seed=7, label=3, **({"guidance": 2.0} if kind == "ddpm" else {}))
        calls[kind] = export_call("sample_class", export=kind, output="images", **args)
        calls[kind + "_default"] = export_call("serving_default", export=kind, output="images", num_images=4, seed=7)
        errors[kind] = export_call("sample_class", export=kind, output="images", **{**args, "label": 10})
        if kind != "ddpm":  # decode / generate from given codes take the labels too
            z = codes(run.model.latent_dim)
            calls[kind + "_codes"] = export_call(LATENT_SIGNATURE[kind], export=kind, output="images", z=z,
                                                 labels=np.array([0, 4, 9], np.int32))
            errors[kind + "_codes"] = export_call(LATENT_SIGNATURE[kind], export=kind, output="images", z=z,
                                                  labels=np.array([0, 4, 10], np.int32))
    return calls, errors


@pytest.fixture(scope="module")
def exported(trained, conditional_exports, tmp_path_factory):
    """The three conditional models exported (conftest.conditional_exports) and served by one child
    process without keras_gen, while this process computes the same draws."""
    def expected():
        arrays = {}
        for kind, run in trained.items():
            options = {"progress": False, "guidance": 2.0} if kind == "ddpm" else {}
            arrays[kind] = np.asarray(run.model.sample(5, 7, labels=3, **options))
            if kind != "ddpm":
                to_images = run.model.decode if kind == "vae" else run.model.generate
                arrays[kind + "_codes"] = np.asarray(to_images(codes(run.model.latent_dim), np.array([0, 4, 9])))
            quiet = {"progress": False} if kind == "ddpm" else {}
            arrays[kind + "_default"] = np.asarray(run.model.sample(4, 7, **quiet))
        return arrays

    calls, errors = export_calls(trained)
    served = check_export_in_child(conditional_exports, calls, tmp_path_factory.mktemp("conditional_exports"),
                                   errors=errors, while_running=expected)
    return SimpleNamespace(paths={kind: str(path) for kind, path in served.paths.items()}, arrays=served.arrays,
                           expected=served.expected, result=served.result)


@pytest.mark.parametrize("kind", ["vae", "dcgan", "ddpm"])
def test_sample_class_export_round_trip(trained, exported, kind):
    result = exported.result
    assert result["keras_gen_in_sys_modules"] is False and result["refused_imports"] == []
    served = result["exports"][kind]
    assert "sample_class" in served["signatures"] and "serving_default" in served["signatures"]
    inputs = ["num_images", "seed", "label"] + (["guidance"] if kind == "ddpm" else [])
    assert sorted(served["inputs"]["sample_class"]) == sorted(inputs)
    got = exported.arrays[kind]
    assert got.shape == (5, 28, 28, 1) and got.dtype == np.float32
    assert got.min() >= 0.0 and got.max() <= 1.0
    np.testing.assert_allclose(got, exported.expected[kind], atol=1e-5)
    np.testing.assert_allclose(exported.arrays[kind + "_default"], exported.expected[kind + "_default"], atol=1e-5)
    assert result["errors"][kind] == "InvalidArgumentError"  # label 10 of 10 classes
    if kind != "ddpm":
        # the codes' width is the model's latent_dim, and the labels are taken with them
        assert served["inputs"][LATENT_SIGNATURE[kind]]["z"] == ["float32", [None, trained[kind].model.latent_dim]]
        np.testing.assert_allclose(exported.arrays[kind + "_codes"], exported.expected[kind + "_codes"], atol=1e-5)
        assert result["errors"][kind + "_codes"] == "InvalidArgumentError"
    info = read_export_info(exported.paths[kind])
    assert info["num_classes"] == C and "sample_class" in info["signatures"]
    # network evaluations per sample of serving_default: guidance doubles the DDPM's batch
    assert info["network_passes"] == (2 * DDIM_STEPS if kind == "ddpm" else 1)


def test_load_sampler_label_options(exported):
    sampler = load_sampler(exported.paths["ddpm"])
    np.testing.assert_allclose(sampler(5, 7, label=3, guidance=2.0), exported.expected["ddpm"], atol=1e-5)
    with pytest.raises(ValueError, match=r"label must be an integer in \[0, 10\)"):
        sampler(2, 0, label=10)
    with pytest.raises(ValueError, match="sampler/steps"):
        sampler(2, 0, label=1, steps=2)
    with pytest.raises(ValueError, match="a vae model does not take guidance"):
        load_sampler(exported.paths["vae"])(2, 0, label=1, guidance=2.0)


# ----------------------------------------------------------------------------- the CLI


def test_cli_trains_a_conditional_model_and_samples_a_label(exported, tmp_path, capsys):
    """`train vae --num-classes 10 --dataset fashion_mnist` (tiny preset) then `sample --label 2`
    on it, and `sample --label 7 --guidance 3.0` on the conditional DDPM export."""
    from keras_gen.cli import main

    out = tmp_path / "vae"
    assert main(["train", "vae", "--preset", "tiny", "--num-classes", "10", "--dataset", "fashion_mnist",
                 "--out", str(out), "--verbose", "0"]) == 0
    assert (out / "class_grid.png").read_bytes()[:8] == PNG_MAGIC
    info = read_export_info(out / "saved_model")
    assert info["num_classes"] == 10 and info["dataset"] == "fashion_mnist"
    capsys.readouterr()
    for path, args, png in ((out / "saved_model", ["--label", "2"], "vae2.png"),
                            (exported.paths["ddpm"], ["--label", "7", "--guidance", "3.0"], "ddpm7.png")):
        assert main(["sample", str(path), *args, "--n", "8", "--out", str(tmp_path / png)]) == 0
        assert "(8 images)" in capsys.readouterr().out
        assert (tmp_path / png).read_bytes()[:8] == PNG_MAGIC
    assert main(["sample", str(out / "saved_model"), "--label", "10", "--out", str(tmp_path / "bad.png")]) == 2
    assert "label must be an integer in [0, 10)" in capsys.readouterr().err
    assert main(["train", "vae", "--preset", "tiny", "--num-classes", "1", "--out", str(tmp_path / "x")]) == 2
    assert "num_classes must be an integer >= 2" in capsys.readouterr().err


def test_report_counts_two_unet_passes_per_guided_step():
    from keras_gen.evaluation.report import _plan
    from keras_gen.models.kinds import get_model_kind

    kind, info = get_model_kind("ddpm"), {"kind": "ddpm", "config": {"schedule": {"timesteps": T}}}
    plain, _ = _plan("m", kind, info, (5,), ddpm_full=True)
    guided, _ = _plan("m", kind, {**info, "num_classes": C}, (5,), ddpm_full=True)
    assert [r["nfe_per_sample"] for r in plain] == [T, 5]
    assert [r["nfe_per_sample"] for r in guided] == [2 * T, 10]
