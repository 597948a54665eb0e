"""Measure the generative trilemma: quality, speed and coverage of generated images.

- images:     normalize_images (every metric's input goes through it), detect_image_format
- classifier: the project's MNIST / Fashion-MNIST CNN (features + probabilities):
              build_classifier, train_classifier, load_classifier, Classifier
- metrics:    frechet_distance, kernel_inception_distance, precision_recall (quality);
              class_histogram, class_entropy, classes_covered, kl_to_uniform, inception_score,
              coverage_metrics (coverage); classifier_fid (FID against the real test set)
- speed:      measure_sampling_speed
- model_card: record_evaluation (numbers into an export's assets), model_card (README table)
- families:   family_rows, families_table, write_families (the families table: likelihood,
              stability, fidelity, speed of every family from recorded numbers, and its figure)
- references: real_reference (real test set features), reference_sets (real / noise / one class)
- report:     evaluate_paths (the whole report for exported models), evaluate_images
- table:      format_table (the report's rows as text; the columns the report page shows too)
- report_page: write_report_page (index.html: the whole report on one self-contained page)
- conditional: class_accuracy, per_class_fid, evaluate_conditional, guidance_sweep (conditional models)
- likelihood: measure_likelihood, record_likelihood, format_likelihoods (each kind's bounds on log p)
"""

from keras_gen.evaluation.classifier import (Classifier, build_classifier, classifier_path,
                                             load_classifier, models_dir, train_classifier)
from keras_gen.evaluation.images import ImageFormat, detect_image_format, normalize_images
from keras_gen.evaluation.metrics import (KID, PrecisionRecall, class_entropy, class_histogram,
                                          classes_covered, classifier_fid, coverage_metrics,
                                          feature_statistics, frechet_distance,
                                          frechet_distance_from_statistics, inception_score,
                                          kernel_inception_distance, kl_to_uniform,
                                          precision_recall)
from keras_gen.evaluation.likelihood import format_likelihoods, measure_likelihood, record_likelihood
from keras_gen.evaluation.model_card import (model_card, record_evaluation,
                                             write_model_card)
from keras_gen.evaluation.families import families_table, family_rows, write_families
from keras_gen.evaluation.references import RealReference, real_reference, reference_sets
from keras_gen.evaluation.report import (DEFAULT_DDIM_STEPS, evaluate_images, evaluate_paths,
                                         sample_images)
from keras_gen.evaluation.table import format_table
from keras_gen.evaluation.speed import measure_sampling_speed
from keras_gen.evaluation.conditional import (DEFAULT_GUIDANCE_SCALES, class_accuracy,
                                              conditional_metrics, draw_per_class,
                                              evaluate_conditional, guidance_sweep, per_class_fid)

__all__ = ["families_table", "family_rows", "write_families",
           "format_likelihoods", "measure_likelihood", "record_likelihood", "DEFAULT_GUIDANCE_SCALES", "class_accuracy", "conditional_metrics", "draw_per_class",
           "evaluate_conditional", "guidance_sweep", "per_class_fid", "model_card", "record_evaluation", "write_model_card", "Classifier", "DEFAULT_DDIM_STEPS", "ImageFormat", "KID", "PrecisionRecall", "RealReference",
           "build_classifier", "class_entropy", "class_histogram", "classes_covered", "classifier_fid",
           "classifier_path", "coverage_metrics", "detect_image_format", "evaluate_images",
           "evaluate_paths", "feature_statistics", "format_table", "frechet_distance",
           "frechet_distance_from_statistics", "inception_score", "kernel_inception_distance",
           "kl_to_uniform", "load_classifier", "measure_sampling_speed", "models_dir",
           "normalize_images", "precision_recall", "real_reference", "reference_sets",
           "sample_images", "train_classifier"]
