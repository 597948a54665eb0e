"""Shared fixtures: the committed real data samples, and an isolated, offline data environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import subprocess_jobs
from helpers import CONDITIONAL_CLASSES, CONDITIONAL_DDIM_STEPS, tiny_dcgan, tiny_vae, weights_of
from keras_gen.data import sources

DATA_DIR = Path(__file__).parent / "data"


# ------------------------------------------------------------------ two pytest-xdist workers
# `make test` runs `-n 2 --dist loadfile --no-loadscope-reorder`. One unit of work is a file (its
# module fixtures are built once) or the group of files that share an in-process session fixture
# (trained models held in memory, which a second worker would have to train again), and the units
# are handed out longest first, so that the last to start is short and neither worker idles at the
# end. The order is the units' measured CPU time under `make test` (children included), longest
# first; units not listed follow in collection order. (xdist's own loadgroup marks do not work with
# pytest 9: xdist 3.8 rewrites `item._nodeid`, which pytest 9 no longer reads.)
SHARED_IN_PROCESS = {  # file -> the group of files sharing a session fixture held in memory
    name: "models_in_memory" for name in ("test_conditional", "test_serving_guards", "test_export",
                                          "test_evaluation", "test_vae", "test_dcgan", "test_likelihood")}
LONGEST_FIRST = ("models_in_memory", "test_distillation", "test_ddpm", "test_tutorials[08_latent_diffusion]",
                 "test_shipped_models", "test_resume", "test_tutorials[05_conditional]",
                 "test_tutorials[06_fast_sampling]", "test_distribute", "test_tutorials[03_ddpm]",
                 "test_tutorials[04_trilemma]", "test_model_contract", "test_latent", "test_flow",
                 "test_tutorials[02_dcgan]", "test_tutorials[01_vae]", "test_tutorials[07_families]")


def work_unit(nodeid: str) -> str:
    """The unit of work (file or group of files) of a test's node id. test_tutorials.py is one
    unit per tutorial (named by the test's id, e.g. "test_tutorials[03_ddpm]"): each tutorial
    is a child process of its own, and two at a time on two cores cost less CPU than all at once."""
    path, _, test = nodeid.partition("::")
    module = Path(path).stem
    if module == "test_tutorials" and "[" in test:
        return f"{module}[{test.split('[', 1)[1].rstrip(']')}]"
    return SHARED_IN_PROCESS.get(module, module)


def pytest_collection_modifyitems(config, items):
    rank = {unit: i for i, unit in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(work_unit(item.nodeid), len(rank)))  # stable: files stay whole


def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile, with the files of SHARED_IN_PROCESS on one worker."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedFixtureScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid):
            return work_unit(nodeid)

    return SharedFixtureScheduling(config, log)


@pytest.fixture(scope="session", autouse=True)
def child_slots(tmp_path_factory):
    """The session's folder of slots for children that train (subprocess_jobs.SLOTS), one for
    both pytest-xdist workers."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "child_slots"
    folder.mkdir(exist_ok=True)
    subprocess_jobs.SLOT_DIR = folder
    yield folder
    subprocess_jobs.SLOT_DIR = None


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


# ------------------------------------------------------------------ tiny `keras-gen train` runs
# The same uninterrupted runs serve test_ddpm.py, test_flow.py and test_export.py (their run folders and CLI) and
# test_resume.py (the reference a killed-and-resumed run must end bitwise equal to): each is run
# once per session, as the real console command, and read, never written, by the tests. Under
# pytest-xdist the workers share them: the first worker to ask for a run starts it in a folder both
# see, the other waits for its exit-code file.

KERAS_GEN = str(Path(sys.executable).parent / "keras-gen")
# The DCGAN (fit) run also logs for TensorBoard, into <root>/dcgan_tensorboard (test_export.py reads it).
# The latent DDPM trains on the autoencoder run's first stage (TINY_TRAIN_REQUIRES: started after it ends).
TINY_TRAIN_JOBS = {"vae": ["vae"], "dcgan": ["dcgan", "--tensorboard", "dcgan_tensorboard"],
                   "alternating": ["dcgan", "--loop", "alternating"],
                   "ddpm": ["ddpm"], "flow": ["flow"], "autoencoder": ["autoencoder"],
                   "latent_ddpm": ["latent_ddpm", "--first-stage", "{root}/autoencoder"]}
TINY_TRAIN_REQUIRES = {"latent_ddpm": "autoencoder"}
TINY_TRAIN_FLAGS = ["--preset", "tiny", "--verbose", "0", "--checkpoint-every", "3"]


class TinyTrainRuns:
    """`keras-gen train <kind> TINY_TRAIN_FLAGS --out <root>/<name>` for each name of
    TINY_TRAIN_JOBS, started on first request by whichever process asks first (in a slot:
    subprocess_jobs.SLOTS) and waited for once. ``start(*names)`` starts them in the background;
    ``result(name)`` waits and returns SimpleNamespace(rc, stdout, stderr, out)."""

    def __init__(self, root: Path):
        self.root, self.started_here, self.results = root, {}, {}

    def command(self, name):
        """The run's command line; for a run that needs another (TINY_TRAIN_REQUIRES), once that
        one has ended well."""
        if name in TINY_TRAIN_REQUIRES:
            required = self.result(TINY_TRAIN_REQUIRES[name])
            assert required.rc == 0, subprocess_jobs.explain(required)
        args = [arg.format(root=self.root) for arg in TINY_TRAIN_JOBS[name]]
        return [KERAS_GEN, "train", *args, *TINY_TRAIN_FLAGS, "--out", str(self.root / name)]

    def kind(self, name):
        return TINY_TRAIN_JOBS[name][0]

    def start(self, *names):
        for name in names:
            try:  # the claim file: exactly one process starts each run
                os.close(os.open(self.root / f"train_{name}.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue
            self.started_here[name] = subprocess_jobs.start_recording_rc(
                self.command(name), self.root, f"train_{name}", self.root, slot=True)

    def result(self, name):
        if name not in self.results:
            self.start(name)
            done = subprocess_jobs.wait_for_rc(self.root, f"train_{name}", timeout=1200)  # slot wait included
            self.results[name] = SimpleNamespace(rc=done.rc, stdout=done.stdout, stderr=done.stderr,
                                                 out=self.root / name)
        return self.results[name]

    def finish_started_here(self):
        """Let the runs this process started end (another worker may still need them), then
        stop whatever is left of them (their process groups)."""
        for name, (process, _, _) in self.started_here.items():
            try:
                process.wait(timeout=1200)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="session")
def tiny_train_runs(tmp_path_factory):
    """The session's TinyTrainRuns (run folders under one temporary root, shared by xdist workers)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = tmp_path_factory.getbasetemp().parent / "tiny_train"  # the run's, above each worker's
        root.mkdir(exist_ok=True)
    else:
        root = tmp_path_factory.mktemp("tiny_train")
    runs = TinyTrainRuns(root)
    yield runs
    runs.finish_started_here()


# ------------------------------------------------------------------ shared tiny exports
# Exporting (tracing every signature) is what these models cost most: each is exported once per
# session and loaded, never rewritten, by the files that serve it (test_export.py, in a child;
# test_serving_guards.py and test_evaluation.py, in process).


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory, tiny_vae_run, tiny_dcgan_run):
    """tiny_vae_run's and tiny_dcgan_run's models exported: {"vae": path, "dcgan": path}, with
    metadata {"dataset": "mnist", "training": {"steps": 12}}."""
    from keras_gen.export import export_saved_model

    root = tmp_path_factory.mktemp("tiny_exports")
    return {kind: export_saved_model(run.model, root / kind / "saved_model",
                                     metadata={"dataset": "mnist", "training": {"steps": 12}})
            for kind, run in (("vae", tiny_vae_run), ("dcgan", tiny_dcgan_run))}


@pytest.fixture(scope="session")
def conditional_trained(mnist_sample):
    """A conditional (10 classes) VAE, DCGAN and DDPM, each trained with fit on real labelled
    MNIST digits: {kind: SimpleNamespace(model, history)} (the DCGAN's also d_before, its
    discriminator's trainable weights before training). Shared read-only by test_conditional.py
    and test_serving_guards.py."""
    import keras

    from helpers import tiny_ddpm
    from keras_gen.data import dataset_from_arrays

    C = CONDITIONAL_CLASSES
    images, labels = mnist_sample
    keras.utils.set_random_seed(0)
    runs = {}

    vae = tiny_vae(C)  # latent 2: the class has to come from the label
    vae.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=False)
    data = dataset_from_arrays(images[:1024], labels[:1024], 64, binarize=True, with_labels=True, seed=0)
    runs["vae"] = SimpleNamespace(model=vae, history=vae.fit(data, epochs=3, verbose=0).history)

    dcgan = tiny_dcgan(C)
    dcgan.compile(d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
                  g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5), jit_compile=False)
    data = dataset_from_arrays(images[:256], labels[:256], 64, value_range="-1_1", with_labels=True,
                               drop_remainder=True, seed=0)
    d_before = [w.numpy().copy() for w in dcgan.discriminator.trainable_weights]
    runs["dcgan"] = SimpleNamespace(model=dcgan, history=dcgan.fit(data, epochs=3, verbose=0).history,
                                    d_before=d_before)

    ddpm = tiny_ddpm(num_classes=C, ddim_steps=CONDITIONAL_DDIM_STEPS)
    # Eager: tracing the U-Net's train step costs ~20 s on 2 CPU cores, more than the 8 steps
    # themselves (tutorial 05, run by test_tutorials.py, trains a conditional DDPM compiled).
    ddpm.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False, run_eagerly=True)
    data = dataset_from_arrays(images[:128], labels[:128], 32, value_range="-1_1", pad_to=32,
                               with_labels=True, seed=0)
    runs["ddpm"] = SimpleNamespace(model=ddpm, history=ddpm.fit(data, epochs=2, verbose=0).history)
    return runs


@pytest.fixture(scope="session")
def conditional_exports(tmp_path_factory, conditional_trained):
    """conditional_trained's models exported (metadata {"dataset": "mnist"}): {kind: path}."""
    from keras_gen.export import export_saved_model

    root = tmp_path_factory.mktemp("conditional_exports")
    return {kind: export_saved_model(run.model, root / kind, metadata={"dataset": "mnist"})
            for kind, run in conditional_trained.items()}
