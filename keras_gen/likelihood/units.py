"""Units and the summary row of a likelihood measurement."""

from __future__ import annotations

import math

import numpy as np

PIXELS = 784  # 28 x 28 x 1


def nats_to_bits_per_dim(nats_per_image, dims: int = PIXELS):
    """-log2 P / dims for a log-probability of ``nats_per_image`` (array or float): the sign flips,
    nats become bits (/ ln 2), and the total is shared by the ``dims`` dimensions."""
    return -np.asarray(nats_per_image, dtype=np.float64) / (dims * math.log(2.0))


def summary_row(bound: str, per_image, unit: str, data: str, **facts) -> dict:
    """{bound, value (mean over the images), stderr (of that mean), n, unit, data, ...facts}."""
    values = np.asarray(per_image, dtype=np.float64)
    stderr = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None
    return {"bound": bound, "value": float(values.mean()), "stderr": stderr, "n": int(len(values)),
            "unit": unit, "data": data, **facts}
