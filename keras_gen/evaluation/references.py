"""What generated images are compared against: the real test set, and reference image sets.

- ``real_reference(dataset)``: classifier features, probabilities and Gaussian statistics of the
  real test split, computed once per process (the "real" side of FID, KID, precision/recall).
- ``reference_sets(dataset, n)``: image sets scored exactly like a model's samples, to bracket
  the numbers: real training images (the best a model can do), uniform noise and images of a
  single class (two ways to fail: no quality, no coverage).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from keras_gen.evaluation.classifier import Classifier, load_classifier


@dataclass(frozen=True)
class RealReference:
    """Classifier outputs on real images: probs (N, 10), feats (N, 128), their mean and covariance."""

    dataset: str
    split: str
    classifier: Classifier = field(repr=False)
    probs: np.ndarray = field(repr=False)
    feats: np.ndarray = field(repr=False)
    mu: np.ndarray = field(repr=False)
    sigma: np.ndarray = field(repr=False)

    @property
    def n(self) -> int:
        return len(self.feats)


_REAL_CACHE: dict = {}


def _subset(n_total, n, seed):
    """Indices of a seeded random subset of size n (all, in order, when n is None or >= n_total)."""
    if n is None or n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, n, replace=False))


def real_reference(dataset: str = "mnist", split: str = "test", classifier: Classifier | None = None,
                   n: int | None = None, seed: int = 0) -> RealReference:
    """Features and statistics of ``n`` real images of a split (default: all of them).

    Uses the dataset's shipped classifier unless one is given; cached per process by
    (dataset, split, n, seed, classifier).
    """
    from keras_gen.data import load_dataset
    from keras_gen.evaluation.metrics import feature_statistics

    classifier = classifier or load_classifier(dataset)
    key = (dataset, split, n, seed, id(classifier))
    if key not in _REAL_CACHE:
        images, _ = load_dataset(dataset, split)
        images = images[_subset(len(images), n, seed)]
        probs, feats = classifier.probs_and_features(images)
        mu, sigma = feature_statistics(feats)
        _REAL_CACHE[key] = RealReference(dataset, split, classifier, probs, feats, mu, sigma)
    return _REAL_CACHE[key]


def reference_sets(dataset: str = "mnist", n: int = 10000, seed: int = 0,
                   single_class: int = 0) -> dict:
    """{name: images} of the reference rows, each of n images:

    - "real train": a seeded random subset of the training split (uint8);
    - "uniform noise": pixels drawn uniformly from [0, 1] (float32);
    - "single class (<name>)": training images of class ``single_class`` only, drawn with
      replacement when the class has fewer than n images (uint8).
    """
    from keras_gen.data import CLASS_NAMES, load_dataset

    images, labels = load_dataset(dataset, "train")
    rng = np.random.default_rng(seed)
    real = images[rng.choice(len(images), n, replace=n > len(images))]
    noise = rng.random((n, 28, 28, 1), dtype=np.float32)
    one = images[labels == single_class]
    if not len(one):
        raise ValueError(f"{dataset} has no training images of class {single_class}")
    one = one[rng.choice(len(one), n, replace=n > len(one))]
    name = CLASS_NAMES.get(dataset, [str(c) for c in range(10)])[single_class]
    return {"real train": real, "uniform noise": noise, f"single class ({name})": one}
