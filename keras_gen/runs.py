"""The run folder: one object owns the output layout of a training run, for writing and reading.

Layout of a run folder (``keras-gen train ... --out DIR``)::

    run.json                    which kind of model this folder holds (written at the first start)
    run.lock                    held (flock) by the one process writing the run; records its pid
    samples/epoch_000.png ...   grids from fixed seeds, before training and after each epoch
    checkpoints/epoch_001.keras the whole model after each epoch
    resume/                     the latest training state (keras_gen.checkpointing), for --resume
    history.csv                 per-epoch metrics and wall-clock seconds
    loss_curve.png              the same as a figure
    samples.png                 64 final samples (and class_grid.png for a conditional model)
    model.keras                 the whole model (keras.models.load_model)
    saved_model/                SavedModel with the serving contract (keras_gen.export)
    summary.json                config, wall time, steps and output paths

Ownership rules (``RunFolder.claim``): a folder is written by one process at a time (a second
``keras-gen train`` on it is refused while the first runs; the lock of a killed process is
released by the kernel, so stale locks never block); a folder holding another kind's run, a
finished run (without ``force``), an unfinished run (without ``resume``) or files that are not a
keras_gen run is refused with one line naming it. Temporaries of interrupted writes are removed
when the folder is claimed again.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import shutil
import time
from pathlib import Path

from keras_gen.checkpointing import CheckpointStore
from keras_gen.files import atomic_write_bytes, remove_stale_temporaries

MARKER = "run.json"
LOCK = "run.lock"


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (busy, another model's, not a run)."""


class RunFolder:
    """The files of one training run (see the module docstring for the layout and the rules)."""

    def __init__(self, path):
        self.path = Path(path)
        self._lock_fd = None

    # ----------------------------------------------------------------- layout
    samples_dir = property(lambda self: self.path / "samples")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")
    resume_dir = property(lambda self: self.path / "resume")
    history_csv = property(lambda self: self.path / "history.csv")
    loss_curve = property(lambda self: self.path / "loss_curve.png")
    samples_png = property(lambda self: self.path / "samples.png")
    class_grid = property(lambda self: self.path / "class_grid.png")
    model_keras = property(lambda self: self.path / "model.keras")
    saved_model = property(lambda self: self.path / "saved_model")
    summary_json = property(lambda self: self.path / "summary.json")
    marker = property(lambda self: self.path / MARKER)
    # what the run writes (and what `force` may replace): never anything else in the folder
    OWNED = ("samples", "checkpoints", "resume", "history.csv", "loss_curve.png", "samples.png",
             "class_grid.png", "model.keras", "saved_model", "summary.json")

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.checkpoints_dir / f"epoch_{epoch:03d}.keras"

    # ----------------------------------------------------------------- reading
    def kind(self) -> str | None:
        """The kind of model this folder holds (run.json, or summary.json of earlier releases)."""
        for path in (self.marker, self.summary_json):
            info = _read_json(path)
            if isinstance(info, dict) and info.get("kind"):
                return str(info["kind"])
        return None

    def is_run(self) -> bool:
        return self.marker.exists() or self.summary_json.exists() or (self.resume_dir / "state.json").exists()

    def summary(self) -> dict | None:
        return _read_json(self.summary_json)

    def history(self) -> list[dict]:
        """The per-epoch rows of history.csv (strings as written)."""
        if not self.history_csv.exists():
            return []
        with open(self.history_csv, newline="") as f:
            return list(csv.DictReader(f))

    @classmethod
    def of_keras_file(cls, keras_path) -> tuple["RunFolder", int | None]:
        """The run a .keras file belongs to and, for ``checkpoints/epoch_XXX.keras``, its epoch."""
        keras_path = Path(keras_path)
        name = keras_path.stem
        if keras_path.parent.name == "checkpoints" and name.startswith("epoch_") and name[6:].isdigit():
            return cls(keras_path.parent.parent), int(name[6:])
        return cls(keras_path.parent), None

    def training_facts(self, epoch: int | None = None) -> dict:
        """The training facts an export of this run records (dataset, preset, config, training,
        machine), from summary.json; for an epoch checkpoint the epochs, steps, wall time and
        metrics at the end of that epoch, from history.csv. {} when the run has no summary."""
        facts = self.summary() or {}
        metadata = {k: facts[k] for k in ("dataset", "preset", "train_config", "training", "machine") if k in facts}
        if epoch is None or "training" not in metadata:
            return metadata
        row = next((r for r in self.history() if r.get("epoch", "").isdigit() and int(r["epoch"]) + 1 == epoch), None)
        if row is None:
            return metadata
        training = metadata["training"]
        steps_per_epoch = metadata.get("train_config", {}).get("steps_per_epoch") \
            or training["steps"] // training["epochs"]
        clocks = ("wall_seconds", "cpu_seconds")
        metadata["training"] = {
            "epochs": epoch, "steps": epoch * steps_per_epoch,
            **{k: round(float(row[k]), 1) for k in clocks if row.get(k) not in ("", "NA", None)},
            "final_metrics": {k: float(v) for k, v in row.items()
                              if k not in ("epoch", *clocks) and v not in ("", "NA", None)},
            "checkpoint_of": f"{training['epochs']}-epoch run"}
        metadata["train_config"] = {**metadata.get("train_config", {}), "epochs": epoch}
        return metadata

    # ----------------------------------------------------------------- claiming for writing
    def claim(self, kind: str, *, resume: bool = False, force: bool = False) -> dict | None:
        """Take this folder for a ``kind`` run (see the module docstring).

        Returns the resume state to continue from (``resume=True``) or None (a new run). Raises
        RunFolderError with one line naming the folder (also when it cannot be written).
        Release with `release` (or use the object as a context manager).
        """
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"--out {self.path} is a file, not a folder: choose another --out")
        if self.path.is_dir() and not self.is_run() and _has_visible_entries(self.path):
            raise RunFolderError(f"{self.path} is not empty and holds no keras_gen run: choose a new "
                                 "or empty --out folder (nothing in it was changed)")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise RunFolderError(f"output folder {self.path} is not writable: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderError(f"{self.path} is in use by another keras-gen process ({owner}): wait for it "
                                 "to finish or choose another --out") from None
        self._lock_fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {os.uname().nodename} since "
                         f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            state = self._check_ownership(kind, resume, force)
            remove_stale_temporaries(self.path)
            if force and not resume:
                self._remove_owned()
            if not self.marker.exists():
                atomic_write_bytes(self.marker, json.dumps(
                    {"kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1).encode())
        except BaseException:
            self.release()
            raise
        return state

    def _check_ownership(self, kind, resume, force) -> dict | None:
        held = self.kind()
        if held is not None and held != kind:
            raise RunFolderError(f"{self.path} holds a {held} run, not a {kind} one: choose another --out")
        state = CheckpointStore(self.resume_dir).load_state()
        if resume:
            if state is None:
                raise RunFolderError(f"nothing to resume: {self.resume_dir / 'state.json'} does not exist")
            if state.get("finished"):
                raise RunFolderError(f"the run in {self.path} already finished all its epochs")
            return state
        if state is not None and not state.get("finished") and not force:
            raise RunFolderError(f"{self.path} holds an unfinished run (epoch {state['epoch']}, step "
                                 f"{state['global_step']}): pass --resume to continue it, or use another --out")
        if (state is not None or self.summary_json.exists()) and not force:
            raise RunFolderError(f"{self.path} holds a finished {held or kind} run: choose another --out, "
                                 "or pass --force (Python: force=True) to replace it")
        return None

    def _remove_owned(self):
        """Remove what an earlier run wrote here (only the run's own files) before a forced restart."""
        for name in self.OWNED:
            target = self.path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()

    def release(self):
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _has_visible_entries(folder: Path) -> bool:
    return any(not entry.name.startswith(".") for entry in folder.iterdir())
