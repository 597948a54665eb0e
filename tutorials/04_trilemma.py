# %% [markdown]
# # Tutorial 4: the generative trilemma, measured
#
# The article's opening section names three things a generative model should do (high-quality
# samples, fast sampling, coverage of every mode of the data) and its conclusion compares the VAE,
# the DCGAN and the DDPM on them by looking at sample grids. This tutorial redoes that comparison
# with numbers, on the models keras_gen ships in saved_models/ (trained with the cpu presets).
#
# Article sections: "The generative model trilemma" and "Conclusion" of Cheigh & Yamada,
# *Generating Images using VAEs, GANs, and Diffusion Models* (Towards Data Science, 2023,
# https://towardsdatascience.com/generating-images-using-vaes-gans-and-diffusion-models-48963ddeb2b2).
# Run it as a script or cell by cell (`# %%` cells, or notebooks/04_trilemma.ipynb):
#
#     python tutorials/04_trilemma.py --preset full --out outputs/tutorial_trilemma   # n=2000 per row
#     python tutorials/04_trilemma.py --preset tiny --out /tmp/trilemma               # what the tests run
#
# Every figure is written to `--out` (and shown under its cell in a notebook).

# %%
import argparse
import inspect
from pathlib import Path

import tensorflow as tf

from keras_gen import plotting
from keras_gen.evaluation import evaluate_paths, format_table, models_dir

SETTINGS = {
    # n samples per row; the full 1000-step DDPM costs 1000 network passes per sample, so it gets
    # fewer samples (FID of a small set is biased upward; KID is not, so read that row by its KID
    # too). "tiny" (the tests) leaves the full DDPM out: it alone
    # would take a minute.
    "full": dict(n=2000, ddpm_full_n=64, ddim_steps=(10, 25, 50, 100), speed_repeats=3),
    "quick": dict(n=500, ddpm_full_n=16, ddim_steps=(10, 50), speed_repeats=1),
    "tiny": dict(n=64, ddpm_full_n=0, ddim_steps=(5, 10), speed_repeats=1),
}

parser = argparse.ArgumentParser()
parser.add_argument("--preset", default="quick", choices=sorted(SETTINGS))
parser.add_argument("--models", default=None, help="folder with vae/, dcgan/, ddpm/ exports (default: shipped)")
parser.add_argument("--out", default="outputs/tutorial_trilemma")
args, _ = parser.parse_known_args()
settings = SETTINGS[args.preset]
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
models = Path(args.models) if args.models else models_dir()
paths = [models / kind for kind in ("vae", "dcgan", "ddpm")]
print("models:", ", ".join(str(p) for p in paths))

# %% [markdown]
# ## The article's verdict, by eye
# The conclusion sums the three models up roughly like this (our paraphrase):
#
# | model | quality | speed | coverage |
# |---|---|---|---|
# | VAE | low (blurry) | fast: one decoder pass | good |
# | GAN | high | fast: one generator pass | poor (mode collapse) |
# | diffusion | high | slow: one U-Net pass per step | good |
#
# and it points at strided (DDIM) sampling as the way to make diffusion fast.

# %% [markdown]
# ## Each axis as a number
# - **Quality**: the Fréchet distance between the classifier features of samples and of the real
#   test set ("classifier FID": the Inception network of the usual FID replaced by a small MNIST
#   classifier that keras_gen trains and ships), KID (unbiased, good for small n), and precision /
#   recall (is each sample near real data; is each real image near some sample).
# - **Speed**: network evaluations per sample (NFE) and measured samples per second on this machine.
# - **Coverage**: the classifier's predicted-class histogram: how many of the ten digits get at
#   least 2% of the samples, and its entropy (1 = perfectly balanced).
#
# Reference rows scored the same way frame every number: real training images (the best a model
# can do), uniform noise and a single digit (two ways to fail).

# %%
report = evaluate_paths(paths, n=settings["n"], ddim_steps=settings["ddim_steps"],
                        ddpm_full=settings["ddpm_full_n"] > 0,
                        ddpm_full_n=settings["ddpm_full_n"] or None, speed_repeats=settings["speed_repeats"],
                        report_dir=out, batch_size=min(settings["n"], 500), verbose=False)

# %% [markdown]
# ## The measured table
# The DDPM appears once per sampler: its full ancestral sampler (T steps) and DDIM at several step
# counts, so speed against quality is one curve in the chart.

# %%
print(format_table(report))
threads = tf.config.threading.get_intra_op_parallelism_threads() or "all"
print(f"\nn={report['n']} samples per row (full-step DDPM: {report['ddpm_full_n']}), "
      f"speed = median of {settings['speed_repeats']} timed batches, TensorFlow threads: {threads}")

# %% [markdown]
# ## Reading it against the article
# Print one line per axis: which model wins, and by how much.

# %%
rows = {r["label"]: r for r in report["rows"]}
best_quality = min(rows.values(), key=lambda r: r["fid"])
fastest = max(rows.values(), key=lambda r: r["samples_per_s"])
covering = [r["label"] for r in rows.values() if r["classes_covered"] == 10]
print(f"best quality: {best_quality['label']} (FID {best_quality['fid']:.1f})")
print(f"fastest: {fastest['label']} ({fastest['samples_per_s']:.0f} samples/s)")
print(f"all ten digits with >= 2% of samples: {', '.join(covering) or 'none'}")

# %% [markdown]
# ## The article's three trilemma charts, measured
# The article closes each model's section with a triangle of quality, speed and coverage, red
# for good and blue for bad, marked by eye. Here the marks come from the table above, by stated
# rules against the three models measured side by side (`plotting.trilemma_marks`): quality is
# good within 1.5x of the best FID, speed within 10x of the fastest, coverage when every digit
# holds >= 2% of the samples. The DDPM's triangle uses its DDIM row with the most steps.
# The rules, in keras_gen's code:

# %%
print(inspect.getsource(plotting.trilemma_marks))


# %%
def row_of(prefix):
    return next(r for r in report["rows"] if r["label"].startswith(prefix))


ddim_rows = [r for r in report["rows"] if r["label"].startswith("ddpm DDIM")]
per_model = [row_of("vae"), row_of("dcgan"), max(ddim_rows, key=lambda r: r["steps"])]
for r in per_model:
    marks = plotting.trilemma_marks(r, per_model)
    r["marks"] = marks
    print(f"{r['label']}: " + ", ".join(f"{axis} {'good' if good else 'bad'}" for axis, good in marks.items()))
    plotting.model_trilemma(r, per_model, out / f"trilemma_{r['label'].split()[0]}.png")

# %% [markdown]
# ## What we learned
# - Measured, the article's verdict mostly holds: no model is good on all three axes at once, and
#   the diffusion model pays for its quality in network passes.
# - DDIM moves the DDPM along the speed axis; how far before quality falls is the curve in
#   `trilemma.png` (tutorial 6 pushes it further with distillation).
# - Figures: `trilemma.png` (FID against samples/s and against class entropy, classes covered),
#   `trilemma_<model>.png` (the per-model triangles), `histogram_<row>.png` and `samples_<row>.png`.
# - This run's numbers, one line per model row:

# %%
print(f"preset {args.preset}: n={report['n']} samples per row")
for r in per_model:
    good = [axis for axis, ok in r["marks"].items() if ok]
    print(f"  {r['label']}: FID {r['fid']:.1f}, {r['samples_per_s']:.0f} samples/s, "
          f"{r['classes_covered']} digits >= 2%; good on: {', '.join(good) or 'none'}")
print(f"figures written to {out}")
