"""Data: where MNIST / Fashion-MNIST come from (sources) and the shared tf.data pipeline."""

from keras_gen.data.pipeline import dataset_from_arrays, make_dataset, preprocess_images, steps_per_epoch
from keras_gen.data.sources import (CLASS_NAMES, DATASETS, DataError, load_dataset,
                                    load_dataset_with_origin)

__all__ = ["CLASS_NAMES", "DATASETS", "DataError", "dataset_from_arrays", "load_dataset", "steps_per_epoch",
           "load_dataset_with_origin", "make_dataset", "preprocess_images"]
