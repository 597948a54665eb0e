"""Shared fixtures: the committed real data samples, and an isolated, offline data environment."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from helpers import tiny_dcgan, tiny_vae, weights_of
from keras_gen.data import sources

DATA_DIR = Path(__file__).parent / "data"


def _load_sample(name):
    with np.load(DATA_DIR / f"{name}_sample.npz", allow_pickle=False) as data:
        return data["images"], data["labels"]


@pytest.fixture(scope="session")
def mnist_sample():
    """Real MNIST images (2000, 28, 28) and labels (2000,), uint8 (do not modify in place)."""
    return _load_sample("mnist")


@pytest.fixture(scope="session")
def fashion_sample():
    """Real Fashion-MNIST images (1000, 28, 28) and labels (1000,), uint8."""
    return _load_sample("fashion_mnist")


@pytest.fixture
def offline(monkeypatch):
    """Nothing may reach the network: tfds sees no host, pip / apt-get downloads fail at once.

    Returns the list of commands the sources tried to run (they get a failing CompletedProcess).
    """
    commands = []

    def failing_run(cmd, *args, **kwargs):
        commands.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: network disabled in tests")

    monkeypatch.setattr(sources, "_host_reachable", lambda *a, **k: False)
    monkeypatch.setattr(sources.subprocess, "run", failing_run)
    return commands


@pytest.fixture
def data_env(tmp_path, monkeypatch, offline):
    """Every data source pointed at empty folders under tmp_path, and offline (see `offline`).

    Attributes: cache (KERAS_GEN_DATA), keras_datasets (KERAS_HOME/datasets), debian
    (DEBIAN_FASHION_DIR), tfds (tfds' default data_dir), commands (what the sources tried to run).
    """
    import tensorflow_datasets as tfds

    env = SimpleNamespace(cache=tmp_path / "cache", keras_datasets=tmp_path / "keras" / "datasets",
                          debian=tmp_path / "debian-fashion", tfds=tmp_path / "tfds",
                          commands=offline)
    monkeypatch.setenv("KERAS_GEN_DATA", str(env.cache))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", env.debian)
    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(env.tfds))
    return env


@pytest.fixture
def small_counts(monkeypatch):
    """Call with (train, test) to make those the expected split sizes."""
    def set_counts(train, test):
        monkeypatch.setitem(sources.EXPECTED_COUNTS, "train", train)
        monkeypatch.setitem(sources.EXPECTED_COUNTS, "test", test)
    return set_counts


# ------------------------------------------------------------------ tiny trained VAE / DCGAN
# Shared by test_vae.py, test_dcgan.py and test_export.py: trained once per session on the
# committed MNIST sample. Tests must not train or mutate these models further. The builders and
# the other shared helpers are in helpers.py.


@pytest.fixture(scope="session")
def tiny_vae_run(mnist_sample):
    """A latent-2 VAE trained 3 epochs on 512 binarised MNIST images; .model and .history."""
    import keras

    from keras_gen.data import dataset_from_arrays

    keras.utils.set_random_seed(0)
    images, labels = mnist_sample
    dataset = dataset_from_arrays(images[:512], labels[:512], 64, binarize=True, seed=0)
    model = tiny_vae()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    history = model.fit(dataset, epochs=3, verbose=0, shuffle=False)
    return SimpleNamespace(model=model, history=history.history)


@pytest.fixture(scope="session")
def tiny_dcgan_run(mnist_sample):
    """A latent-8 DCGAN: one fused train_step (weights snapshotted around it), then 2 epochs of
    4 batches of 32 real MNIST images in [-1, 1]. Attributes: model, before, after_one_step
    ({"generator"|"discriminator": trainable weights}), history (of the 2 epochs)."""
    import keras

    from keras_gen.data import dataset_from_arrays

    keras.utils.set_random_seed(0)
    images, labels = mnist_sample
    dataset = dataset_from_arrays(images[:128], labels[:128], 32, value_range="-1_1",
                                  drop_remainder=True, seed=0)
    model = tiny_dcgan()
    model.compile(d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
                  g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5), jit_compile=False)

    def snapshot():
        return {"generator": weights_of(model.generator, trainable_only=True),
                "discriminator": weights_of(model.discriminator, trainable_only=True)}

    before = snapshot()
    model.fit(dataset.take(1), epochs=1, verbose=0, shuffle=False)
    after_one_step = snapshot()
    history = model.fit(dataset, epochs=2, verbose=0, shuffle=False)
    return SimpleNamespace(model=model, before=before, after_one_step=after_one_step,
                           history=history.history)
