# %% [markdown]
# # Tutorial 7: four families on one table, and the normalizing flow explained
#
# Surveys of deep generative models compare four families (VAE, GAN, normalizing flow,
# diffusion) on four axes: likelihood, training stability, fidelity, generation speed, usually
# marked by hand. keras_gen records each of these numbers for its shipped models; this tutorial
# reads the table they make, then opens up the family the article does not cover, the flow
# (RealNVP, Dinh, Sohl-Dickstein & Bengio 2017), and the likelihoods of the others.
#
# Article sections: "The generative model trilemma" and "Conclusion" of Cheigh & Yamada,
# *Generating Images using VAEs, GANs, and Diffusion Models* (Towards Data Science, 2023,
# https://towardsdatascience.com/generating-images-using-vaes-gans-and-diffusion-models-48963ddeb2b2),
# whose three criteria this table extends with likelihood and stability.
# Run it as a script or cell by cell (`# %%` cells, or notebooks/07_families.ipynb):
#
#     python benchmarks/families.py                                           # the table into README.md
#     python tutorials/07_families.py --preset full --out outputs/tutorial_families
#     python tutorials/07_families.py --preset tiny --out /tmp/families       # what the tests run
#
# The tiny preset trains a small flow for three steps; full trains it for 300. Every figure is
# written to `--out` (and shown under its cell in a notebook).

# %%
import argparse
import inspect
import json
import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import keras_gen
from keras_gen import plotting
from keras_gen.evaluation import families_table, family_rows
from keras_gen import family_models
from keras_gen.likelihood import vae_bounds
from keras_gen.models.flow import AffineCoupling, Squeeze, bits_per_dim, dequantize

SETTINGS = {
    # flow_steps: training steps of the small flow; eager: run them without tracing the train step
    # (for three steps tracing costs more than it saves); test_n: test images per likelihood
    "full": dict(flow_steps=300, eager=False, test_n=1000),
    "tiny": dict(flow_steps=3, eager=True, test_n=64),
}
# The stability sweep's record in the checkout (keras_gen imported from it: `pip install -e .`).
STABILITY = Path(keras_gen.__file__).resolve().parent.parent / "benchmarks" / "results" / "stability" / "stability.json"
parser = argparse.ArgumentParser()
parser.add_argument("--preset", default="full", choices=sorted(SETTINGS))
parser.add_argument("--out", default="outputs/tutorial_families")
args, _ = parser.parse_known_args()
settings = SETTINGS[args.preset]
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
test_images = keras_gen.load_dataset("mnist", "test")[0][:settings["test_n"]]

# %% [markdown]
# ## The table
# `family_rows` reads what the measuring commands recorded: each shipped export's assets
# (`keras-gen evaluate --record` for FID, precision / recall, coverage and samples/s;
# `keras-gen evaluate --likelihood-only --record` for the likelihood; the training wall time) and
# the stability sweep's summary (`benchmarks/stability.py`). Nothing is measured here; a value
# the records lack is a dash with a note saying why. The same rows are drawn one panel per axis.

# %%
stability = json.loads(STABILITY.read_text()) if STABILITY.exists() else {}
rows = family_rows([model.path for model in family_models()], stability)  # MNIST, unconditional
print(families_table(rows))
plotting.families_chart(rows, out / "07_families.png")

# %% [markdown]
# ## The flow: change of variables
# A flow is an invertible map f from an image x to a latent z of the same size, with z standard
# normal. If f is invertible and differentiable, the density of x follows exactly:
#
#     log p(x) = log N(f(x); 0, I) + log |det df/dx|.
#
# The second term measures how much f stretches volume around x. In one dimension: z = 2x + 1
# maps the standard normal's density onto N(-1/2, 1/4), and log p(x) = log N(2x + 1) + log 2.

# %%
x1 = np.linspace(-2.0, 1.0, 7)
through_flow = -0.5 * (2 * x1 + 1) ** 2 - 0.5 * math.log(2 * math.pi) + math.log(2.0)
direct = -0.5 * ((x1 + 0.5) / 0.5) ** 2 - 0.5 * math.log(2 * math.pi) - math.log(0.5)
print(f"1-D change of variables: max |difference| {np.abs(through_flow - direct).max():.1e}")

# %% [markdown]
# ## Coupling layers: why the log-determinant is cheap
# A general 784 x 784 Jacobian costs O(784^3) to take a determinant of. An affine coupling splits
# the input into a part x_a that passes through unchanged and a part x_b that is scaled and shifted
# by functions of x_a only: y_b = x_b * exp(s(x_a)) + t(x_a). Order the dimensions as (a, b) and
# the Jacobian is block lower-triangular: dy_a/dx_a = I, dy_a/dx_b = 0, dy_b/dx_b = diag(exp(s)).
# Its determinant is the product of the diagonal, so log |det| = sum(s), whatever network
# computes s and t (it is never inverted; the inverse is x_b = (y_b - t(y_a)) exp(-s(y_a))).
#
# Below, one checkerboard coupling on a 4x4x2 input (its last convolution given random weights;
# keras_gen starts it at zero, the identity): the brute-force log |det| of the full Jacobian from
# `tf.GradientTape` against the layer's sum(s), and the Jacobian drawn with the kept pixels first.
# The layer's forward pass in keras_gen's code:

# %%
print(inspect.getsource(AffineCoupling.forward))

# %%
keras.utils.set_random_seed(0)  # the nets' initial weights: the same numbers on every run
coupling = AffineCoupling("checkerboard", 0, channels=2, filters=4, num_blocks=1, dtype="float64")
x = tf.random.stateless_normal((1, 4, 4, 2), seed=[0, 1], dtype=tf.float64)
coupling(x)
for weight in coupling.net.conv_out.weights:
    weight.assign(0.3 * tf.random.stateless_normal(weight.shape, seed=[1, 2], dtype=tf.float64))
with tf.GradientTape() as tape:
    tape.watch(x)
    y, log_det = coupling.forward(x)
jacobian = tf.reshape(tape.jacobian(y, x), (32, 32)).numpy()
brute = np.linalg.slogdet(jacobian)[1]
print(f"coupling log|det J|: layer {float(log_det[0]):.6f}, brute force {brute:.6f}")
inverse_error = float(tf.reduce_max(tf.abs(coupling.inverse(y) - x)))
print(f"inverse(forward(x)) == x: max |difference| {inverse_error:.1e}")
kept = np.broadcast_to((np.indices((4, 4)).sum(0) % 2 == 0)[..., None], (4, 4, 2)).ravel()
order = np.concatenate([np.flatnonzero(kept), np.flatnonzero(~kept)])
plotting.matrix_image(np.abs(jacobian[np.ix_(order, order)]) > 1e-12, out / "07_coupling_jacobian.png",
                      title="Coupling Jacobian, kept pixels first: nonzero entries",
                      xlabel="input dimension", ylabel="output dimension")

# %% [markdown]
# ## Multi-scale: squeeze and factor out
# A checkerboard coupling only mixes neighbouring pixels. RealNVP's squeeze turns each 2x2 patch
# into 4 channels (28x28x1 -> 14x14x4, a permutation: log |det| = 0), so channel-wise couplings
# then mix pixels that were neighbours, at half the resolution. After each scale half of the
# channels are "factored out" straight to the Gaussian, so the deeper scales work on fewer
# dimensions; the last latent holds the coarse shape, the factored-out ones the fine detail.

# %%
digit = tf.constant(test_images[:1, ..., None] / 255.0, tf.float32)
squeezed, _ = Squeeze().forward(digit)
plotting.image_strip([[digit[0].numpy()]], out / "07_digit.png", title="a test digit")
plotting.image_strip([[squeezed[0, ..., c:c + 1].numpy() for c in range(4)]], out / "07_squeeze.png",
                     col_labels=[f"channel {c}" for c in range(4)],
                     title="Squeeze: the digit as four 14x14 channels (one pixel of each 2x2 patch)")

# %% [markdown]
# ## Dequantisation and bits per dimension
# Pixels are integers k in 0..255, and a continuous density on discrete points could grow
# without bound. The flow models x = (k + u) / 256 with u uniform on [0, 1): each k owns a cube
# of volume 256^-784 in [0, 1)^784, and the probability of the cube is at least exp(E_u log p(x))
# times that volume (Jensen). In bits per dimension:
#
#     bits/dim = -log2 P(k) / 784 <= 8 - E_u[log p(x)] / (784 ln 2).
#
# The uniform density (log p = 0) gives exactly 8 bits/dim: every one of the 256 levels of every
# pixel equally likely. A model earns its bits below 8 by predicting pixels: the shipped flow's
# `log_prob` signature, here on test digits, against the table's recorded number.

# %%
print(f"uniform density: {float(bits_per_dim(tf.constant(0.0))):.3f} bits/dim")
flow_export = keras_gen.from_preset("flow_mnist")
pixels = tf.constant(test_images[..., None])
noise = tf.random.stateless_uniform(pixels.shape, seed=[0, 0])
log_p = flow_export.loaded.signatures["log_prob"](images=dequantize(pixels, noise))["log_prob"]
recorded = [b for row in rows if row["kind"] == "flow" for b in row["likelihood"]]
shipped_bits = float(tf.reduce_mean(bits_per_dim(log_p)))
print(f"shipped flow on {len(test_images)} test digits: {shipped_bits:.3f} bits/dim"
      + (f" (recorded over {recorded[0]['n']}: {recorded[0]['value']:.3f})" if recorded else ""))

# %% [markdown]
# ## Training on the exact likelihood
# `fit` minimises that bound in bits/dim directly, with fresh dequantisation noise in every step.
# A small flow (the tiny preset) for a few steps, its test bits/dim before and after:

# %%
kind = keras_gen.get_model_kind("flow")
config = {**keras_gen.get_preset("flow", "tiny"), "seed": 0}
small = kind.build(config)
kind.compile(small, config)
small.run_eagerly = settings["eager"]


def test_bits(model):
    return float(tf.reduce_mean(bits_per_dim(model.log_prob(dequantize(pixels, noise)))))


before = test_bits(small)
data = keras_gen.make_dataset("mnist", "train", config["batch_size"], seed=0, **kind.data_options(config))
small.fit(data.take(settings["flow_steps"]), epochs=1, verbose=0)
after = test_bits(small)
print(f"small flow: {before:.3f} -> {after:.3f} test bits/dim after {settings['flow_steps']} steps")

# %% [markdown]
# ## Why its samples look as they do
# Sampling is one inverse pass from z ~ N(0, T^2 I). Maximum likelihood punishes a flow for any
# training digit it gives little density, and never for density it puts between digits, so the
# density spreads over broken and blotted strokes; and most of the bits/dim are spent on local
# pixel statistics (which pixel is dark next to a dark one), not on the global shape of a digit.
# A low bits/dim therefore does not promise good samples: compare the flow's FID in the table with
# the others'. Lowering the temperature T draws from the higher-density middle of the Gaussian:
# cleaner, less varied strokes.

# %%
for row in rows:
    if row["sampling"]:
        bits = [f"{b['value']:.3f} {b['unit']}" for b in row["likelihood"]] or ["no likelihood recorded"]
        print(f"{row['name']:>14s}: FID {row['sampling']['fid']:.1f}, {', '.join(bits)}")
temperatures = (1.0, 0.7)
plotting.image_strip([flow_export(8, 0, temperature=t) for t in temperatures], out / "07_flow_temperatures.png",
                     row_labels=[f"T = {t:g}" for t in temperatures],
                     title="The shipped flow: the same seeds at two temperatures")

# %% [markdown]
# ## The other families' likelihoods
# - **VAE**: log p(x) is an integral over z; the ELBO bounds it from below with the encoder's
#   q(z | x), and the importance-weighted bound L_k (Burda et al. 2016) averages k weights
#   p(x, z_j) / q(z_j | x) inside the log: L_1 = ELBO <= L_k <= log p(x), rising with k. The VAE
#   models *binarised* pixels, so its bound is in nats per image on other data than the 8-bit
#   bits/dim of the flow and the DDPM (the table keeps its unit and data beside it). Here on an
#   untrained tiny VAE, the same 4 test digits:
# - **DDPM**: the training loss is a reweighted term of a variational bound (Ho et al. 2020,
#   eq. 5): a KL per timestep plus a discretised decoder at t = 0, summed to an upper bound on
#   bits/dim (the table's number includes the padding of 28x28 to 32x32).
# - **GAN**: the generator maps noise to images through a network that is neither invertible nor
#   paired with an encoder, so there is no density to evaluate; the model contract says why.

# %%
vae_kind = keras_gen.get_model_kind("vae")
vae = vae_kind.build({**keras_gen.get_preset("vae", "tiny"), "seed": 0})
binary = keras_gen.data.preprocess_images(test_images[:4], **vae_kind.data_options({})).numpy()
for k in (1, 100):
    bounds = vae_bounds(vae, binary, k=k, seed=0)
    print(f"untrained VAE, k={k:3d}: ELBO {bounds['elbo'].mean():.3f}, L_k {bounds['iwae'].mean():.3f} nats")
print(f"DCGAN: {keras_gen.get_model_kind('dcgan').no_likelihood}")

# %% [markdown]
# ## Stability
# Each kind's cpu preset trained with several seeds to the same CPU-time budget, each scored by
# FID: the spread is what the survey only asserts about the GAN. The sweep is still gaining
# seeds; the table and the chart read whatever is recorded.

# %%
for row in rows:
    entry = row["stability"]
    if entry:
        spread = f" +- {entry['fid_std']:.1f}" if entry["fid_std"] is not None else ""
        print(f"{row['name']:>14s}: FID {entry['fid_mean']:.1f}{spread} over {len(entry['seeds'])} seeds, "
              f"{entry['seeds_covering_all_ten']} covering all ten digits")

# %% [markdown]
# ## What we learned
# - A flow's likelihood is exact because every layer is invertible with a cheap log-determinant;
#   the coupling layer's triangular Jacobian is why.
# - Likelihood and sample quality are different axes: the table holds both, with units and data.
# - This run's numbers (the coupling check, the shipped flow, the small flow's training):

# %%
print(f"coupling log|det J|: layer {float(log_det[0]):.6f} vs brute force {brute:.6f}; "
      f"inverse error {inverse_error:.1e}")
print(f"shipped flow: {shipped_bits:.3f} bits/dim on {len(test_images)} test digits")
print(f"small flow: {before:.3f} -> {after:.3f} bits/dim in {settings['flow_steps']} steps")
print(f"figures written to {out}")
