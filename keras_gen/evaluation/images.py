"""One explicit entry point for image formats: every metric sees float32 (N, 28, 28, 1) in [0, 1].

Supported inputs (always with a leading batch axis):

- shape (N, 28, 28), (N, 28, 28, 1), (N, 32, 32) or (N, 32, 32, 1); 32x32 images (the DDPM's
  padded canvas) are centre-cropped back to 28x28;
- values: uint8 (0..255), other integer dtypes holding 0..255, bool (0/1), or floating point in
  [0, 1] or [-1, 1] (a small tolerance, 1e-3, allows rounding error at the ends).

The value range of a float array is decided for the whole array: [0, 1] when its minimum is >= 0,
[-1, 1] when it has negative values but stays within [-1, 1]. Anything else (channels-first
arrays, RGB, other sizes, floats in 0..255, NaN or inf, an empty batch) raises a ValueError that
says what was found and how to fix it, instead of being silently rescaled.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

IMAGE_SIZE = 28
SUPPORTED_SIZES = (28, 32)
TOLERANCE = 1e-3


class ImageFormat(NamedTuple):
    """What normalize_images detected: value range ("uint8", "0_1" or "-1_1"), the spatial size
    (28 or 32) and whether the input had a trailing channel axis."""

    value_range: str
    size: int
    channel_axis: bool


def detect_image_format(images) -> ImageFormat:
    """The ImageFormat of an image batch, or a ValueError explaining why it is not supported."""
    x = np.asarray(images)
    if x.ndim == 2:
        raise ValueError(f"got a single {x.shape} image; add a batch axis (images[None])")
    if x.ndim not in (3, 4):
        raise ValueError(f"images must have shape (N, H, W) or (N, H, W, 1), got {x.shape}")
    channel_axis = x.ndim == 4
    if channel_axis and x.shape[-1] != 1:
        hint = (" (channels-first? move the channel axis last)" if x.shape[1] == 1
                else " (only single-channel grayscale images are supported)")
        raise ValueError(f"images must have one channel last, got shape {x.shape}{hint}")
    h, w = x.shape[1], x.shape[2]
    if h != w or h not in SUPPORTED_SIZES:
        raise ValueError(f"images must be 28x28 or 32x32 (centre-cropped to 28x28), got {h}x{w} "
                         f"in shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError("got an empty batch of images")
    return ImageFormat(_value_range(x), h, channel_axis)


def _value_range(x: np.ndarray) -> str:
    if x.dtype == np.uint8:
        return "uint8"
    if x.dtype == np.bool_:
        return "0_1"
    if np.issubdtype(x.dtype, np.integer):
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"integer images must hold 0..255, got values in [{lo}, {hi}]")
        return "uint8"
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"images must be uint8, integer, bool or floating point, got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError("images contain NaN or inf values")
    lo, hi = float(x.min()), float(x.max())
    if lo >= -TOLERANCE and hi <= 1.0 + TOLERANCE:
        return "0_1"
    if lo >= -1.0 - TOLERANCE and hi <= 1.0 + TOLERANCE:
        return "-1_1"
    hint = (" (0..255 floats? cast to uint8 or divide by 255)" if lo >= -TOLERANCE and hi <= 255.0 + TOLERANCE
            else "")
    raise ValueError(f"float images must lie in [0, 1] or [-1, 1], got values in [{lo:.4g}, {hi:.4g}]{hint}")


def normalize_images(images) -> np.ndarray:
    """Any supported image batch -> float32 (N, 28, 28, 1) in [0, 1] (see the module docstring).

    Raises:
        ValueError: for an unsupported shape, dtype or value range (the message says which).
    """
    fmt = detect_image_format(images)
    x = np.asarray(images)
    if fmt.value_range == "uint8":
        x = x.astype(np.float32) / 255.0
    elif fmt.value_range == "-1_1":
        x = (x.astype(np.float32) + 1.0) / 2.0
    else:
        x = x.astype(np.float32)
    if not fmt.channel_axis:
        x = x[..., None]
    if fmt.size != IMAGE_SIZE:
        p = (fmt.size - IMAGE_SIZE) // 2
        x = x[:, p:p + IMAGE_SIZE, p:p + IMAGE_SIZE, :]
    return np.ascontiguousarray(np.clip(x, 0.0, 1.0), dtype=np.float32)
