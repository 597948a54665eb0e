"""Quality and coverage metrics on classifier features and probabilities (NumPy, float64 inside).

Quality (how close generated images are to real ones), on penultimate-layer features of the
project's classifier (keras_gen.evaluation.classifier) rather than Inception's:

- ``frechet_distance``: FID (Heusel et al. 2017) between Gaussians fitted to two feature sets.
- ``kernel_inception_distance``: KID (Binkowski et al. 2018), the unbiased MMD^2 estimate with
  the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets.
- ``precision_recall``: improved precision and recall (Kynkaanniemi et al. 2019), k-NN balls.

Coverage (do the samples span all classes?), on the classifier's softmax p(y | x):

- ``class_histogram``, ``class_entropy``, ``classes_covered`` (classes with >= 2% of the
  samples), ``kl_to_uniform`` and ``inception_score`` = exp(E_x KL(p(y|x) || p(y))), all
  collected by ``coverage_metrics``.

``classifier_fid(images, dataset)`` is the one-call FID of images against the real test set.
Image arrays are normalised by keras_gen.evaluation.images.normalize_images.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

MIN_CLASS_FRACTION = 0.02


# ------------------------------------------------------------------------------------ quality

def _as_features(feats, name="features", min_rows=2) -> np.ndarray:
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) array, got shape {f.shape}")
    if f.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {f.shape[0]}")
    if not np.all(np.isfinite(f)):
        raise ValueError(f"{name} contain NaN or inf")
    return f


def _check_dims(a, b):
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")


def feature_statistics(feats):
    """Mean (D,) and covariance (D, D) of an (N, D) feature array, float64 (N - 1 normalised)."""
    f = _as_features(feats)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance_from_statistics(mu_a, sigma_a, mu_b, sigma_b) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

    The trace of the matrix square root is computed stably as the sum of the square roots of the
    eigenvalues of the symmetric PSD matrix S_a^(1/2) S_b S_a^(1/2), which has the same spectrum
    as S_a S_b; no complex arithmetic, no singular-matrix retries.
    """
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    sigma_a, sigma_b = np.asarray(sigma_a, np.float64), np.asarray(sigma_b, np.float64)
    w, v = np.linalg.eigh((sigma_a + sigma_a.T) / 2)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root_a @ sigma_b @ root_a
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = mu_a - mu_b
    fid = diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_sqrt
    return float(max(fid, 0.0))


def frechet_distance(feats_a, feats_b) -> float:
    """Frechet distance between Gaussians fitted to two (N, D) feature sets (FID when the features
    are a network's; 0 for identical sets). Each set needs at least 2 rows; with fewer rows than
    dimensions the covariances are singular, which is allowed but makes the value noisy."""
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    _check_dims(a, b)
    return frechet_distance_from_statistics(*feature_statistics(a), *feature_statistics(b))


class KID(NamedTuple):
    """Kernel distance: mean and standard deviation of the MMD^2 estimate over the subsets."""

    mean: float
    std: float


def kernel_inception_distance(feats_a, feats_b, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> KID:
    """Unbiased MMD^2 between two feature sets, cubic polynomial kernel (x.y / d + 1)^3.

    Each of ``subsets`` rounds draws ``m = min(subset_size, len(a), len(b))`` rows of each set
    without replacement and computes the unbiased estimate
    (sum_{i!=j} k(a_i, a_j) + sum_{i!=j} k(b_i, b_j)) / (m (m - 1)) - 2 sum_{i,j} k(a_i, b_j) / m^2,
    whose expectation is 0 when both sets come from one distribution (it can be slightly negative).

    Returns: KID(mean, std) over the rounds.
    """
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    _check_dims(a, b)
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"need subsets >= 1 and subset_size >= 2, got {subsets}, {subset_size}")
    m = min(subset_size, len(a), len(b))
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1.0) ** 3
        kyy = (y @ y.T / d + 1.0) ** 3
        kxy = (x @ y.T / d + 1.0) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values[i] = within - 2.0 * kxy.sum() / (m * m)
    return KID(float(values.mean()), float(values.std()))


def _squared_distances(x, y):
    d2 = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    return np.maximum(d2, 0.0)


def knn_radii(feats, k: int = 3, block: int = 1024) -> np.ndarray:
    """Squared distance from each row to its k-th nearest other row (the row itself excluded)."""
    f = _as_features(feats, min_rows=k + 1)
    radii = np.empty(len(f))
    for i in range(0, len(f), block):
        d2 = _squared_distances(f[i:i + block], f)
        # index 0 of the sorted row is the point itself (distance 0), so the k-th neighbour is at k
        radii[i:i + block] = np.partition(d2, k, axis=1)[:, k]
    return radii


def _inside_any_ball(queries, centres, radii, block=1024):
    inside = np.empty(len(queries), dtype=bool)
    for i in range(0, len(queries), block):
        inside[i:i + block] = (_squared_distances(queries[i:i + block], centres) <= radii[None, :]).any(1)
    return inside


class PrecisionRecall(NamedTuple):
    """Improved precision (fake samples on the real manifold) and recall (real on the fake)."""

    precision: float
    recall: float


def precision_recall(real_feats, fake_feats, k: int = 3) -> PrecisionRecall:
    """Improved precision and recall (Kynkaanniemi et al. 2019).

    Each set's manifold is the union of balls around its points with radius the distance to the
    point's k-th nearest neighbour in the same set. Precision is the fraction of fake points inside
    the real manifold (are samples realistic?), recall the fraction of real points inside the fake
    manifold (is the variety of the data covered?). Use sets of equal size: the radii shrink as a
    set grows. Both sets need more than k rows.

    Read precision together with recall: a set that collapses onto one point inside the real
    manifold scores precision ~1. With the project's digit classifier, uniform noise does exactly
    that (it lands, confidently classified, among one class's real features): precision ~1,
    recall 0. FID and the class histogram expose such sets.
    """
    real = _as_features(real_feats, "real_feats", min_rows=k + 1)
    fake = _as_features(fake_feats, "fake_feats", min_rows=k + 1)
    _check_dims(real, fake)
    precision = _inside_any_ball(fake, real, knn_radii(real, k)).mean()
    recall = _inside_any_ball(real, fake, knn_radii(fake, k)).mean()
    return PrecisionRecall(float(precision), float(recall))


# ----------------------------------------------------------------------------------- coverage

def class_histogram(probs, num_classes: int | None = None) -> np.ndarray:
    """How many images fall in each class, int64 (C,).

    ``probs`` is (N, C) class probabilities (each image counts for its most probable class) or an
    (N,) array of integer labels (then C = num_classes, default 10).
    """
    p = np.asarray(probs)
    if p.ndim == 2:
        if num_classes is not None and num_classes != p.shape[1]:
            raise ValueError(f"probs have {p.shape[1]} classes, num_classes={num_classes}")
        labels, num_classes = p.argmax(axis=1), p.shape[1]
    elif p.ndim == 1 and np.issubdtype(p.dtype, np.integer):
        labels, num_classes = p, num_classes or 10
        if len(p) and (p.min() < 0 or p.max() >= num_classes):
            raise ValueError(f"labels must lie in [0, {num_classes}), got [{p.min()}, {p.max()}]")
    else:
        raise ValueError(f"expected (N, C) probabilities or (N,) integer labels, got {p.dtype} {p.shape}")
    return np.bincount(labels, minlength=num_classes).astype(np.int64)


def _fractions(hist) -> np.ndarray:
    h = np.asarray(hist, dtype=np.float64)
    if h.ndim != 1 or h.sum() <= 0 or (h < 0).any():
        raise ValueError("a class histogram must be a 1-D array of non-negative counts, not all 0")
    return h / h.sum()


def class_entropy(hist) -> float:
    """Entropy of the class histogram in nats (log(C) when uniform, 0 for one class)."""
    q = _fractions(hist)
    q = q[q > 0]
    return max(0.0, float(-(q * np.log(q)).sum()))  # max: no -0.0 for a single class


def classes_covered(hist, min_fraction: float = MIN_CLASS_FRACTION) -> int:
    """Number of classes that hold at least ``min_fraction`` (2%) of the samples."""
    return int((_fractions(hist) >= min_fraction).sum())


def kl_to_uniform(hist) -> float:
    """KL(histogram || uniform) in nats = log(C) - entropy (0 when every class is equally common)."""
    return max(0.0, float(np.log(len(np.asarray(hist))) - class_entropy(hist)))


def inception_score(probs, eps: float = 1e-12) -> float:
    """The IS-like score exp(E_x KL(p(y|x) || p(y))) with p(y) the mean of p(y|x) over the set.

    Between 1 (every image gets the same class distribution) and C (confident and balanced).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"probs must be (N, C) with N >= 1, got {p.shape}")
    marginal = p.mean(axis=0)
    kl = (p * (np.log(p + eps) - np.log(marginal + eps)[None, :])).sum(axis=1)
    return float(np.exp(kl.mean()))


def coverage_metrics(probs, min_fraction: float = MIN_CLASS_FRACTION) -> dict:
    """All coverage numbers of a set of class probabilities (N, C), as JSON-ready values:
    histogram (counts), fractions, classes_covered, entropy (nats), normalized_entropy
    (entropy / log C, 1 = uniform), kl_uniform and inception_score."""
    hist = class_histogram(probs)
    entropy = class_entropy(hist)
    return {"histogram": hist.tolist(), "fractions": [round(float(f), 5) for f in _fractions(hist)],
            "classes_covered": classes_covered(hist, min_fraction), "min_class_fraction": min_fraction,
            "entropy": entropy, "normalized_entropy": entropy / np.log(len(hist)),
            "kl_uniform": kl_to_uniform(hist), "inception_score": inception_score(probs)}


# -------------------------------------------------------------------------------- convenience

def classifier_fid(images, dataset: str = "mnist", classifier=None, n_real: int | None = None) -> float:
    """FID of images (any normalize_images format) against the real test split of ``dataset``,
    on the features of the dataset's shipped classifier (or ``classifier``). ``n_real`` limits
    the real images used (a seeded random subset; default all 10,000)."""
    from keras_gen.evaluation.references import real_reference

    real = real_reference(dataset, classifier=classifier, n=n_real)
    fake = real.classifier.features(images)
    return frechet_distance_from_statistics(*feature_statistics(fake), real.mu, real.sigma)
