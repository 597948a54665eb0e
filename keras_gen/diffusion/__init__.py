"""Diffusion building blocks: the noise schedule and the DDPM / DDIM reverse-process samplers."""

from keras_gen.diffusion.samplers import (
    SAMPLERS,
    ddim_step,
    ddim_timesteps,
    ddim_timesteps_tf,
    ddpm_step,
    denoise_from,
    initial_noise,
    sample,
    sample_graph,
)
from keras_gen.diffusion.schedule import NoiseSchedule, batch_broadcast

__all__ = [
    "NoiseSchedule",
    "SAMPLERS",
    "batch_broadcast",
    "ddim_step",
    "ddim_timesteps",
    "ddim_timesteps_tf",
    "ddpm_step",
    "denoise_from",
    "initial_noise",
    "sample",
    "sample_graph",
]
