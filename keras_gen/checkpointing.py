"""Resumable training state: written atomically every N steps and at epoch ends, read by --resume.

A checkpoint is ``<run>/resume/``:

    state.json               progress (epochs done, step in the epoch, global step, wall seconds),
                             the history rows so far, the run's config and the name of ...
    ckpt-00001234.npz        ... every variable that training changes, stored by name: the model's
                             variables (weights, EMA weights, SeedGenerator states), each
                             optimizer's variables (moments, iteration counter) and any extra state.

Variables are keyed ``<group>/<name>`` where the name is the variable's Keras path with the
per-process layer numbering (``conv2d_7`` when six other conv layers were built earlier in the
process) replaced by the numbering within the model itself, and an optimizer slot is named after
the model variable it belongs to (``optimizer/<variable name>:momentum``). A restore matches by
those names and refuses, naming the variables, a checkpoint with a missing, extra, renamed or
differently shaped variable: a changed model never loads garbage by position.

Each file is written under a temporary name and renamed (keras_gen.files); state.json is replaced
last and names its .npz, so a kill at any moment leaves the previous complete checkpoint in force.
``history.csv`` is rewritten from the checkpointed history rows, so after a resume it holds each
finished epoch exactly once.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import math
import re
import zipfile
from pathlib import Path

import keras
import numpy as np

from keras_gen.files import atomic_write_bytes

STATE_NAME = "state.json"
FORMAT_VERSION = 2  # 1: variables stored by position (keras_gen 0.1 before the named store)
_AUTO_NUMBER = re.compile(r"_\d+$")


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; training stopped and the last good checkpoint was kept."""


class CheckpointError(ValueError):
    """A resume checkpoint that cannot be used (damaged, or written by a different model)."""


def write_history_csv(rows: list[dict], path: Path):
    """The per-epoch history rows as a CSV (columns in first-seen order), written atomically."""
    columns = list(dict.fromkeys(["epoch"] + [k for row in rows for k in row]))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="NA")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def training_variables(model, extra_optimizers=None) -> dict[str, list]:
    """Every variable training changes, by group: the model's (``ModelKind.checkpointed_variables``),
    and each optimizer's.

    Optimizers are those the model's kind names (``ModelKind.optimizers``; default the model's
    ``optimizer``) plus ``extra_optimizers`` ({name: optimizer}, e.g. a custom loop's); all must
    be built (see build_optimizers).
    """
    from keras_gen.models.kinds import kind_of, model_optimizers

    groups = {"model": kind_of(model).checkpointed_variables(model)}
    for name, optimizer in {**model_optimizers(model), **(extra_optimizers or {})}.items():
        groups[name] = list(optimizer.variables)
    return groups


def build_optimizers(model):
    """Create the optimizers' variables before a restore (Keras builds them lazily on step 1),
    each on the variables it trains (``ModelKind.optimizer_targets``)."""
    from keras_gen.models.kinds import optimizer_targets

    for optimizer, variables in optimizer_targets(model):
        if not optimizer.built:
            optimizer.build(variables)


def canonical_paths(paths, auto_number=_AUTO_NUMBER) -> list[str]:
    """``/``-separated paths with per-process auto-numbering (``auto_number``: a regex of the
    suffix, e.g. Keras' "dense_3") renumbered by first appearance within the list, so two
    processes that built the same model in a different context give the same names."""
    mapping, counts, names = {}, collections.Counter(), []
    for path in paths:
        parts = []
        for token in path.split("/"):
            if token not in mapping:
                base = auto_number.sub("", token)
                mapping[token] = base if counts[base] == 0 else f"{base}_{counts[base]}"
                counts[base] += 1
            parts.append(mapping[token])
        names.append("/".join(parts))
    return names


def _unique(names: list[str]) -> list[str]:
    """Names made unique by occurrence (``name#2``): e.g. an EMA copy built from the same config."""
    seen = collections.Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def variable_names(variables) -> list[str]:
    """Stable names of a model's ``variables``, unique within the list (``canonical_paths``, then
    ``#2`` on a repeated path): Keras paths alone repeat, e.g. an EMA U-Net's are its U-Net's."""
    return _unique(canonical_paths([v.path for v in variables]))


def variable_keys(groups: dict[str, list]) -> dict[str, object]:
    """{"<group>/<stable name>": variable} for a training_variables() dict (see module docstring)."""
    model_vars = groups.get("model", [])
    model_names = canonical_paths([v.path for v in model_vars])
    flat = {v.path.replace("/", "_"): name for v, name in zip(model_vars, model_names)}
    keys = {}
    for group, variables in groups.items():
        if group == "model":
            names = model_names
        else:
            names = []
            for v in variables:
                local = v.path.split("/", 1)[-1]  # drop the optimizer's own (numbered) name
                owner = max((k for k in flat if local.startswith(k + "_")), key=len, default=None)
                names.append(f"{flat[owner]}:{local[len(owner) + 1:]}" if owner else local)
        for name, v in zip(_unique(names), variables):
            keys[f"{group}/{name}"] = v
    return keys


class CheckpointStore:
    """Reads and writes the checkpoints of one run folder (``<run>/resume``)."""

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
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{self.state_path} is not valid JSON ({exc}); the run cannot be "
                                  "resumed: start it again in a new --out folder") from exc
        if not isinstance(state, dict) or "global_step" not in state:
            raise CheckpointError(f"{self.state_path} is not a keras_gen resume state; the run cannot be resumed")
        version = int(state.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise CheckpointError(f"{self.state_path} was written by a newer keras_gen; upgrade to resume it")
        return state

    def save(self, groups: dict[str, list], state: dict):
        """Write the variables and then the state naming them; drop older .npz files."""
        name = f"ckpt-{state['global_step']:08d}.npz"
        arrays = {key: np.asarray(keras.ops.convert_to_numpy(v)) for key, v in variable_keys(groups).items()}
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
        """Assign the saved values to ``groups``' variables (the model and its optimizers), by name."""
        if int(state.get("format_version", 0)) < FORMAT_VERSION:
            raise CheckpointError(f"{self.state_path} stores variables by position (an older keras_gen): "
                                  "it cannot be matched by name; start the run again in a new --out folder")
        path = self.directory / str(state.get("variables_file"))
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise CheckpointError(f"the checkpoint {path} is missing or damaged ({exc}); the run cannot "
                                  "be resumed: start it again in a new --out folder") from exc
        wanted = variable_keys(groups)
        missing = sorted(set(wanted) - set(arrays))
        extra = sorted(set(arrays) - set(wanted))
        if missing or extra:
            def some(keys):
                return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            problems = ([f"it lacks {len(missing)} variable(s) this model has ({some(missing)})"] if missing else []) + \
                       ([f"it has {len(extra)} variable(s) this model lacks ({some(extra)})"] if extra else [])
            raise CheckpointError(f"the checkpoint {path} was written by a different model: "
                                  f"{'; '.join(problems)}")
        for key, variable in wanted.items():
            value = arrays[key]
            if tuple(value.shape) != tuple(variable.shape):
                raise CheckpointError(f"checkpoint variable {key} has shape {value.shape}, the model's has "
                                      f"{tuple(variable.shape)}: the checkpoint was written by a different model")
        for key, variable in wanted.items():
            variable.assign(arrays[key])


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


class StopOnNonFinite(keras.callbacks.Callback):
    """Raise TrainingDiverged the moment a loss is NaN/Inf, before anything else is written.

    Put it first among the callbacks, so no per-epoch file or checkpoint of a diverged model is
    saved; ``position()`` gives the (epoch, step) reached, for the message.
    """

    def __init__(self, store: CheckpointStore, position):
        super().__init__()
        self.store, self.position = store, position

    def _diverged(self, keys, epoch, step):
        last = self.store.load_state()
        kept = (f"the last good checkpoint (step {last['global_step']}, epoch {last['epoch'] + 1}) is "
                f"kept in {self.store.directory}" if last else "no checkpoint had been written yet")
        raise TrainingDiverged(f"{', '.join(keys)} became NaN/Inf at epoch {epoch}, step {step}; "
                               f"training stopped and {kept}. Try a lower learning rate or float32.")

    def on_train_batch_end(self, batch, logs=None):
        bad = nonfinite_losses(logs)
        if bad:
            epoch, step = self.position()
            self._diverged(bad, epoch + 1, step + 1)

    def on_epoch_end(self, epoch, logs=None):
        bad = nonfinite_losses(logs)
        if bad:
            self._diverged(bad, epoch + 1, self.position()[1])


class ResumableCheckpoint(keras.callbacks.Callback):
    """Checkpoint every ``every_steps`` steps and at each epoch end.

    ``state`` is the progress to continue from (zeros for a new run); ``clock()`` gives the
    cumulative training seconds, ``cpu_clock()`` (optional) the CPU seconds; ``extra_state()`` optionally returns JSON-able state to keep
    under state["extra"] (e.g. a host RNG's state). Put it *after* the callbacks that write
    per-epoch files (sample grids, epoch snapshots): the epoch's resume state is written only
    once they exist, so a kill in between redoes the epoch's end rather than losing its files.
    """

    def __init__(self, store: CheckpointStore, steps_per_epoch: int, *, every_steps: int = 500,
                 state: dict, history_csv: Path, clock, cpu_clock=None, variables_fn=None, extra_state=None):
        super().__init__()
        self.store, self.steps_per_epoch, self.every_steps = store, int(steps_per_epoch), int(every_steps)
        self.state = dict(state)
        self.history_csv = Path(history_csv)
        self.clock, self.cpu_clock = clock, cpu_clock
        self.variables_fn, self.extra_state = variables_fn, extra_state

    def position(self) -> tuple[int, int]:
        """(epochs done, steps done in the current epoch)."""
        return self.state["epoch"], self.state["step_in_epoch"]

    def _save(self):
        self.state["wall_seconds"] = self.clock()
        if self.cpu_clock:
            self.state["cpu_seconds"] = self.cpu_clock()
        if self.extra_state:
            self.state["extra"] = self.extra_state()
        self.store.save((self.variables_fn or training_variables)(self.model), self.state)

    def on_train_batch_end(self, batch, logs=None):
        self.state["step_in_epoch"] += 1
        self.state["global_step"] += 1
        if self.every_steps and self.state["global_step"] % self.every_steps == 0 \
                and self.state["step_in_epoch"] < self.steps_per_epoch:
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}
        self.state.update(epoch=epoch + 1, step_in_epoch=0, history=self.state["history"] + [row])
        write_history_csv(self.state["history"], self.history_csv)
        self._save()
