"""Training throughput (images/s) of the VAE, the DCGAN and the DDPM, with this machine's peak FLOP/s.

Usage:
    python benchmarks/train_throughput.py [--repeats 3] [--warmup 1] [--steps 10] [--batch 64] \
        [--only NAME_OR_GROUP ...] [--json benchmarks/results/train_throughput.json]

Items (``--only`` takes item names or the group before a "/", e.g. ``ddpm_cpu`` or ``peak``):
  vae                         VAE(latent_dim=16) + Adam, ``fit`` (data: random values in [0, 1])
  dcgan_fused                 DCGAN(latent_dim=100), compile(d_optimizer, g_optimizer) with
                              Adam(2e-4, beta_1=0.5), ``fit`` (the fused train_step; data in [-1, 1])
  dcgan_alternating           the article's loop: AlternatingTrainer(...).fit over --steps batches
  ddpm_{article,cpu}/STYLE    the DDPM of the "article" preset (32M-parameter U-Net, T=200) and of
                              the "cpu" preset, in three execution styles measured in the same run:
      article_eager           the article's step re-created: t and noise drawn with NumPy on the
                              host, x_t from the schedule's alphas_cumprod in NumPy, an eager (no
                              tf.function) GradientTape step on the U-Net, float32
      compiled_fp32           ``model.compile(Adam(1e-4))``; ``fit`` (DDPM.train_step, with EMA)
      compiled_bf16           the same built and run under the mixed_bfloat16 policy
  peak/{matmul,conv}_{fp32,bf16}  this machine's attainable FLOP/s: a 2048^3 matmul
                              (2 n^3 FLOPs) and a 3x3 conv, batch 32, 64x64, 128 -> 128 channels
                              (2 B H W Cin Cout 9 FLOPs), each in a tf.function

Every model item trains on one in-memory batch (--batch images, 28x28x1 or the DDPM's 32x32x1)
repeated by tf.data. Timing is benchmarks/timing.py: --warmup untimed calls, then --repeats timed
calls of --steps training steps (peak items: --steps ops); the JSON records the median, min and
max images/s (FLOP/s for peaks) over the repeats and every call's seconds. One ``fit`` call
includes its own set-up (iterator, callbacks): negligible for the DDPM, not for the small VAE and
DCGAN steps at the default --steps 10, so raise --steps (e.g. 100) to time those.

DDPM rows add ``ratio_to_article_eager`` (images/s over the same network's article_eager) and the
attained FLOP/s: images/s x training FLOPs per image, as a fraction of the conv peak of the same
precision. Forward FLOPs per image are counted analytically (2 per multiply-add) from one traced
forward pass of the U-Net: every Conv2D (2 x kernel size x output pixels), Conv2DTranspose
(2 x kernel size x input pixels) and Dense layer (2 x kernel size x positions) records its input
and output shapes through a temporary wrapper of its ``call``, plus the attention einsums (linear:
4 N heads dim_head^2, full: 4 N^2 heads dim_head). Norms, activations, the optimizer and EMA
updates are not counted; a training step is taken as 3x the forward FLOPs (forward + backward).
For the two presets' U-Nets this count agrees within 1% with tf.compat.v1.profiler's
float_operation() count of the traced forward graph (which misses the einsums but adds the
elementwise ops).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from keras_gen.evaluation.report import write_json
from keras_gen.layers.unet import Attention, LinearAttention, UNet
from keras_gen.models.dcgan import DCGAN, AlternatingTrainer
from keras_gen.models.ddpm import build_ddpm
from keras_gen.models.vae import VAE
from keras_gen.presets import get_preset
from keras_gen.machine import cpu_supports_bf16, machine_info
from timing import rates, time_repeats

DDPM_NETWORKS = ("article", "cpu")
DDPM_STYLES = ("article_eager", "compiled_fp32", "compiled_bf16")
PEAK_MATMUL_N = 2048
PEAK_CONV_SHAPE = dict(batch=32, size=64, channels=128)  # 3x3 kernel, channels in = out
TRAIN_FLOPS_PER_FORWARD = 3  # forward + backward (input and weight gradients: 2x forward)


@dataclass
class Item:
    """One measured row: ``build(args) -> (fn, work)``; fn runs one timed call doing ``work``
    units (images, or FLOPs for the peak rows) and returns after the work has finished."""
    name: str
    build: Callable
    unit: str = "images/s"
    policy: str = "float32"
    network: str | None = None  # the DDPM network (preset name) whose FLOPs the row uses


@contextlib.contextmanager
def dtype_policy(name):
    """Run the block (model building and training) under the Keras dtype policy ``name``."""
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


# ----------------------------------------------------------------- model items
def fit_call(model, x, steps):
    """A call running ``model.fit`` for ``steps`` steps on the batch ``x`` repeated."""
    dataset = tf.data.Dataset.from_tensors(x).repeat()

    def run():
        model.fit(dataset, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    return run


def random_images(batch, size, low, high, seed=0):
    """A fixed (batch, size, size, 1) float32 batch, uniform in [low, high)."""
    return tf.random.stateless_uniform((batch, size, size, 1), seed=[seed, 0], minval=low, maxval=high)


def vae_item(args):
    model = VAE(latent_dim=16, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = tf.round(random_images(args.batch, 28, 0.0, 1.0))  # binarised-like, as the article's data
    return fit_call(model, x, args.steps), args.steps * args.batch


def dcgan_optimizer():
    return keras.optimizers.Adam(2e-4, beta_1=0.5)


def dcgan_fused_item(args):
    gan = DCGAN(latent_dim=100, seed=0)
    gan.compile(d_optimizer=dcgan_optimizer(), g_optimizer=dcgan_optimizer())
    return fit_call(gan, random_images(args.batch, 28, -1.0, 1.0), args.steps), args.steps * args.batch


def dcgan_alternating_item(args):
    trainer = AlternatingTrainer(DCGAN(latent_dim=100, seed=0), learning_rate=2e-4, beta_1=0.5)
    dataset = tf.data.Dataset.from_tensors(random_images(args.batch, 28, -1.0, 1.0)).repeat(args.steps)

    def run():
        trainer.fit(dataset, 1, progress=False)
    return run, args.steps * args.batch


def article_eager_call(model, x0, steps, seed=0):
    """The article's training step, eagerly: host-side NumPy t, noise and x_t, then a GradientTape
    step on ``model.unet`` with its own Adam(1e-4) (no EMA)."""
    unet, alphas_cumprod = model.unet, model.schedule.alphas_cumprod
    optimizer = keras.optimizers.Adam(1e-4)
    rng = np.random.default_rng(seed)
    x0 = np.asarray(x0)

    def step():
        t = rng.integers(0, len(alphas_cumprod), size=len(x0))
        noise = rng.standard_normal(x0.shape).astype(np.float32)
        abar = alphas_cumprod[t].reshape(-1, 1, 1, 1)
        x_t = (np.sqrt(abar) * x0 + np.sqrt(1.0 - abar) * noise).astype(np.float32)
        with tf.GradientTape() as tape:
            pred = unet((x_t, t.astype(np.int32)), training=True)
            loss = tf.reduce_mean(tf.square(noise - pred))
        grads = tape.gradient(loss, unet.trainable_variables)
        optimizer.apply_gradients(zip(grads, unet.trainable_variables))
        return loss

    def run():
        for _ in range(steps):
            loss = step()
        float(loss)
    return run


def ddpm_item(network, style, args):
    model = build_ddpm(get_preset("ddpm", network))
    x0 = random_images(args.batch, 32, -1.0, 1.0)
    if style == "article_eager":
        return article_eager_call(model, x0, args.steps), args.steps * args.batch
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    return fit_call(model, x0, args.steps), args.steps * args.batch


# ----------------------------------------------------------------- peak FLOP/s items
def repeated_op_call(op, inputs, steps):
    """A call running the compiled ``op(*inputs)`` ``steps`` times, fetching the last result."""
    compiled = tf.function(lambda *xs: tf.reduce_sum(op(*xs)))

    def run():
        for _ in range(steps):
            out = compiled(*inputs)
        out.numpy()
    return run


def matmul_peak_item(dtype, args):
    n = PEAK_MATMUL_N
    a, b = (tf.cast(tf.random.stateless_normal((n, n), seed=[s, 0]), dtype) for s in (1, 2))
    return repeated_op_call(tf.matmul, (a, b), args.steps), args.steps * 2 * n**3


def conv_peak_item(dtype, args):
    batch, size, channels = PEAK_CONV_SHAPE["batch"], PEAK_CONV_SHAPE["size"], PEAK_CONV_SHAPE["channels"]
    x = tf.cast(tf.random.stateless_normal((batch, size, size, channels), seed=[1, 0]), dtype)
    w = tf.cast(tf.random.stateless_normal((3, 3, channels, channels), seed=[2, 0]), dtype)
    op = functools.partial(tf.nn.conv2d, strides=1, padding="SAME")
    return repeated_op_call(op, (x, w), args.steps), args.steps * 2 * batch * size * size * channels**2 * 9


def all_items() -> list[Item]:
    items = [Item(f"peak/{kind}_{short}", functools.partial(build, dtype), unit="FLOP/s")
             for kind, build in (("matmul", matmul_peak_item), ("conv", conv_peak_item))
             for short, dtype in (("fp32", tf.float32), ("bf16", tf.bfloat16))]
    items += [Item("vae", vae_item), Item("dcgan_fused", dcgan_fused_item),
              Item("dcgan_alternating", dcgan_alternating_item)]
    items += [Item(f"ddpm_{network}/{style}", functools.partial(ddpm_item, network, style),
                   policy="mixed_bfloat16" if style == "compiled_bf16" else "float32", network=network)
              for network in DDPM_NETWORKS for style in DDPM_STYLES]
    return items


# ----------------------------------------------------------------- FLOP counting
def _layer_flops(layer, in_shape, out_shape) -> int:
    """Forward FLOPs per image of one counted layer, from its input and output shapes."""
    if isinstance(layer, (Attention, LinearAttention)):
        positions = int(np.prod(in_shape[1:-1]))
        per_head = (positions * positions * layer.dim_head if isinstance(layer, Attention)
                    else positions * layer.dim_head**2)
        return 4 * layer.heads * per_head  # two einsums of 2 FLOPs per multiply-add
    kernel = int(np.prod(layer.kernel.shape))
    if isinstance(layer, keras.layers.Conv2DTranspose):
        return 2 * kernel * int(np.prod(in_shape[1:-1]))
    return 2 * kernel * int(np.prod(out_shape[1:-1]))  # Conv2D: output pixels; Dense: positions


def unet_forward_flops(config, image_size=32) -> int:
    """Forward FLOPs of one image through the U-Net of a DDPM preset (see the module docstring)."""
    unet = UNet(dim=config["dim"], dim_mults=tuple(config["dim_mults"]),
                attention_levels=tuple(config["attention_levels"]) if config.get("attention_levels") else None)
    inputs = (np.zeros((1, image_size, image_size, unet.channels), np.float32), np.zeros((1,), np.int32))
    unet(inputs)  # build every sublayer before wrapping them
    counted_types = (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.Dense, Attention,
                     LinearAttention)
    counted = [layer for layer in unet._flatten_layers(include_self=False, recursive=True)
               if isinstance(layer, counted_types)]
    total = 0

    def recording(layer, call):
        def wrapped(x, *args, **kwargs):
            nonlocal total
            out = call(x, *args, **kwargs)
            total += _layer_flops(layer, x.shape, out.shape)
            return out
        return wrapped

    for layer in counted:
        layer.call = recording(layer, layer.call)
    try:
        unet(inputs)
    finally:
        for layer in counted:
            del layer.call
    return total


def ddpm_flops(networks) -> dict:
    result = {}
    for network in networks:
        forward = unet_forward_flops(get_preset("ddpm", network))
        result[network] = {"forward_flops_per_image": forward,
                           "train_flops_per_image": TRAIN_FLOPS_PER_FORWARD * forward}
    keras.backend.clear_session()
    return result


# ----------------------------------------------------------------- running and reporting
def selected_items(only) -> list[Item]:
    items = all_items()
    if not only:
        return items
    names = {item.name for item in items}
    groups = {item.name.split("/")[0] for item in items}
    unknown = sorted(set(only) - names - groups)
    if unknown:
        raise ValueError(f"unknown items {unknown}; choose from {sorted(names | groups)}")
    return [item for item in items if item.name in only or item.name.split("/")[0] in only]


def measure(item, args) -> dict:
    with dtype_policy(item.policy):
        run, work = item.build(args)
        timing = time_repeats(run, args.repeats, args.warmup)
    del run
    keras.backend.clear_session()
    gc.collect()
    return {"unit": item.unit, **rates(timing, work), "seconds": timing["seconds"],
            "work_per_call": work, "policy": item.policy}


def add_derived(results, items, flops):
    """DDPM rows: ratio to the same network's article_eager, attained FLOP/s, fraction of peak."""
    for item in items:
        if item.network is None:
            continue
        row = results[item.name]
        eager = results.get(f"ddpm_{item.network}/article_eager")
        row["ratio_to_article_eager"] = row["median"] / eager["median"] if eager else None
        row["train_flops_per_image"] = flops[item.network]["train_flops_per_image"]
        row["attained_flop_s"] = row["median"] * row["train_flops_per_image"]
        peak = results.get("peak/conv_" + ("bf16" if item.policy == "mixed_bfloat16" else "fp32"))
        row["fraction_of_conv_peak"] = row["attained_flop_s"] / peak["median"] if peak else None


def format_rate(value, unit):
    return f"{value / 1e9:.1f} G" if unit == "FLOP/s" else f"{value:.1f}"


def print_table(results):
    print(f"{'item':<30} {'median':>10} {'min':>10} {'max':>10}  {'unit':<9} notes")
    for name, row in results.items():
        notes = []
        if row.get("ratio_to_article_eager") is not None:
            notes.append(f"{row['ratio_to_article_eager']:.2f}x article_eager")
        if "attained_flop_s" in row:
            notes.append(f"{row['attained_flop_s'] / 1e9:.1f} GFLOP/s")
        if row.get("fraction_of_conv_peak") is not None:
            notes.append(f"{100 * row['fraction_of_conv_peak']:.0f}% of conv peak")
        cells = [format_rate(row[k], row["unit"]) for k in ("median", "min", "max")]
        print(f"{name:<30} {cells[0]:>10} {cells[1]:>10} {cells[2]:>10}  {row['unit']:<9} {', '.join(notes)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per item (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    parser.add_argument("--steps", type=int, default=10, help="training steps (or ops) per call (default 10)")
    parser.add_argument("--batch", type=int, default=64, help="images per training step (default 64)")
    parser.add_argument("--only", nargs="+", help="item names or groups (default: all)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/train_throughput.json"))
    args = parser.parse_args()
    if args.repeats < 1 or args.warmup < 0 or args.steps < 1 or args.batch < 1:
        parser.error("need --repeats, --steps, --batch >= 1 and --warmup >= 0")
    try:
        items = selected_items(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    flops = ddpm_flops(sorted({item.network for item in items if item.network}))
    results = {}
    for item in items:
        results[item.name] = measure(item, args)
        print(f"{item.name}: {format_rate(results[item.name]['median'], item.unit)} {item.unit}", flush=True)
    add_derived(results, items, flops)
    report = {"benchmark": "train_throughput", "machine": machine_info(),
              "cpu_supports_bf16": cpu_supports_bf16(),
              "settings": {"repeats": args.repeats, "warmup": args.warmup, "steps": args.steps,
                           "batch": args.batch},
              "flops_method": "analytic: Conv2D/Conv2DTranspose/Dense kernels x pixels plus attention "
                              "einsums from one forward pass; training = 3x forward",
              "ddpm_flops": flops, "results": results}
    write_json(report, args.json)
    print()
    print_table(results)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
