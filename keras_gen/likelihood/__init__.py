"""Likelihoods of the families that have one, in the units the literature reports them in.

- ``vae``: the evidence lower bound (ELBO) and the importance-weighted bound of Burda et al.
  (2016, "Importance Weighted Autoencoders", eq. 8) of a Bernoulli-decoder VAE, in nats per image
  on binarised MNIST (the VAE's own data, not the 8-bit images).
- a flow's exact log-density is its own method (keras_gen.models.flow.RealNVP.log_prob); its
  bits per dimension of the 8-bit data use ``nats_to_bits_per_dim``.

keras_gen.evaluation.likelihood runs these through the model contract
(``ModelKind.likelihood``) for ``keras-gen evaluate --likelihood``.
"""

from keras_gen.likelihood.units import nats_to_bits_per_dim, summary_row
from keras_gen.likelihood.vae import vae_log_weights, vae_bounds

__all__ = ["nats_to_bits_per_dim", "summary_row", "vae_bounds", "vae_log_weights"]
