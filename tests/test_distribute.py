"""Training under tf.distribute: MirroredStrategy over two logical CPU devices, and a real
two-process MultiWorkerMirroredStrategy cluster on 127.0.0.1.

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

# Trains each model 3 steps on the same real MNIST batch twice from the same initial weights:
# on one device, and mirrored over 2 logical CPUs (the global batch of 32 split 16 + 16).
MIRRORED_CHILD = r'''
import json, sys
from keras_gen.distribute import split_cpu
split_cpu(2)
import keras, numpy as np, tensorflow as tf
from keras_gen.data import make_dataset
from keras_gen.distribute import make_strategy
from keras_gen.presets import get_preset
from keras_gen.models.kinds import get_model_kind
from keras_gen.training import prepare_model

out = {}
for kind in ("vae", "dcgan", "ddpm"):
    config = get_preset(kind, "tiny", batch_size=32)
    batch = next(iter(make_dataset("mnist", "train", 32, shuffle=False, limit=32,
                                   **get_model_kind(kind).data_options(config))))
    runs = {}
    for name in ("default", "mirrored"):
        strategy = make_strategy(name)
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model, _ = prepare_model(kind, config)
        history = model.fit(tf.data.Dataset.from_tensors(batch).repeat(3), epochs=1, verbose=0)
        runs[name] = {"replicas": strategy.num_replicas_in_sync,
                      "loss": {k: float(v[-1]) for k, v in history.history.items() if "loss" in k},
                      "weights": [np.asarray(v.numpy()).tolist() for v in model.trainable_variables[-1:]]}
        if name == "mirrored":  # every replica holds the same values after the updates
            var = model.trainable_variables[0]
            values = [np.asarray(v) for v in strategy.experimental_local_results(var.value)]
            runs[name]["replicas_equal"] = bool(all(np.array_equal(values[0], v) for v in values))
    out[kind] = runs
json.dump(out, open(sys.argv[1], "w"))
'''


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirrored")
    result = run_all({"mirrored": [sys.executable, "-c", MIRRORED_CHILD, str(root / "out.json")]}, root, root)
    run = result["mirrored"]
    assert run.rc == 0, explain(run)
    return json.loads((root / "out.json").read_text())


@pytest.mark.parametrize("kind", ["vae", "dcgan", "ddpm"])
def test_mirrored_training_on_two_cpu_devices_matches_one_device(mirrored, kind):
    default, mirror = mirrored[kind]["default"], mirrored[kind]["mirrored"]
    assert default["replicas"] == 1 and mirror["replicas"] == 2
    assert mirror["replicas_equal"]
    # Same weights, same batch: the losses agree up to the random draws (noise, t, z), which each
    # replica makes for its half of the batch, so they differ a little from one device's.
    for key, value in default["loss"].items():
        assert np.isfinite(mirror["loss"][key])
        assert mirror["loss"][key] == pytest.approx(value, rel=0.15), key
    a, b = np.asarray(default["weights"][0]), np.asarray(mirror["weights"][0])
    assert np.abs(a - b).max() < 0.05 * max(1.0, np.abs(a).max())


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
