# %% [markdown]
# # Tutorial 5: class-conditional generation and classifier-free guidance
#
# The article's three models draw a random digit; its conclusion names conditional generation
# (class labels, then text) as the next step. Here each model learns p(x | y) instead, so we can
# ask for a 7: every model takes `num_classes`, trains on (image, label) batches and samples with
# `labels=`. The DDPM gets classifier-free guidance (Ho & Salimans, *Classifier-Free Diffusion
# Guidance*, 2022), whose scale w trades diversity for fidelity; we measure that trade.
#
# Article section: "Conclusion" of Cheigh & Yamada, *Generating Images using VAEs, GANs, and
# Diffusion Models* (Towards Data Science, 2023,
# https://towardsdatascience.com/generating-images-using-vaes-gans-and-diffusion-models-48963ddeb2b2).
# Run it as a script or cell by cell (`# %%` cells, or notebooks/05_conditional.ipynb):
#
#     python tutorials/05_conditional.py --preset cpu --out outputs/tutorial_conditional  # three trainings; each prints its time
#     python tutorials/05_conditional.py --preset tiny --out /tmp/conditional             # what the tests run
#
# `--dataset fashion_mnist` works the same (with that dataset's classifier for the numbers).
# Every figure is written to `--out` (and shown under its cell in a notebook).

# %%
import argparse
import inspect
import time
from pathlib import Path

import keras
import numpy as np

import keras_gen
from keras_gen import plotting
from keras_gen.evaluation import evaluate_conditional, guidance_sweep

SETTINGS = {  # samples per class for the numbers, and the guidance scales of the sweep
    "cpu": dict(n_per_class=100, scales=(0.0, 1.0, 3.0, 5.0)),
    "tiny": dict(n_per_class=4, scales=(0.0, 1.0, 3.0, 5.0)),
}
parser = argparse.ArgumentParser()
parser.add_argument("--preset", default="cpu", choices=sorted(SETTINGS))
parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion_mnist"])
parser.add_argument("--out", default="outputs/tutorial_conditional")
args, _ = parser.parse_known_args()
settings = SETTINGS[args.preset]
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
NUM_CLASSES = 10
per_class = np.repeat(np.arange(NUM_CLASSES), 8)  # a grid with one row of 8 images per class

# %% [markdown]
# ## The data: (image, label) batches
# `make_dataset(..., with_labels=True)` yields the labels beside the images; a model built with
# `num_classes` refuses batches without them (a ValueError pointing at `with_labels=True`).

# %%
batch, labels = next(iter(keras_gen.make_dataset(args.dataset, "train", 16, with_labels=True, seed=0)))
print("images", batch.shape, "labels", labels.numpy())

# %% [markdown]
# ## A conditional VAE
# A label embedding is concatenated to the encoder's features and to z before the decoder, so
# the encoder no longer has to store the class in z: z keeps the style (slant, thickness) and the
# label picks the digit. Sampling decodes z ~ N(0, I) with the label we ask for.

# %%
config = keras_gen.get_preset("vae", args.preset, dataset=args.dataset, num_classes=NUM_CLASSES)
vae = keras_gen.VAE(latent_dim=config["latent_dim"], seed=config["seed"], num_classes=NUM_CLASSES)
vae.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]))
vae_ds = keras_gen.make_dataset(args.dataset, "train", config["batch_size"], binarize=True, with_labels=True,
                                seed=config["seed"], limit=config["limit"])
start = time.perf_counter()
vae.fit(vae_ds, epochs=config["epochs"], verbose=2)
seconds = {"VAE": time.perf_counter() - start}
print(f"VAE trained in {seconds['VAE']:.0f} s")
plotting.image_grid(vae.sample(len(per_class), seed=0, labels=per_class), out / "05_vae_classes.png",
                    ncols=8, title="conditional VAE: one row per class")

# %% [markdown]
# ## A conditional DCGAN
# The generator gets a label embedding concatenated to z. The discriminator is a *projection
# discriminator* (Miyato & Koyama, 2018): P(real | image, label) = sigmoid(psi(h) + <embed(label), h>)
# on its image features h, so it can reject a good 3 drawn when a 7 was asked for. G is trained on
# the labels of each real batch. (The article's alternating `train_on_batch` loop stays
# unconditional; `fit` trains this one.)
#
# A conditional generator has an easy way out: the label alone tells it which digit to draw, so
# it can ignore z and draw one good image per class, which D cannot reject one image at a time.
# Ours did exactly that early in training (eight near-identical images per class). The fix is the *mode-seeking* term (Mao et al., 2019)
# added to G's loss: for two codes z1, z2 of the same class it penalises
# |z1 - z2| / |G(z1) - G(z2)|, so different codes must give different images
# (`DCGAN(mode_seeking=1.0)`, the default for a conditional DCGAN; logged as `mode_seeking`).

# %%
print(inspect.getsource(keras_gen.models.dcgan.mode_seeking_penalty))

# %%
config = keras_gen.get_preset("dcgan", args.preset, dataset=args.dataset, num_classes=NUM_CLASSES)
gan = keras_gen.DCGAN(latent_dim=config["latent_dim"], seed=config["seed"], num_classes=NUM_CLASSES)
gan.compile(d_optimizer=keras.optimizers.Adam(config["learning_rate"], beta_1=config["beta_1"]),
            g_optimizer=keras.optimizers.Adam(config["learning_rate"], beta_1=config["beta_1"]))
gan_ds = keras_gen.make_dataset(args.dataset, "train", config["batch_size"], value_range="-1_1",
                                with_labels=True, drop_remainder=True, seed=config["seed"], limit=config["limit"])
start = time.perf_counter()
gan.fit(gan_ds, epochs=config["epochs"], verbose=2)
seconds["DCGAN"] = time.perf_counter() - start
print(f"DCGAN trained in {seconds['DCGAN']:.0f} s")
plotting.image_grid(gan.sample(len(per_class), seed=0, labels=per_class), out / "05_dcgan_classes.png",
                    ncols=8, title="conditional DCGAN: one row per class")

# %% [markdown]
# ## A class-conditional DDPM with classifier-free guidance
# The U-Net adds a class embedding to its time embedding. One network learns both the
# conditional and the unconditional noise prediction: during training 10% of the labels
# (`label_dropout`) are replaced by a "null" class, index `num_classes`. At sampling time both
# predictions are made for every step and mixed:
#
#     eps = eps_uncond + w * (eps_cond - eps_uncond)
#
# w = 0 is the unconditional model, w = 1 the plain conditional one, and w > 1 pushes the sample
# further towards what makes it look like its class. In keras_gen's code, both predictions come
# from one U-Net call on a doubled batch:

# %%
print(inspect.getsource(keras_gen.DDPM._make_eps_fn))

# %%
config = keras_gen.get_preset("ddpm", args.preset, dataset=args.dataset, num_classes=NUM_CLASSES)
ddpm = keras_gen.models.build_ddpm(config)
ddpm.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]))
ddpm_ds = keras_gen.make_dataset(args.dataset, "train", config["batch_size"], value_range="-1_1", pad_to=32,
                                 with_labels=True, seed=config["seed"], limit=config["limit"])
start = time.perf_counter()
ddpm.fit(ddpm_ds, epochs=config["epochs"], verbose=2)
seconds["DDPM"] = time.perf_counter() - start
print(f"DDPM trained in {seconds['DDPM']:.0f} s (label_dropout={ddpm.label_dropout})")
plotting.image_grid(ddpm.sample(len(per_class), seed=0, labels=per_class, progress=False),
                    out / "05_ddpm_classes.png", ncols=8,
                    title=f"conditional DDPM, guidance w={ddpm.guidance:g}: one row per class")

# %% [markdown]
# ## The guidance scale, by eye
# The same starting noise and the same label (7) at each w: at w = 0 the label is ignored, as
# the formula says; as w grows the digits become more typical and more alike.

# %%
rows = [ddpm.sample(8, seed=1, labels=7, guidance=w, progress=False) for w in settings["scales"]]
plotting.image_strip(rows, out / "05_ddpm_guidance.png", row_labels=[f"w={w:g}" for w in settings["scales"]],
                     title="label 7, same noise, by guidance scale")

# %% [markdown]
# ## The numbers
# The shipped classifier (tutorial 4) scores each model on samples of every class:
# - **class accuracy**: the share of samples it assigns to the label asked for;
# - **per-class FID**: the classifier FID of each class's samples against the real test images
#   of that class (the mean is printed), beside the overall FID and improved precision (are the
#   samples realistic?) and recall (do they cover the data's variety?).
#
# For the DDPM a sweep over w draws the fidelity/diversity curve: accuracy and precision rise with
# w while recall falls.

# %%
def sampler_of(model, **fixed):
    return lambda n, seed, label, **options: model.sample(n, seed, labels=label, **fixed, **options)


n = settings["n_per_class"]
results = {"VAE": evaluate_conditional(sampler_of(vae), NUM_CLASSES, n, args.dataset),
           "DCGAN": evaluate_conditional(sampler_of(gan), NUM_CLASSES, n, args.dataset)}
sweep = guidance_sweep(sampler_of(ddpm, progress=False), NUM_CLASSES, settings["scales"], n, args.dataset)
results.update({f"DDPM w={row['guidance']:g}": row for row in sweep})
print(f"{'model':<12} {'accuracy':>8} {'FID':>8} {'class FID':>9} {'precision':>9} {'recall':>7}")
for name, r in results.items():
    print(f"{name:<12} {r['accuracy']:8.3f} {r['fid']:8.2f} {r['mean_class_fid']:9.2f} "
          f"{r['precision']:9.3f} {r['recall']:7.3f}")
plotting.guidance_curve(sweep, out / "05_guidance_sweep.png")

# %% [markdown]
# ## Serving a label
# A conditional export keeps `serving_default` (the classes in turn) and adds
# `sample_class(num_images, seed, label[, guidance])`; its assets record `num_classes`.
# `keras-gen sample saved_model --label 7 --guidance 3.0` calls it.

# %%
path = keras_gen.export_saved_model(ddpm, out / "ddpm_conditional_export")
served = keras_gen.load_sampler(path)(8, 0, label=7, guidance=3.0)
plotting.image_grid(served, out / "05_export_label7.png", title="sample_class(label=7, guidance=3) of the export")
print("export signatures:", served.shape, sorted(keras_gen.export.read_export_info(path)["signatures"]))

# %% [markdown]
# ## What we learned
# - Conditioning is one label embedding per network; the training loop and `fit` stay the same.
# - A conditional GAN can ignore its noise; the mode-seeking term makes it use it.
# - Classifier-free guidance needs no classifier: one network, a null class, and a scale w that
#   trades recall (variety) for accuracy and precision.
# - This run's numbers (training times, and each model's class accuracy and recall):

# %%
print(f"preset {args.preset}, {args.dataset}: " + ", ".join(f"{k} trained in {v:.0f} s" for k, v in seconds.items()))
for name, r in results.items():
    print(f"  {name}: class accuracy {r['accuracy']:.3f}, FID {r['fid']:.2f}, recall {r['recall']:.3f}")
print("figures written to", out.resolve())
