"""The normalizing flow (keras_gen.models.flow): exact log-determinants and inverses of every layer
and of the whole flow, analytic likelihoods, sampling with a temperature, the kind's contract,
and a tiny `keras-gen train flow` run whose export serves log_prob / samples without keras_gen.

The CLI run is the session's (conftest.tiny_train_runs["flow"], shared with test_resume.py, which
kills a copy of it and checks the resumed run ends bitwise equal).
"""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_keras_round_trip, check_export_in_child, export_call
from keras_gen.models.flow import (ActNorm, AffineCoupling, FlowKind, LogitTransform, RealNVP, Squeeze,
                                   bits_per_dim, check_temperature, dequantize)
from keras_gen.models.kinds import get_model_kind
from keras_gen.presets import get_preset
from keras_gen.sampling import load_sampler
from subprocess_jobs import explain

# 8 + E[-log N(x; 0, 1)] / ln 2 for x ~ U[0, 1): (ln(2 pi) / 2 + E[x^2] / 2) / ln 2, E[x^2] = 1/3
IDENTITY_BPD_ON_UNIFORM = 8.0 + (0.5 * math.log(2 * math.pi) + 1.0 / 6.0) / math.log(2.0)


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(1234)


def randomized(layer_or_model, seed=0, std=0.3):
    """Random weights everywhere (the zero-initialised flow would be the identity); couplings'
    scales around 1. Returns its argument."""
    rng = np.random.default_rng(seed)
    for w in layer_or_model.trainable_weights:
        w.assign(rng.normal(scale=std, size=w.shape) + (1.0 if w.path.endswith("/scale") else 0.0))
    return layer_or_model


def brute_force_log_det(fn, x):
    """log|det J| per example of fn: (N, H, W, C) -> (N, ...) from the tf.GradientTape jacobian."""
    flat = tf.reshape(x, [x.shape[0], -1])
    with tf.GradientTape() as tape:
        tape.watch(flat)
        y = fn(tf.reshape(flat, x.shape))
        y = tf.reshape(y, [x.shape[0], -1])
    jacobian = tape.batch_jacobian(y, flat).numpy()
    assert jacobian.shape[1] == jacobian.shape[2], "the layer must keep the dimension"
    signs, log_dets = np.linalg.slogdet(jacobian)
    assert np.all(signs != 0)
    return log_dets


# ----------------------------------------------------------------------------- layers


def _layers():
    """(id, layer, input shape, input range) of every flow layer type, in float64."""
    f64 = dict(dtype="float64")
    actnorm = ActNorm(2, **f64)
    actnorm.bias.assign([0.3, -0.7])
    actnorm.log_scale.assign([0.4, -1.1])
    return [
        ("logit", LogitTransform(0.05, **f64), (4, 4, 1), (0.0, 1.0)),
        ("actnorm", actnorm, (4, 4, 2), (-2.0, 2.0)),
        ("squeeze", Squeeze(**f64), (4, 4, 2), (-2.0, 2.0)),
        *[(f"checkerboard{p}_c{c}", AffineCoupling("checkerboard", p, c, 6, 1, **f64), (4, 4, c), (-2.0, 2.0))
          for p in (0, 1) for c in (1, 2)],
        *[(f"channel{p}", AffineCoupling("channel", p, 4, 6, 2, **f64), (2, 2, 4), (-2.0, 2.0)) for p in (0, 1)],
    ]


LAYERS = _layers()


@pytest.mark.parametrize("name, layer, shape, bounds", LAYERS, ids=[row[0] for row in LAYERS])
def test_layer_log_det_and_inverse(name, layer, shape, bounds):
    x = tf.constant(np.random.default_rng(1).uniform(*bounds, size=(3,) + shape))
    layer(x)  # builds the nets
    randomized(layer, seed=2)
    y, log_det = layer(x)
    assert log_det.shape == (3,) and y.dtype == tf.float64
    np.testing.assert_allclose(log_det.numpy(), brute_force_log_det(lambda v: layer(v)[0], x), rtol=0, atol=1e-8)
    np.testing.assert_allclose(layer.inverse(y).numpy(), x.numpy(), rtol=0, atol=1e-10)
    if name.startswith(("checkerboard", "channel")):
        assert np.abs(log_det.numpy()).max() > 0.1  # the test is not of an identity map
        if layer.mask == "checkerboard":  # the masked-in pixels pass through unchanged
            kept = (np.indices(shape[:2]).sum(0) + layer.parity) % 2 == 0
            np.testing.assert_array_equal(y.numpy()[:, kept], x.numpy()[:, kept])
        else:
            half = slice(0, 2) if layer.parity == 0 else slice(2, 4)
            np.testing.assert_array_equal(y.numpy()[..., half], x.numpy()[..., half])


def test_a_fresh_coupling_is_the_identity():
    """The last conv of every net starts at zero: s = t = 0, so training starts from the identity."""
    layer = AffineCoupling("checkerboard", 0, 1, 8, 1)
    x = tf.random.uniform((2, 4, 4, 1))
    y, log_det = layer(x)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    np.testing.assert_array_equal(log_det.numpy(), [0.0, 0.0])


# ----------------------------------------------------------------------------- the whole flow


def test_whole_flow_log_det_log_prob_and_inverse():
    """Three scales (checkerboard, squeeze, channel, factor-out twice, last scale) with logit."""
    model = randomized(RealNVP(num_scales=3, stage_couplings=1, final_couplings=1, filters=3, num_blocks=1,
                               dtype="float64"), seed=3, std=0.2)
    x = tf.constant(np.random.default_rng(4).uniform(0.0, 1.0, size=(1, 28, 28, 1)))
    latents, log_det = model.forward(x)
    assert [tuple(z.shape[1:]) for z in latents] == model.latent_shapes == [(14, 14, 2), (7, 7, 4), (7, 7, 4)]
    np.testing.assert_allclose(log_det.numpy(), brute_force_log_det(
        lambda v: model.flatten_latents(model.forward(v)[0]), x), rtol=1e-9, atol=1e-7)
    z = model.flatten_latents(latents).numpy()
    gaussian = -0.5 * np.sum(z ** 2 + math.log(2 * math.pi), axis=1)
    np.testing.assert_allclose(model.log_prob(x).numpy(), gaussian + log_det.numpy(), rtol=1e-12)
    np.testing.assert_allclose(model.inverse(latents).numpy(), x.numpy(), rtol=0, atol=1e-9)


def test_inverse_of_forward_in_float32_and_decode_of_encode():
    model = randomized(RealNVP(**_tiny_sizes()), seed=5, std=0.1)
    x = np.random.default_rng(6).uniform(0.0, 1.0, size=(4, 28, 28, 1)).astype("float32")
    latents, _ = model.forward(x)
    np.testing.assert_allclose(model.inverse(latents).numpy(), x, rtol=0, atol=1e-4)
    np.testing.assert_allclose(model.decode(model.encode(x)).numpy(), x, rtol=0, atol=1e-4)


def _tiny_sizes():
    return {k: v for k, v in FlowKind.presets["tiny"].items() if k in
            ("num_scales", "stage_couplings", "final_couplings", "filters", "num_blocks", "logit_alpha")}


# ----------------------------------------------------------------------------- analytic likelihoods


def identity_flow(num_scales=3, **kwargs):
    """No couplings, no logit: z is a permutation of x."""
    return RealNVP(num_scales=num_scales, stage_couplings=0, final_couplings=0, logit_alpha=None, **kwargs)


def test_the_bits_per_dim_conversion():
    """log p = 0 (the uniform density on [0, 1)^784) is exactly 8 bits/dim; each bit of density less
    per dimension one more."""
    assert float(bits_per_dim(tf.constant(0.0))) == 8.0
    assert float(bits_per_dim(tf.constant(-784 * math.log(2.0)))) == pytest.approx(9.0, abs=1e-12)


def test_identity_flow_on_uniform_pixels_has_the_gaussian_cross_entropy():
    """Uniform 8-bit images dequantise to x ~ U[0, 1)^784; the identity flow's base N(0, I) scores
    them E[-log N(x)] = ln(2 pi) / 2 + 1/6 nats per dimension, i.e. 9.566 bits/dim (not 8: the base
    is Gaussian, not uniform)."""
    model = identity_flow()
    images = np.random.default_rng(7).integers(0, 256, size=(64, 28, 28), dtype=np.uint8)
    x = np.random.default_rng(8).uniform(size=(3, 28, 28, 1)).astype("float32")
    gaussian = -0.5 * np.sum(x.reshape(3, -1).astype(np.float64) ** 2 + math.log(2 * math.pi), axis=1)
    np.testing.assert_allclose(model.log_prob(x).numpy(), gaussian, rtol=1e-6)
    bpd = model.bits_per_dim(images, seed=0, batch_size=24)
    # standard error over 64 * 784 dimensions: ~1e-3 bits
    assert bpd == pytest.approx(IDENTITY_BPD_ON_UNIFORM, abs=5e-3)
    assert model.bits_per_dim(images, seed=0, batch_size=24) == bpd  # seeded noise
    assert model.bits_per_dim(images, seed=1, batch_size=24) != bpd
    # two noise draws per image: the same expectation, (uint8 (N, 28, 28, 1) accepted too)
    assert model.bits_per_dim(images[..., None], draws=2) == pytest.approx(IDENTITY_BPD_ON_UNIFORM, abs=5e-3)


def test_gaussian_data_through_an_actnorm_has_its_entropy():
    """Data N(mu, sigma^2) per pixel, a fresh flow (couplings start as the identity) whose first
    actnorm standardises it: the mean negative log-likelihood per dimension is the data's
    entropy ln(2 pi e sigma^2) / 2, which needs the actnorm's log-determinant 784 ln(1 / sigma)."""
    mu, sigma = 0.4, 0.1
    model = RealNVP(**{**_tiny_sizes(), "logit_alpha": None})
    first = model.scales[0][0]
    assert isinstance(first, ActNorm)
    first.bias.assign([-mu])
    first.log_scale.assign([-math.log(sigma)])
    x = (mu + sigma * np.random.default_rng(9).standard_normal((256, 28, 28, 1))).astype("float32")
    nll_per_dim = -float(tf.reduce_mean(model.log_prob(x))) / 784
    entropy = 0.5 * math.log(2 * math.pi * math.e * sigma ** 2)  # -0.884 nats
    assert nll_per_dim == pytest.approx(entropy, abs=3e-3)  # standard error ~1.6e-3 / sqrt(256)


def test_dequantize_stays_below_one():
    pixels = tf.constant([[0, 128, 255, 255]], tf.uint8)
    noise = tf.constant([[0.0, 0.5, 0.5, np.nextafter(np.float32(1), np.float32(0))]])
    x = dequantize(pixels, noise).numpy()
    np.testing.assert_array_equal(x[0, :3], [0.0, 128.5 / 256, 255.5 / 256])
    assert 255.5 / 256 < x[0, 3] < 1.0  # (255 + u) / 256 would round to 1 in float32


@pytest.mark.parametrize("images", [np.zeros((2, 28, 28), np.float32), np.zeros((2, 32, 32), np.uint8),
                                    np.zeros((0, 28, 28), np.uint8), np.zeros((2, 28, 28, 3), np.uint8)])
def test_bits_per_dim_takes_uint8_images_only(images):
    with pytest.raises(ValueError, match="bits_per_dim takes uint8 images"):
        identity_flow(num_scales=1).bits_per_dim(images)


# ----------------------------------------------------------------------------- the kind


def test_the_kind_and_its_presets():
    kind = get_model_kind("flow")
    assert isinstance(kind, FlowKind) and set(kind.presets) >= {"tiny", "cpu"}
    assert get_preset("flow", "cpu")["precision"] == get_preset("flow", "tiny")["precision"] == "float32"
    model = kind.build(get_preset("flow", "tiny"))
    assert isinstance(model, RealNVP) and model.kind == "flow"
    assert all(w.dtype == "float32" for w in model.weights)
    with pytest.raises(ValueError, match="unconditional; drop --num-classes"):
        get_preset("flow", "tiny", num_classes=10)
    with pytest.raises(ValueError, match="float32 only"):
        get_preset("flow", "tiny", precision="mixed")
    assert kind.export_call({}, {}) == ("serving_default", {})
    assert kind.export_call({}, {"temperature": 0.5}) == ("sample_temperature", {"temperature": ("float32", 0.5)})
    assert kind.network_passes({}) == 1


def test_a_global_mixed_policy_does_not_reach_the_flow():
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = RealNVP(**_tiny_sizes())
    finally:
        keras.mixed_precision.set_global_policy(before)
    assert {layer.dtype_policy.name for layer in model._flatten_layers()} == {"float32"}


@pytest.mark.parametrize("bad", [0.0, -1.0, 2.5, float("nan"), float("inf"), True, "1"])
def test_bad_temperatures_are_refused(bad):
    with pytest.raises(ValueError, match=r"temperature must be a finite number in \(0, 2\]"):
        check_temperature(bad)
    with pytest.raises(ValueError, match="temperature"):
        get_model_kind("flow").check_sample_options({"temperature": bad}, {})


@pytest.mark.parametrize("kwargs, match", [(dict(num_scales=4), "num_scales must be 1, 2 or 3"),
                                           (dict(num_scales=0), "num_scales must be an integer >= 1"),
                                           (dict(filters=0), "filters"), (dict(stage_couplings=1.5), "stage_couplings"),
                                           (dict(logit_alpha=0.5), "logit_alpha")])
def test_bad_sizes_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RealNVP(**kwargs)


# ----------------------------------------------------------------------------- a trained tiny flow


@pytest.fixture(scope="module")
def flow_run(tiny_train_runs):
    """The session's `keras-gen train flow --preset tiny` run and its model.keras, loaded."""
    run = tiny_train_runs.result("flow")
    assert run.rc == 0, explain(run)
    return run, keras.models.load_model(run.out / "model.keras")


def test_cli_training_lowers_the_bits_per_dim(flow_run):
    run, model = flow_run
    summary = json.loads((run.out / "summary.json").read_text())
    assert summary["kind"] == "flow" and summary["train_config"]["precision"] == "float32"
    losses = [float(line.split(",")[1]) for line in (run.out / "history.csv").read_text().splitlines()[1:]]
    header = (run.out / "history.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["epoch", "loss"] and len(losses) == 2
    assert all(np.isfinite(losses)) and losses[1] < losses[0] < 10.0, losses
    for name in ("temperatures.png", "latent_interpolation.png", "samples.png", "saved_model/saved_model.pb"):
        assert (run.out / name).stat().st_size > 0, name
    assert isinstance(model, RealNVP) and int(model.optimizer.iterations) == 16


def test_bits_per_dim_of_test_digits_is_close_to_the_training_loss(flow_run, mnist_sample):
    run, model = flow_run
    final = json.loads((run.out / "summary.json").read_text())["training"]["final_metrics"]["loss"]
    bpd = model.bits_per_dim(mnist_sample[0][:256], batch_size=128)
    assert 1.0 < bpd < 10.0 and abs(bpd - final) < 1.0, (bpd, final)


def test_the_training_loss_is_the_bits_per_dim_of_the_8_bit_images(flow_run, mnist_sample):
    """fit's batches are k / 255 (the shared pipeline's [0, 1]); the loss dequantises k itself."""
    _, model = flow_run
    images = mnist_sample[0][:256]
    scaled = tf.constant(images[..., None].astype("float32") / 255.0)
    losses = [float(model.dequantized_loss(scaled)) for _ in range(4)]
    assert len(set(losses)) == 4  # fresh noise every step
    assert np.mean(losses) == pytest.approx(model.bits_per_dim(images, draws=4), abs=0.01)


def test_sampling_is_seeded_and_the_temperature_scales_the_base(flow_run):
    _, model = flow_run
    a = model.sample(6, seed=3)
    assert a.shape == (6, 28, 28, 1) and a.dtype == np.float32 and 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, model.sample(6, seed=3))
    assert not np.allclose(a, model.sample(6, seed=4))
    cold = model.sample(6, seed=3, temperature=0.5)
    assert not np.allclose(cold, a)
    np.testing.assert_allclose(cold, model.decode(0.5 * model.base_draws(6, 3)).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        model.sample(2, 0, temperature=0.0)
    with pytest.raises(TypeError, match="positive integer"):
        model.sample(2.5, 0)
    with pytest.raises(ValueError, match="seed"):
        model.sample(2, -1)


def test_keras_round_trip(flow_run, tmp_path, mnist_sample):
    _, model = flow_run
    x = dequantize(mnist_sample[0][:4, ..., None], tf.fill((4, 28, 28, 1), 0.5))
    assert_keras_round_trip(model, tmp_path, [{"n": 3, "seed": 1}, {"n": 2, "seed": 1, "temperature": 0.7}],
                            outputs={"log_prob": lambda m: m.log_prob(x)})


def test_the_export_serves_log_prob_and_samples_without_keras_gen(flow_run, mnist_sample, tmp_path):
    run, model = flow_run
    x = dequantize(mnist_sample[0][:5, ..., None],
                   tf.random.stateless_uniform((5, 28, 28, 1), seed=[0, 1])).numpy()
    bad = {"one": x.copy(), "negative": x.copy(), "nan": x.copy()}
    bad["one"][0, 3, 3, 0], bad["negative"][1, 0, 0, 0], bad["nan"][2, 5, 5, 0] = 1.0, -1e-3, np.nan
    calls = {"log_prob": export_call("log_prob", output="log_prob", images=x),
             "default": export_call("serving_default", output="images", num_images=4, seed=7),
             "cold": export_call("sample_temperature", output="images", num_images=4, seed=7, temperature=0.5)}
    errors = {f"images_{k}": export_call("log_prob", images=v) for k, v in bad.items()}
    errors["images_none"] = export_call("log_prob", images=np.zeros((0, 28, 28, 1), np.float32))
    errors.update({f"temperature_{t}": export_call("sample_temperature", num_images=2, seed=0, temperature=t)
                   for t in (0.0, -0.5, 2.5, float("nan"))})
    served = check_export_in_child({"flow": run.out / "saved_model"}, calls, tmp_path, errors=errors,
                                   while_running=lambda: {"log_prob": model.log_prob(x).numpy(),
                                                          "default": model.sample(4, 7),
                                                          "cold": model.sample(4, 7, temperature=0.5)})
    result = served.result
    assert result["keras_gen_in_sys_modules"] is False and result["refused_imports"] == []
    described = result["exports"]["flow"]
    assert described["signatures"] == ["log_prob", "sample_temperature", "serving_default"]
    assert described["inputs"]["log_prob"] == {"images": ["float32", [None, 28, 28, 1]]}
    assert described["outputs"]["log_prob"] == {"log_prob": ["float32", [None]]}
    assert described["inputs"]["sample_temperature"]["temperature"] == ["float32", []]
    np.testing.assert_allclose(served.arrays["log_prob"], served.expected["log_prob"], rtol=1e-6, atol=1e-3)
    for name in ("default", "cold"):
        np.testing.assert_allclose(served.arrays[name], served.expected[name], rtol=0, atol=1e-5)
    assert all(v == "InvalidArgumentError" for v in result["errors"].values()), result["errors"]
    info = json.loads((run.out / "saved_model" / "assets" / "keras_gen.json").read_text())
    assert info["kind"] == "flow" and info["network_passes"] == 1


def test_samplers_take_the_temperature_for_both_file_types(flow_run):
    run, model = flow_run
    for path in (run.out / "saved_model", run.out / "model.keras"):
        sampler = load_sampler(path)
        np.testing.assert_allclose(sampler(3, 5, temperature=0.6), model.sample(3, 5, temperature=0.6),
                                   rtol=0, atol=1e-5)
        assert sampler.network_passes(temperature=0.6) == 1
        with pytest.raises(ValueError, match="temperature must be"):
            sampler(3, 5, temperature=3.0)
        with pytest.raises(ValueError, match="does not take label"):
            sampler(3, 5, label=1)
