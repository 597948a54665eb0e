"""The one tf.data pipeline that feeds every model: cache -> shuffle -> map -> batch -> prefetch."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_gen.data.sources import load_dataset

VALUE_RANGES = ("0_1", "-1_1")


def _check_options(batch_size, value_range, pad_to, resize_to, limit):
    if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if value_range not in VALUE_RANGES:
        raise ValueError(f"value_range must be one of {VALUE_RANGES}, got {value_range!r}")
    if pad_to is not None and resize_to is not None:
        raise ValueError("use pad_to or resize_to, not both")
    if pad_to is not None and (pad_to < 28 or (pad_to - 28) % 2):
        raise ValueError(f"pad_to must be 28 plus an even number of pixels, got {pad_to}")
    if resize_to is not None and resize_to <= 0:
        raise ValueError(f"resize_to must be positive, got {resize_to}")
    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")


def preprocess_images(images, *, value_range="0_1", binarize=False, pad_to=None, resize_to=None):
    """uint8 (..., 28, 28) -> float32 (..., H, W, 1) as the models expect (works in tf.data map)."""
    x = tf.cast(images, tf.float32)[..., tf.newaxis] / 255.0
    if binarize:
        x = tf.cast(x >= 0.5, tf.float32)
    if pad_to is not None and pad_to != 28:
        p = (pad_to - 28) // 2
        rank = len(x.shape)
        x = tf.pad(x, [[0, 0]] * (rank - 3) + [[p, p], [p, p], [0, 0]])
    if resize_to is not None:
        x = tf.image.resize(x, (resize_to, resize_to), method="bilinear")
    if value_range == "-1_1":
        x = x * 2.0 - 1.0
    return x


def _epoch_stream(images, labels, batch_size, prepare, *, shuffle, drop_remainder, seed,
                  start_epoch, epochs, skip_batches):
    """Batches of epochs [start_epoch, epochs) back to back, minus the first skip_batches.

    Epoch e's order is a stateless shuffle seeded by (seed, e), so it depends on nothing but the
    seed and the epoch number: a resumed run sees exactly the batches the interrupted one would have.
    """
    if not 0 <= start_epoch < epochs:
        raise ValueError(f"need 0 <= start_epoch < epochs, got start_epoch={start_epoch}, epochs={epochs}")
    if skip_batches < 0:
        raise ValueError(f"skip_batches must be >= 0, got {skip_batches}")
    images, labels = tf.constant(images), tf.constant(labels.astype(np.int32))
    n = int(images.shape[0])
    base_seed = 0 if seed is None else int(seed)

    def one_epoch(epoch):
        order = tf.range(n, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=tf.stack([tf.constant(base_seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=drop_remainder)

    ds = tf.data.Dataset.range(start_epoch, epochs).flat_map(one_epoch).skip(skip_batches)
    ds = ds.map(lambda idx: prepare(tf.gather(images, idx), tf.gather(labels, idx)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(num_images: int, batch_size: int, drop_remainder: bool = False) -> int:
    """Batches in one epoch of ``num_images``."""
    return num_images // batch_size if drop_remainder else -(-num_images // batch_size)


def dataset_from_arrays(images, labels, batch_size, *, value_range="0_1", binarize=False,
                        pad_to=None, resize_to=None, with_labels=False, shuffle=True,
                        drop_remainder=False, seed=None, limit=None, epochs=None, start_epoch=0,
                        skip_batches=0):
    """Batched, prefetched tf.data.Dataset from uint8 arrays (see make_dataset for the options)."""
    _check_options(batch_size, value_range, pad_to, resize_to, limit)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    if epochs is not None:
        def prepare_batch(x, y):
            x = preprocess_images(x, value_range=value_range, binarize=binarize,
                                  pad_to=pad_to, resize_to=resize_to)
            return (x, y) if with_labels else x
        return _epoch_stream(images, labels, batch_size, prepare_batch, shuffle=shuffle,
                             drop_remainder=drop_remainder, seed=seed, start_epoch=start_epoch,
                             epochs=epochs, skip_batches=skip_batches)
    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32))).cache()
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)

    def prepare(x, y):
        x = preprocess_images(x, value_range=value_range, binarize=binarize,
                              pad_to=pad_to, resize_to=resize_to)
        return (x, y) if with_labels else x

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def make_dataset(name, split="train", batch_size=32, *, value_range="0_1", binarize=False,
                 pad_to=None, resize_to=None, with_labels=False, shuffle=True,
                 drop_remainder=False, seed=None, limit=None, epochs=None, start_epoch=0,
                 skip_batches=0):
    """The shared input pipeline for MNIST / Fashion-MNIST.

    Args:
        name: "mnist" or "fashion_mnist"; split: "train" or "test".
        value_range: "0_1" (VAE) or "-1_1" (DCGAN, DDPM).
        binarize: threshold pixels at 0.5 (the article's VAE data).
        pad_to: pad 28 -> pad_to with background (lossless; the DDPM uses 32).
        resize_to: bilinear resize instead (reproduces the article's DDPM data).
        with_labels: yield (images, int32 labels) instead of images.
        shuffle / seed: reshuffled every epoch; the same seed gives the same order.
        drop_remainder: drop the last short batch (GAN training).
        limit: use only the first `limit` images (quick runs, tests).
        epochs / start_epoch / skip_batches: for resumable training, one stream holding the
            batches of epochs [start_epoch, epochs) minus the first skip_batches, each epoch in
            an order fixed by (seed, epoch) (use with fit(steps_per_epoch=...)). Without
            ``epochs`` the dataset is one epoch that reshuffles on every pass.

    Returns: a tf.data.Dataset of float32 (B, H, W, 1) batches (and labels when asked).
    """
    images, labels = load_dataset(name, split)
    return dataset_from_arrays(images, labels, batch_size, value_range=value_range,
                               binarize=binarize, pad_to=pad_to, resize_to=resize_to,
                               with_labels=with_labels, shuffle=shuffle,
                               drop_remainder=drop_remainder, seed=seed, limit=limit,
                               epochs=epochs, start_epoch=start_epoch, skip_batches=skip_batches)
