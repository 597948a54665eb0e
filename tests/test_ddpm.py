"""keras_gen.models.DDPM: Algorithm 1 training pairs, in-graph draws, EMA, sampling, saving, export
and the `train ddpm` / `sample` CLI.

The sampler and U-Net maths are pinned in test_diffusion.py and test_unet.py; this file checks what
the DDPM model adds on top. One tiny model (UNet dim 8, mults (1, 2), T = 20) is trained once per
module on the committed real MNIST sample (padded to 32x32, [-1, 1]) and shared read-only.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

import helpers
from helpers import TINY_T, assert_keras_round_trip, check_export_in_child, export_call, tiny_unet, weights_of
from keras_gen.data import preprocess_images
from keras_gen.diffusion import NoiseSchedule, samplers
from keras_gen.export import ASSET_NAME, read_export_info
from keras_gen.layers.unet import UNet
from keras_gen.models.ddpm import DDPM
from subprocess_jobs import explain, run_cli_commands

T = TINY_T
DDIM_STEPS = 5
EMA_DECAY = 0.9
BATCH = 32
EPOCHS = 3
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SIGNATURES = ["sample_ddim", "sample_ddpm", "sample_trajectory", "serving_default"]


def tiny_ddpm(unet=None, **kwargs):
    return helpers.tiny_ddpm(unet, **{"ema_decay": EMA_DECAY, "ddim_steps": DDIM_STEPS, "seed": 0, **kwargs})


def padded(images):
    """uint8 (N, 28, 28) -> float32 (N, 32, 32, 1) in [-1, 1], padded as the DDPM pipeline does."""
    return preprocess_images(images, value_range="-1_1", pad_to=32).numpy()


def flat(arrays):
    return np.concatenate([a.ravel() for a in arrays])


# ----------------------------------------------------------------------------- the trained model


@keras.saving.register_keras_serializable(package="keras_gen_tests")
class RecordingUNet(UNet):
    """A UNet that, while a test sets its ``rec``, writes what it is called with into variables the
    test owns, from inside the compiled train step: the last (x_t, t, eps) and a histogram of
    every t drawn. Otherwise it is the plain UNet."""

    def call(self, inputs):
        eps = super().call(inputs)
        rec = self.__dict__.get("rec")  # set with object.__setattr__: not tracked as a weight
        if rec is not None:
            x_t, t = inputs
            rec["t_dtypes"].add(t.dtype.name)
            rec["x_t"].assign(x_t)
            rec["t"].assign(t)
            rec["eps"].assign(eps)
            rec["t_counts"].assign_add(tf.math.bincount(t, minlength=T, maxlength=T, dtype=tf.int32))
        return eps


@pytest.fixture(scope="module")
def run(mnist_sample):
    """Tiny DDPM trained with fit (compiled, not eager) on 256 real MNIST digits in batches of 32,
    no shuffling: one step (weights and the U-Net's inputs recorded around it), then EPOCHS
    epochs of 8 steps. x0 of the first step is x[:BATCH]."""
    keras.utils.set_random_seed(0)
    x = padded(mnist_sample[0][:8 * BATCH])
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(BATCH)
    unet = tiny_unet(cls=RecordingUNet)
    model = tiny_ddpm(unet)
    rec = {"x_t": tf.Variable(tf.zeros((BATCH, 32, 32, 1))), "t": tf.Variable(tf.zeros((BATCH,), tf.int32)),
           "eps": tf.Variable(tf.zeros((BATCH, 32, 32, 1))),
           "t_counts": tf.Variable(tf.zeros((T,), tf.int32)), "t_dtypes": set()}
    object.__setattr__(unet, "rec", rec)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False, run_eagerly=False)
    raw0, ema0 = weights_of(model.unet.weights), weights_of(model.ema_unet.weights)
    first_loss = model.fit(dataset.take(1), epochs=1, verbose=0, shuffle=False).history["loss"][0]
    first = {k: v.numpy() for k, v in rec.items() if isinstance(v, tf.Variable)}
    raw1, ema1 = weights_of(model.unet.weights), weights_of(model.ema_unet.weights)
    history = model.fit(dataset, epochs=EPOCHS, verbose=0, shuffle=False)
    object.__setattr__(unet, "rec", None)
    recorded = SimpleNamespace(x0=x[:BATCH], loss=first_loss, first=first, last_t=rec["t"].numpy(),
                               t_counts=rec["t_counts"].numpy(), t_dtypes=rec["t_dtypes"],
                               steps=1 + EPOCHS * 8)
    return SimpleNamespace(model=model, x=x, raw0=raw0, ema0=ema0, raw1=raw1, ema1=ema1,
                           history=history.history, recorded=recorded)


@pytest.fixture(scope="module")
def recorded(run):
    return run.recorded


# ----------------------------------------------------------------------------- Algorithm 1


def test_training_feeds_x_t_and_regresses_the_noise(recorded):
    """Erratum 6: the article feeds the network pure noise and trains it to output x_t.

    Here the network input must be q_sample(x0, t, noise) for a standard normal noise, and the
    loss must be the MSE between that noise and the network output."""
    s = NoiseSchedule(T)
    x_t, t, eps = recorded.first["x_t"], recorded.first["t"], recorded.first["eps"]
    x0 = recorded.x0
    abar = s.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    noise = (x_t - np.sqrt(abar) * x0) / np.sqrt(1.0 - abar)  # the noise implied by x_t = q_sample
    # x_t really is x0 noised to t: the implied noise is standard normal, image by image (with the
    # article's swap the network sees the noise itself and this is x0 / sqrt(1 - abar): not N(0, 1)).
    assert abs(noise.mean()) < 0.05
    assert 0.93 < noise.std() < 1.07
    for image_noise in noise:
        assert 0.8 < image_noise.std() < 1.2
    # ... and the loss is the MSE of the network output against that noise (the article's swap
    # regresses x_t instead).
    np.testing.assert_allclose(recorded.loss, np.mean((noise - eps) ** 2), rtol=1e-4)
    assert not np.isclose(recorded.loss, np.mean((x_t - eps) ** 2), rtol=1e-2)


def test_timesteps_are_drawn_in_graph_per_step(recorded):
    """Erratum 11: t and the noise come from in-graph RNG ops inside the compiled train step, so
    every step draws afresh (a NumPy draw at trace time would freeze them as constants)."""
    assert recorded.t_dtypes == {"int32"}
    counts = recorded.t_counts
    assert counts.sum() == recorded.steps * BATCH
    assert np.all(counts > 0), counts  # every t in [0, T) drawn, none outside (bincount's range)
    assert counts.max() < 4 * recorded.steps * BATCH / T  # roughly uniform
    assert not np.array_equal(recorded.first["t"], recorded.last_t)


def test_diffusion_loss_graph_has_no_host_calls(run, recorded):
    model = run.model
    concrete = tf.function(model.diffusion_loss).get_concrete_function(
        tf.TensorSpec((None, 32, 32, 1), tf.float32))
    graph = concrete.graph
    ops = {op.type for op in graph.get_operations()}
    for fdef in graph.as_graph_def().library.function:
        ops |= {node.op for node in fdef.node_def}
    assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}, ops
    assert any("Random" in op for op in ops), ops  # the draws are graph ops
    # and the loss of the same batch differs between calls (fresh t and noise each time)
    x0 = tf.constant(recorded.x0)
    assert float(concrete(x0)) != float(concrete(x0))


def test_loss_falls_on_real_mnist(run):
    loss = run.history["loss"]
    assert len(loss) == EPOCHS and all(np.isfinite(loss))
    assert loss[-1] < 0.8 * loss[0], loss


# ----------------------------------------------------------------------------- EMA


def test_ema_starts_as_a_copy_and_follows_the_warm_up_formula(run):
    for raw, ema in zip(run.raw0, run.ema0):
        np.testing.assert_array_equal(raw, ema)
    # one optimizer step: n = 1, decay = min(ema_decay, (1 + n) / (10 + n))
    decay = min(EMA_DECAY, 2.0 / 11.0)
    assert any(not np.array_equal(a, b) for a, b in zip(run.raw0, run.raw1))
    for ema0, raw1, ema1 in zip(run.ema0, run.raw1, run.ema1):
        np.testing.assert_allclose(ema1, decay * ema0 + (1.0 - decay) * raw1, rtol=1e-5, atol=1e-7)


def test_ema_lags_behind_and_moves_toward_the_raw_weights(run):
    model = run.model
    assert int(model.optimizer.iterations.numpy()) == 1 + EPOCHS * 8
    raw, ema = flat(weights_of(model.unet.weights)), flat(weights_of(model.ema_unet.weights))
    start = flat(run.raw0)
    assert not np.allclose(raw, ema)
    assert np.linalg.norm(ema - raw) < 0.5 * np.linalg.norm(start - raw)
    assert np.linalg.norm(ema - start) > 0.5 * np.linalg.norm(raw - start)


def test_ema_weights_are_not_trained_by_the_optimizer(run):
    model = run.model
    ema_ids = {id(v) for v in model.ema_unet.weights}
    assert model.ema_unet.weights and all(not v.trainable for v in model.ema_unet.weights)
    assert not ema_ids & {id(v) for v in model.trainable_variables}
    assert [id(v) for v in model.trainable_variables] == [id(v) for v in model.unet.trainable_variables]
    # Adam: iteration and learning rate, then two slots per trained variable, none for the EMA
    assert len(model.optimizer.variables) == 2 + 2 * len(model.unet.trainable_variables)


def test_sampling_uses_the_ema_weights_by_default(run):
    model = run.model
    ema = model.sample(4, seed=1, progress=False)
    raw = model.sample(4, seed=1, progress=False, use_ema=False)
    np.testing.assert_array_equal(model.sample(4, seed=1, progress=False, use_ema=True), ema)
    assert np.abs(ema - raw).max() > 1e-3


# ----------------------------------------------------------------------------- sample()


@pytest.mark.parametrize("sampler, steps", [("ddim", None), ("ddim", 3), ("ddpm", None)])
def test_sample_shape_range_and_seed(run, sampler, steps):
    model = run.model
    a = model.sample(5, seed=3, sampler=sampler, steps=steps, progress=False)
    assert a.shape == (5, 28, 28, 1) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(model.sample(5, seed=3, sampler=sampler, steps=steps, progress=False), a)
    b = model.sample(5, seed=4, sampler=sampler, steps=steps, progress=False)
    assert np.abs(a - b).max() > 1e-3


@pytest.mark.parametrize("sampler, steps, network_calls", [
    ("ddpm", None, T), ("ddim", None, DDIM_STEPS), ("ddim", 7, 7), ("ddim", T, T), ("ddim", 1, 1)])
def test_sample_runs_one_network_pass_per_step(run, sampler, steps, network_calls):
    model = run.model
    images, trajectory = model.sample(3, seed=2, sampler=sampler, steps=steps, progress=False,
                                      return_trajectory=True)
    assert trajectory.shape == (network_calls + 1, 3, 32, 32, 1)
    np.testing.assert_array_equal(trajectory[0], model.noise(3, 2).numpy())  # x_T from the seed
    np.testing.assert_array_equal(model.to_images(trajectory[-1]).numpy(), images)  # x_0, cropped
    np.testing.assert_array_equal(model.sample(3, seed=2, sampler=sampler, steps=steps, progress=False),
                                  images)


def test_sample_in_chunks(run):
    model = run.model
    whole = model.sample(5, seed=6, progress=False)
    chunked = model.sample(5, seed=6, progress=False, batch_size=2)
    assert chunked.shape == (5, 28, 28, 1)
    # deterministic DDIM: chunking only changes how x_T is batched
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    with pytest.raises(ValueError, match="batch_size"):
        model.sample(5, seed=6, progress=False, batch_size=2, return_trajectory=True)


def test_sampling_again_does_not_retrace(run):
    """The compiled reverse step is traced once per (network, sampler), not once per call."""
    model = run.model
    for sampler, steps in (("ddim", 3), ("ddpm", None)):
        model.sample(3, seed=0, sampler=sampler, steps=steps, progress=False)
        before = samplers.step_trace_count
        model.sample(3, seed=9, sampler=sampler, steps=steps, progress=False)
        assert samplers.step_trace_count == before, sampler
    before = samplers.step_trace_count
    model.sample(3, seed=9, sampler="ddim", steps=4, progress=False)  # other steps: same step fn
    model.reconstruct(run.x[:3], T // 2, seed=1)  # the same EMA network and DDPM step
    assert samplers.step_trace_count == before


def test_pad_crop_is_exact(run, mnist_sample):
    images = mnist_sample[0][:8]
    x = padded(images)
    assert x.shape == (8, 32, 32, 1)
    assert np.all(x[:, :2] == -1.0) and np.all(x[:, -2:] == -1.0)  # background border
    np.testing.assert_allclose(run.model.to_images(x).numpy()[..., 0], images / 255.0, rtol=0, atol=1e-6)


def test_resize_data_mode(mnist_sample):
    """The article's bilinear 28 -> 32 resize: sampling crops nothing and resizes back (lossy)."""
    keras.utils.set_random_seed(0)
    model = tiny_ddpm(data_mode="resize", ema_decay=0.5, ddim_steps=7, seed=3)
    config = json.loads(json.dumps(model.get_config()))  # JSON-able, with every argument
    assert {k: config[k] for k in ("data_mode", "ema_decay", "ddim_steps", "seed", "image_size")} == \
        {"data_mode": "resize", "ema_decay": 0.5, "ddim_steps": 7, "seed": 3, "image_size": 32}
    assert NoiseSchedule.from_config(config["schedule"]) == NoiseSchedule(T)
    images = mnist_sample[0][:8]
    x = preprocess_images(images, value_range="-1_1", resize_to=32).numpy()
    back = model.to_images(x).numpy()[..., 0]
    assert back.shape == (8, 28, 28)
    error = np.abs(back - images / 255.0)
    assert 0.0 < error.mean() < 0.05  # close, but not exact like the pad mode
    out = model.sample(2, seed=0, steps=2, progress=False)
    assert out.shape == (2, 28, 28, 1) and out.min() >= 0.0 and out.max() <= 1.0


def test_reconstruct(run):
    model, s = run.model, NoiseSchedule(T)
    x0 = run.x[:3]
    t = T // 2
    noised, recovered = model.reconstruct(x0, t, seed=0)
    assert noised.shape == recovered.shape == (3, 32, 32, 1)
    assert noised.dtype == recovered.dtype == np.float32
    assert np.all(np.isfinite(noised)) and np.all(np.isfinite(recovered))
    # x_t is x0 noised to t: the implied noise is standard normal
    implied = (noised - np.sqrt(s.alphas_cumprod[t]) * x0) / np.sqrt(1.0 - s.alphas_cumprod[t])
    assert abs(implied.mean()) < 0.1 and 0.9 < implied.std() < 1.1
    again_noised, again = model.reconstruct(x0, t, seed=0)
    np.testing.assert_array_equal(again_noised, noised)
    np.testing.assert_array_equal(again, recovered)
    other_noised, other = model.reconstruct(x0, t, seed=1)
    assert np.abs(other_noised - noised).max() > 1e-2 and np.abs(other - recovered).max() > 1e-2
    near, _ = model.reconstruct(x0, 0, seed=0)
    assert np.abs(near - x0).max() < 0.1  # t = 0: one small noising step


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_samples_stay_finite_and_close_to_float32(run, policy):
    """The trained weights in a mixed-precision copy sample nearly the float32 digits: the gap is
    a small fraction of the gap between two seeds, and nothing overflows to Inf/NaN."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        mixed = tiny_ddpm()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert mixed.unet.init_conv.compute_dtype == policy.removeprefix("mixed_")
    for target, source in ((mixed.unet, run.model.unet), (mixed.ema_unet, run.model.ema_unet)):
        target.set_weights(source.get_weights())
    for sampler in ("ddim", "ddpm"):
        reference = run.model.sample(8, seed=3, sampler=sampler, progress=False)
        other_seed = run.model.sample(8, seed=4, sampler=sampler, progress=False)
        low = mixed.sample(8, seed=3, sampler=sampler, progress=False)
        assert low.dtype == np.float32 and np.all(np.isfinite(low)), sampler
        assert low.min() >= 0.0 and low.max() <= 1.0
        gap, spread = np.abs(low - reference).mean(), np.abs(other_seed - reference).mean()
        assert gap < 0.2 * spread, (sampler, gap, spread)


# ----------------------------------------------------------------------------- construction


@pytest.mark.parametrize("kwargs, match", [
    (dict(ddim_steps=T + 1), "ddim_steps"), (dict(ddim_steps=0), "ddim_steps"),
    (dict(data_mode="crop"), "data_mode"), (dict(ema_decay=1.0), "ema_decay"),
    (dict(ema_decay=-0.1), "ema_decay"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_ddpm(**kwargs)


@pytest.mark.parametrize("bad", [-0.1, 1.5, "1", True, float("nan")])
def test_invalid_ddim_eta(bad):
    with pytest.raises(ValueError, match="ddim_eta"):
        tiny_ddpm(ddim_eta=bad)


def test_ddim_eta_is_the_default_of_sample(run):
    """A model built with ddim_eta=1 samples with eta=1 unless told otherwise and records it in
    its config (the export's graph: test_export_command_sets_the_ddim_eta)."""
    config = {**run.model.get_config(), "ddim_eta": 1.0}
    model = DDPM.from_config(config)
    model.set_weights(run.model.get_weights())
    assert model.ddim_eta == 1.0 and model.get_config()["ddim_eta"] == 1.0
    assert "ddim_eta" not in run.model.get_config()  # eta 0: the config is as it always was
    default = model.sample(3, 7, progress=False)
    np.testing.assert_array_equal(default, model.sample(3, 7, eta=1.0, progress=False))
    deterministic = model.sample(3, 7, eta=0.0, progress=False)
    np.testing.assert_allclose(deterministic, run.model.sample(3, 7, progress=False), rtol=0, atol=1e-5)
    assert np.abs(default - deterministic).max() > 1e-3
    # the full ancestral sampler has no eta: unchanged (two model instances: float rounding only)
    np.testing.assert_allclose(model.sample(3, 7, sampler="ddpm", progress=False),
                               run.model.sample(3, 7, sampler="ddpm", progress=False), rtol=0, atol=1e-5)


def test_unet_that_cannot_halve_the_image_size():
    deep = UNet(dim=8, dim_mults=(1, 1, 1, 1, 1, 1, 1), attention_levels=(False,) * 7)
    with pytest.raises(ValueError, match="32x32 images can be downsampled 5 times"):
        DDPM(deep, NoiseSchedule(T), ddim_steps=DDIM_STEPS)
    four = UNet(dim=8, dim_mults=(1, 1, 1, 1), attention_levels=(False,) * 4)
    with pytest.raises(ValueError, match="28x28 images can be downsampled 2 times"):
        DDPM(four, NoiseSchedule(T), image_size=28, ddim_steps=DDIM_STEPS)


# ----------------------------------------------------------------------------- .keras


@pytest.fixture(scope="module")
def reloaded(run, tmp_path_factory):
    """run.model saved to .keras and loaded back; assert_keras_round_trip checks the class, the
    config, that no variable was skipped while loading, and that the loaded model samples the same
    images (up to float rounding: the two models' compiled steps were traced for different input
    shapes, which may reorder a few float32 operations)."""
    root = tmp_path_factory.mktemp("keras")
    model = assert_keras_round_trip(run.model, root, {"n": 4, "seed": 5, "progress": False}, atol=1e-6)
    return SimpleNamespace(model=model, path=root / "model.keras")


def test_keras_round_trip_restores_the_optimizer(run, reloaded):
    original, loaded = run.model.optimizer, reloaded.model.optimizer
    assert int(loaded.iterations.numpy()) == int(original.iterations.numpy()) == 1 + EPOCHS * 8
    assert len(loaded.variables) == len(original.variables)
    for a, b in zip(original.variables, loaded.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_keras_round_trip_keeps_weights_ema_and_samples(run, reloaded):
    model, loaded = run.model, reloaded.model
    assert isinstance(loaded, DDPM)
    assert json.loads(json.dumps(loaded.get_config())) == json.loads(json.dumps(model.get_config()))
    for a, b in zip(weights_of(model.ema_unet.weights), weights_of(loaded.ema_unet.weights)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(weights_of(model.unet.weights), weights_of(loaded.unet.weights)):
        np.testing.assert_array_equal(a, b)
    assert all(not v.trainable for v in loaded.ema_unet.weights)
    # the samples (atol 1e-6) were compared by assert_keras_round_trip in `reloaded`


# ----------------------------------------------------------------------------- SavedModel export

EXPORT_CALLS = {
    "default": export_call("serving_default", num_images=3, seed=7),
    "default_again": export_call("serving_default", num_images=3, seed=7),
    "ddim3": export_call("sample_ddim", num_images=3, seed=7, steps=3),
    "ddim_T": export_call("sample_ddim", num_images=3, seed=7, steps=T),
    "ddim1": export_call("sample_ddim", num_images=3, seed=7, steps=1),
    "ddpm": export_call("sample_ddpm", num_images=3, seed=7),
    "ddpm_seed8": export_call("sample_ddpm", num_images=3, seed=8),
    "trajectory3": export_call("sample_trajectory", num_images=3, seed=7, steps=3, output="trajectory"),
}
EXPORT_ERRORS = {
    **{f"steps={s}": export_call("sample_ddim", num_images=2, seed=0, steps=s) for s in (0, -1, T + 1, 999)},
    **{f"trajectory steps={s}": export_call("sample_trajectory", num_images=2, seed=0, steps=s) for s in (0, T + 1)},
    **{f"{name} num_images={n}": export_call(name, num_images=n, seed=0,
                                             **({"steps": 3} if name == "sample_ddim" else {}))
       for name in ("serving_default", "sample_ddim", "sample_ddpm") for n in (0, -2)},
}


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    """run.model exported and served by a child process without keras_gen (check_export_in_child),
    while this process computes the same draws with model.sample."""
    model = run.model

    def expected():
        return {
            "default": model.sample(3, 7, sampler="ddim", progress=False),
            "ddim3": model.sample(3, 7, sampler="ddim", steps=3, progress=False),
            "ddim_T": model.sample(3, 7, sampler="ddim", steps=T, progress=False),
            "ddim1": model.sample(3, 7, sampler="ddim", steps=1, progress=False),
            "ddpm": model.sample(3, 7, sampler="ddpm", progress=False),
            "ddpm_seed8": model.sample(3, 8, sampler="ddpm", progress=False),
            "trajectory3": np.clip(model.sample(3, 7, sampler="ddim", steps=3, progress=False,
                                                return_trajectory=True)[1], -1.0, 1.0),
        }

    served = check_export_in_child({"ddpm": model}, EXPORT_CALLS, tmp_path_factory.mktemp("ddpm_export"),
                                   errors=EXPORT_ERRORS, metadata={"dataset": "mnist"}, while_running=expected)
    return SimpleNamespace(path=served.paths["ddpm"], result=served.result, export=served.result["exports"]["ddpm"],
                           arrays=served.arrays, expected=served.expected)


def test_export_serves_without_keras_gen(exported):
    assert exported.result["keras_gen_in_sys_modules"] is False
    assert exported.result["refused_imports"] == []
    assert exported.export["signatures"] == SIGNATURES
    seeded = {"num_images": ["int32", []], "seed": ["int32", []]}
    with_steps = {**seeded, "steps": ["int32", []]}
    assert exported.export["inputs"] == {"serving_default": seeded, "sample_ddpm": seeded,
                                         "sample_ddim": with_steps, "sample_trajectory": with_steps}
    images = {"images": ["float32", [None, 28, 28, 1]]}
    assert exported.export["outputs"] == {"serving_default": images, "sample_ddpm": images, "sample_ddim": images,
                                          "sample_trajectory": {"trajectory": ["float32", [None, None, 32, 32, 1]]}}


@pytest.mark.parametrize("name", ["default", "ddim3", "ddim_T", "ddim1", "ddpm", "ddpm_seed8"])
def test_export_matches_model_sample(exported, name):
    got = exported.arrays[name]
    assert got.shape == (3, 28, 28, 1) and got.dtype == np.float32
    assert got.min() >= 0.0 and got.max() <= 1.0
    np.testing.assert_allclose(got, exported.expected[name], rtol=0, atol=1e-5)


def test_export_trajectory_matches_model_sample(exported):
    """sample_trajectory(steps): the model-space DDIM chain, x_T first, clipped to [-1, 1]."""
    got, expected = exported.arrays["trajectory3"], exported.expected["trajectory3"]
    assert got.shape == (3 + 1, 3, 32, 32, 1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got[-1, :, 2:30, 2:30] * 0.5 + 0.5, exported.arrays["ddim3"], atol=1e-5)


def test_export_is_deterministic_per_seed(exported):
    arrays = exported.arrays
    np.testing.assert_array_equal(arrays["default_again"], arrays["default"])
    assert np.abs(arrays["ddpm_seed8"] - arrays["ddpm"]).max() > 1e-3
    assert np.abs(arrays["ddim3"] - arrays["default"]).max() > 1e-4  # steps is really used


def test_export_rejects_bad_steps_and_num_images(exported):
    errors = exported.result["errors"]
    assert errors == {key: "InvalidArgumentError" for key in errors}, errors
    assert len(errors) == 4 + 2 + 6


def test_export_assets_record_the_config(run, exported):
    info = read_export_info(exported.path)
    assert (exported.path / "assets" / ASSET_NAME).is_file()
    assert info["kind"] == "ddpm" and info["dataset"] == "mnist"
    assert info["config"]["ddim_steps"] == DDIM_STEPS
    assert info["network_passes"] == DDIM_STEPS  # serving_default: one U-Net pass per DDIM step
    assert info["config"]["schedule"]["timesteps"] == T
    assert info["config"] == json.loads(json.dumps(run.model.get_config(), default=str))
    assert info["signatures"] == SIGNATURES


def test_model_from_export_rebuilds_the_trained_model(exported):
    """The weights of an export (whose variable order differs per process) come back into a model
    built from its config: it draws the export's images (what `keras-gen distill` needs to start
    from the shipped DDPM, which has no .keras file)."""
    from keras_gen.export_weights import weight_names
    from keras_gen.sampling import model_from_export

    rebuilt = model_from_export(exported.path)
    assert rebuilt.kind == "ddpm"
    # The export holds the EMA U-Net (what sampling and distillation read), not the raw one.
    names = weight_names(rebuilt)
    assert set(rebuilt.not_restored_from_export) == {names[id(w)] for w in rebuilt.unet.weights}
    assert rebuilt.diffusion_data_layers() == {}  # so distillation may start from the export
    np.testing.assert_allclose(rebuilt.sample(3, 7, sampler="ddim", progress=False), exported.expected["default"],
                               rtol=0, atol=1e-5)
    np.testing.assert_allclose(rebuilt.sample(3, 7, sampler="ddpm", progress=False), exported.expected["ddpm"],
                               rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module", autouse=True)
def cli_train_job(request, tiny_train_runs):
    """`train ddpm --preset tiny` (the session's, conftest.tiny_train_runs) started in the background
    as the module begins (when its CLI tests are selected), so that it overlaps the in-process tests."""
    if any("cli_runs" in item.fixturenames for item in request.session.items if item.module is request.module):
        tiny_train_runs.start("ddpm")


@pytest.fixture(scope="module")
def cli_runs(tiny_train_runs, tmp_path_factory):
    """The training run, then `sample` on its saved_model with each sampler and a bad --steps
    (the three commands in one child process, subprocess_jobs.run_cli_commands)."""
    root = tmp_path_factory.mktemp("ddpm_cli")
    train = tiny_train_runs.result("ddpm")
    out = train.out
    sample = ["sample", str(out / "saved_model"), "--n", "8"]
    samples = run_cli_commands({
        "ddim": sample + ["--sampler", "ddim", "--steps", "5", "--out", str(root / "ddim.png")],
        "ddpm": sample + ["--sampler", "ddpm", "--out", str(root / "ddpm.png")],
        "too_many_steps": sample + ["--sampler", "ddim", "--steps", "999", "--out", str(root / "bad.png")],
    }, root, cwd=root)
    return SimpleNamespace(root=root, out=out, train=train, samples=samples)


def assert_png(path: Path):
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_MAGIC, path


def test_cli_train_ddpm_tiny_writes_every_output(cli_runs):
    assert cli_runs.train.rc == 0, explain(cli_runs.train)
    out = cli_runs.out
    for png in ("samples.png", "forward_process.png", "reverse_process.png", "reverse_engineering.png",
                "loss_curve.png", "samples/epoch_000.png", "samples/epoch_002.png"):
        assert_png(out / png)
    assert (out / "model.keras").is_file() and (out / "model.keras").stat().st_size > 0
    assert (out / "saved_model" / "saved_model.pb").is_file()
    info = read_export_info(out / "saved_model")
    assert info["kind"] == "ddpm" and info["config"]["schedule"]["timesteps"] == T
    assert info["signatures"] == SIGNATURES
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_config"]["preset"] == "tiny"


@pytest.mark.parametrize("name", ["ddim", "ddpm"])
def test_cli_sample_ddpm_export(cli_runs, name):
    result = cli_runs.samples[name]
    assert result.rc == 0, explain(result)
    assert_png(cli_runs.root / f"{name}.png")
    assert "(8 images)" in result.stdout


def test_export_command_sets_the_ddim_eta(run, reloaded, tmp_path, capsys):
    from keras_gen.cli import main

    keras_file = str(reloaded.path)  # run.model, saved by the round-trip fixture
    assert main(["export", keras_file, "--out", str(tmp_path / "bad"), "--ddim-eta", "2"]) == 2
    assert "ddim_eta must be a number in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert main(["export", keras_file, "--out", str(tmp_path / "eta1"), "--ddim-eta", "1"]) == 0
    assert read_export_info(tmp_path / "eta1")["config"]["ddim_eta"] == 1.0
    served = tf.saved_model.load(str(tmp_path / "eta1")).signatures["serving_default"](
        num_images=tf.constant(3), seed=tf.constant(7))["images"].numpy()
    np.testing.assert_allclose(served, run.model.sample(3, 7, eta=1.0, progress=False), rtol=0, atol=1e-5)


def test_cli_sample_rejects_too_many_steps(cli_runs):
    result = cli_runs.samples["too_many_steps"]
    assert result.rc == 2, explain(result)
    assert "Traceback" not in result.stderr, explain(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("keras-gen: error:")]
    assert len(errors) == 1 and "steps" in errors[0], explain(result)
    assert not (cli_runs.root / "bad.png").exists()
