"""Keras layers of keras_gen: the DDPM U-Net and its building blocks."""

from keras_gen.layers.unet import (
    Attention,
    Downsample,
    LinearAttention,
    ResnetBlock,
    SinusoidalEmbedding,
    UNet,
    Upsample,
    stable_softmax,
)

__all__ = [
    "Attention",
    "Downsample",
    "LinearAttention",
    "ResnetBlock",
    "SinusoidalEmbedding",
    "UNet",
    "Upsample",
    "stable_softmax",
]
