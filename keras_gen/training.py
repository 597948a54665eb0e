"""One training job for any model kind: data -> model -> fit -> figures -> .keras -> SavedModel.

This is what ``keras-gen train`` runs. It reads only the model contract (keras_gen.models.kinds:
how the kind's data is prepared, how it is built and compiled, its custom loop if any, its extra
figures) and the run folder (keras_gen.runs: the output layout, ownership, resume state);
everything else (sample grids, history CSV, loss curve, saving, export with metadata) is shared.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np

from keras_gen.callbacks import CPUClock, EpochSnapshots, SampleGrid, TrainingBoard, WallClock
from keras_gen.checkpointing import (CheckpointStore, ResumableCheckpoint, StopOnNonFinite,
                                     build_optimizers, training_variables)
from keras_gen.data import load_dataset, make_dataset, steps_per_epoch
from keras_gen.distribute import make_strategy
from keras_gen.export import export_saved_model
from keras_gen.files import atomic_write_bytes, save_keras_atomically
from keras_gen.machine import cpu_supports_bf16, machine_info
from keras_gen.models.kinds import get_model_kind
from keras_gen.plotting import image_grid, loss_curves
from keras_gen.runs import RunFolder


def _keras_fit(model, dataset, phase, callbacks, verbose):
    """One phase of training with Keras fit: epochs [phase.first, phase.last) of ``dataset``."""
    model.fit(dataset, initial_epoch=phase.first, epochs=phase.last, steps_per_epoch=phase.steps,
              callbacks=callbacks, verbose=verbose, shuffle=False)  # the stream is ordered per epoch


def _trainer_fit(trainer, dataset, phase, callbacks, verbose):
    """One phase with a kind's custom loop (an object with a fit like AlternatingTrainer's)."""
    trainer.fit(dataset, phase.last, initial_epoch=phase.first, steps_per_epoch=phase.steps_per_epoch,
                skip_batches=phase.skip, callbacks=callbacks, progress=verbose > 0)


def class_grid(model, num_classes: int, path, per_class: int = 8, seed: int = 0):
    """A conditional model's samples, one row of ``per_class`` images per class."""
    labels = np.repeat(np.arange(num_classes), per_class)
    image_grid(model.sample(len(labels), seed, labels=labels), path, ncols=per_class,
               title=f"{model.kind}: one row per class")
    return Path(path)


def resolve_precision(precision: str) -> str:
    """"float32", "mixed_float16", "mixed_bfloat16", or "mixed" = the fast one for this machine:
    mixed_float16 on a GPU, mixed_bfloat16 on a CPU with bf16 instructions, else float32."""
    import tensorflow as tf
    if precision != "mixed":
        if precision not in ("float32", "mixed_float16", "mixed_bfloat16"):
            raise ValueError(f"unknown precision {precision!r}")
        return precision
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_supports_bf16() else "float32"


def prepare_model(kind: str, config: dict):
    """The built and compiled model of ``kind`` (and its custom-loop trainer, if any).

    Call inside the strategy's scope. The optimizers' variables are created here rather than on
    the first step: under a tf.distribute strategy, creating them inside the compiled step fails,
    and a resume needs them to exist before restoring. (A custom loop's own optimizers are
    built by its trainer; the model's are then unused.)
    """
    model_kind = get_model_kind(kind)
    model = model_kind.build(config)
    model_kind.compile(model, config)
    trainer = model_kind.trainer(model, config)
    if trainer is None:
        build_optimizers(model)
    return model, trainer


@dataclasses.dataclass(frozen=True)
class Phase:
    """A stretch of training in one fit call: epochs [first, last), the first ``skip`` batches
    of epoch ``first`` already done (a run resumed mid-epoch)."""

    first: int
    last: int
    steps_per_epoch: int
    skip: int = 0

    @property
    def steps(self):  # Keras fit's steps_per_epoch for this phase
        return self.steps_per_epoch - self.skip


def plan_phases(epochs: int, steps_per_epoch: int, done_epochs: int, step_in_epoch: int) -> list[Phase]:
    """The fit calls that finish a run: the rest of a half-done epoch, then the whole epochs left."""
    phases = []
    if step_in_epoch:
        phases.append(Phase(done_epochs, done_epochs + 1, steps_per_epoch, step_in_epoch))
        done_epochs += 1
    if done_epochs < epochs:
        phases.append(Phase(done_epochs, epochs, steps_per_epoch))
    return phases


def _new_state(config: dict) -> dict:
    return {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "wall_seconds": 0.0, "history": [],
            "config": config}


def _prepare_config(kind: str, config: dict, strategy: str) -> tuple[dict, dict]:
    """(config with precision, steps_per_epoch and strategy filled in, make_dataset options),
    with the data-dependent checks done before any model is built."""
    model_kind = get_model_kind(kind)
    config = {**config, "precision": resolve_precision(config.get("precision", "float32"))}
    options = {**model_kind.data_options(config), "with_labels": config.get("num_classes") is not None}
    images, labels = load_dataset(config["dataset"], "train")
    num_images = min(len(images), config.get("limit") or len(images))
    if config.get("num_classes") is not None and int(labels.max()) >= config["num_classes"]:
        raise ValueError(f"{config['dataset']} has labels up to {int(labels.max())}: num_classes must be "
                         f"at least {int(labels.max()) + 1}, got {config['num_classes']}")
    drop_remainder = options.get("drop_remainder", False)
    if drop_remainder and num_images < config["batch_size"]:
        raise ValueError(f"--batch-size {config['batch_size']} is larger than the {num_images} training images: "
                         f"a {kind} trains on whole batches only, so not one step would run; lower it")
    config["steps_per_epoch"] = steps_per_epoch(num_images, config["batch_size"], drop_remainder)
    config["strategy"] = strategy
    return config, options


def train(kind: str, config: dict, out_dir, *, verbose=1, resume=False, checkpoint_every=500,
          strategy: str = "default", force: bool = False, max_cpu_minutes: float | None = None,
          tensorboard_dir=None) -> dict:
    """Run one training job; returns the summary (also written to out_dir/summary.json).

    ``out_dir`` becomes this run's folder (keras_gen.runs.RunFolder: one process at a time; a
    folder holding another model's run, a finished run (unless ``force``), an unfinished one
    (unless ``resume``) or foreign files is refused). Checkpoints go to its resume/ every
    ``checkpoint_every`` steps and at each epoch end; ``resume=True`` continues an interrupted
    run from the latest one, with the configuration it was started with (``config`` is then
    ignored). A NaN/Inf loss raises TrainingDiverged (keras_gen.checkpointing) and leaves the
    last good checkpoint. ``strategy`` names the tf.distribute strategy (keras_gen.distribute);
    the batch size stays the global one. Under "multiworker" every worker runs this with its own
    ``out_dir`` (the chief's is the one to keep). ``max_cpu_minutes`` ends the run early, as
    finished, once training has used that much of this process's CPU time (callbacks.CPUClock;
    for comparisons at an equal budget); the summary then says ``"stopped": "cpu budget"``.
    ``tensorboard_dir``: also log the losses, learning rates and sample grids there
    (callbacks.TrainingBoard); not part of the run's config, so give it again to ``--resume``.
    """
    model_kind = get_model_kind(kind)
    if not resume and config is None:
        raise ValueError("train() needs a config (keras_gen.get_preset) unless it resumes a run")
    run = RunFolder(out_dir)
    with run:
        state = run.claim(kind, resume=resume, force=force)
        state = state or _new_state(config)
        if max_cpu_minutes is not None and not resume:
            state["config"] = {**state["config"], "max_cpu_minutes": float(max_cpu_minutes)}
        return _train_in(run, model_kind, state, resume, verbose, checkpoint_every, strategy, tensorboard_dir)


def _train_in(run: RunFolder, model_kind, state: dict, resume: bool, verbose, checkpoint_every, strategy,
              tensorboard_dir=None):
    kind, out = model_kind.name, run.path
    store = CheckpointStore(run.resume_dir)
    config = state["config"]
    keras.utils.set_random_seed(config["seed"])
    config, options = _prepare_config(kind, config, strategy)
    keras.mixed_precision.set_global_policy(config["precision"])
    distribution = make_strategy(config["strategy"])
    with distribution.scope():
        model, trainer = prepare_model(kind, config)
        extra_optimizers = trainer.optimizers if trainer else None
        if resume:
            if trainer:
                trainer.build_optimizers()
            store.restore(training_variables(model, extra_optimizers), state)
    if resume:
        if trainer:
            trainer.host_state = state["extra"]
        state["resumes"] = state.get("resumes", 0) + 1
        print(f"resuming {out} at epoch {state['epoch'] + 1}, step {state['step_in_epoch']} of "
              f"{config['steps_per_epoch']} (global step {state['global_step']})")
    state["config"] = config
    servable = model_kind.servable(model)
    clock = WallClock(offset=state["wall_seconds"])
    budget = config.get("max_cpu_minutes")
    cpu_clock = CPUClock(offset=state.get("cpu_seconds", 0.0), budget_seconds=budget and budget * 60)
    checkpoint = ResumableCheckpoint(store, config["steps_per_epoch"], every_steps=checkpoint_every,
                                     state=state, history_csv=run.history_csv, clock=clock.elapsed,
                                     cpu_clock=cpu_clock.elapsed,
                                     variables_fn=lambda m: training_variables(m, extra_optimizers),
                                     extra_state=(lambda: trainer.host_state) if trainer else None)
    # Order matters: the NaN guard first, the per-epoch files next, the epoch's resume state last
    # (a kill between them redoes the epoch's end instead of losing its files).
    board = None if tensorboard_dir is None else TrainingBoard(
        tensorboard_dir, trainer.optimizers if trainer else model_kind.optimizers(model))
    callbacks = [clock, cpu_clock, StopOnNonFinite(store, checkpoint.position), EpochSnapshots(run.checkpoints_dir, servable),
                 SampleGrid(lambda n, seed: servable.sample(n, seed), run.samples_dir, draw_initial=not resume,
                            sinks=[board.log_images] if board else []),
                 *([board] if board else []), checkpoint]
    for phase in plan_phases(config["epochs"], config["steps_per_epoch"], state["epoch"], state["step_in_epoch"]):
        dataset = make_dataset(config["dataset"], "train", config["batch_size"], shuffle=True,
                               seed=config["seed"], limit=config.get("limit"), epochs=phase.last,
                               start_epoch=phase.first, skip_batches=phase.skip, **options)
        if trainer is None:
            _keras_fit(model, dataset, phase, callbacks, verbose)
        else:
            _trainer_fit(trainer, dataset, phase, callbacks, verbose)
        if cpu_clock.exhausted:
            break
    wall = clock.elapsed()
    steps = checkpoint.state["global_step"]
    history = {k: [row.get(k) for row in checkpoint.state["history"]]
               for k in checkpoint.state["history"][0] if k not in ("epoch", "wall_seconds", "cpu_seconds")}

    loss_keys = {k: v for k, v in history.items() if "loss" in k}
    loss_curves(loss_keys, run.loss_curve, title=f"{kind} training losses")
    image_grid(servable.sample(64, 0), run.samples_png, title=f"{kind}: 64 samples")
    figures = [str(p) for p in model_kind.figures(model, config, out)]
    if config.get("num_classes"):
        figures.append(str(class_grid(servable, config["num_classes"], run.class_grid)))
    save_keras_atomically(servable, run.model_keras)
    final_metrics = {k: float(v[-1]) for k, v in history.items()}
    metadata = {"dataset": config["dataset"], "preset": config["preset"], "train_config": config,
                "training": {"epochs": checkpoint.state["epoch"], "steps": steps,
                             "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu_clock.elapsed(), 1),
                             "final_metrics": final_metrics, "resumes": state.get("resumes", 0),
                             **({"stopped": "cpu budget"} if cpu_clock.exhausted else {})},
                "machine": machine_info()}
    export_saved_model(servable, run.saved_model, metadata=metadata, overwrite=True)
    store.save(training_variables(model, extra_optimizers),
               {**checkpoint.state, "finished": True, "wall_seconds": wall, "cpu_seconds": cpu_clock.elapsed()})
    summary = {"kind": kind, **metadata,
               "outputs": {"samples": str(run.samples_png), "history": str(run.history_csv),
                           "loss_curve": str(run.loss_curve), "keras": str(run.model_keras),
                           "saved_model": str(run.saved_model), "figures": figures}}
    atomic_write_bytes(run.summary_json, json.dumps(summary, indent=2, default=str).encode())
    return summary
