"""The model contract: a model kind defined outside the package (tests/plugins/toy_kind.py,
registered through the public API) trains, resumes after SIGKILL, exports, samples and is
evaluated through the real `keras-gen` command with no edit to keras_gen/."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from subprocess_jobs import explain, finish, run_cli_commands, start

KERAS_GEN = str(Path(sys.executable).parent / "keras-gen")
TESTS = Path(__file__).resolve().parent
PLUGIN = {"KERAS_GEN_PLUGINS": "plugins.toy_kind", "PYTHONPATH": str(TESTS)}
TRAIN = [KERAS_GEN, "train", "pixel_bernoulli", "--preset", "tiny", "--verbose", "0", "--checkpoint-every", "5"]


def _state(run):
    try:
        return json.loads((run / "resume" / "state.json").read_text())
    except (OSError, ValueError):
        return None


def _final_arrays(run):
    state = _state(run)
    with np.load(run / "resume" / state["variables_file"]) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Runs of the toy kind: uninterrupted, and killed mid-epoch then resumed; then export,
    sample and evaluate of the results, all through the CLI (those four in one child process)."""
    root = tmp_path_factory.mktemp("toy_kind")
    straight = start(TRAIN + ["--out", str(root / "straight")], root, "straight", root, PLUGIN)
    killed = start(TRAIN + ["--out", str(root / "killed")], root, "killed", root, PLUGIN)
    unknown = start(TRAIN[:3] + ["--out", str(root / "nope")], root, "unknown_without_plugin", root)
    kill_state, deadline = None, time.monotonic() + 300
    while kill_state is None and time.monotonic() < deadline:
        state = _state(root / "killed")
        if killed[0].poll() is not None:
            kill_state = ("finished before a kill", state)
        elif state is not None and state["step_in_epoch"] > 0:
            killed[0].send_signal(signal.SIGKILL)
            killed[0].wait()
            kill_state = (killed[0].returncode, _state(root / "killed"))
        time.sleep(0.005)
    runs = {"straight": finish(straight, 300)}
    runs["resume"] = finish(start([KERAS_GEN, "train", "pixel_bernoulli", "--resume", "--verbose", "0",
                                   "--out", str(root / "killed")], root, "resume", root, PLUGIN), 300)
    # export, sample (the export and the .keras file) and evaluate, in turn in one child process
    runs.update(run_cli_commands({
        "export": ["export", root / "straight" / "model.keras", "--out", root / "exported"],
        "sample_export": ["sample", root / "exported", "--n", "16", "--out", root / "export.png"],
        "sample_keras": ["sample", root / "straight" / "model.keras", "--n", "16", "--out", root / "keras.png"],
        "evaluate": ["evaluate", root / "straight" / "saved_model", "--n", "40", "--no-references",
                     "--json", root / "report.json"],
    }, root, root, env=PLUGIN, timeout=300))
    runs["unknown_without_plugin"] = finish(unknown, 300)
    return root, kill_state, runs


def test_a_plugin_kind_trains_and_resumes_after_sigkill_bitwise(toy):
    root, (rc, state_at_kill), runs = toy
    assert runs["straight"].rc == 0, explain(runs["straight"])
    assert rc == -signal.SIGKILL and state_at_kill["step_in_epoch"] > 0, (rc, state_at_kill)
    assert runs["resume"].rc == 0, explain(runs["resume"])
    assert "resuming" in runs["resume"].stdout
    straight, resumed = _final_arrays(root / "straight"), _final_arrays(root / "killed")
    assert sorted(straight) == sorted(resumed) and any("logits" in k for k in straight)
    for key in straight:
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)
    # the run folder's layout, as for every built-in kind
    for name in ("model.keras", "saved_model/saved_model.pb", "samples.png", "history.csv", "summary.json",
                 "samples/epoch_000.png", "samples/epoch_002.png", "checkpoints/epoch_002.keras"):
        assert (root / "killed" / name).exists(), name
    assert json.loads((root / "killed" / "run.json").read_text())["kind"] == "pixel_bernoulli"


def test_a_plugin_kind_exports_samples_and_evaluates(toy):
    root, _, runs = toy
    for name in ("export", "sample_keras", "sample_export", "evaluate"):
        assert runs[name].rc == 0, f"{name}: {explain(runs[name])}"
    info = json.loads((root / "exported" / "assets" / "keras_gen.json").read_text())
    assert info["kind"] == "pixel_bernoulli" and info["network_passes"] == 1
    assert info["training"]["steps"] == 2 * 256  # the run's facts, read from its run folder
    report = json.loads((root / "report.json").read_text())
    [row] = report["rows"]
    assert row["kind"] == "pixel_bernoulli" and row["n"] == 40 and np.isfinite(row["fid"])
    assert (root / "keras.png").stat().st_size > 0 and (root / "export.png").stat().st_size > 0


def test_an_unregistered_kind_is_refused_with_the_list(toy):
    _, _, runs = toy
    result = runs["unknown_without_plugin"]
    assert result.rc == 2
    [line] = [ln for ln in result.stderr.splitlines() if ln.startswith("keras-gen: error:")]
    assert "unknown model kind 'pixel_bernoulli'; choose from autoencoder, dcgan, ddpm, distilled, distilled_latent, flow, latent_ddpm, vae" in line
