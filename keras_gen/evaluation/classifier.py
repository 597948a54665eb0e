"""The project's own MNIST / Fashion-MNIST classifier: the feature extractor behind every metric.

The article judged its samples by eye; keras_gen measures them with a small CNN trained here on
the real training split (Inception networks expect 299x299 RGB photos, not 28x28 digits). Its
penultimate layer (``"features"``, 128 ReLU units) plays the role of Inception's pool features
for FID, KID and precision/recall; its softmax gives the class histogram behind the coverage
numbers. The shipped weights live in ``saved_models/<dataset>_classifier.keras`` with a JSON
sidecar (test accuracy, epochs, wall time...) and are re-made with ``train_classifier``; an
installed package carries a copy of them (keras_gen.locations says where each is looked for).
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import numpy as np

from keras_gen.evaluation.images import normalize_images
from keras_gen.locations import MODELS_ENV, describe_places, models_dir, models_dirs

FEATURES_LAYER = "features"
NUM_CLASSES = 10
DEFAULT_EPOCHS = {"mnist": 4, "fashion_mnist": 12}


def classifier_path(dataset_name: str) -> Path:
    """The shipped classifier file for a dataset: <dir>/<dataset>_classifier.keras, from the first
    of keras_gen.locations.models_dirs() that has it (else under ``models_dir()``)."""
    name = f"{dataset_name}_classifier.keras"
    for _, folder in models_dirs():
        if (folder / name).is_file():
            return folder / name
    return models_dir() / name


class ClassifierNotFound(FileNotFoundError, ValueError):
    """No classifier file: a FileNotFoundError, and a ValueError so that the CLI reports it in one
    line (it turns ValueErrors into usage errors)."""


def build_classifier(num_classes: int = NUM_CLASSES, dropout: float = 0.5):
    """Conv32-Conv32-pool-Conv64-Conv64-pool-Dense128("features")-Dropout-Dense(softmax).

    Input: float32 (None, 28, 28, 1) in [0, 1]. About 0.2M parameters (< 1 MB on disk).
    """
    import keras
    from keras import layers

    inputs = keras.Input((28, 28, 1), name="images")
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Dropout(0.1)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Dropout(0.1)(x)
    x = layers.Flatten()(x)
    features = layers.Dense(128, activation="relu", name=FEATURES_LAYER)(x)
    x = layers.Dropout(dropout)(features)
    outputs = layers.Dense(num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="classifier")


def _augment(shift: int, seed: int):
    """Per-image random translations of up to ``shift`` pixels (zero fill), for batches."""
    import keras

    translate = keras.layers.RandomTranslation(shift / 28, shift / 28, fill_mode="constant",
                                               interpolation="nearest", seed=seed)

    def augment(x, y):
        return translate(x, training=True), y
    return augment


def train_classifier(dataset_name: str = "mnist", out_path=None, epochs: int | None = None,
                     batch_size: int = 128, seed: int = 0, *, learning_rate: float = 1e-3,
                     shift: int = 2, verbose: int = 2) -> dict:
    """Train the classifier on a dataset's train split, measure it on the test split, save it.

    Args:
        dataset_name: "mnist" or "fashion_mnist" (read with keras_gen.load_dataset).
        out_path: the .keras file to write (default: ``classifier_path(dataset_name)``); a JSON
            sidecar with the same stem is written next to it.
        epochs: default 4 for MNIST, 12 for Fashion-MNIST.
        batch_size, seed: mini-batch size and the seed of weights, shuffling and augmentation.
        learning_rate: Adam's initial rate, cosine-decayed to 1% over the run.
        shift: random translations of up to this many pixels (0 disables augmentation).
    Returns: the sidecar dict (test_accuracy, test_loss, epochs, wall_time_s, ...) with "path"
        the full path of the .keras file (the sidecar itself records only the file name).
    """
    import keras
    import tensorflow as tf

    from keras_gen.data import make_dataset

    epochs = epochs or DEFAULT_EPOCHS.get(dataset_name, 10)
    out_path = Path(out_path) if out_path is not None else classifier_path(dataset_name)
    if out_path.suffix != ".keras":
        raise ValueError(f"out_path must end in .keras, got {out_path}")
    keras.utils.set_random_seed(seed)
    train = make_dataset(dataset_name, "train", batch_size, with_labels=True, seed=seed)
    if shift:
        train = train.map(_augment(shift, seed), num_parallel_calls=tf.data.AUTOTUNE)
    test = make_dataset(dataset_name, "test", 1000, with_labels=True, shuffle=False)
    steps = epochs * int(train.cardinality().numpy())
    model = build_classifier()
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps, alpha=0.01)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(train, epochs=epochs, verbose=verbose, shuffle=False)  # reshuffles itself
    train_seconds = time.perf_counter() - start
    test_loss, test_accuracy = model.evaluate(test, verbose=0)
    wall = time.perf_counter() - start
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.stem}.tmp-{os.getpid()}.keras")
    shipped = build_classifier()  # an uncompiled copy: no optimizer state in the file (~0.8 MB)
    shipped.set_weights(model.get_weights())
    shipped.save(tmp)
    os.replace(tmp, out_path)
    info = {"dataset": dataset_name, "test_accuracy": round(float(test_accuracy), 5),
            "test_loss": round(float(test_loss), 5), "epochs": epochs, "batch_size": batch_size,
            "seed": seed, "learning_rate": learning_rate, "augmentation": f"random shifts <= {shift} px",
            "train_seconds": round(train_seconds, 1), "wall_time_s": round(wall, 1),
            "train_accuracy_last_epoch": round(float(history.history["accuracy"][-1]), 5),
            "parameters": int(model.count_params()), "features_layer": FEATURES_LAYER,
            "keras_version": keras.__version__, "tensorflow_version": tf.__version__,
            "cpu_count": os.cpu_count(), "path": out_path.name}
    sidecar_path(out_path).write_text(json.dumps(info, indent=2) + "\n")
    return {**info, "path": str(out_path)}


def sidecar_path(model_path) -> Path:
    """The JSON sidecar of a classifier file (same name, .json)."""
    return Path(model_path).with_suffix(".json")


class Classifier:
    """A loaded classifier: ``probs(images)`` (N, 10) and ``features(images)`` (N, 128).

    Images may be any format normalize_images accepts. ``info`` is the JSON sidecar (or {}).
    """

    def __init__(self, model, info: dict | None = None, path=None):
        import keras
        import tensorflow as tf

        self.model = model
        self.info = dict(info or {})
        self.path = None if path is None else Path(path)
        both = keras.Model(model.inputs, [model.get_layer(FEATURES_LAYER).output, model.outputs[0]])
        self._both = tf.function(lambda x: both(x, training=False),
                                 input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32)])

    @property
    def dataset(self):
        return self.info.get("dataset")

    def probs_and_features(self, images, batch_size: int = 1000):
        """(probs float32 (N, 10), features float32 (N, 128)) in one pass over the images."""
        x = normalize_images(images)
        feats, probs = [], []
        for i in range(0, len(x), batch_size):
            f, p = self._both(x[i:i + batch_size])
            feats.append(f.numpy())
            probs.append(p.numpy())
        return np.concatenate(probs).astype(np.float32), np.concatenate(feats).astype(np.float32)

    def probs(self, images, batch_size: int = 1000) -> np.ndarray:
        """Softmax class probabilities p(y | x), float32 (N, 10)."""
        return self.probs_and_features(images, batch_size)[0]

    def features(self, images, batch_size: int = 1000) -> np.ndarray:
        """Penultimate-layer ("features") activations, float32 (N, 128)."""
        return self.probs_and_features(images, batch_size)[1]

    def predict(self, images, batch_size: int = 1000) -> np.ndarray:
        """The most probable class of each image, int (N,)."""
        return self.probs(images, batch_size).argmax(axis=1)

    def __repr__(self):
        acc = self.info.get("test_accuracy")
        return f"Classifier({self.dataset!r}, test_accuracy={acc}, path={self.path})"


def load_classifier(dataset_name: str = "mnist", path=None) -> Classifier:
    """Load the shipped classifier of a dataset (or the .keras file at ``path``).

    Resolved as ``classifier_path(dataset_name)`` (keras_gen.locations lists the places and their
    order). Loaded once per process and path (the result is shared). Raises ClassifierNotFound
    (a FileNotFoundError) naming the places looked in, what to set and the command that makes
    the file when it is missing.
    """
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ClassifierNotFound(f"no classifier at {path}; train one with `keras-gen evaluate "
                                     f"train-classifier --dataset {dataset_name} --out {path}`")
    else:
        path = classifier_path(dataset_name)
        if not path.is_file():
            raise ClassifierNotFound(_missing_message(dataset_name, path.name))
    return _load(str(path.resolve()), path.stat().st_mtime_ns)


def _missing_message(dataset_name: str, file_name: str) -> str:
    """What load_classifier says when no place has the file: where it looked, what to set."""
    return (f"no {dataset_name} classifier ({file_name}): looked in {describe_places()}; set ${MODELS_ENV} to a "
            f"folder that holds {file_name} (e.g. a checkout's saved_models/), or train one with "
            f"`keras-gen evaluate train-classifier --dataset {dataset_name} --out <folder>/{file_name}`")


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> Classifier:
    import keras

    model = keras.models.load_model(path, compile=False)
    side = sidecar_path(path)
    info = json.loads(side.read_text()) if side.is_file() else {}
    return Classifier(model, info, path)
