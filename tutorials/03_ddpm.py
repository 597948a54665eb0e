# %% [markdown]
# # Tutorial 3: the DDPM, and DDIM for fast sampling
#
# A denoising diffusion model learns to undo a fixed noising process one small step at a time;
# sampling runs the learned reverse chain from pure noise. We rebuild the article's DDPM and its
# attention U-Net, follow Algorithm 1 (training) and Algorithm 2 (sampling), redo its "reverse
# engineering", then sample with DDIM's strided steps, which the conclusion names as the fix.
#
# Article sections: "Diffusion models" and "Conclusion" of Cheigh & Yamada, *Generating Images
# using VAEs, GANs, and Diffusion Models* (Towards Data Science, 2023,
# https://towardsdatascience.com/generating-images-using-vaes-gans-and-diffusion-models-48963ddeb2b2).
# Run it as a script or cell by cell (`# %%` cells, or notebooks/03_ddpm.ipynb):
#
#     python tutorials/03_ddpm.py --preset cpu --out outputs/tutorial_ddpm   # prints its training and sampling times
#     python tutorials/03_ddpm.py --preset tiny --out /tmp/ddpm               # what the tests run
#
# Every figure is written to `--out` (and shown under its cell in a notebook).

# %%
import argparse
import inspect
import time
from pathlib import Path

import keras
import numpy as np

import keras_gen
from keras_gen import diffusion, plotting

parser = argparse.ArgumentParser()
parser.add_argument("--preset", default="cpu", choices=["article", "cpu", "tiny"])
parser.add_argument("--out", default="outputs/tutorial_ddpm")
args, _ = parser.parse_known_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Article step 1: the forward process
# A fixed Markov chain adds Gaussian noise with a linear variance schedule beta_1..beta_T from
# 1e-4 to 0.02. Its closed form lets us jump to any step:
# x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.
#
# **Erratum 7 (keras_gen differs; docs/errata.md).** The article's alpha-bar is shifted by one
# step (it starts with 1), so its t = 0 adds no noise and every sampling coefficient is one step
# off. keras_gen's `alphas_cumprod[t]` is the product of alphas[0..t].

# %%
config = keras_gen.get_preset("ddpm", args.preset)
print(config)
schedule = diffusion.NoiseSchedule(timesteps=config["timesteps"])
print("alpha_bar[0] =", schedule.alphas_cumprod[0], " alpha_bar[T-1] =", schedule.alphas_cumprod[-1])

# %% [markdown]
# ## Article step 2: the data
# 32x32 images in [-1, 1]. **Erratum 10 (keras_gen differs; docs/errata.md).** The article
# resizes 28 -> 32 bilinearly, which blurs the strokes; the cpu preset pads 2 background pixels
# per side, which is lossless and cropped back exactly after sampling. The article preset keeps
# the article's resize (`data_mode="resize"`). The model kind knows which (`data_options`).

# %%
data_options = keras_gen.get_model_kind("ddpm").data_options(config)
print(data_options)
train_ds = keras_gen.make_dataset("mnist", "train", config["batch_size"], seed=config["seed"],
                                  limit=config["limit"], **data_options)
x0 = next(iter(train_ds))[:4].numpy()
# The article's strip: t = 0, T/8, ..., 7T/8 and the last step (0, 25, ..., 175, 199 for T = 200).
T = config["timesteps"]
ts = [i * T // 8 for i in range(8)] + [T - 1]
plotting.forward_process_strip(schedule, x0, out / "03_forward_process.png", ts=ts)

# %% [markdown]
# ## Article step 3: the U-Net noise predictor
# A U-Net predicts the noise in x_t given t: a sinusoidal time embedding and MLP; down levels of
# two ResNet blocks (the time embedding scales and shifts their normalised features), a linear
# attention and a strided convolution; a middle of ResNet, full attention, ResNet; up levels on
# the concatenated skips. `UNet(dim=64, dim_mults=(1, 2, 4, 8))` is the article's 32M-parameter
# network; the cpu preset is a smaller one with attention only at low resolution.
#
# **Erratum 9 (keras_gen differs; docs/errata.md).** The article's attention subtracts the *index*
# of the largest logit (argmax) before the softmax; keras_gen subtracts the largest *value*, the
# stable softmax.

# %%
model = keras_gen.models.build_ddpm(config)
print(f"U-Net parameters: {model.unet.count_params():,}")

# %% [markdown]
# ## Article step 4: training (Algorithm 1)
# Draw t uniformly, noise x_0 to x_t, and regress the noise with a mean squared error.
#
# **Errata 6, 11 (keras_gen differs; docs/errata.md).** The article's `forward()` returns (noise,
# x_t) but its training step unpacks (x_t, noise): the network is fed pure noise and asked to
# output the noised image. keras_gen feeds x_t and targets the noise. The article also runs the
# step eagerly with NumPy noise on the host; here t and the noise are drawn in-graph inside a
# compiled `train_step`. The cpu preset also keeps an exponential moving average of the weights
# for sampling (`ema_decay`); the article has none, so its preset sets `ema_decay = 0` (the
# sampling weights are the trained ones).
#
# Algorithm 1 in keras_gen's code (`training_target` is the noise for the default
# `prediction="eps"`; tutorial 6 uses the other targets):

# %%
print(inspect.getsource(keras_gen.DDPM.diffusion_loss))

# %%
model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]))
grids = keras_gen.callbacks.SampleGrid(lambda n, seed: model.sample(n, seed, progress=False),
                                       out / "03_epochs", n=36)
start = time.perf_counter()
history = model.fit(train_ds, epochs=config["epochs"], callbacks=[grids], verbose=2)
train_seconds = time.perf_counter() - start
print(f"trained in {train_seconds:.0f} s")
plotting.loss_curves(history.history, out / "03_loss_curve.png", title="DDPM noise-prediction loss")

# %% [markdown]
# ## Article step 5: sampling (Algorithm 2)
# Start from pure noise and apply the learned reverse step T times.
#
# **Erratum 8 (keras_gen differs; docs/errata.md).** The article's loop runs T - 1 of the T steps
# and adds noise at every step, including the last; Algorithm 2 adds none at t = 0. keras_gen runs
# all T steps, batched, with the per-step work compiled once, and returns the whole trajectory on
# request. One step of Algorithm 2:

# %%
print(inspect.getsource(diffusion.ddpm_step))

# %%
start = time.perf_counter()
images, trajectory = model.sample(16, seed=0, sampler="ddpm", return_trajectory=True)
ddpm_seconds = time.perf_counter() - start
plotting.image_grid(images, out / "03_samples_ddpm.png", title=f"DDPM, {config['timesteps']} steps")
plotting.reverse_process_strip(trajectory[:, :4], out / "03_reverse_process.png")

# %% [markdown]
# ## Article step 6: "reverse engineering"
# The article noises real images to the last timestep and runs the whole chain back: at t = T - 1
# almost nothing of the image is left, so the "recovered" digits are new samples. Noising only
# halfway (our second figure, a difference from the article) shows what the chain keeps: the
# further we noise, the more it forgets.

# %%
noised, recovered = model.reconstruct(x0, T - 1, seed=0)
plotting.reverse_engineering(x0, noised, recovered, out / "03_reverse_engineering.png", t=T - 1)
t_mid = T // 2
noised, recovered = model.reconstruct(x0, t_mid, seed=0)
plotting.reverse_engineering(x0, noised, recovered, out / "03_reverse_engineering_half.png", t=t_mid)

# %% [markdown]
# ## Conclusion: strided sampling with DDIM
# The article names faster samplers as the fix for the DDPM's slow sampling. DDIM reuses the same
# trained network with a deterministic update over a short subsequence of timesteps: 50 network
# passes instead of T. Its parameter eta blends in fresh noise at each step (0: deterministic,
# 1: DDPM-like variance). The cpu preset samples with eta = 1 (`ddim_eta`): its briefly trained
# network drew many stroke tangles at eta = 0 and clearly fewer at eta = 1 (README, "DDIM eta").

# %%
ddim_steps = min(50, config["timesteps"])
start = time.perf_counter()
fast = model.sample(16, seed=0, sampler="ddim", steps=ddim_steps)
ddim_seconds = time.perf_counter() - start
plotting.image_grid(fast, out / "03_samples_ddim.png", title=f"DDIM, {ddim_steps} steps")
print(f"16 samples: DDPM {ddpm_seconds:.1f} s ({config['timesteps']} passes), "
      f"DDIM {ddim_seconds:.1f} s ({ddim_steps} passes)")

# %% [markdown]
# ## The trilemma, for the DDPM
# Quality and coverage: the best of the three models. Speed: one network pass per step, T steps;
# DDIM trades a little quality for T / 50 times fewer passes. Tutorial 4 measures all of it.

# %% [markdown]
# ## What we learned
# - Training is plain regression: noise an image to a random step and predict the noise.
# - Sampling is the expensive part: one U-Net pass per step, so the step count sets the speed,
#   and DDIM cuts it with the same trained network.
# - This run's numbers (training, and the two samplers on the same 16 seeds):

# %%
print(f"preset {args.preset}: T={T}, {config['epochs']} epochs, batch {config['batch_size']}, "
      f"U-Net {model.unet.count_params():,} parameters")
print(f"  trained in {train_seconds:.0f} s, final loss {history.history['loss'][-1]:.4f}")
print(f"  16 samples: DDPM {ddpm_seconds:.1f} s for {T} passes, DDIM {ddim_seconds:.1f} s for {ddim_steps} passes")
print("figures written to", out.resolve())
