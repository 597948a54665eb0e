"""Long runs survive interruption: SIGKILL mid-epoch, --resume, and the run ends exactly where an
uninterrupted one does; a NaN loss stops training and keeps the last good checkpoint; partial
writes never replace good files.

The kill tests run the real console command (`keras-gen train <model> --preset tiny`) in child
processes: for each model one uninterrupted run and one that is killed with SIGKILL as soon as a
mid-epoch checkpoint exists, then resumed. On this CPU the resumed run's final variables (model,
EMA, optimizer moments and step counters, SeedGenerator states) are bitwise equal to the
uninterrupted run's; the comparison allows 1e-6 for platforms whose kernels are not bitwise
deterministic.
"""

from __future__ import annotations

import csv
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import final_arrays, read_state
from keras_gen.checkpointing import (CheckpointStore, TrainingDiverged, nonfinite_losses,
                                     write_history_csv)
from subprocess_jobs import cli_commands_in_one_child, explain, finish_cli_commands, start

# conftest.TINY_TRAIN_JOBS: vae, ddpm, dcgan --loop alternating, flow, latent_ddpm (on the session's
# tiny autoencoder run: last, as its command waits for that run)
JOBS = ("vae", "ddpm", "alternating", "flow", "latent_ddpm")
STEPS_PER_EPOCH, EPOCHS = 8, 2  # tiny presets: 512 images in batches of 64 (DDPM, flow, latent DDPM: 256 in 32s)


@pytest.fixture(scope="module")
def kill_and_resume(tmp_path_factory, tiny_train_runs):
    """{job: namespace(straight, killed, resume, killed_dir, straight_dir)} for each job.

    The uninterrupted runs are the session's (conftest.tiny_train_runs: the same command and flags,
    shared with test_export.py and test_ddpm.py); the killed ones are started here beside them."""
    root = tmp_path_factory.mktemp("resume")
    tiny_train_runs.start(*JOBS)
    jobs = {}
    for name in JOBS:
        cmd = tiny_train_runs.command(name)[:-1] + [str(root / name / "killed")]  # the same command, another --out
        jobs[name] = {"killed": start(cmd, root, f"{name}_killed", root), "dir": root / name / "killed"}
    # Kill each of these runs the moment a checkpoint from inside an epoch is on disk.
    killed_state = {}
    deadline = time.monotonic() + 600
    while len(killed_state) < len(jobs) and time.monotonic() < deadline:
        for name, job in jobs.items():
            process = job["killed"][0]
            if name in killed_state:
                continue
            state = read_state(job["dir"])
            if process.poll() is not None:
                killed_state[name] = ("finished before a kill", state)
            elif state is not None and state["step_in_epoch"] > 0:
                process.send_signal(signal.SIGKILL)
                process.wait()
                killed_state[name] = (process.returncode, read_state(job["dir"]))
        time.sleep(0.01)
    # The five resumes one after the other in one child (one TensorFlow start-up, not five): each
    # must still end where its uninterrupted run ended, whatever ran before it in the process.
    resumes = cli_commands_in_one_child(
        {name: ["train", tiny_train_runs.kind(name), "--resume", "--verbose", "0", "--out", job["dir"]]
         for name, job in jobs.items()}, root, root, name="resumes", slot=True)
    results = {name: tiny_train_runs.result(name) for name in jobs}
    resumed = finish_cli_commands(resumes, timeout=1200)
    return {name: SimpleNamespace(straight=results[name], killed=killed_state.get(name), resume=resumed[name],
                                  straight_dir=results[name].out, killed_dir=jobs[name]["dir"])
            for name in jobs}


@pytest.mark.parametrize("name", JOBS)
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(kill_and_resume, name):
    run = kill_and_resume[name]
    assert run.straight.rc == 0, explain(run.straight)
    rc, state_at_kill = run.killed
    assert rc == -signal.SIGKILL, f"the run was not killed mid-epoch: {rc}"
    assert state_at_kill["step_in_epoch"] > 0 and not state_at_kill.get("finished")
    assert run.resume.rc == 0, explain(run.resume)
    assert (f"at epoch {state_at_kill['epoch'] + 1}, step {state_at_kill['step_in_epoch']}"
            in run.resume.stdout), run.resume.stdout

    straight_state, straight = final_arrays(run.straight_dir)
    resumed_state, resumed = final_arrays(run.killed_dir)
    # the step counter continued from the checkpoint instead of restarting
    assert resumed_state["global_step"] == straight_state["global_step"] >= EPOCHS * STEPS_PER_EPOCH
    assert resumed_state["resumes"] == 1 and resumed_state["finished"]
    assert sorted(resumed) == sorted(straight)
    assert any(k.startswith("optimizer") or "optimizer" in k for k in resumed)  # optimizer state is in
    for key in straight:
        np.testing.assert_allclose(resumed[key], straight[key], rtol=0, atol=1e-6, err_msg=key)

    # history.csv: each epoch once; the last (whole) epoch's losses equal the uninterrupted run's
    def rows(run_dir):
        with open(run_dir / "history.csv") as f:
            return list(csv.DictReader(f))
    got, want = rows(run.killed_dir), rows(run.straight_dir)
    assert [r["epoch"] for r in got] == [r["epoch"] for r in want] == [str(e) for e in range(EPOCHS)]
    for key in (k for k in want[-1] if "loss" in k):
        assert float(got[-1][key]) == pytest.approx(float(want[-1][key]), abs=1e-5)
    # and the finished run's outputs exist, as after any run
    for output in ("model.keras", "saved_model/saved_model.pb", "samples.png", "summary.json"):
        assert (run.killed_dir / output).exists(), output


def test_a_finished_run_cannot_be_resumed_and_an_unfinished_one_is_not_overwritten(kill_and_resume, tmp_path):
    from keras_gen.presets import get_preset
    from keras_gen.training import train

    finished = kill_and_resume["vae"].straight_dir
    with pytest.raises(ValueError, match="already finished"):
        train("vae", get_preset("vae", "tiny"), finished, resume=True)
    store = CheckpointStore(tmp_path / "resume")
    store.save({"model": []}, {"epoch": 1, "step_in_epoch": 2, "global_step": 10, "history": []})
    with pytest.raises(ValueError, match="unfinished run .*--resume"):
        train("vae", get_preset("vae", "tiny"), tmp_path)


# ------------------------------------------------------------------------------- NaN guard


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """A NaN in the 6th batch: training stops there, the step-3 checkpoint stays, no outputs."""
    import keras_gen.training as training
    from keras_gen.presets import get_preset

    real_make_dataset = training.make_dataset

    def poisoned(*args, **kwargs):  # the real pipeline, with one batch made NaN after it
        ds = real_make_dataset(*args, **kwargs)
        return ds.enumerate().map(lambda i, x: tf.where(i == 5, tf.fill(tf.shape(x), float("nan")), x))

    monkeypatch.setattr(training, "make_dataset", poisoned)
    with pytest.raises(TrainingDiverged, match=r"loss.* became NaN/Inf at epoch 1, step 6.*checkpoint \(step 3, epoch 1\)"):
        training.train("vae", get_preset("vae", "tiny"), tmp_path, verbose=0, checkpoint_every=3)
    state = read_state(tmp_path)
    assert state["global_step"] == 3 and not state.get("finished")
    with np.load(tmp_path / "resume" / state["variables_file"]) as data:
        assert all(np.isfinite(data[k]).all() for k in data.files)
    assert not (tmp_path / "model.keras").exists() and not (tmp_path / "saved_model").exists()


def test_the_cli_reports_divergence_in_one_line_with_exit_1(tmp_path, monkeypatch, capsys):
    import keras_gen.training as training
    from keras_gen.cli import main

    real_make_dataset = training.make_dataset
    monkeypatch.setattr(training, "make_dataset", lambda *a, **k: real_make_dataset(*a, **k).map(
        lambda x: x * float("inf")))
    code = main(["train", "vae", "--preset", "tiny", "--out", str(tmp_path), "--verbose", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "became NaN/Inf at epoch 1, step 1" in err[0]
    assert "no checkpoint had been written yet" in err[0]


def test_nonfinite_losses_looks_only_at_losses():
    assert nonfinite_losses({"loss": float("nan"), "kl_loss": 1.0, "acc": float("inf")}) == ["loss"]
    assert nonfinite_losses({"g_loss": np.float32("inf"), "d_loss": 0.5}) == ["g_loss"]
    assert nonfinite_losses({"loss": 0.1}) == [] and nonfinite_losses(None) == []


# --------------------------------------------------------------------------- atomic writes


def test_a_crash_while_writing_the_history_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "history.csv"
    write_history_csv([{"epoch": 0, "loss": 1.0}], path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_history_csv([{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}], path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv"]  # no temporary file left


def test_a_crash_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path)
    v = keras.Variable(np.arange(3, dtype="float32"))
    store.save({"model": [v]}, {"epoch": 0, "step_in_epoch": 3, "global_step": 3, "history": []})
    v.assign([9.0, 9.0, 9.0])
    real_replace = os.replace

    def crash_on_state(src, dst):  # the new .npz lands, the state.json rename does not
        if str(dst).endswith("state.json"):
            raise OSError("killed (simulated)")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_state)
    with pytest.raises(OSError):
        store.save({"model": [v]}, {"epoch": 0, "step_in_epoch": 6, "global_step": 6, "history": []})
    monkeypatch.undo()
    state = store.load_state()
    assert state["global_step"] == 3
    store.restore({"model": [v]}, state)
    np.testing.assert_array_equal(v.numpy(), [0.0, 1.0, 2.0])


def test_restoring_into_a_different_model_fails_loudly(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save({"model": [keras.Variable(np.zeros((2, 3), "float32"))]},
               {"epoch": 1, "step_in_epoch": 0, "global_step": 8, "history": []})
    state = store.load_state()
    with pytest.raises(ValueError, match="shape"):
        store.restore({"model": [keras.Variable(np.zeros((3, 2), "float32"))]}, state)
    with pytest.raises(ValueError, match="different model"):
        store.restore({"model": []}, state)


# ----------------------------------------------------------------------------- data order


def test_the_epoch_stream_depends_only_on_seed_and_epoch(mnist_sample):
    from keras_gen.data import dataset_from_arrays

    images, labels = mnist_sample
    images, labels = images[:40], labels[:40]

    def batches(**kwargs):
        ds = dataset_from_arrays(images, labels, 16, with_labels=True, seed=3, epochs=3, **kwargs)
        return [y.numpy().tolist() for _, y in ds]

    full = batches()
    assert len(full) == 3 * 3  # 40 images in batches of 16: 3 per epoch, the last one short
    assert full[:3] != full[3:6]  # each epoch has its own order...
    assert sorted(sum(full[:3], [])) == sorted(labels.tolist())  # ...of every image once
    assert batches(start_epoch=1, skip_batches=2) == full[5:]  # a resume sees the same batches
    assert batches() == full


def test_a_cpu_budget_ends_the_run_early_as_finished(tmp_path):
    """`train(..., max_cpu_minutes=M)` stops at the first batch end after M minutes of CPU time and
    finishes the run there: outputs written, the summary says so, and the run cannot be resumed."""
    from keras_gen.presets import get_preset
    from keras_gen.training import train

    config = get_preset("vae", "tiny")  # 2 epochs of 8 steps
    run_dir = tmp_path / "budget"
    summary = train("vae", config, run_dir, verbose=0, max_cpu_minutes=1e-4)  # 6 ms: one step's worth
    training = summary["training"]
    assert training["stopped"] == "cpu budget" and summary["train_config"]["max_cpu_minutes"] == 1e-4
    assert training["steps"] == 1 and training["epochs"] == 1 and training["cpu_seconds"] >= 0.006
    state = read_state(run_dir)
    assert state["finished"] and state["global_step"] == 1 and state["cpu_seconds"] >= training["cpu_seconds"]
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and float(rows[0]["cpu_seconds"]) > 0
    assert (run_dir / "saved_model" / "saved_model.pb").exists() and (run_dir / "model.keras").exists()
    with pytest.raises(ValueError, match="already finished"):
        train("vae", None, run_dir, resume=True)
    # the machine facts name the instruction sets that set the speed (grep of /proc/cpuinfo)
    import re

    from keras_gen.machine import SPEED_FLAGS
    flags_line = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    assert summary["machine"]["cpu_flags"] == [f for f in SPEED_FLAGS if re.search(rf"\s{f}(\s|$)", flags_line)]


def test_the_training_clocks_start_once_and_carry_their_offset():
    """A resumed run's clock continues from its recorded offset, and a second fit phase of the same
    run does not restart it (WallClock and CPUClock differ only in the clock they read)."""
    from keras_gen.callbacks import CPUClock, TrainingClock, WallClock

    readings = iter([100.0, 103.0, 107.0, 112.0])

    class CountingClock(TrainingClock):
        key, now = "counted_seconds", staticmethod(lambda: next(readings))

    clock = CountingClock(offset=5.0)
    assert clock.elapsed() == 5.0  # not started yet: the offset alone
    clock.on_train_begin()  # reads 100
    logs = {}
    clock.on_epoch_end(0, logs)  # reads 103
    assert logs == {"counted_seconds": 8.0}
    clock.on_train_begin()  # a second fit phase: no new start
    clock.on_epoch_end(1, logs)  # reads 107
    assert logs == {"counted_seconds": 12.0}
    assert (WallClock.key, CPUClock.key) == ("wall_seconds", "cpu_seconds")
    assert (WallClock.now, CPUClock.now) == (time.perf_counter, time.process_time)
