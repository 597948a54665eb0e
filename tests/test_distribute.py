"""Training under tf.distribute: MirroredStrategy over two logical CPU devices (plain SGD steps
compared to one device's to float rounding, which a wrong replica loss scale fails), and a real
two-process MultiWorkerMirroredStrategy cluster on 127.0.0.1 through `keras-gen train` (the
training code's own model preparation, under a strategy scope).

Both run in child processes: logical devices and the collective runtime must be configured before
TensorFlow initialises, which the test process itself has long done.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from subprocess_jobs import explain, run_all

KERAS_GEN = str(Path(sys.executable).parent / "keras-gen")
SAMPLE = Path(__file__).parent / "data" / "mnist_sample.npz"  # the committed real MNIST sample

# Trains each model STEPS plain-SGD steps on one real MNIST batch of 32, twice from the same
# initial weights: on one device, and mirrored over 2 logical CPUs (16 + 16). Every random draw of
# the training steps (the VAE's eps, the DCGAN's z, the DDPM's t and noise) is replaced by a fixed
# table that depends on a draw's row only modulo 16, the per-replica batch: each replica then
# draws exactly the rows one device draws for its half of the batch, and the DCGAN generator's
# BatchNormalization (per-replica statistics under MirroredStrategy) sees the same statistics on
# a replica's 16 fakes as on one device's 32 (its batch is the 16 twice). So both runs compute
# the same gradients up to float reduction order, and SGD (unlike Adam, which a constant gradient
# scale leaves unchanged) moves the weights by learning rate x gradient: summing the replicas'
# gradients instead of averaging them doubles every update.
STEPS = 3
SGD_RATES = {"vae": 1e-3, "dcgan": 0.05, "ddpm": 0.01}
SGD_CHILD = r'''
import json, sys
from keras_gen.distribute import split_cpu
split_cpu(2)
import keras, numpy as np, tensorflow as tf
from keras_gen.data import preprocess_images
from keras_gen.distribute import make_strategy
from keras_gen.models import DCGAN, VAE
from keras_gen.models.ddpm import build_ddpm
from keras_gen.presets import get_preset

sample_path, out_path, steps, rates = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
with np.load(sample_path) as data:
    images = data["images"][:32]
PERIOD = 16  # the per-replica batch

def table(rows, per_row, salt):
    """(rows, per_row) values that repeat every PERIOD rows."""
    values = tf.random.stateless_normal([PERIOD, per_row], seed=[salt, per_row])
    return tf.tile(values, [(rows + PERIOD - 1) // PERIOD, 1])[:rows]

def fixed_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    rows, rest = shape[0], [int(d) for d in shape[1:]]
    values = table(rows, int(np.prod(rest)), 1)
    return tf.cast(mean + stddev * tf.reshape(values, [rows, *rest]), dtype or "float32")

def fixed_randint(shape, minval, maxval, dtype="int32", seed=None):
    assert len(shape) == 1, shape
    rows = tf.range(shape[0]) % PERIOD
    return tf.cast(minval + (7 * rows + 3) % (maxval - minval), dtype)

def build(kind):
    if kind == "vae":
        model = VAE(latent_dim=2, seed=0)
        model.compile(optimizer=keras.optimizers.SGD(rates[kind]), jit_compile=False)
        model.optimizer.build(model.trainable_variables)
    elif kind == "dcgan":
        model = DCGAN(latent_dim=8, seed=0)
        model.compile(d_optimizer=keras.optimizers.SGD(rates[kind]), g_optimizer=keras.optimizers.SGD(rates[kind]),
                      jit_compile=False)
        model.d_optimizer.build(model.discriminator.trainable_variables)
        model.g_optimizer.build(model.generator.trainable_variables)
    else:
        model = build_ddpm(get_preset("ddpm", "tiny"))
        model.compile(optimizer=keras.optimizers.SGD(rates[kind]), jit_compile=False)
        model.optimizer.build(model.trainable_variables)
    return model

batches = {"vae": preprocess_images(images, binarize=True), "dcgan": preprocess_images(images, value_range="-1_1"),
           "ddpm": preprocess_images(images, value_range="-1_1", pad_to=32)}
random_normal, random_randint = keras.random.normal, keras.random.randint
arrays, out = {}, {}
for kind, batch in batches.items():
    initial = None
    for name in ("default", "mirrored"):
        strategy = make_strategy(name)
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = build(kind)
            if initial is None:
                initial = model.get_weights()
            model.set_weights(initial)
        before = [np.array(v.numpy()) for v in model.trainable_variables]
        keras.random.normal, keras.random.randint = fixed_normal, fixed_randint
        try:
            history = model.fit(tf.data.Dataset.from_tensors(batch).repeat(steps), epochs=1, verbose=0,
                                shuffle=False)
        finally:
            keras.random.normal, keras.random.randint = random_normal, random_randint
        for i, (v, b) in enumerate(zip(model.trainable_variables, before)):
            arrays[f"{kind}/{name}/before/{i}"] = b
            arrays[f"{kind}/{name}/after/{i}"] = np.array(v.numpy())
            if name == "mirrored":  # every replica holds the same values after the updates
                values = [np.asarray(r) for r in strategy.experimental_local_results(v.value)]
                assert len(values) == 2 and all(np.array_equal(values[0], r) for r in values), v.path
        out[f"{kind}/{name}"] = {"replicas": strategy.num_replicas_in_sync, "variables": len(before),
                                 "loss": {k: float(v[-1]) for k, v in history.history.items() if "loss" in k}}
np.savez(out_path + ".npz", **arrays)
json.dump(out, open(out_path, "w"))
'''


@pytest.fixture(scope="module")
def sgd_runs(tmp_path_factory):
    """SGD_CHILD's results: ({"<kind>/<strategy>": info}, {name: array})."""
    root = tmp_path_factory.mktemp("mirrored")
    command = [sys.executable, "-c", SGD_CHILD, str(SAMPLE), str(root / "sgd.json"), str(STEPS), json.dumps(SGD_RATES)]
    results = run_all({"sgd": command}, root, root)
    assert results["sgd"].rc == 0, explain(results["sgd"])
    with np.load(root / "sgd.json.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return json.loads((root / "sgd.json").read_text()), arrays


@pytest.mark.parametrize("kind", ["vae", "dcgan", "ddpm"])
def test_mirrored_sgd_steps_match_one_device(sgd_runs, kind):
    """After STEPS SGD steps on the same global batch (fixed draws: see SGD_CHILD) every trained
    variable has moved by the same amount under MirroredStrategy as on one device.

    Tolerance, per variable: |update_mirrored - update_one_device| <= 1e-3 x max |update_one_device|
    + 1e-4 x the model's median update (the max of each variable's, median over the variables)
    + 4 float32 ulps of the variable's largest weight. The two
    runs differ only in float reduction order (a mean over 32 rows vs two means over 16, added up):
    measured, at most 1 ulp of the weights where an update is only some thousand ulps (the ulp
    term), else below 7e-5 of the update. The second term covers the biases just before a
    normalization (BatchNorm in the DCGAN generator, GroupNorm in the U-Net): the normalization
    cancels them, so their gradient is zero up to rounding and their "update" is rounding noise
    (measured: below 5e-6 of the median update). Summing the replicas' gradients instead of
    averaging them doubles the first update: an error of about 1 x the update, 1000 times the
    first term."""
    info, arrays = sgd_runs
    default, mirror = info[f"{kind}/default"], info[f"{kind}/mirrored"]
    assert default["replicas"] == 1 and mirror["replicas"] == 2
    n = default["variables"]
    assert mirror["variables"] == n > 0
    start = [arrays[f"{kind}/default/before/{i}"] for i in range(n)]
    one = [arrays[f"{kind}/default/after/{i}"] - start[i] for i in range(n)]
    two = [arrays[f"{kind}/mirrored/after/{i}"] - start[i] for i in range(n)]
    floor = 1e-4 * np.median([np.abs(u).max() for u in one])
    unmoved = [i for i in range(n) if np.abs(one[i]).max() <= floor]
    assert len(unmoved) <= n // 5 and all(start[i].ndim == 1 for i in unmoved), unmoved  # a few biases only
    # the learning rate moves the weights visibly: some kernel by over 1 % of its largest weight
    assert max(np.abs(u).max() / np.abs(w).max() for u, w in zip(one, start) if w.ndim > 1) > 0.01
    for i in range(n):
        np.testing.assert_array_equal(arrays[f"{kind}/mirrored/before/{i}"], start[i])  # same initial weights
        ulp = np.spacing(np.abs(start[i]).max().astype(np.float32))
        atol = 1e-3 * np.abs(one[i]).max() + floor + 4 * ulp
        np.testing.assert_allclose(two[i], one[i], rtol=0, atol=atol,
                                   err_msg=f"{kind} variable {i} {start[i].shape}: mirrored update vs one device")
    for key, value in default["loss"].items():  # the logged losses (mean over the steps and replicas)
        assert np.isfinite(value)
        assert mirror["loss"][key] == pytest.approx(value, rel=1e-4), key


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_worker_cluster_on_localhost_trains_identical_models(tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    commands, envs = {}, {}
    for i in range(2):
        commands[f"worker{i}"] = [KERAS_GEN, "train", "vae", "--preset", "tiny", "--epochs", "1",
                                  "--strategy", "multiworker", "--verbose", "0", "--out", str(tmp_path / f"w{i}")]
        envs[f"worker{i}"] = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
    results = run_all(commands, tmp_path, tmp_path, envs=envs, timeout=300)
    for name, run in results.items():
        assert run.rc == 0, f"{name}: {explain(run)}"  # both ended by themselves, successfully
    arrays = []
    for i in range(2):
        state = json.loads((tmp_path / f"w{i}" / "resume" / "state.json").read_text())
        assert state["finished"] and state["global_step"] == 8
        with np.load(tmp_path / f"w{i}" / "resume" / state["variables_file"]) as data:
            arrays.append({k: data[k] for k in data.files})
    assert sorted(arrays[0]) == sorted(arrays[1])
    for key in arrays[0]:
        np.testing.assert_array_equal(arrays[0][key], arrays[1][key], err_msg=key)


def test_multiworker_without_tf_config_is_a_clear_error(monkeypatch):
    from keras_gen.distribute import make_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG"):
        make_strategy("multiworker")
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("horovod")
