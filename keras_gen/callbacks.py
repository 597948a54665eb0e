"""Training callbacks: per-epoch sample grids, per-epoch model snapshots, wall-clock and CPU-time
logging, a CPU-time budget, TensorBoard logs with the sample grids."""

from __future__ import annotations

import time
from pathlib import Path

import keras

from keras_gen.files import save_keras_atomically


class SampleGrid(keras.callbacks.Callback):
    """Save a grid of samples from fixed seeds after every ``every`` epochs (and before training).

    ``sample_fn(n, seed) -> images`` is called with the same seed each time, so the grids show how
    the same latent draws evolve, like the article's per-epoch figures. ``draw_initial=False``
    skips the before-training grid (a resumed run already has it).
    """

    def __init__(self, sample_fn, out_dir, n=64, seed=0, every=1, prefix="epoch", draw_initial=True,
                 sinks=()):
        super().__init__()
        self.sample_fn, self.out_dir = sample_fn, Path(out_dir)
        self.n, self.seed, self.every, self.prefix = n, seed, every, prefix
        self.draw_initial, self.sinks = draw_initial, list(sinks)

    def _save(self, label):
        from keras_gen.plotting import image_grid  # matplotlib only when a grid is drawn

        images = self.sample_fn(self.n, self.seed)
        image_grid(images, self.out_dir / f"{self.prefix}_{label}.png", title=f"{self.prefix} {label}")
        return images

    def on_train_begin(self, logs=None):
        if self.draw_initial:
            self._save("000")
            self.draw_initial = False  # once per run, even when fit is called in phases

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            images = self._save(f"{epoch + 1:03d}")
            for sink in self.sinks:  # e.g. TrainingBoard.log_images: the same draws, not new ones
                sink(images, epoch)


class EpochSnapshots(keras.callbacks.Callback):
    """The whole model as ``<directory>/epoch_XXX.keras`` after each epoch, written atomically
    (the curves of benchmarks/fid_vs_wallclock.py are drawn from these). ``model``: what to save
    instead of the model being fitted (e.g. a distillation round's student)."""

    def __init__(self, directory, model=None):
        super().__init__()
        self.directory, self.saved_model = Path(directory), model

    def on_epoch_end(self, epoch, logs=None):
        self.directory.mkdir(parents=True, exist_ok=True)
        save_keras_atomically(self.saved_model or self.model, self.directory / f"epoch_{epoch + 1:03d}.keras")


class TrainingClock(keras.callbacks.Callback):
    """Adds the training time so far (``offset`` included for a resumed run), read from the clock
    ``now``, to each epoch's logs as ``key``; started once per run, even when fit is called in
    phases. WallClock and CPUClock are its two clocks."""

    key, now = None, None

    def __init__(self, offset: float = 0.0):
        super().__init__()
        self.offset, self.start = float(offset), None

    def elapsed(self) -> float:
        return self.offset + (0.0 if self.start is None else self.now() - self.start)

    def on_train_begin(self, logs=None):
        if self.start is None:
            self.start = self.now()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[self.key] = self.elapsed()


class WallClock(TrainingClock):
    """``wall_seconds`` in each epoch's logs, so the history CSV can plot quality against training
    time."""

    key, now = "wall_seconds", time.perf_counter


class CPUClock(TrainingClock):
    """This process's CPU time spent training (user + system, all threads: `time.process_time`)
    as ``cpu_seconds`` in each epoch's logs. Optionally a budget: once ``budget_seconds`` are
    spent, training stops at the end of the current batch (``exhausted`` tells afterwards).

    A budget in CPU time rather than wall time gives runs compared at one budget the same
    compute on a shared machine, where another process can take a core for seconds at a time.
    """

    key, now = "cpu_seconds", time.process_time

    def __init__(self, offset: float = 0.0, budget_seconds: float | None = None):
        super().__init__(offset)
        self.budget_seconds, self.exhausted = budget_seconds, False

    def on_train_batch_end(self, batch, logs=None):
        if self.budget_seconds is not None and self.elapsed() >= self.budget_seconds:
            self.exhausted = True
            self.model.stop_training = True


class TrainingBoard(keras.callbacks.TensorBoard):
    """``keras.callbacks.TensorBoard`` for keras_gen's runs: each epoch's losses as scalars (Keras'
    own ``epoch_<name>``), the learning rate of every optimizer (``epoch_learning_rate`` for one,
    ``epoch_learning_rate_<name>`` for several, such as the DCGAN's two), and the fixed-seed sample
    grid of the epoch as the image summary ``samples`` (run ``samples`` beside ``train``).

    ``optimizers``: {name: optimizer} (the model kind's, or a custom loop's). Give ``log_images``
    to a SampleGrid's ``sinks`` so the grid is the one drawn for the PNGs. Steps are Keras' 0-based
    epoch indices, so a resumed run continues the same curves in the same ``log_dir``.
    """

    def __init__(self, log_dir, optimizers: dict, **kwargs):
        super().__init__(log_dir=str(log_dir), write_graph=False, **kwargs)
        self.named_optimizers = dict(optimizers)
        self._image_writer = None

    def on_epoch_end(self, epoch, logs=None):
        rates = {("learning_rate" if len(self.named_optimizers) == 1 else f"learning_rate_{name}"):
                 float(keras.ops.convert_to_numpy(optimizer.learning_rate))
                 for name, optimizer in self.named_optimizers.items()}
        super().on_epoch_end(epoch, {**(logs or {}), **rates})  # a copy: the history CSV keeps its columns

    def log_images(self, images, epoch: int):
        """Write (n, H, W, 1) images as one tiled grid (plotting.tile, the PNGs' layout), the image
        summary of ``epoch``."""
        import tensorflow as tf

        from keras_gen.plotting import tile  # matplotlib only when a grid is drawn

        grid = tile(images)[None, :, :, None]
        if self._image_writer is None:
            self._image_writer = tf.summary.create_file_writer(str(Path(self.log_dir) / "samples"))
        with self._image_writer.as_default():
            tf.summary.image("samples", grid, step=epoch)
        self._image_writer.flush()

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        if self._image_writer is not None:
            self._image_writer.close()
            self._image_writer = None
