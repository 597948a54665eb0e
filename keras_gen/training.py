"""One training job for any model: data -> model -> fit -> figures -> .keras -> SavedModel.

This is what ``keras-gen train`` runs. Each model kind contributes a ``ModelSpec`` (how its data
is prepared, how it is built and compiled, which extra figures it draws); everything else (output
layout, sample grids, history CSV, loss curve, saving, export with metadata) is shared.

Output layout of ``out_dir``::

    samples/epoch_000.png ...   grids from fixed seeds, before training and after each epoch
    checkpoints/epoch_001.keras the whole model after each epoch
    history.csv                 per-epoch metrics and wall-clock seconds
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
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from keras_gen.callbacks import SampleGrid, WallClock
from keras_gen.data import load_dataset, make_dataset, preprocess_images
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
    fit: Callable | None = None  # (model, dataset, config, callbacks, verbose) -> history dict


def _keras_fit(model, dataset, config, callbacks, verbose):
    history = model.fit(dataset, epochs=config["epochs"], callbacks=callbacks, verbose=verbose,
                        shuffle=False)  # the dataset reshuffles itself
    return history.history


# ------------------------------------------------------------------------------ VAE


def _build_vae(config):
    from keras_gen.models.vae import VAE
    return VAE(latent_dim=config["latent_dim"], article_kl=config.get("article_kl", False),
               seed=config["seed"])


def _compile_with_adam(model, config):
    model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]))


def _vae_figures(model, config, out):
    paths = []
    if model.latent_dim == 2:
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
                 seed=config["seed"])


def _compile_dcgan(model, config):
    def adam():
        return keras.optimizers.Adam(config["learning_rate"], beta_1=config.get("beta_1", 0.9))
    model.compile(d_optimizer=adam(), g_optimizer=adam())


def _fit_dcgan(model, dataset, config, callbacks, verbose):
    if config.get("loop", "fit") == "fit":
        return _keras_fit(model, dataset, config, callbacks, verbose)
    from keras_gen.models.dcgan import train_alternating
    return train_alternating(model, dataset, config["epochs"], learning_rate=config["learning_rate"],
                             beta_1=config.get("beta_1", 0.9), callbacks=callbacks,
                             seed=config["seed"], progress=verbose > 0)


def _dcgan_figures(model, config, out):
    if model.latent_dim != 2:
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
                       fit=_fit_dcgan),
    "ddpm": ModelSpec(data_options=_ddpm_data_options,
                      build=_build_ddpm, compile=_compile_ddpm, figures=_ddpm_figures),
}


# ------------------------------------------------------------------------------ shared job


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


def save_keras_atomically(model, path: Path):
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def train(kind: str, config: dict, out_dir, *, verbose=1) -> dict:
    """Run one training job; returns the summary (also written to out_dir/summary.json)."""
    spec = SPECS[kind]
    out = Path(out_dir)
    check_writable(out)
    keras.utils.set_random_seed(config["seed"])
    config = {**config, "precision": resolve_precision(config.get("precision", "float32"))}
    keras.mixed_precision.set_global_policy(config["precision"])
    dataset = make_dataset(config["dataset"], "train", config["batch_size"], shuffle=True,
                           seed=config["seed"], limit=config.get("limit"), **spec.data_options(config))
    config["steps_per_epoch"] = int(dataset.cardinality().numpy())
    model = spec.build(config)
    spec.compile(model, config)
    (out / "checkpoints").mkdir(exist_ok=True)
    callbacks = [SampleGrid(lambda n, seed: model.sample(n, seed), out / "samples"), WallClock(),
                 keras.callbacks.ModelCheckpoint(str(out / "checkpoints" / "epoch_{epoch:03d}.keras")),
                 keras.callbacks.CSVLogger(str(out / "history.csv"))]
    start = time.perf_counter()
    history = (spec.fit or _keras_fit)(model, dataset, config, callbacks, verbose)
    wall = time.perf_counter() - start
    steps = config["epochs"] * config["steps_per_epoch"]

    history.pop("wall_seconds", None)
    loss_keys = {k: v for k, v in history.items() if "loss" in k}
    loss_curves(loss_keys, out / "loss_curve.png", title=f"{kind} training losses")
    image_grid(model.sample(64, 0), out / "samples.png", title=f"{kind}: 64 samples")
    figures = [str(p) for p in spec.figures(model, config, out)]
    save_keras_atomically(model, out / "model.keras")
    final_metrics = {k: float(v[-1]) for k, v in history.items()}
    metadata = {"dataset": config["dataset"], "preset": config["preset"], "train_config": config,
                "training": {"epochs": config["epochs"], "steps": steps,
                             "wall_seconds": round(wall, 1), "final_metrics": final_metrics},
                "machine": machine_info()}
    export_saved_model(model, out / "saved_model", metadata=metadata)
    summary = {"kind": kind, **metadata,
               "outputs": {"samples": str(out / "samples.png"), "history": str(out / "history.csv"),
                           "loss_curve": str(out / "loss_curve.png"), "keras": str(out / "model.keras"),
                           "saved_model": str(out / "saved_model"), "figures": figures}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
