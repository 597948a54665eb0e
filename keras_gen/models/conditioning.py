"""Class labels for conditional models: validation, defaults and the in-graph checks of exports.

A model built with ``num_classes=C`` generates images of a requested class 0..C-1; with
``num_classes=None`` it is unconditional and takes no labels. ``sample(n, seed, labels=...)``
accepts one int (every image of that class) or n ints; without labels a conditional model draws
the classes in turn (``default_labels``), so sample grids show every class.
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
import tensorflow as tf

LABEL_EMBED_DIM = 16  # class embedding concatenated by a conditional VAE encoder / decoder and GAN generator


def label_embedding(num_classes, name, dim=LABEL_EMBED_DIM):
    """A functional model's int label input (B,) and its embedding (B, dim).

    The entries start N(0, 1), on the scale of a latent z ~ N(0, I), so that the label moves the
    output from the first step on (Keras' default U(-0.05, 0.05) left it all but ignored).
    """
    label = keras.Input((), dtype="int32", name="label")
    init = keras.initializers.RandomNormal(stddev=1.0)
    return label, keras.layers.Embedding(num_classes, dim, embeddings_initializer=init, name=name)(label)


def check_num_classes(num_classes):
    """None (unconditional) or an int >= 2, else ValueError."""
    if num_classes is None:
        return None
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise ValueError(f"num_classes must be None (unconditional) or an integer >= 2, got {num_classes!r}")
    return int(num_classes)


# Classifier-free guidance scales w accepted by sample() and by the exports' sample_class, in
# eps = eps_uncond + w * (eps_cond - eps_uncond): w = 0 is unconditional, 1 plain conditional,
# and useful values are a few units: the project's sweeps use 0, 1, 3, 5, and Ho & Salimans'
# experiments (w' = 0.1 to 4 in their eps = (1 + w') eps_cond - w' eps_uncond) are w = 1.1 to 5
# here. Negative w steers *away* from the class, which no part of keras_gen supports. 50 is an
# order of magnitude above any useful scale, so typos such as 300 or 1e6 are refused, while the
# guided eps stays far from float32 overflow.
MIN_GUIDANCE, MAX_GUIDANCE = 0.0, 50.0


def check_guidance(guidance, conditional=True):
    """A classifier-free guidance scale as a float in [MIN_GUIDANCE, MAX_GUIDANCE] (None stays
    None), else ValueError; a model that is not ``conditional`` takes none. The exports check the
    same range in the graph (`checked_guidance`); why this range: the comment above MIN_GUIDANCE."""
    if guidance is None:
        return None
    if not conditional:
        raise ValueError("guidance applies to a conditional DDPM (a UNet with num_classes) only")
    if isinstance(guidance, bool) or not isinstance(guidance, numbers.Real) or not math.isfinite(guidance):
        raise ValueError(f"guidance must be a finite number, got {guidance!r}")
    if not MIN_GUIDANCE <= guidance <= MAX_GUIDANCE:
        raise ValueError(f"guidance must lie in [{MIN_GUIDANCE:g}, {MAX_GUIDANCE:g}] (0 = unconditional, "
                         f"1 = conditional, typical 1 to 5), got {guidance!r}")
    return float(guidance)


def checked_guidance(guidance):
    """A float32 guidance scale with the in-graph checks of `check_guidance`: finite and in
    [MIN_GUIDANCE, MAX_GUIDANCE], else InvalidArgumentError before any work."""
    guidance = tf.debugging.assert_all_finite(tf.cast(guidance, tf.float32),
                                              "guidance must be finite (no NaN or Inf)")
    checks = [tf.debugging.assert_greater_equal(guidance, tf.constant(MIN_GUIDANCE, tf.float32),
                                                message=f"guidance must be >= {MIN_GUIDANCE:g}"),
              tf.debugging.assert_less_equal(guidance, tf.constant(MAX_GUIDANCE, tf.float32),
                                             message=f"guidance must be <= {MAX_GUIDANCE:g}")]
    with tf.control_dependencies(checks):
        return tf.identity(guidance)


def default_labels(n, num_classes):
    """Classes 0, 1, ..., C-1, 0, 1, ... for n images (int32 (n,))."""
    return np.arange(int(n), dtype=np.int32) % num_classes


def check_labels(labels, n, num_classes, *, name="labels"):
    """``labels`` for n images as int32 (n,), or None for an unconditional model.

    ``labels``: None, one int (broadcast to the n images) or n ints in [0, num_classes).
    None on a conditional model gives `default_labels`. Raises ValueError naming the problem.
    """
    if num_classes is None:
        if labels is not None:
            raise ValueError(f"this model is unconditional (num_classes=None) and takes no {name}; "
                             f"build it with num_classes=... to generate chosen classes")
        return None
    if labels is None:
        return default_labels(n, num_classes)
    array = np.asarray(labels.numpy() if tf.is_tensor(labels) else labels)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise ValueError(f"{name} must be integers (class indices), got dtype {array.dtype}")
    if array.ndim == 0:
        array = np.full(int(n), array, dtype=np.int64)
    if array.shape != (int(n),):
        raise ValueError(f"{name} must be one int or {int(n)} ints (one per image), got shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        bad = array[(array < 0) | (array >= num_classes)][0]
        raise ValueError(f"{name} must lie in [0, {num_classes}) for num_classes={num_classes}, got {bad}")
    return array.astype(np.int32)


def network_inputs(x, labels, num_classes, kind):
    """What a (possibly conditional) sub-network takes: ``x``, or ``[x, int32 labels]``."""
    if num_classes is None:
        if labels is not None:
            raise ValueError(f"this {kind} is unconditional (num_classes=None) and takes no labels")
        return x
    if labels is None:
        raise ValueError(f"this {kind} is conditional (num_classes={num_classes}): pass labels")
    return [tf.convert_to_tensor(x), tf.cast(labels, tf.int32)]  # Keras refuses mixed arrays and tensors


def batch_labels(data, num_classes, kind):
    """(images, labels) of a training batch; labels None for an unconditional model.

    A conditional model needs (images, labels) batches: a clear error at trace time otherwise.
    """
    if not isinstance(data, (tuple, list)):
        if num_classes is not None:
            raise ValueError(f"a conditional {kind} (num_classes={num_classes}) trains on (images, labels) "
                             "batches: use make_dataset(..., with_labels=True)")
        return data, None
    if num_classes is None:
        return data[0], None
    if len(data) < 2:
        raise ValueError(f"a conditional {kind} needs (images, labels) batches, got a {len(data)}-tuple")
    return data[0], tf.cast(tf.reshape(data[1], [-1]), tf.int32)


def checked_labels(labels, num_classes):
    """An int32 label tensor (scalar or (N,)) with in-graph 0 <= labels < num_classes checks
    (exports: InvalidArgumentError before any work)."""
    labels = tf.cast(labels, tf.int32)
    checks = [tf.debugging.assert_non_negative(labels, message="labels must be >= 0"),
              tf.debugging.assert_less(labels, tf.constant(num_classes, tf.int32),
                                       message=f"labels must be < num_classes ({num_classes})")]
    with tf.control_dependencies(checks):
        return tf.identity(labels)


def cycling_labels(num_images, num_classes):
    """`default_labels` in a graph: int32 (num_images,)."""
    return tf.math.floormod(tf.range(num_images, dtype=tf.int32), num_classes)


def check_label(label, num_classes):
    """One class index for a conditional model's sampler (an int in [0, num_classes)), else
    ValueError; an unconditional model (num_classes None) takes no label."""
    if num_classes is None:
        raise ValueError("this model is unconditional: it takes no label (train it with --num-classes)")
    if isinstance(label, bool) or not isinstance(label, numbers.Integral) or not 0 <= label < num_classes:
        raise ValueError(f"label must be an integer in [0, {num_classes}), got {label!r}")
    return int(label)


class Conditioning:
    """A model's class conditioning, in one object: ``num_classes`` classes 0..C-1 (and the null
    class C of classifier-free guidance), or ``None`` for an unconditional model.

    Models, serving, the sampler and the presets ask it instead of branching on ``num_classes``:
    host-side checks (`labels`, `label`, `guidance`), graph-side ones (`checked`, `cycling`),
    what networks take (`embed`, `inputs`, `unpack`, `split`) and what configs record (`config`).
    """

    def __init__(self, num_classes=None):
        self.num_classes = check_num_classes(num_classes)

    @classmethod
    def of_info(cls, info: dict) -> "Conditioning":
        """The conditioning an export's (or a model's) info dict records."""
        return cls(info.get("num_classes"))

    @property
    def conditional(self) -> bool:
        return self.num_classes is not None

    @property
    def null_class(self) -> int:
        """The extra class index that stands for "no label" (classifier-free guidance)."""
        return self.num_classes

    # ------------------------------------------------------------------ host side
    def labels(self, labels, n, *, name="labels"):
        """int32 (n,) labels for n images (None when unconditional); see `check_labels`."""
        return check_labels(labels, n, self.num_classes, name=name)

    def label(self, label) -> int:
        """One class index for a sampler (see `check_label`)."""
        return check_label(label, self.num_classes)

    def guidance(self, guidance):
        """A guidance scale for this model (see `check_guidance`)."""
        return check_guidance(guidance, self.conditional)

    def config(self) -> dict:
        """``{"num_classes": C}`` for a conditional model, ``{}`` otherwise (so unconditional
        configs stay as they were before conditioning existed)."""
        return {"num_classes": self.num_classes} if self.conditional else {}

    # ------------------------------------------------------------------ graph side
    def checked(self, labels):
        return checked_labels(labels, self.num_classes)

    def cycling(self, num_images):
        return cycling_labels(num_images, self.num_classes)

    # ------------------------------------------------------------------ networks
    def embed(self, inputs, features, name):
        """(model inputs, features) of a functional sub-network: unchanged when unconditional;
        else [inputs, label] and the features with a label embedding concatenated."""
        if not self.conditional:
            return inputs, features
        label, embedded = label_embedding(self.num_classes, name)
        return [inputs, label], keras.layers.Concatenate()([features, embedded])

    def inputs(self, x, labels, kind):
        return network_inputs(x, labels, self.num_classes, kind)

    def unpack(self, inputs):
        """(x, labels) of a model call: ``inputs`` is (x, labels) when conditional, else x."""
        return inputs if self.conditional else (inputs, None)

    def split(self, data, kind):
        return batch_labels(data, self.num_classes, kind)
