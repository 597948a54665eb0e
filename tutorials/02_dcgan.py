# %% [markdown]
# # Tutorial 2: the DCGAN
#
# A generative adversarial network trains a generator G against a discriminator D until D cannot
# tell G's images from real ones. We rebuild the article's DCGAN, train it with the article's own
# alternating `train_on_batch` loop and with one fused `fit` step, and look for mode collapse in
# a 2-D latent space.
#
# Article section: "Deep convolutional GANs" of Cheigh & Yamada, *Generating Images using VAEs,
# GANs, and Diffusion Models* (Towards Data Science, 2023,
# https://towardsdatascience.com/generating-images-using-vaes-gans-and-diffusion-models-48963ddeb2b2).
# Run it as a script or cell by cell (`# %%` cells, or notebooks/02_dcgan.ipynb):
#
#     python tutorials/02_dcgan.py --preset cpu --out outputs/tutorial_dcgan   # three trainings; each prints its time
#     python tutorials/02_dcgan.py --preset tiny --out /tmp/dcgan              # what the tests run
#
# Every figure is written to `--out` (and shown under its cell in a notebook).

# %%
import argparse
import inspect
import time
from pathlib import Path

import keras

import keras_gen
from keras_gen import plotting

parser = argparse.ArgumentParser()
parser.add_argument("--preset", default="cpu", choices=["article", "cpu", "tiny"])
parser.add_argument("--out", default="outputs/tutorial_dcgan")
args, _ = parser.parse_known_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Article step 1: a generator against a discriminator
# G turns noise z into an image; D outputs the probability that an image is real. D maximises
# log D(x) + log(1 - D(G(z))) (binary cross-entropy with labels 1 for real, 0 for fake) while G
# tries to make D(G(z)) large. A DCGAN does this with convolutions only, following five
# guidelines: strided convolutions instead of pooling, batch normalisation, no dense hidden
# layers, ReLU in G with a tanh output, LeakyReLU in D.
#
# ## Article step 2: hyperparameters and data
# The article: latent_dim = 100 (and 2 for a manifold plot), 100 epochs, batch size 32, Adam at
# 1e-4 for both networks; images scaled to [-1, 1] to match the tanh output. Our "cpu" preset
# uses the common DCGAN optimiser setting (2e-4, beta_1 = 0.5) and 8 epochs; our "article"
# preset is the article's, trained with its alternating loop (`keras-gen train dcgan --preset
# article`; `tests/test_article_presets.py` pins the values).

# %%
config = keras_gen.get_preset("dcgan", args.preset)
print(config)
train_ds = keras_gen.make_dataset("mnist", "train", config["batch_size"], value_range="-1_1",
                                  drop_remainder=True, seed=config["seed"], limit=config["limit"])
print("pixel range:", float(next(iter(train_ds)).numpy().min()), float(next(iter(train_ds)).numpy().max()))

# %% [markdown]
# ## Article step 3: the two networks
# **Erratum 3 (keras_gen differs; docs/errata.md).** The article's generator uses
# `ReLU(max_value=0.2)`, which clips every activation at 0.2; the guideline it quotes is a plain
# ReLU, which keras_gen uses. `article_relu=True` rebuilds the article's version.

# %%
gan = keras_gen.DCGAN(latent_dim=config["latent_dim"], seed=config["seed"])
gan.generator.summary()
gan.discriminator.summary()
capped = keras_gen.build_generator(config["latent_dim"], article_relu=True)
print("article's ReLU caps:", [layer.max_value for layer in capped.layers if isinstance(layer, keras.layers.ReLU)])

# %% [markdown]
# ## Article step 4: the article's training loop
# Per batch, three `train_on_batch` calls: D on real images with label 1, D on `G.predict_on_batch(z)`
# with label 0, then the stacked G->D model on z with label 1 while D is frozen.
#
# **Keras 3 note.** A Keras 3 model picks up its trainable weights when its training function is
# first traced, on the first `train_on_batch`. The Keras 2 recipe (freeze D once, then compile the
# stacked model) can leave D with no trainable weights at all. `train_alternating` sets D's
# `trainable` flag before every call, and the tests check that D's weights move in its own updates
# and stay put in the generator's.
#
# **Erratum 5 (keras_gen differs; docs/errata.md).** The article reports `np.mean(d_loss_real +
# d_loss_fake)`: with a metric compiled in, each is a [loss, accuracy] list, so `+` concatenates
# them and the mean mixes losses with accuracies. We report the mean of the two losses.
#
# **Difference (keras_gen differs; docs/errata.md, erratum 12).** The article's generator step
# trains on the same z it drew for the fake batch; `train_alternating` draws a fresh z for it
# (its host RNG, checkpointed), so G's update does not see the exact images D was just trained on.
#
# **Difference (docs/errata.md, erratum 13).** The article's discriminator has no batch
# normalisation, although the DCGAN guidelines it lists ask for it in both networks. keras_gen
# follows the article's network here: batch norm in G only.
#
# **Difference (keras_gen differs; docs/errata.md, erratum 14).** The loss curves below are each
# epoch's mean over its batches. The article's loop appends the last batch's values once per
# epoch, and its "g_loss" is `g_loss[-1]`, the last element of the stacked model's
# `[loss, accuracy]`: its accuracy.
#
# The article's figure of sample grids every 20 epochs comes from this loop: `SampleGrid` draws
# the same 64 latent vectors every `every` epochs (20 for the article preset's 100 epochs).
# One step of the loop, in keras_gen's own code:

# %%
print(inspect.getsource(keras_gen.AlternatingTrainer._step))

# %%
grids = keras_gen.callbacks.SampleGrid(lambda n, seed: gan.sample(n, seed), out / "02_epochs",
                                       every=max(1, config["epochs"] // 5))
start = time.perf_counter()
article_history = keras_gen.train_alternating(gan, train_ds, config["epochs"],
                                              learning_rate=config["learning_rate"],
                                              beta_1=config["beta_1"], seed=config["seed"],
                                              callbacks=[grids])
article_seconds = time.perf_counter() - start
plotting.loss_curves({k: v for k, v in article_history.items() if "loss" in k},
                     out / "02_loss_curve_alternating.png", title="DCGAN losses (article's loop)")
# The article's generate() returned the function itself (docs/errata.md, erratum 4); sample()
# returns the images.
plotting.image_grid(gan.sample(64, seed=0), out / "02_samples_alternating.png",
                    title="DCGAN samples, article's loop")

# %% [markdown]
# ## Beyond the article: the same networks with `fit`
# `DCGAN.train_step` does the same two updates inside one compiled step (the keras.io idiom): no
# Python round trips between the three calls, and it runs under `tf.distribute`. Use it for real
# training; the loop above is there to follow the article.

# %%
fused = keras_gen.DCGAN(latent_dim=config["latent_dim"], seed=config["seed"])
fused.compile(d_optimizer=keras.optimizers.Adam(config["learning_rate"], beta_1=config["beta_1"]),
              g_optimizer=keras.optimizers.Adam(config["learning_rate"], beta_1=config["beta_1"]))
start = time.perf_counter()
history = fused.fit(train_ds, epochs=config["epochs"], verbose=2)
fused_seconds = time.perf_counter() - start
plotting.loss_curves({k: v for k, v in history.history.items() if "loss" in k},
                     out / "02_loss_curve_fit.png", title="DCGAN losses (fused fit)")
plotting.image_grid(fused.sample(64, seed=0), out / "02_samples_fit.png", title="DCGAN samples, fit")
print(f"article's loop: {article_seconds:.0f} s, fused fit: {fused_seconds:.0f} s "
      f"for {config['epochs']} epochs")

# %% [markdown]
# ## Article step 5: the latent space at latent_dim = 2 and mode collapse
# With a 2-D latent space we can decode a grid of z, as for the VAE. The article saw few distinct
# digits there: mode collapse, G covering only the part of the data that fools D. As in the
# article, the latent-2 model trains with the same alternating loop (`--preset article-latent2`
# is this run on the command line).

# %%
small = keras_gen.DCGAN(latent_dim=2, seed=config["seed"])
small_history = keras_gen.train_alternating(small, train_ds, config["epochs"], learning_rate=config["learning_rate"],
                                            beta_1=config["beta_1"], seed=config["seed"], progress=False)
plotting.latent_manifold(lambda z: small.generate(z).numpy(), out / "02_latent_manifold.png",
                         title="DCGAN latent manifold, latent_dim=2")

# %% [markdown]
# ## Article step 6: the trilemma, for the DCGAN
# Sampling: one generator pass (fast). Quality: sharper than the VAE. Coverage: at risk (mode
# collapse). Tutorial 4 measures all three.

# %% [markdown]
# ## What we learned
# - Two networks trained against each other: D's loss near log 2 ~ 0.69 and its accuracies near
#   0.5 mean neither side wins outright; a D accuracy stuck near 1 means G has stopped learning.
# - The article's three-call loop and the fused `train_step` do the same two updates; the fused
#   step runs compiled in one call.
# - This run's numbers (final epoch of each training, and the time each took):

# %%
print(f"preset {args.preset}: {config['epochs']} epochs, batch {config['batch_size']}, "
      f"lr {config['learning_rate']}, beta_1 {config['beta_1']}")
for name, logs in (("article's loop", article_history), ("fused fit", history.history),
                   ("latent_dim=2, article's loop", small_history)):
    print(f"  {name}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in logs.items()))
print(f"  seconds: article's loop {article_seconds:.0f}, fused fit {fused_seconds:.0f}")
print("figures written to", out.resolve())
