"""Sampling throughput (samples/s) of the shipped exports against the article's eager DDPM sampler.

Usage:
    python benchmarks/sampling_throughput.py [--repeats 3] [--warmup 1] [--exports saved_models] \
        [--batch 500] [--ddim-batch 64] [--ddim-steps 10 25 50] [--full-batch 16] [--skip-full] \
        [--article-steps 10] [--json benchmarks/results/sampling_throughput.json]

Rows (each with its network evaluations per sample, NFE):
  vae, dcgan                  the shipped SavedModels (keras_gen.sampling.load_sampler) drawing
                              --batch images per call (NFE 1: the decoder or the generator)
  ddpm/ddim_{S}               the shipped DDPM export, DDIM with S steps, --ddim-batch images per
                              call (NFE S)
  ddpm/ddpm_full              the same, ancestral sampling over all T steps (NFE T), --full-batch
                              images per call; left out with --skip-full
  article/ddpm_eager          the article's sampler: its 32M-parameter U-Net
                              (build_ddpm(get_preset("ddpm", "article")), untrained: the weights do
                              not change the time), ONE image at a time, an eager (no tf.function)
                              loop of ancestral steps in NumPy around ``unet((x, t))``, over the
                              preset's T = 200 timesteps

The article's sampler takes minutes per image on a CPU, so only --article-steps of its steps are
timed per call; its seconds per sample are extrapolated as (median seconds per step) x T, and its
row says so (``extrapolated_from_steps``). Every row has ``speedup_vs_article``: the article's
seconds per sample over the row's; ``ddim50_vs_article`` repeats it for the shipped default
(DDIM-50, batched). Timing is benchmarks/timing.py: --warmup untimed calls, then --repeats timed
calls; the JSON records the median, min and max samples/s over the repeats and every call's seconds.
"""

from __future__ import annotations

import argparse
import gc
from pathlib import Path

import keras
import numpy as np

from keras_gen.evaluation.report import write_json
from keras_gen.sampling import load_sampler
from keras_gen.models.ddpm import build_ddpm
from keras_gen.presets import get_preset
from keras_gen.machine import machine_info
from timing import rates, time_repeats

SEED = 0


def export_call(sample, n, **options):
    """A call drawing n samples from a loaded export (its result is a NumPy array: finished work)."""
    def run():
        sample(n, SEED, **options)
    return run


def article_ddpm_step(unet, schedule, x, t, rng):
    """One ancestral step x_t -> x_{t-1} as the article writes it: the U-Net called eagerly, the
    update in NumPy on the host, no noise added at t = 0."""
    eps = unet((x, np.array([t], np.int32)), training=False).numpy()
    beta, alpha, abar = schedule.betas[t], schedule.alphas[t], schedule.alphas_cumprod[t]
    mean = (x - beta / np.sqrt(1.0 - abar) * eps) / np.sqrt(alpha)
    noise = rng.standard_normal(x.shape) if t > 0 else 0.0
    return (mean + np.sqrt(beta) * noise).astype(np.float32)


def article_call(steps):
    """A call running the first ``steps`` of the article's T steps for one image; returns (run, T)."""
    model = build_ddpm(get_preset("ddpm", "article"))
    unet, schedule = model.unet, model.schedule
    timesteps = schedule.timesteps
    if not 1 <= steps <= timesteps:
        raise ValueError(f"--article-steps must be in [1, {timesteps}], got {steps}")
    rng = np.random.default_rng(SEED)
    x_T = rng.standard_normal((1, 32, 32, unet.channels)).astype(np.float32)

    def run():
        x = x_T
        for t in range(timesteps - 1, timesteps - 1 - steps, -1):
            x = article_ddpm_step(unet, schedule, x, t, rng)
    return run, timesteps


def shipped_rows(args) -> list[tuple]:
    """(name, call, samples per call, NFE per sample, facts) of every shipped-export row."""
    rows = []
    for kind in ("vae", "dcgan"):
        sample = load_sampler(args.exports / kind)
        rows.append((kind, export_call(sample, args.batch), args.batch, 1, {"model": str(args.exports / kind)}))
    sample = load_sampler(args.exports / "ddpm")
    facts = {"model": str(args.exports / "ddpm"),
             "trained_precision": sample.info.get("train_config", {}).get("precision")}
    for steps in args.ddim_steps:
        rows.append((f"ddpm/ddim_{steps}", export_call(sample, args.ddim_batch, sampler="ddim", steps=steps),
                     args.ddim_batch, steps, {**facts, "sampler": "ddim", "steps": steps}))
    if not args.skip_full:
        timesteps = sample.info["config"]["schedule"]["timesteps"]
        rows.append(("ddpm/ddpm_full", export_call(sample, args.full_batch, sampler="ddpm"),
                     args.full_batch, timesteps, {**facts, "sampler": "ddpm", "steps": timesteps}))
    return rows


def measure(run, samples_per_call, args) -> dict:
    timing = time_repeats(run, args.repeats, args.warmup)
    row = {"unit": "samples/s", **rates(timing, samples_per_call), "seconds": timing["seconds"]}
    row["seconds_per_sample"] = 1.0 / row["median"]
    return row


def measure_article(args) -> dict:
    run, timesteps = article_call(args.article_steps)
    row = measure(run, args.article_steps / timesteps, args)
    del run
    keras.backend.clear_session()
    gc.collect()
    per_step = [s / args.article_steps for s in row["seconds"]]
    row.update(batch=1, nfe_per_sample=timesteps, sampler="ddpm", steps=timesteps,
               model='build_ddpm(get_preset("ddpm", "article")), untrained, eager, float32',
               extrapolated_from_steps=args.article_steps,
               seconds_per_step={"median": float(np.median(per_step)), "min": min(per_step), "max": max(per_step)},
               note=f"seconds_per_sample = median seconds per step x T ({timesteps}); "
                    f"{args.article_steps} of the {timesteps} steps timed per call")
    return row


def print_table(results):
    print(f"{'row':<20} {'samples/s':>10} {'min':>10} {'max':>10} {'s/sample':>10} {'NFE':>5} {'batch':>6}  vs article")
    for name, row in results.items():
        speedup = row.get("speedup_vs_article")
        print(f"{name:<20} {row['median']:>10.4g} {row['min']:>10.4g} {row['max']:>10.4g} "
              f"{row['seconds_per_sample']:>10.4g} {row['nfe_per_sample']:>5} {row['batch']:>6}  "
              + (f"{speedup:.1f}x" if speedup is not None else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per row (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    parser.add_argument("--exports", type=Path, default=Path("saved_models"),
                        help="folder holding the vae, dcgan and ddpm exports (default saved_models)")
    parser.add_argument("--batch", type=int, default=500, help="VAE and DCGAN samples per call (default 500)")
    parser.add_argument("--ddim-batch", type=int, default=64, help="DDPM samples per DDIM call (default 64)")
    parser.add_argument("--ddim-steps", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--full-batch", type=int, default=16,
                        help="DDPM samples per full T-step call (default 16)")
    parser.add_argument("--skip-full", action="store_true", help="leave out the full T-step DDPM row")
    parser.add_argument("--article-steps", type=int, default=10,
                        help="article sampler steps timed per call (default 10; extrapolated to T)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/sampling_throughput.json"))
    args = parser.parse_args()
    if min(args.repeats, args.batch, args.ddim_batch, args.full_batch, args.article_steps, *args.ddim_steps) < 1 \
            or args.warmup < 0:
        parser.error("counts, batches and steps must be >= 1 (--warmup >= 0)")
    results = {}
    for name, run, samples_per_call, nfe, facts in shipped_rows(args):
        results[name] = {**measure(run, samples_per_call, args), "batch": samples_per_call,
                         "nfe_per_sample": nfe, **facts}
        print(f"{name}: {results[name]['median']:.4g} samples/s", flush=True)
    article = measure_article(args)
    print(f"article/ddpm_eager: {article['seconds_per_sample']:.4g} s per sample (extrapolated)", flush=True)
    results["article/ddpm_eager"] = article
    for row in results.values():
        row["speedup_vs_article"] = article["seconds_per_sample"] / row["seconds_per_sample"]
    ddim50 = results.get("ddpm/ddim_50")
    report = {"benchmark": "sampling_throughput", "machine": machine_info(),
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "ddim50_vs_article": None if ddim50 is None else {
                  "shipped_ddim50_seconds_per_sample": ddim50["seconds_per_sample"],
                  "article_seconds_per_sample": article["seconds_per_sample"],
                  "speedup": ddim50["speedup_vs_article"],
                  "note": "shipped: DDIM-50 in batches of --ddim-batch; article: one image, eager, "
                          "T=200 ancestral steps, extrapolated from the timed steps"},
              "results": results}
    write_json(report, args.json)
    print()
    print_table(results)
    if ddim50 is not None:
        print(f"\nshipped DDIM-50 (batched) vs the article's sampler: {ddim50['speedup_vs_article']:.1f}x "
              "less time per sample")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
