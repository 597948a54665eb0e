"""Every input of every exported signature is validated in the graph, before the work it guards,
and seeds / image counts are refused (never wrapped or truncated) by the Python ``sample()`` too.

The session's tiny exports are loaded in-process: the VAE and DCGAN unconditional
(conftest.tiny_exports, shared with test_export.py) and conditional (num_classes=10), and a
conditional tiny DDPM (conftest.conditional_exports, shared with test_conditional.py). A DDPM
export is what costs most, so there is one: the conditional export has every signature of the
unconditional one (they share the code that checks num_images, seed and steps) plus sample_class.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from keras_gen.models.conditioning import MAX_GUIDANCE, MIN_GUIDANCE, check_guidance
from keras_gen.models.serving import MAX_IMAGES, MAX_SEED, MAX_TRAJECTORY_FRAMES

LATENT = {"vae": "decode", "dcgan": "generate"}
LATENT_KINDS = ("vae", "vae_c", "dcgan", "dcgan_c")
InvalidArgument = tf.errors.InvalidArgumentError


@pytest.fixture(scope="module")
def exports(tiny_vae_run, tiny_dcgan_run, tiny_exports, conditional_trained, conditional_exports):
    """{name: SimpleNamespace(model, sig)}: each tiny model and its loaded export's signatures."""
    models = {"vae": tiny_vae_run.model, "dcgan": tiny_dcgan_run.model,
              **{f"{kind}_c": run.model for kind, run in conditional_trained.items()}}
    paths = {**tiny_exports, **{f"{kind}_c": path for kind, path in conditional_exports.items()}}
    return {name: SimpleNamespace(model=model, sig=tf.saved_model.load(str(paths[name])).signatures)
            for name, model in models.items()}


def seeded(n, seed, **extra):
    """Signature arguments: int32 num_images and seed, int32 label/steps, float32 guidance."""
    args = {"num_images": tf.constant(n, tf.int32), "seed": tf.constant(seed, tf.int32)}
    for key, value in extra.items():
        args[key] = tf.constant(value, tf.float32 if key == "guidance" else tf.int32)
    return args


def latent_args(name, z, labels=None):
    args = {"z": tf.constant(z, tf.float32)}
    if name.endswith("_c"):
        args["labels"] = tf.constant(np.zeros(len(z), np.int32) if labels is None else labels, tf.int32)
    return args


def latent_signature(exports, name):
    return exports[name].sig[LATENT[name.split("_")[0]]]


# ----------------------------------------------------------------------------- decode / generate


@pytest.mark.parametrize("name", LATENT_KINDS)
@pytest.mark.parametrize("rows", [0, MAX_IMAGES + 1])
def test_latent_signature_caps_the_rows_of_z(exports, name, rows):
    model = exports[name].model
    with pytest.raises(InvalidArgument, match="rows of z"):
        latent_signature(exports, name)(**latent_args(name, np.zeros((rows, model.latent_dim), np.float32)))


@pytest.mark.parametrize("name", LATENT_KINDS)
def test_huge_z_fails_before_any_work(exports, name):
    """10**6 rows once grew decode past 8 GB: the row check must fail first, in well under 1 s."""
    fn, dim = latent_signature(exports, name), exports[name].model.latent_dim
    fn(**latent_args(name, np.zeros((2, dim), np.float32)))  # warm up: first-call overhead not timed
    args = latent_args(name, np.zeros((10**6, dim), np.float32))
    start = time.perf_counter()
    with pytest.raises(InvalidArgument, match="rows of z"):
        fn(**args)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("name", LATENT_KINDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_latent_signature_refuses_non_finite_z(exports, name, bad):
    z = np.zeros((3, exports[name].model.latent_dim), np.float32)
    z[1, 0] = bad
    with pytest.raises(InvalidArgument, match="z must be finite"):
        latent_signature(exports, name)(**latent_args(name, z))


@pytest.mark.parametrize("name", ["vae_c", "dcgan_c"])
@pytest.mark.parametrize("count", [0, 3, 5])
def test_latent_signature_needs_one_label_per_row(exports, name, count):
    z = np.zeros((4, exports[name].model.latent_dim), np.float32)
    with pytest.raises(InvalidArgument, match="one entry per row of z"):
        latent_signature(exports, name)(**latent_args(name, z, np.zeros(count, np.int32)))


@pytest.mark.parametrize("name", LATENT_KINDS)
def test_latent_signature_still_serves_valid_codes(exports, name):
    run = exports[name]
    z = np.random.default_rng(0).normal(size=(3, run.model.latent_dim)).astype(np.float32)
    labels = np.array([0, 2, 1], np.int32) if name.endswith("_c") else None
    got = latent_signature(exports, name)(**latent_args(name, z, labels))["images"].numpy()
    to_images = run.model.decode if name.startswith("vae") else run.model.generate
    expected = np.asarray(to_images(z) if labels is None else to_images(z, labels))
    assert got.shape == (3, 28, 28, 1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- seeds in the graph


def seeded_calls(run):
    """(signature name, extra arguments) of every seeded signature of an export."""
    calls = [("serving_default", {})]
    if "sample_class" in run.sig:
        guidance = {"guidance": 3.0} if "sample_ddim" in run.sig else {}  # the DDPM's takes guidance
        calls.append(("sample_class", {"label": 1, **guidance}))
    if "sample_ddim" in run.sig:
        calls += [("sample_ddim", {"steps": 2}), ("sample_ddpm", {}), ("sample_trajectory", {"steps": 2})]
    return calls


@pytest.mark.parametrize("name", [*LATENT_KINDS, "ddpm_c"])
def test_seeded_signatures_refuse_negative_seeds(exports, name):
    """The Python sample() refuses seeds < 0, so every seeded signature does too."""
    run = exports[name]
    for signature, extra in seeded_calls(run):
        for seed in (-1, -(2**31)):
            with pytest.raises(InvalidArgument, match="seed must be in"):
                run.sig[signature](**seeded(2, seed, **extra))


def test_ddpm_sample_matches_export_at_the_largest_seed(exports):
    """sample(n, 2**31 - 1) used step-noise seed (2**31 - 1) % MAX_SEED = 0, unlike the export."""
    run = exports["ddpm_c"]
    got = run.sig["sample_ddpm"](**seeded(2, MAX_SEED))["images"].numpy()
    expected = run.model.sample(2, MAX_SEED, sampler="ddpm", progress=False)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- guidance and steps


@pytest.mark.parametrize("guidance", [np.nan, np.inf, -np.inf, -1.0, -1e-3, MAX_GUIDANCE + 0.5, 1e6])
def test_sample_class_refuses_bad_guidance(exports, guidance):
    with pytest.raises(InvalidArgument, match="guidance must be"):
        exports["ddpm_c"].sig["sample_class"](**seeded(2, 0, label=1, guidance=guidance))


def test_host_and_graph_accept_the_same_guidance(exports):
    """check_guidance (sample()) and the export's sample_class share MIN_GUIDANCE..MAX_GUIDANCE."""
    run = exports["ddpm_c"]
    for w in (MIN_GUIDANCE, 1.0, 3.0, MAX_GUIDANCE):
        images = run.sig["sample_class"](**seeded(2, 4, label=2, guidance=w))["images"].numpy()
        assert images.shape == (2, 28, 28, 1) and np.all(np.isfinite(images))
        assert check_guidance(w) == w
    expected = run.model.sample(2, 4, labels=2, guidance=3.0, progress=False)
    got = run.sig["sample_class"](**seeded(2, 4, label=2, guidance=3.0))["images"].numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    for w in (MIN_GUIDANCE - 1.0, MAX_GUIDANCE + 0.5, 1e6):
        with pytest.raises(ValueError, match="guidance"):
            check_guidance(w)
        with pytest.raises(ValueError, match="guidance"):
            run.model.sample(2, 0, guidance=w, progress=False)


def test_trajectory_frames_are_capped(exports):
    """sample_trajectory returns num_images * (steps + 1) frames: capped before any sampling."""
    run = exports["ddpm_c"]
    T = run.model.schedule.timesteps
    assert MAX_IMAGES * (T + 1) > MAX_TRAJECTORY_FRAMES
    start = time.perf_counter()
    with pytest.raises(InvalidArgument, match="frames"):
        run.sig["sample_trajectory"](**seeded(MAX_IMAGES, 0, steps=T))
    assert time.perf_counter() - start < 1.0
    trajectory = run.sig["sample_trajectory"](**seeded(2, 0, steps=2))["trajectory"].numpy()
    assert trajectory.shape == (3, 2, 32, 32, 1)


# ----------------------------------------------------------------------------- Python sample()


def python_samplers(exports):
    vae, dcgan, ddpm = (exports[k].model for k in ("vae", "dcgan", "ddpm_c"))
    return {"vae": vae.sample, "dcgan": dcgan.sample,
            "ddpm": lambda n, seed, **kw: ddpm.sample(n, seed, progress=False, **kw),
            "ddpm_reconstruct": lambda n, seed: ddpm.reconstruct(np.zeros((n, 32, 32, 1), np.float32), 3,
                                                                 seed)}


BAD_SEEDS = [(True, TypeError), (1.5, TypeError), ("3", TypeError), (None, TypeError),
             (np.float32(2), TypeError), (-1, ValueError), (MAX_SEED + 1, ValueError),
             (2**32 + 5, ValueError)]  # 2**32 + 5 wrapped to seed 5 before


@pytest.mark.parametrize("kind", ["vae", "dcgan", "ddpm", "ddpm_reconstruct"])
@pytest.mark.parametrize("seed,error", BAD_SEEDS, ids=[repr(s) for s, _ in BAD_SEEDS])
def test_python_sample_refuses_bad_seeds(exports, kind, seed, error):
    with pytest.raises(error, match="seed"):
        python_samplers(exports)[kind](2, seed)


BAD_COUNTS = [(2.5, TypeError), (True, TypeError), ("3", TypeError), (0, ValueError), (-1, ValueError)]


@pytest.mark.parametrize("kind", ["vae", "dcgan", "ddpm"])
@pytest.mark.parametrize("n,error", BAD_COUNTS, ids=[repr(n) for n, _ in BAD_COUNTS])
def test_python_sample_refuses_bad_counts(exports, kind, n, error):
    with pytest.raises(error, match="number of images"):
        python_samplers(exports)[kind](n, 0)


@pytest.mark.parametrize("kind", ["vae", "dcgan"])
def test_python_sample_takes_numpy_ints_and_the_largest_seed(exports, kind):
    sample = python_samplers(exports)[kind]
    np.testing.assert_array_equal(np.asarray(sample(np.int64(2), np.int32(3))), np.asarray(sample(2, 3)))
    images = np.asarray(sample(2, MAX_SEED))
    assert images.shape == (2, 28, 28, 1) and np.all(np.isfinite(images))


def test_ddpm_chunk_seeds_never_wrap(exports):
    """Chunk c of sample() uses step-noise seed seed + c: refused past 2**31 - 1, never wrapped."""
    model = exports["ddpm_c"].model
    with pytest.raises(ValueError, match="seed"):
        model.sample(4, MAX_SEED, batch_size=2, progress=False)  # chunk 1 would need 2**31
    images = model.sample(4, MAX_SEED - 1, batch_size=2, progress=False)  # chunks: 2**31 - 2, - 1
    assert images.shape == (4, 28, 28, 1) and np.all(np.isfinite(images))
