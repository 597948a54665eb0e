"""Reliability round two: nothing a user types deletes their files, two runs never share a folder,
per-epoch outputs survive a kill at the epoch's end, interrupted writes are cleaned up, written
files are readable by others, and damaged inputs end in one line. Each test fails on the
release before this one (0.1.0 of 2026-11-29)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_gen.cli import main
from keras_gen.checkpointing import CheckpointError, CheckpointStore, ResumableCheckpoint, training_variables
from keras_gen.presets import get_preset
from keras_gen.runs import RunFolder, RunFolderError

SHIPPED = Path(__file__).resolve().parent.parent / "saved_models"


def run_cli(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    return code, lines, captured


@pytest.fixture(scope="module")
def finished_vae(tmp_path_factory):
    """A finished tiny VAE run folder (trained once for the module)."""
    from keras_gen.training import train

    out = tmp_path_factory.mktemp("finished") / "vae"
    train("vae", get_preset("vae", "tiny", epochs=1), out, verbose=0)
    return out


# ----------------------------------------------------------------- 1. exports never delete others' files

def test_export_refuses_a_foreign_folder_and_keeps_it_intact(finished_vae, tmp_path, capsys):
    target = tmp_path / "precious"
    (target / "sub").mkdir(parents=True)
    (target / "notes.txt").write_text("do not delete")
    (target / "sub" / "data.bin").write_bytes(b"\x00" * 10)
    code, lines, _ = run_cli(["export", finished_vae / "model.keras", "--out", target, "--force"], capsys)
    assert code == 2 and len(lines) == 1 and "not a keras_gen export" in lines[0] and str(target) in lines[0]
    assert (target / "notes.txt").read_text() == "do not delete" and (target / "sub" / "data.bin").exists()
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    code, lines, _ = run_cli(["export", finished_vae / "model.keras", "--out", afile], capsys)
    assert code == 2 and "is not a folder" in lines[0] and afile.read_text() == "x"


def test_export_api_refuses_foreign_targets_and_replaces_exports_only_when_asked(finished_vae, tmp_path):
    import keras

    from keras_gen.export import export_saved_model, read_export_info

    model = keras.models.load_model(finished_vae / "model.keras")
    target = tmp_path / "mine"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    with pytest.raises(ValueError, match="not a keras_gen export"):
        export_saved_model(model, target, overwrite=True)
    assert (target / "keep.txt").exists()
    export_saved_model(model, tmp_path / "exp")
    with pytest.raises(ValueError, match="already holds an export"):
        export_saved_model(model, tmp_path / "exp")
    export_saved_model(model, tmp_path / "exp", overwrite=True, metadata={"note": "second"})
    assert read_export_info(tmp_path / "exp")["note"] == "second"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left


# ----------------------------------------------------------------- 3. one owner per run folder

def test_a_busy_run_folder_is_refused_and_a_dead_owners_lock_is_not(tmp_path, capsys):
    out = tmp_path / "run"
    holder = RunFolder(out)
    holder.claim("vae")
    code, lines, _ = run_cli(["train", "vae", "--preset", "tiny", "--out", out, "--verbose", "0"], capsys)
    assert code == 2 and "in use by another keras-gen process (pid" in lines[0]
    holder.release()
    # a process that holds the lock and is killed leaves the lock file, but not the lock
    child = subprocess.Popen([sys.executable, "-c", "import sys, time; from keras_gen.runs import RunFolder; "
                              "RunFolder(sys.argv[1]).claim('vae'); print('held', flush=True); time.sleep(60)",
                              str(tmp_path / "other")], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    with pytest.raises(RunFolderError, match="in use"):
        RunFolder(tmp_path / "other").claim("vae")
    child.kill()
    child.wait()
    assert RunFolder(tmp_path / "other").claim("vae") is None  # the stale lock file does not block


def test_another_models_run_a_finished_run_and_foreign_files_are_refused(finished_vae, tmp_path, capsys):
    before = sorted(p.relative_to(finished_vae) for p in finished_vae.rglob("*"))
    code, lines, _ = run_cli(["train", "dcgan", "--preset", "tiny", "--out", finished_vae], capsys)
    assert code == 2 and "holds a vae run, not a dcgan one" in lines[0]
    code, lines, _ = run_cli(["train", "vae", "--preset", "tiny", "--out", finished_vae], capsys)
    assert code == 2 and "holds a finished vae run" in lines[0] and "--force" in lines[0]
    assert sorted(p.relative_to(finished_vae) for p in finished_vae.rglob("*")) == before
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    code, lines, _ = run_cli(["train", "vae", "--preset", "tiny", "--out", home], capsys)
    assert code == 2 and "holds no keras_gen run" in lines[0]
    assert sorted(p.name for p in home.iterdir()) == ["thesis.tex"]


def test_force_replaces_only_what_a_run_wrote(tmp_path):
    from keras_gen.training import train

    out = tmp_path / "run"
    train("vae", get_preset("vae", "tiny", epochs=2, limit=128), out, verbose=0)
    (out / "my_notes.txt").write_text("mine")
    train("vae", get_preset("vae", "tiny", epochs=1, limit=128), out, verbose=0, force=True)
    assert (out / "my_notes.txt").read_text() == "mine"
    assert not (out / "checkpoints" / "epoch_002.keras").exists()  # the old run's epoch 2 is gone
    assert json.loads((out / "summary.json").read_text())["training"]["epochs"] == 1


# ----------------------------------------------------------------- 4. per-epoch files vs resume state

def test_a_kill_right_after_the_epoch_checkpoint_loses_no_per_epoch_file(tmp_path, monkeypatch):
    """Simulated kill: the process dies the instant epoch 1's resume state is on disk."""
    from keras_gen.training import train

    out = tmp_path / "run"
    real = ResumableCheckpoint.on_epoch_end

    def dies_after_the_save(self, epoch, logs=None):
        real(self, epoch, logs)
        if epoch == 0:
            raise KeyboardInterrupt("killed (simulated)")

    monkeypatch.setattr(ResumableCheckpoint, "on_epoch_end", dies_after_the_save)
    with pytest.raises(KeyboardInterrupt):
        train("vae", get_preset("vae", "tiny", limit=128), out, verbose=0)
    monkeypatch.undo()
    # leftovers of interrupted writes, as a kill leaves them
    stale = [out / "checkpoints" / ".epoch_002.keras.tmp-4242-abcdef.keras", out / ".saved_model.tmp-x1y2",
             out / ".history.csv.k3j4.tmp", out / "resume" / ".state.json.tmp-1-aa"]
    for path in stale:
        path.mkdir(parents=True) if path.name.startswith(".saved_model") else path.write_bytes(b"half")
    train("vae", None, out, verbose=0, resume=True)
    for epoch in (1, 2):
        assert (out / "checkpoints" / f"epoch_{epoch:03d}.keras").exists(), epoch
        assert (out / "samples" / f"epoch_{epoch:03d}.png").exists(), epoch
    assert not any(p.exists() for p in stale)


# ----------------------------------------------------------------- checkpoints by name

def _tiny_vae():
    from keras_gen.training import prepare_model

    config = {**get_preset("vae", "tiny"), "steps_per_epoch": 8}
    return prepare_model("vae", config)[0]


def test_checkpoint_names_do_not_depend_on_what_the_process_built_before(tmp_path):
    import keras

    first = _tiny_vae()
    for v in first.variables:
        v.assign(np.random.default_rng(0).normal(size=v.shape).astype(v.dtype))
    store = CheckpointStore(tmp_path)
    state = store.save(training_variables(first), {"epoch": 0, "step_in_epoch": 1, "global_step": 1, "history": []})
    for _ in range(3):  # bump Keras' per-process layer numbering (conv2d_7, adam_3, ...)
        keras.layers.Conv2D(2, 3).build((None, 8, 8, 1))
        keras.optimizers.Adam()
    second = _tiny_vae()
    assert [v.path for v in second.variables] != [v.path for v in first.variables]
    store.restore(training_variables(second), state)
    for a, b in zip(first.variables, second.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_renamed_or_missing_checkpoint_variable_is_refused(tmp_path):
    model = _tiny_vae()
    store = CheckpointStore(tmp_path)
    state = store.save(training_variables(model), {"epoch": 0, "step_in_epoch": 1, "global_step": 1, "history": []})
    path = tmp_path / state["variables_file"]
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    key = next(k for k in arrays if k.endswith("kernel"))
    renamed = {**{k: v for k, v in arrays.items() if k != key}, key.replace("kernel", "kernal"): arrays[key]}
    np.savez(path, **renamed)
    with pytest.raises(CheckpointError, match=r"lacks 1 variable.*kernel.*has 1 variable.*kernal"):
        store.restore(training_variables(model), state)
    np.savez(path, **{k: v for k, v in arrays.items() if k != key})
    with pytest.raises(CheckpointError, match=r"different model: it lacks 1 variable"):
        store.restore(training_variables(model), state)
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="missing or damaged"):
        store.restore(training_variables(model), state)


# ----------------------------------------------------------------- files readable by others

def test_exports_figures_and_checkpoints_get_umask_modes(finished_vae):
    mask = os.umask(0o022)
    os.umask(mask)
    for path in [finished_vae / "saved_model", finished_vae / "saved_model" / "variables"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~mask, path
    files = [finished_vae / n for n in ("samples.png", "model.keras", "history.csv", "summary.json")] + \
        list((finished_vae / "saved_model").rglob("*.*")) + list((finished_vae / "resume").iterdir())
    for path in (p for p in files if p.is_file()):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path


# ----------------------------------------------------------------- one error style for damaged inputs

def test_damaged_model_files_end_in_one_line(finished_vae, tmp_path, capsys):
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes((finished_vae / "model.keras").read_bytes()[:5000])
    no_vars = tmp_path / "no_vars"
    shutil.copytree(finished_vae / "saved_model", no_vars)
    shutil.rmtree(no_vars / "variables")
    edited = tmp_path / "edited"
    shutil.copytree(finished_vae / "saved_model", edited)
    (edited / "assets" / "keras_gen.json").write_text("{not json")
    cases = [(["sample", truncated, "--out", tmp_path / "a.png"], "damaged"),
             (["export", truncated, "--out", tmp_path / "e"], "damaged"),
             (["sample", no_vars, "--out", tmp_path / "b.png"], "cannot load the SavedModel"),
             (["sample", edited, "--out", tmp_path / "c.png"], "is not valid JSON")]
    for argv, fragment in cases:
        code, lines, captured = run_cli(argv, capsys)
        assert code == 2 and len(lines) == 1 and fragment in lines[0], (argv, captured.err)
        assert "Traceback" not in captured.err


def test_a_truncated_resume_checkpoint_ends_in_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real = ResumableCheckpoint.on_train_batch_end

    def dies_at_step_4(self, batch, logs=None):
        real(self, batch, logs)
        if self.state["global_step"] == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(ResumableCheckpoint, "on_train_batch_end", dies_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        from keras_gen.training import train
        train("vae", get_preset("vae", "tiny", limit=128), out, verbose=0, checkpoint_every=3)
    monkeypatch.undo()
    state = json.loads((out / "resume" / "state.json").read_text())
    (out / "resume" / state["variables_file"]).write_bytes(b"truncated")
    code, lines, _ = run_cli(["train", "vae", "--resume", "--out", out, "--verbose", "0"], capsys)
    assert code == 2 and len(lines) == 1 and "missing or damaged" in lines[0]


def test_disk_full_and_permission_denied_exit_1_naming_the_file(tmp_path, capsys, monkeypatch):
    """The OS errors are simulated (this machine's tests run as root and on a roomy disk)."""
    import keras_gen.files as files

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("keras_gen.runs.atomic_write_bytes", full)
    code, lines, _ = run_cli(["train", "vae", "--preset", "tiny", "--out", tmp_path / "r"], capsys)
    assert code == 1 and len(lines) == 1 and "the disk is full" in lines[0] and "run.json" in lines[0]
    monkeypatch.undo()

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x.png"))

    monkeypatch.setattr(files, "make_public", denied)
    code, lines, _ = run_cli(["sample", SHIPPED / "vae", "--n", "4", "--out", tmp_path / "x.png"], capsys)
    assert code == 1 and len(lines) == 1 and "permission denied" in lines[0] and "x.png" in lines[0]


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(capsys, monkeypatch):
    import keras_gen.cli as cli

    real = cli.build_parser

    def parser_with_a_bug():
        parser = real()
        data = next(a for a in parser._subparsers._group_actions).choices["data"]
        data._subparsers._group_actions[0].choices["info"].set_defaults(
            func=lambda args: (_ for _ in ()).throw(RuntimeError("something unforeseen")))
        return parser

    monkeypatch.setattr(cli, "build_parser", parser_with_a_bug)
    code, lines, captured = run_cli(["data", "info"], capsys)
    assert code == 1 and len(lines) == 1 and "RuntimeError: something unforeseen" in lines[0] and "--debug" in lines[0]
    assert "Traceback" not in captured.err
    with pytest.raises(RuntimeError, match="unforeseen"):
        cli.main(["data", "info", "--debug"])


# ----------------------------------------------------------------- a user-written PNG is not replaced

def test_sample_does_not_overwrite_an_image_keras_gen_did_not_write(tmp_path, capsys):
    photo = tmp_path / "holiday.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"user's photo")
    code, lines, _ = run_cli(["sample", SHIPPED / "vae", "--n", "4", "--out", photo], capsys)
    assert code == 2 and "was not written by keras-gen" in lines[0]
    assert photo.read_bytes().endswith(b"user's photo")
    ours = tmp_path / "grid.png"
    assert run_cli(["sample", SHIPPED / "vae", "--n", "4", "--out", ours], capsys)[0] == 0
    assert run_cli(["sample", SHIPPED / "vae", "--n", "4", "--seed", "1", "--out", ours], capsys)[0] == 0  # ours: replaced
    assert run_cli(["sample", SHIPPED / "vae", "--n", "4", "--out", photo, "--force"], capsys)[0] == 0
