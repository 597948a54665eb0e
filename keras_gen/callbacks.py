"""Training callbacks: per-epoch sample grids, wall-clock logging."""

from __future__ import annotations

import time
from pathlib import Path

import keras

from keras_gen.plotting import image_grid


class SampleGrid(keras.callbacks.Callback):
    """Save a grid of samples from fixed seeds after every ``every`` epochs (and before training).

    ``sample_fn(n, seed) -> images`` is called with the same seed each time, so the grids show how
    the same latent draws evolve, like the article's per-epoch figures.
    """

    def __init__(self, sample_fn, out_dir, n=64, seed=0, every=1, prefix="epoch"):
        super().__init__()
        self.sample_fn, self.out_dir = sample_fn, Path(out_dir)
        self.n, self.seed, self.every, self.prefix = n, seed, every, prefix

    def _save(self, label):
        images = self.sample_fn(self.n, self.seed)
        image_grid(images, self.out_dir / f"{self.prefix}_{label}.png", title=f"{self.prefix} {label}")

    def on_train_begin(self, logs=None):
        self._save("000")

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            self._save(f"{epoch + 1:03d}")


class WallClock(keras.callbacks.Callback):
    """Adds ``wall_seconds`` (time since training began) to each epoch's logs, so the history CSV
    can plot quality against training time."""

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["wall_seconds"] = time.perf_counter() - self.start
