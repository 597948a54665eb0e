"""One training job for any model: data -> model -> fit -> figures -> .keras -> SavedModel.

This is what ``keras-gen train`` runs. Each model kind contributes a ``ModelSpec`` (how its data
is prepared, how it is built and compiled, which extra figures it draws); everything else (output
layout, sample grids, history CSV, loss curve, saving, export with metadata) is shared.

Output layout of ``out_dir``::

    samples/epoch_000.png ...   grids from fixed seeds, before training and after each epoch
    checkpoints/epoch_001.keras the whole model after each epoch
    resume/                     the latest training state (keras_gen.checkpointing), for --resume
    history.csv                 per-epoch metrics and wall-clock seconds (rewritten atomically)
    loss_curve.png              the same as a figure
    samples.png                 64 final samples
    model.keras                 the whole model (keras.models.load_model)
    saved_model/                SavedModel with the serving contract (keras_gen.export)
    summary.json                config, wall time, steps and output paths
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from keras_gen.callbacks import EpochSnapshots, SampleGrid, WallClock
from keras_gen.checkpointing import (CheckpointStore, ResumableCheckpoint, atomic_write_bytes,
                                     build_optimizers, save_keras_atomically, training_variables)
from keras_gen.data import load_dataset, make_dataset, preprocess_images, steps_per_epoch
from keras_gen.distribute import make_strategy
from keras_gen.export import export_saved_model
from keras_gen.plotting import (forward_process_strip, image_grid, latent_manifold, latent_scatter,
                                loss_curves, reverse_engineering, reverse_process_strip)


@dataclasses.dataclass
class ModelSpec:
    """What differs between model kinds in a training job."""

    data_options: Callable[[dict], dict]  # config -> make_dataset keyword arguments
    build: Callable[[dict], keras.Model]
    compile: Callable[[keras.Model, dict], None]
    figures: Callable[[keras.Model, dict, Path], list] = lambda model, config, out: []
    fit: Callable = None  # (model, dataset, phase, callbacks, verbose, trainer) -> None
    trainer: Callable = lambda model, config: None  # a custom loop object (its optimizers, RNG)

    def __post_init__(self):
        self.fit = self.fit or _keras_fit


def _keras_fit(model, dataset, phase, callbacks, verbose, trainer=None):
    """One phase of training with Keras fit: epochs [phase.first, phase.last) of ``dataset``."""
    model.fit(dataset, initial_epoch=phase.first, epochs=phase.last, steps_per_epoch=phase.steps,
              callbacks=callbacks, verbose=verbose, shuffle=False)  # the stream is ordered per epoch


# ------------------------------------------------------------------------------ VAE


def _build_vae(config):
    from keras_gen.models.vae import VAE
    return VAE(latent_dim=config["latent_dim"], article_kl=config.get("article_kl", False),
               seed=config["seed"], num_classes=config.get("num_classes"))


def _compile_with_adam(model, config):
    model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]))


def _vae_figures(model, config, out):
    paths = []
    if model.latent_dim == 2 and model.num_classes is None:
        path = out / "latent_manifold.png"
        latent_manifold(lambda z: model.decode(z).numpy(), path,
                        title=f"VAE latent manifold ({config['dataset']})")
        images, labels = load_dataset(config["dataset"], "test")
        x = (images[:5000, ..., None] >= 128).astype("float32")
        mean, _ = model.encode(x)
        path2 = out / "latent_scatter.png"
        latent_scatter(np.asarray(mean), labels[:5000], path2)
        paths += [path, path2]
    return paths


# ------------------------------------------------------------------------------ DCGAN


def _build_dcgan(config):
    from keras_gen.models.dcgan import DCGAN
    return DCGAN(latent_dim=config["latent_dim"], article_relu=config.get("article_relu", False),
                 seed=config["seed"], num_classes=config.get("num_classes"))


def _compile_dcgan(model, config):
    """Adam for D and G for fit; the article's loop builds its own pair (AlternatingTrainer)."""
    def adam():
        return keras.optimizers.Adam(config["learning_rate"], beta_1=config.get("beta_1", 0.9))
    model.compile(d_optimizer=adam(), g_optimizer=adam())


def _dcgan_trainer(model, config):
    if config.get("loop", "fit") != "alternating":
        return None
    from keras_gen.models.dcgan import AlternatingTrainer
    return AlternatingTrainer(model, learning_rate=config["learning_rate"],
                              beta_1=config.get("beta_1", 0.9), seed=config["seed"])


def _fit_dcgan(model, dataset, phase, callbacks, verbose, trainer=None):
    if trainer is None:
        return _keras_fit(model, dataset, phase, callbacks, verbose)
    trainer.fit(dataset, phase.last, initial_epoch=phase.first, steps_per_epoch=phase.steps_per_epoch,
                skip_batches=phase.skip, callbacks=callbacks, progress=verbose > 0)


def _dcgan_figures(model, config, out):
    if model.latent_dim != 2 or model.num_classes is not None:
        return []
    path = out / "latent_manifold.png"
    latent_manifold(lambda z: model.generate(z).numpy(), path,
                    title=f"DCGAN latent manifold ({config['dataset']})")
    return [path]


# ------------------------------------------------------------------------------ DDPM


def _ddpm_data_options(config):
    """Padded 28 -> 32 (lossless) unless data_mode="resize" reproduces the article."""
    if config.get("data_mode", "pad") == "resize":
        return dict(value_range="-1_1", resize_to=32)
    return dict(value_range="-1_1", pad_to=32)


def _build_ddpm(config):
    from keras_gen.models.ddpm import build_ddpm
    return build_ddpm(config)


def _compile_ddpm(model, config):
    """Adam with a linear warm-up to the preset's learning rate, then (``lr_decay="cosine"``)
    cosine decay to ``lr_floor`` times it over the rest of the run."""
    lr = config["learning_rate"]
    warmup = config.get("warmup_steps", 0)
    decay_steps = 0
    if config.get("lr_decay") == "cosine":
        decay_steps = max(1, config["epochs"] * config["steps_per_epoch"] - warmup)
    if warmup or decay_steps:
        lr = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else lr, decay_steps=decay_steps or 10**9,
            warmup_target=lr if warmup else None, warmup_steps=warmup,
            alpha=config.get("lr_floor", 0.05) if decay_steps else 1.0)
    model.compile(optimizer=keras.optimizers.Adam(lr))


def _ddpm_figures(model, config, out):
    """The article's three diffusion figures: forward strip, reverse strip, reverse engineering."""
    images, _ = load_dataset(config["dataset"], "test")
    x0 = preprocess_images(images[:4], **_ddpm_data_options(config)).numpy()
    forward_process_strip(model.schedule, x0, out / "forward_process.png")
    _, trajectory = model.sample(4, seed=0, sampler="ddim", return_trajectory=True, progress=False)
    reverse_process_strip(trajectory, out / "reverse_process.png")
    t = model.schedule.timesteps // 2
    noised, recovered = model.reconstruct(x0, t, seed=0)
    reverse_engineering(x0, noised, recovered, out / "reverse_engineering.png", t=t)
    return [out / "forward_process.png", out / "reverse_process.png", out / "reverse_engineering.png"]


SPECS = {
    "vae": ModelSpec(data_options=lambda config: dict(binarize=True, value_range="0_1"),
                     build=_build_vae, compile=_compile_with_adam, figures=_vae_figures),
    "dcgan": ModelSpec(data_options=lambda config: dict(value_range="-1_1", drop_remainder=True),
                       build=_build_dcgan, compile=_compile_dcgan, figures=_dcgan_figures,
                       fit=_fit_dcgan, trainer=_dcgan_trainer),
    "ddpm": ModelSpec(data_options=_ddpm_data_options,
                      build=_build_ddpm, compile=_compile_ddpm, figures=_ddpm_figures),
}


# ------------------------------------------------------------------------------ shared job


def class_grid(model, num_classes: int, path, per_class: int = 8, seed: int = 0):
    """A conditional model's samples, one row of ``per_class`` images per class."""
    labels = np.repeat(np.arange(num_classes), per_class)
    image_grid(model.sample(len(labels), seed, labels=labels), path, ncols=per_class,
               title=f"{model.kind}: one row per class")
    return Path(path)


def machine_info() -> dict:
    import tensorflow as tf
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "devices": [d.device_type for d in tf.config.list_physical_devices()]}


def cpu_supports_bf16() -> bool:
    """True when this CPU has bfloat16 instructions (AVX512_BF16 or AMX-BF16; Linux only)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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


def check_writable(out_dir: Path):
    """Fail at start (not after an hour of training) when the output folder is unusable."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OSError(f"output folder {out_dir} is not writable: {exc}") from exc


def prepare_model(kind: str, config: dict):
    """The built and compiled model of ``kind`` (and its custom-loop trainer, if any).

    Call inside the strategy's scope. The optimizers' variables are created here rather than on
    the first step: under a tf.distribute strategy, creating them inside the compiled step fails,
    and a resume needs them to exist before restoring. (The alternating loop's own optimizers are
    built by its trainer; the model's are then unused.)
    """
    spec = SPECS[kind]
    model = spec.build(config)
    spec.compile(model, config)
    trainer = spec.trainer(model, config)
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


def start_state(store: CheckpointStore, config: dict, resume: bool) -> dict:
    """The progress to start from: the checkpoint's when resuming, else a new run's (checked)."""
    state = store.load_state()
    if resume:
        if state is None:
            raise ValueError(f"nothing to resume: {store.state_path} does not exist")
        if state.get("finished"):
            raise ValueError(f"the run in {store.directory.parent} already finished all its epochs")
        return state
    if state is not None and not state.get("finished"):
        raise ValueError(f"{store.directory.parent} holds an unfinished run (epoch {state['epoch']}, "
                         f"step {state['global_step']}): pass --resume to continue it, or use another --out")
    return {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "wall_seconds": 0.0, "history": [],
            "config": config}


def train(kind: str, config: dict, out_dir, *, verbose=1, resume=False, checkpoint_every=500,
          strategy: str = "default") -> dict:
    """Run one training job; returns the summary (also written to out_dir/summary.json).

    Checkpoints go to out_dir/resume every ``checkpoint_every`` steps and at each epoch end;
    ``resume=True`` continues an interrupted run from the latest one, with the configuration it
    was started with (``config`` is then ignored). A NaN/Inf loss raises TrainingDiverged
    (keras_gen.checkpointing) and leaves the last good checkpoint. ``strategy`` names the
    tf.distribute strategy (keras_gen.distribute); the batch size stays the global one. Under
    "multiworker" every worker runs this with its own ``out_dir`` (the chief's is the one to keep).
    """
    spec = SPECS[kind]
    out = Path(out_dir)
    check_writable(out)
    store = CheckpointStore(out / "resume")
    state = start_state(store, config, resume)
    config = state["config"] if resume else config
    keras.utils.set_random_seed(config["seed"])
    config = {**config, "precision": resolve_precision(config.get("precision", "float32"))}
    keras.mixed_precision.set_global_policy(config["precision"])
    options = {**spec.data_options(config), "with_labels": config.get("num_classes") is not None}
    images, labels = load_dataset(config["dataset"], "train")
    num_images = min(len(images), config.get("limit") or len(images))
    if config.get("num_classes") is not None and int(labels.max()) >= config["num_classes"]:
        raise ValueError(f"{config['dataset']} has labels up to {int(labels.max())}: num_classes must be "
                         f"at least {int(labels.max()) + 1}, got {config['num_classes']}")
    config["steps_per_epoch"] = steps_per_epoch(num_images, config["batch_size"],
                                                options.get("drop_remainder", False))
    config["strategy"] = strategy
    distribution = make_strategy(strategy)
    with distribution.scope():
        model, trainer = prepare_model(kind, config)
        extra_optimizers = trainer.optimizers if trainer else None
        if resume:
            if trainer:
                trainer.build_optimizers()
            store.restore(training_variables(model, extra_optimizers), state)
    if resume:
        if trainer:
            trainer.rng_state = state["extra"]["rng"]
        state["resumes"] = state.get("resumes", 0) + 1
        print(f"resuming {out} at epoch {state['epoch'] + 1}, step {state['step_in_epoch']} of "
              f"{config['steps_per_epoch']} (global step {state['global_step']})")
    clock = WallClock(offset=state["wall_seconds"])
    checkpoint = ResumableCheckpoint(store, config["steps_per_epoch"], every_steps=checkpoint_every,
                                     state=state, history_csv=out / "history.csv", clock=clock.elapsed,
                                     variables_fn=lambda m: training_variables(m, extra_optimizers),
                                     extra_state=(lambda: {"rng": trainer.rng_state}) if trainer else None)
    callbacks = [clock, checkpoint, EpochSnapshots(out / "checkpoints"),
                 SampleGrid(lambda n, seed: model.sample(n, seed), out / "samples", draw_initial=not resume)]
    for phase in plan_phases(config["epochs"], config["steps_per_epoch"], state["epoch"], state["step_in_epoch"]):
        dataset = make_dataset(config["dataset"], "train", config["batch_size"], shuffle=True,
                               seed=config["seed"], limit=config.get("limit"), epochs=phase.last,
                               start_epoch=phase.first, skip_batches=phase.skip, **options)
        spec.fit(model, dataset, phase, callbacks, verbose, trainer)
    wall = clock.elapsed()
    steps = config["epochs"] * config["steps_per_epoch"]
    history = {k: [row.get(k) for row in checkpoint.state["history"]]
               for k in checkpoint.state["history"][0] if k not in ("epoch", "wall_seconds")}

    loss_keys = {k: v for k, v in history.items() if "loss" in k}
    loss_curves(loss_keys, out / "loss_curve.png", title=f"{kind} training losses")
    image_grid(model.sample(64, 0), out / "samples.png", title=f"{kind}: 64 samples")
    figures = [str(p) for p in spec.figures(model, config, out)]
    if config.get("num_classes"):
        figures.append(str(class_grid(model, config["num_classes"], out / "class_grid.png")))
    save_keras_atomically(model, out / "model.keras")
    final_metrics = {k: float(v[-1]) for k, v in history.items()}
    metadata = {"dataset": config["dataset"], "preset": config["preset"], "train_config": config,
                "training": {"epochs": config["epochs"], "steps": steps,
                             "wall_seconds": round(wall, 1), "final_metrics": final_metrics,
                             "resumes": state.get("resumes", 0)},
                "machine": machine_info()}
    export_saved_model(model, out / "saved_model", metadata=metadata)
    store.save(training_variables(model, extra_optimizers),
               {**checkpoint.state, "finished": True, "wall_seconds": wall})
    summary = {"kind": kind, **metadata,
               "outputs": {"samples": str(out / "samples.png"), "history": str(out / "history.csv"),
                           "loss_curve": str(out / "loss_curve.png"), "keras": str(out / "model.keras"),
                           "saved_model": str(out / "saved_model"), "figures": figures}}
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2, default=str).encode())
    return summary
