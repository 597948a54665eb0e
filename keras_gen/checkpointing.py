"""Resumable training state: written atomically every N steps and at epoch ends, read by --resume.

A checkpoint is ``<out>/resume/``:

    state.json               progress (epochs done, step in the epoch, global step, wall seconds),
                             the history rows so far, the run's config and the name of ...
    ckpt-00001234.npz        ... every variable that training changes: the model's variables
                             (weights, EMA weights, SeedGenerator states), each optimizer's
                             variables (moments, iteration counter) and any extra NumPy state.

Each file is written under a temporary name and renamed; state.json is replaced last and names its
.npz, so a kill at any moment leaves the previous complete checkpoint in force. Variables are
saved in the order the model creates them and restored with a shape check, which makes a
mismatched model (a different config) fail loudly instead of loading garbage.

``history.csv`` is rewritten from the checkpointed history rows (atomically), so after a resume
it holds each finished epoch exactly once.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path

import keras
import numpy as np

STATE_NAME = "state.json"
FORMAT_VERSION = 1


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; training stopped and the last good checkpoint was kept."""


def atomic_write_bytes(path: Path, data: bytes):
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_keras_atomically(model, path: Path):
    """``model.save`` to a temporary .keras name beside ``path``, then rename over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_history_csv(rows: list[dict], path: Path):
    """The per-epoch history rows as a CSV (columns in first-seen order), written atomically."""
    columns = list(dict.fromkeys(["epoch"] + [k for row in rows for k in row]))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="NA")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def training_variables(model, extra_optimizers=None) -> dict[str, list]:
    """Every variable training changes, by group: the model's, and each optimizer's.

    Optimizers are the model's attributes (``optimizer``, DCGAN's ``d_optimizer``/``g_optimizer``)
    plus ``extra_optimizers`` ({name: optimizer}, e.g. the alternating GAN loop's); all must be
    built (see build_optimizers).
    """
    groups = {"model": list(model.variables)}
    optimizers = {"optimizer": getattr(model, "optimizer", None),
                  "d_optimizer": getattr(model, "d_optimizer", None),
                  "g_optimizer": getattr(model, "g_optimizer", None),
                  **(extra_optimizers or {})}
    for name, optimizer in optimizers.items():
        if optimizer is not None:
            groups[name] = list(optimizer.variables)
    return groups


def build_optimizers(model):
    """Create the optimizers' variables before a restore (Keras builds them lazily on step 1)."""
    if getattr(model, "d_optimizer", None) is not None:  # DCGAN: one optimizer per network
        if not model.d_optimizer.built:
            model.d_optimizer.build(model.discriminator.trainable_variables)
        if not model.g_optimizer.built:
            model.g_optimizer.build(model.generator.trainable_variables)
    elif getattr(model, "optimizer", None) is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


class CheckpointStore:
    """Reads and writes the checkpoints of one run folder (``<out>/resume``)."""

    def __init__(self, directory):
        self.directory = Path(directory)

    @property
    def state_path(self) -> Path:
        return self.directory / STATE_NAME

    def load_state(self) -> dict | None:
        if not self.state_path.exists():
            return None
        try:
            state = json.loads(self.state_path.read_text())
        except ValueError as exc:
            raise ValueError(f"{self.state_path} is not valid JSON ({exc}); the run cannot be resumed") from exc
        if int(state.get("format_version", 0)) > FORMAT_VERSION:
            raise ValueError(f"{self.state_path} was written by a newer keras_gen; upgrade to resume it")
        return state

    def save(self, groups: dict[str, list], state: dict):
        """Write the variables and then the state naming them; drop older .npz files."""
        name = f"ckpt-{state['global_step']:08d}.npz"
        arrays = {f"{group}/{i:05d}": np.asarray(keras.ops.convert_to_numpy(v))
                  for group, variables in groups.items() for i, v in enumerate(variables)}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(self.directory / name, buffer.getvalue())
        state = {**state, "format_version": FORMAT_VERSION, "variables_file": name,
                 "groups": {group: len(variables) for group, variables in groups.items()}}
        atomic_write_bytes(self.state_path, json.dumps(state, indent=1, default=str).encode())
        for old in self.directory.glob("ckpt-*.npz"):
            if old.name != name:
                old.unlink(missing_ok=True)
        return state

    def restore(self, groups: dict[str, list], state: dict):
        """Assign the saved values to ``groups``' variables (the model and its optimizers)."""
        path = self.directory / state["variables_file"]
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        for group, variables in groups.items():
            saved = state["groups"].get(group)
            if saved != len(variables):
                raise ValueError(f"the checkpoint in {self.directory} has {saved} '{group}' variables, "
                                 f"this model has {len(variables)}: it was written by a different model")
            for i, variable in enumerate(variables):
                value = arrays[f"{group}/{i:05d}"]
                if tuple(value.shape) != tuple(variable.shape):
                    raise ValueError(f"checkpoint variable {group}/{i} has shape {value.shape}, the model's "
                                     f"{getattr(variable, 'path', variable.name)} has {tuple(variable.shape)}: a different model")
                variable.assign(value)


def nonfinite_losses(logs) -> list[str]:
    """Names of the loss entries in ``logs`` that are NaN or infinite."""
    bad = []
    for key, value in (logs or {}).items():
        if "loss" in key:
            try:
                if not math.isfinite(float(value)):
                    bad.append(key)
            except (TypeError, ValueError):
                continue
    return bad


class ResumableCheckpoint(keras.callbacks.Callback):
    """Checkpoint every ``every_steps`` steps and at each epoch end; stop on a NaN/Inf loss.

    ``state`` is the progress to continue from (zeros for a new run); ``clock()`` gives the
    cumulative training seconds; ``extra_state()`` optionally returns JSON-able state to keep
    under state["extra"] (e.g. a host RNG's state). A non-finite loss raises TrainingDiverged at
    once, before anything else is saved, so the last checkpoint stays the good one. Put it
    right after WallClock, before callbacks that write per-epoch files.
    """

    def __init__(self, store: CheckpointStore, steps_per_epoch: int, *, every_steps: int = 500,
                 state: dict, history_csv: Path, clock, variables_fn=None, extra_state=None):
        super().__init__()
        self.store, self.steps_per_epoch, self.every_steps = store, int(steps_per_epoch), int(every_steps)
        self.state = dict(state)
        self.history_csv = Path(history_csv)
        self.clock, self.variables_fn, self.extra_state = clock, variables_fn, extra_state

    def _save(self):
        self.state["wall_seconds"] = self.clock()
        if self.extra_state:
            self.state["extra"] = self.extra_state()
        self.store.save((self.variables_fn or training_variables)(self.model), self.state)

    def _diverged(self, keys, epoch, step):
        last = self.store.load_state()
        kept = (f"the last good checkpoint (step {last['global_step']}, epoch {last['epoch'] + 1}) is "
                f"kept in {self.store.directory}" if last else "no checkpoint had been written yet")
        raise TrainingDiverged(f"{', '.join(keys)} became NaN/Inf at epoch {epoch}, step {step}; "
                               f"training stopped and {kept}. Try a lower learning rate or float32.")

    def on_train_batch_end(self, batch, logs=None):
        bad = nonfinite_losses(logs)
        if bad:
            self._diverged(bad, self.state["epoch"] + 1, self.state["step_in_epoch"] + 1)
        self.state["step_in_epoch"] += 1
        self.state["global_step"] += 1
        if self.every_steps and self.state["global_step"] % self.every_steps == 0 \
                and self.state["step_in_epoch"] < self.steps_per_epoch:
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        bad = nonfinite_losses(logs)
        if bad:
            self._diverged(bad, epoch + 1, self.state["step_in_epoch"])
        row = {"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}
        self.state.update(epoch=epoch + 1, step_in_epoch=0, history=self.state["history"] + [row])
        self._save()
        write_history_csv(self.state["history"], self.history_csv)
