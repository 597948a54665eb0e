# %% [markdown]
# # Tutorial 8: latent diffusion, the Stable Diffusion idea at MNIST scale
#
# A pixel DDPM runs its U-Net on every pixel at every step. Latent diffusion (Rombach et al.
# 2022, "High-Resolution Image Synthesis with Latent Diffusion Models") first trains an
# autoencoder that squeezes each image into a small *spatial* latent, then fits a diffusion
# model to those latents and decodes its samples. The books behind this project walk the same
# road: autoencoder -> VAE -> diffusion. Here: the plain autoencoder, its KL-regularised
# sibling, the scale factor, why decoding noise fails, the latent DDPM that fixes it, and what
# it costs and buys against the pixel DDPM.
#
# Article section: "Conclusion" of Cheigh & Yamada, *Generating Images using VAEs, GANs, and
# Diffusion Models* (Towards Data Science, 2023,
# https://towardsdatascience.com/generating-images-using-vaes-gans-and-diffusion-models-48963ddeb2b2),
# whose trilemma this model attacks from the speed side; the VAE of its first part is the
# first stage's ancestor.
# Run it as a script or cell by cell (`# %%` cells, or notebooks/08_latent_diffusion.ipynb):
#
#     python tutorials/08_latent_diffusion.py --preset cpu --out outputs/tutorial_latent   # trains what runs/ lacks
#     python tutorials/08_latent_diffusion.py --preset tiny --out /tmp/latent               # what the tests run
#
# With `--preset cpu` it uses the run folders autoencoder, autoencoder_plain, latent_ddpm and
# latent_ddpm_conditional under runs/latent when they hold finished runs, and trains (or resumes)
# the missing ones there (`--preset tiny`: under `--out`/runs). Every figure is written to `--out` (and shown under its cell in a notebook).

# %%
import argparse
import inspect
from pathlib import Path

import numpy as np

import keras_gen
from keras_gen import plotting
from keras_gen.evaluation import (class_accuracy, classifier_fid, coverage_metrics, load_classifier,
                                  measure_sampling_speed, models_dir)
from keras_gen.models.latent import LatentAutoencoder, LatentDDPM, crop_to_digits, latent_scale_factor
from keras_gen.sampling import load_keras_model, load_sampler
from keras_gen.training import train

SETTINGS = {
    # n: images per FID / coverage; steps: DDIM steps of the speed comparison
    "cpu": dict(n=1000, steps=50, runs="runs/latent"),
    "tiny": dict(n=64, steps=5, runs=None),
}
parser = argparse.ArgumentParser()
parser.add_argument("--preset", default="cpu", choices=sorted(SETTINGS))
parser.add_argument("--out", default="outputs/tutorial_latent")
args, _ = parser.parse_known_args()
settings = SETTINGS[args.preset]
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
runs = Path(settings["runs"] or out / "runs")
classifier = load_classifier("mnist")


def trained(kind, folder, preset, **overrides):
    """The run folder ``runs/folder`` holding a finished ``kind`` run (trained, or resumed, here
    when it is not), and its model.keras loaded."""
    path = runs / folder
    if not (path / "model.keras").is_file():
        train(kind, keras_gen.get_preset(kind, preset, **overrides), path, verbose=0,
                        resume=(path / "resume").is_dir())
    return path, load_keras_model(path / "model.keras")


# %% [markdown]
# ## The first stage: an autoencoder with a spatial latent
# Digits padded to 32x32 go through a convolution and two stride-2 convolutions to an 8x8 grid
# of C numbers per position (C = 4 in the cpu preset: 256 numbers for 1024 pixels), and back
# through the mirrored decoder. Unlike the article's VAE, whose latent is a flat vector, the
# latent keeps the image's layout, so a U-Net can run on it. The encoder outputs a Gaussian
# posterior per latent number; the loss is the summed binary cross-entropy of the pixels plus
# a *small* weight times the KL divergence to N(0, I) (LDM's "KL-f" models). With weight 0 it
# is the plain autoencoder (z = the posterior mean, no noise). The loss in keras_gen:

# %%
print(inspect.getsource(LatentAutoencoder.loss_terms))

# %%
preset = "tiny" if args.preset == "tiny" else "cpu"
kl_run, kl_autoencoder = trained("autoencoder", "autoencoder", preset)
plain_run, plain_autoencoder = trained("autoencoder", "autoencoder_plain", "tiny" if preset == "tiny" else "cpu-plain",
                                       kl_weight=0.0)
print(f"KL weight {kl_autoencoder.kl_weight} and {plain_autoencoder.kl_weight}; latent {kl_autoencoder.latent_shape}")

# %% [markdown]
# ## Reconstructions: the ceiling of the whole pipeline
# Whatever the diffusion prior learns, its samples pass through this decoder; the decoder's
# reconstructions of real test digits are the best the pipeline can draw. Their per-pixel
# error and their classifier FID (against the real test set, the README's protocol) are that
# ceiling in numbers.

# %%
test_images, test_labels = keras_gen.load_dataset("mnist", "test")
x = keras_gen.data.preprocess_images(test_images[:settings["n"]], value_range="0_1", pad_to=32)
digits = crop_to_digits(x).numpy()
ceiling = {}
for name, model in (("KL", kl_autoencoder), ("plain", plain_autoencoder)):
    reconstructions = np.concatenate([crop_to_digits(model(x[i:i + 500])).numpy() for i in range(0, len(x), 500)])
    ceiling[name] = dict(mse=float(np.mean((reconstructions - digits) ** 2)),
                         fid=classifier_fid(reconstructions, classifier=classifier), images=reconstructions)
    print(f"{name:5s} autoencoder: per-pixel squared error {ceiling[name]['mse']:.4f}, "
          f"classifier FID of reconstructions {ceiling[name]['fid']:.1f} (n={settings['n']})")
plotting.image_strip([digits[:8], ceiling["KL"]["images"][:8], ceiling["plain"]["images"][:8]],
                     out / "08_reconstructions.png", row_labels=["test digit", "KL autoencoder", "plain autoencoder"],
                     title="Test digits and their reconstructions (the pipeline's ceiling)")

# %% [markdown]
# ## What the latent looks like
# Each of the C channels is an 8x8 image of its own; the digit's layout survives the
# compression, which is why the diffusion model's denoiser can stay a (small) U-Net.

# %%
means = kl_autoencoder.encode(x[:8])[0].numpy()
low, high = means.min(), means.max()
plotting.image_strip([[(means[i, ..., c:c + 1] - low) / (high - low) for i in range(8)]
                      for c in range(kl_autoencoder.latent_channels)], out / "08_latent_channels.png",
                     row_labels=[f"channel {c}" for c in range(kl_autoencoder.latent_channels)],
                     title="The KL autoencoder's 8x8 latent channels (posterior means) of 8 test digits")

# %% [markdown]
# ## Decoding noise, and why the plain autoencoder cannot sample
# An autoencoder is not a generative model by itself: nothing says where in latent space the
# digits lie. Decoding z ~ N(0, I) shows it. The plain autoencoder's latent has whatever scale
# and shape training gave it, so noise lands far from every digit; the small KL weight pulls
# the KL autoencoder's latent towards the origin with bounded spread, yet it is still far from
# N(0, I) (a VAE's strong KL would force that, and blur the reconstructions). The standard
# deviations of the two latents on training digits say how far:

# %%
train_images, _ = keras_gen.load_dataset("mnist", "train")
train_x = keras_gen.data.preprocess_images(train_images[:4096], value_range="0_1", pad_to=32).numpy()
noise_rows, noise_fid = [], {}
for name, model in (("KL", kl_autoencoder), ("plain", plain_autoencoder)):
    print(f"{name:5s} autoencoder: latent std on 4096 training digits {1 / latent_scale_factor(model, train_x):.2f}")
    decoded = model.sample(settings["n"], seed=0)
    noise_fid[name] = classifier_fid(decoded, classifier=classifier)
    noise_rows.append(decoded[:8])
    print(f"{name:5s} autoencoder, decoded N(0, I): classifier FID {noise_fid[name]:.1f} (n={settings['n']})")

# %% [markdown]
# ## The scale factor
# The diffusion's noise schedule assumes data of about unit variance: at t = T its x_T should be
# pure N(0, I). LDM therefore multiplies the latents by one number, 1 / (their standard deviation
# on the training set), measured once when the prior is built and stored in its config, and
# divides by it before decoding:

# %%
print(inspect.getsource(latent_scale_factor))

# %% [markdown]
# ## The latent DDPM: a prior fitted to the latent
# keras_gen's DDPM (the same schedule, EMA, DDIM and guidance code as the pixel model) whose
# data are the frozen encoder's scaled posterior means; its U-Net has one down level (8x8 ->
# 4x4, attention at 4x4) and, in the cpu preset, 64 base channels (dim 32 for 6 epochs stopped
# far above the pixel DDPM's FID with its loss still falling). Two methods make a DDPM a latent
# one: `diffusion_data` turns a training batch into what the diffusion runs on (the encoded,
# scaled latents, outside the gradient: the first stage is frozen, and training only moves the
# U-Net; tests/test_latent.py checks it weight by weight), and `to_images` decodes.

# %%
print(inspect.getsource(LatentDDPM.diffusion_data))
print(inspect.getsource(LatentDDPM.to_images))

# %%
first_stage = str(kl_run)
prior_run, prior = trained("latent_ddpm", "latent_ddpm", preset, first_stage=first_stage)
print(f"scale factor {prior.scale_factor:.3f}; DDIM steps {prior.ddim_steps}")
latent_samples = prior.sample(settings["n"], seed=0, progress=False)
latent_fid = classifier_fid(latent_samples, classifier=classifier)
latent_coverage = coverage_metrics(classifier.probs(latent_samples))
print(f"latent DDPM, DDIM-{prior.ddim_steps}: classifier FID {latent_fid:.1f}, classes >= 2%: "
      f"{latent_coverage['classes_covered']}/10 (n={settings['n']})")
plotting.image_strip([*noise_rows, latent_samples[:8]], out / "08_prior_vs_noise.png",
                     row_labels=["KL AE, N(0, I)", "plain AE, N(0, I)", "latent DDPM"],
                     title="Decoding noise vs decoding the latent DDPM's samples")
plotting.image_grid(latent_samples[:64], out / "08_samples.png", title=f"Latent DDPM, DDIM-{prior.ddim_steps}")

# %% [markdown]
# ## Against the pixel DDPM at the same number of DDIM steps
# Both exports timed side by side in this process, at the same step count (the shipped pixel
# DDPM with `--preset cpu`; an untrained tiny one with `--preset tiny`, which times but cannot
# be compared for quality). The latent model's U-Net runs on 8x8 instead of 32x32, 16 times
# fewer positions, although with the cpu presets it has more parameters (2.4M against 1.8M: a
# wider U-Net with fewer levels); it pays one decoder pass per sample on top.

# %%
if args.preset == "tiny":
    pixel_path = out / "tiny_pixel_ddpm.keras"
    keras_gen.get_model_kind("ddpm").build(keras_gen.get_preset("ddpm", "tiny")).save(pixel_path)
else:
    pixel_path = models_dir() / "ddpm"
speeds = {}
for name, path in (("pixel DDPM", pixel_path), ("latent DDPM", prior_run / "saved_model")):
    sampler = load_sampler(path)
    speed = measure_sampling_speed(lambda n, seed: sampler(n, seed, steps=settings["steps"]), n=64, batch_size=64,
                                   repeats=3, nfe_per_sample=sampler.network_passes(steps=settings["steps"]))
    speeds[name] = speed["samples_per_s"]
    print(f"{name:11s}: {speed['samples_per_s']:.1f} samples/s at DDIM-{settings['steps']} "
          f"({speed['nfe_per_sample']} network passes per sample)")
print(f"latent / pixel speed: {speeds['latent DDPM'] / speeds['pixel DDPM']:.1f}x")

# %% [markdown]
# ## "Draw me a 7": the conditional latent DDPM
# Labels condition the prior only (the first stage stays unconditional): the U-Net gets a class
# embedding, training drops 10% of the labels to the null class, and sampling mixes the
# conditional and unconditional predictions with classifier-free guidance (Ho & Salimans 2022),
# exactly as the pixel model does (tutorial 5).

# %%
_, conditional = trained("latent_ddpm", "latent_ddpm_conditional", preset, first_stage=first_stage, num_classes=10)
rows = [conditional.sample(8, seed=0, labels=np.full(8, digit), progress=False) for digit in range(10)]
plotting.image_strip(rows, out / "08_class_grid.png", row_labels=[str(d) for d in range(10)],
                     title=f"Conditional latent DDPM, guidance {conditional.guidance}")
labels = np.arange(settings["n"]) % 10
accuracy = class_accuracy(conditional.sample(settings["n"], seed=1, labels=labels, progress=False), labels,
                          classifier=classifier)
print(f"conditional latent DDPM: class accuracy {accuracy:.3f} at guidance {conditional.guidance} "
      f"(n={settings['n']})")

# %% [markdown]
# ## What we learned
# - An autoencoder compresses; it does not sample. Decoding noise gives strokes, not digits,
#   for the plain one and (less badly) for the KL-regularised one.
# - A diffusion prior on the scaled latent turns the decoder into a generator: the latent
#   DDPM's samples are digits, drawn by a U-Net that runs on an 8x8 grid instead of 32x32.
# - Its quality cannot pass the decoder's: the FID of the reconstructions is the ceiling, and
#   the prior's FID sits above it.
# - This run's numbers:

# %%
print(f"preset {args.preset} (n={settings['n']}):")
for name in ("KL", "plain"):
    print(f"  {name} autoencoder: reconstruction error {ceiling[name]['mse']:.4f}, reconstruction FID "
          f"{ceiling[name]['fid']:.1f}, decoded-noise FID {noise_fid[name]:.1f}")
print(f"  latent DDPM DDIM-{prior.ddim_steps}: FID {latent_fid:.1f}, classes >= 2% "
      f"{latent_coverage['classes_covered']}/10; conditional accuracy {accuracy:.3f}")
print(f"  speed at DDIM-{settings['steps']}: latent {speeds['latent DDPM']:.1f}/s, pixel {speeds['pixel DDPM']:.1f}/s "
      f"({speeds['latent DDPM'] / speeds['pixel DDPM']:.1f}x)")
print(f"figures written to {out}")
