"""Class-conditional evaluation: does a conditional model draw the class it is asked for, how good
is each class, and what does the DDPM's guidance scale trade?

- ``class_accuracy(images, labels)``: the share of images the dataset's shipped classifier assigns
  to the requested label (the conditional counterpart of the coverage histogram);
- ``per_class_fid(images, labels)``: classifier FID of each class's samples against the real test
  images of that class (a model can have a good overall FID and still swap or blur classes);
- ``draw_per_class`` / ``evaluate_conditional``: sample n images of every class and score them
  (the trilemma numbers of keras_gen.evaluation.report plus the two above);
- ``guidance_sweep``: ``evaluate_conditional`` per guidance scale w (0, 1, 3, 5 by default) of a
  classifier-free-guided DDPM: accuracy and precision (fidelity) against recall (diversity).

A sampler is any ``sample_fn(n, seed, label=c, **options)`` returning images in [0, 1], e.g.
``keras_gen.load_sampler(path)`` or
``lambda n, seed, label, **o: model.sample(n, seed, labels=label, **o)``.
"""

from __future__ import annotations

import numpy as np

from keras_gen.evaluation.classifier import load_classifier
from keras_gen.evaluation.metrics import feature_statistics, frechet_distance_from_statistics
from keras_gen.evaluation.references import real_reference
from keras_gen.evaluation.report import evaluate_images, sample_images

DEFAULT_GUIDANCE_SCALES = (0.0, 1.0, 3.0, 5.0)


def _checked_labels(labels, n, num_classes):
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be {n} integers (one per image), got {labels.dtype} {labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}) (the classifier's classes), "
                         f"got [{labels.min()}, {labels.max()}]")
    return labels


def _accuracies(probs, labels):
    """(overall accuracy, {class: accuracy}) of requested labels against predicted classes."""
    hits = probs.argmax(axis=1) == labels
    return float(hits.mean()), {int(c): float(hits[labels == c].mean()) for c in np.unique(labels)}


def _per_class_fid(feats, labels, real, real_labels):
    """{class: FID of that class's features against the real features of that class}."""
    fids = {}
    for c in np.unique(labels):
        fake, truth = feats[labels == c], real.feats[real_labels == c]
        if len(fake) < 2:
            raise ValueError(f"per-class FID needs at least 2 images of each class; "
                             f"class {c} has {len(fake)}")
        fids[int(c)] = frechet_distance_from_statistics(*feature_statistics(fake),
                                                        *feature_statistics(truth))
    return fids


def _test_labels(dataset):
    from keras_gen.data import load_dataset
    return load_dataset(dataset, "test")[1]


def class_accuracy(images, labels, dataset: str = "mnist", classifier=None) -> float:
    """Share of ``images`` that the classifier assigns to their requested ``labels`` (N,)."""
    classifier = classifier or load_classifier(dataset)
    probs = classifier.probs(images)
    return _accuracies(probs, _checked_labels(labels, len(probs), probs.shape[1]))[0]


def per_class_fid(images, labels, dataset: str = "mnist", classifier=None) -> dict:
    """{class: classifier FID of the images requested as that class vs the real test images of it}."""
    real = real_reference(dataset, classifier=classifier)
    probs, feats = real.classifier.probs_and_features(images)
    labels = _checked_labels(labels, len(feats), probs.shape[1])
    return _per_class_fid(feats, labels, real, _test_labels(dataset))


def draw_per_class(sample_fn, num_classes: int, n_per_class: int, *, seed: int = 0,
                   batch_size: int = 500, **options):
    """(images (C * n, 28, 28, 1), labels (C * n,)): n images of each class, class c from seeds
    seed + 1000 c, seed + 1000 c + 1, ... (one per batch of ``batch_size``)."""
    images = [sample_images(sample_fn, n_per_class, batch_size, seed=seed + 1000 * c, label=c,
                            **options) for c in range(num_classes)]
    return np.concatenate(images), np.repeat(np.arange(num_classes), n_per_class)


def conditional_metrics(images, labels, dataset: str = "mnist", classifier=None, *, seed: int = 0,
                        kid_subsets: int = 20) -> dict:
    """Everything evaluate_images reports (FID, KID, precision, recall, coverage) plus accuracy,
    per_class_accuracy, per_class_fid and mean_class_fid, as a JSON-ready dict."""
    real = real_reference(dataset, classifier=classifier)
    report = evaluate_images(images, real, seed=seed, kid_subsets=kid_subsets)
    probs, feats = real.classifier.probs_and_features(images)
    labels = _checked_labels(labels, len(feats), probs.shape[1])
    accuracy, by_class = _accuracies(probs, labels)
    fids = _per_class_fid(feats, labels, real, _test_labels(dataset))
    return {**report, "accuracy": accuracy, "per_class_accuracy": by_class,
            "per_class_fid": fids, "mean_class_fid": float(np.mean(list(fids.values())))}


def evaluate_conditional(sample_fn, num_classes: int, n_per_class: int = 100,
                         dataset: str = "mnist", *, seed: int = 0, batch_size: int = 500,
                         classifier=None, **options) -> dict:
    """Draw ``n_per_class`` images of every class with ``sample_fn`` and score them
    (`conditional_metrics`); ``options`` go to the sampler (e.g. guidance=3.0, steps=50)."""
    images, labels = draw_per_class(sample_fn, num_classes, n_per_class, seed=seed,
                                    batch_size=batch_size, **options)
    return conditional_metrics(images, labels, dataset, classifier, seed=seed)


def guidance_sweep(sample_fn, num_classes: int, scales=DEFAULT_GUIDANCE_SCALES,
                   n_per_class: int = 100, dataset: str = "mnist", *, seed: int = 0,
                   batch_size: int = 500, classifier=None, **options) -> list[dict]:
    """`evaluate_conditional` once per guidance scale w (same seeds, so the same starting noise):
    a list of rows {"guidance": w, accuracy, fid, precision, recall, mean_class_fid, ...}.

    w = 0 is the unconditional model, w = 1 the plain conditional one; larger w usually raises
    accuracy and precision (fidelity) and lowers recall (diversity).
    """
    return [{"guidance": float(w),
             **evaluate_conditional(sample_fn, num_classes, n_per_class, dataset, seed=seed,
                                    batch_size=batch_size, classifier=classifier, guidance=float(w),
                                    **options)}
            for w in scales]
