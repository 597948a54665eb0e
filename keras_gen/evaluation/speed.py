"""Sampling speed: wall-clock samples per second of any ``sample_fn(n, seed)``.

Speed is one corner of the generative trilemma. Two numbers describe it: the network evaluations
(NFE) one sample costs, which the caller knows (1 for the VAE decoder or the DCGAN generator, T
for ancestral DDPM sampling, the step count for DDIM), and the measured throughput on this
machine, reported as the median over several timed runs after warm-up runs (which absorb tracing
and allocation), with the min and max to show the spread.
"""

from __future__ import annotations

import time

import numpy as np


def _run(sample_fn, n, batch_size, seed):
    done, batch = 0, 0
    while done < n:
        b = min(batch_size, n - done)
        out = sample_fn(b, seed + batch)
        np.asarray(out)  # make sure the work has finished (eager tensors, lazy arrays)
        done += b
        batch += 1


def measure_sampling_speed(sample_fn, n: int = 256, batch_size: int = 256, repeats: int = 5, *,
                           nfe_per_sample: float | None = None, warmup: int = 1, seed: int = 0) -> dict:
    """Time ``sample_fn(num_images, seed)`` producing n samples in batches of batch_size.

    Args:
        sample_fn: callable returning the images (an array or tensor) of one batch.
        n: samples per timed run; batch_size: samples per call (the last call may be smaller).
        repeats: timed runs; the reported speed is their median.
        nfe_per_sample: network evaluations per sample, supplied by the caller (recorded, and
            multiplied into ``nfe_per_s``); None when unknown.
        warmup: untimed runs first (0 when the caller has just run the same calls).
        seed: the seed of the first batch (batch i uses seed + i, the same in every run).
    Returns: dict with samples_per_s (median), samples_per_s_min, samples_per_s_max,
        seconds (per timed run), nfe_per_sample, nfe_per_s, n, batch_size, repeats, warmup.
    """
    if n < 1 or batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need n, batch_size, repeats >= 1 and warmup >= 0, got "
                         f"{n}, {batch_size}, {repeats}, {warmup}")
    for _ in range(warmup):
        _run(sample_fn, n, batch_size, seed)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        _run(sample_fn, n, batch_size, seed)
        seconds.append(time.perf_counter() - start)
    rates = n / np.maximum(np.asarray(seconds), 1e-9)
    median = float(np.median(rates))
    return {"samples_per_s": median, "samples_per_s_min": float(rates.min()),
            "samples_per_s_max": float(rates.max()), "seconds": [round(s, 6) for s in seconds],
            "nfe_per_sample": nfe_per_sample,
            "nfe_per_s": None if nfe_per_sample is None else median * nfe_per_sample,
            "n": n, "batch_size": batch_size, "repeats": repeats, "warmup": warmup}
