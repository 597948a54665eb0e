"""The shared tf.data pipeline: shapes, dtypes, value ranges, options and determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from keras_gen.data import dataset_from_arrays, make_dataset, preprocess_images
from keras_gen.data import sources

N = 50  # images used by most tests
RANGES = {"0_1": (0.0, 1.0), "-1_1": (-1.0, 1.0)}


@pytest.fixture
def arrays(mnist_sample):
    return mnist_sample[0][:N], mnist_sample[1][:N]


def collect(ds):
    """All batches of one epoch: (list of batch sizes, images array[, labels array])."""
    batches = list(ds.as_numpy_iterator())
    if batches and isinstance(batches[0], tuple):
        sizes = [len(x) for x, _ in batches]
        return sizes, np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])
    return [len(x) for x in batches], np.concatenate(batches)


def expected_floats(images, value_range):
    x = images.astype(np.float64)[..., None] / 255.0
    return x * 2 - 1 if value_range == "-1_1" else x


@pytest.mark.parametrize("value_range", ["0_1", "-1_1"])
def test_value_range(arrays, value_range):
    images, labels = arrays
    ds = dataset_from_arrays(images, labels, 16, value_range=value_range, shuffle=False)
    assert ds.element_spec == tf.TensorSpec((None, 28, 28, 1), tf.float32)
    sizes, x = collect(ds)
    assert sizes == [16, 16, 16, 2]
    assert x.dtype == np.float32 and x.shape == (N, 28, 28, 1)
    lo, hi = RANGES[value_range]
    assert x.min() == lo and x.max() == hi  # the samples hold both 0 and 255 pixels
    np.testing.assert_allclose(x, expected_floats(images, value_range), atol=1e-6)


@pytest.mark.parametrize("value_range", ["0_1", "-1_1"])
def test_binarize(arrays, value_range):
    images, labels = arrays
    _, x = collect(dataset_from_arrays(images, labels, 64, value_range=value_range,
                                       binarize=True, shuffle=False))
    lo, hi = RANGES[value_range]
    assert set(np.unique(x).tolist()) == {lo, hi}
    np.testing.assert_array_equal(x[..., 0] == hi, images >= 128)  # threshold 0.5 of [0, 1]


@pytest.mark.parametrize("value_range", ["0_1", "-1_1"])
@pytest.mark.parametrize("binarize", [False, True])
def test_pad_to_32(arrays, value_range, binarize):
    images, labels = arrays
    common = dict(value_range=value_range, binarize=binarize, shuffle=False)
    ds = dataset_from_arrays(images, labels, 20, pad_to=32, **common)
    assert ds.element_spec.shape.as_list() == [None, 32, 32, 1]
    _, padded = collect(ds)
    _, plain = collect(dataset_from_arrays(images, labels, 20, **common))
    assert padded.shape == (N, 32, 32, 1)
    lo, _ = RANGES[value_range]
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert np.all(padded[:, border] == lo)  # background at the range minimum
    np.testing.assert_array_equal(padded[:, 2:30, 2:30], plain)  # centred, unchanged


def test_pad_to_28_is_a_no_op(arrays):
    images, labels = arrays
    _, x = collect(dataset_from_arrays(images, labels, 64, pad_to=28, shuffle=False))
    np.testing.assert_allclose(x, expected_floats(images, "0_1"), atol=1e-6)


@pytest.mark.parametrize("value_range", ["0_1", "-1_1"])
def test_resize_to_32(arrays, value_range):
    images, labels = arrays
    ds = dataset_from_arrays(images, labels, 64, value_range=value_range, resize_to=32,
                             shuffle=False)
    assert ds.element_spec.shape.as_list() == [None, 32, 32, 1]
    _, x = collect(ds)
    assert x.shape == (N, 32, 32, 1) and x.dtype == np.float32
    lo, hi = RANGES[value_range]
    assert x.min() >= lo - 1e-6 and x.max() <= hi + 1e-6
    # a resize stretches the digit over the whole frame (unlike padding): compare per image means
    ref = expected_floats(images, value_range)
    np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), ref.mean(axis=(1, 2, 3)), atol=0.03)
    # bilinear resizing to the same size changes nothing
    _, same = collect(dataset_from_arrays(images, labels, 64, value_range=value_range,
                                          resize_to=28, shuffle=False))
    np.testing.assert_allclose(same, ref, atol=1e-6)


def test_with_labels_pairs_images_and_int32_labels(arrays):
    images, labels = arrays
    ds = dataset_from_arrays(images, labels, 16, with_labels=True, shuffle=True, seed=1)
    assert ds.element_spec == (tf.TensorSpec((None, 28, 28, 1), tf.float32),
                               tf.TensorSpec((None,), tf.int32))
    sizes, x, y = collect(ds)
    assert sizes == [16, 16, 16, 2] and y.dtype == np.int32
    label_of = {img.tobytes(): int(lab) for img, lab in zip(images, labels)}
    pixels = np.round(x[..., 0] * 255).astype(np.uint8)
    assert [label_of[p.tobytes()] for p in pixels] == y.tolist()  # pairs survive the shuffle
    assert sorted(y.tolist()) == sorted(labels.tolist())


def test_drop_remainder(arrays):
    images, labels = arrays
    kept = dataset_from_arrays(images, labels, 16, shuffle=False)
    dropped = dataset_from_arrays(images, labels, 16, shuffle=False, drop_remainder=True)
    assert collect(kept)[0] == [16, 16, 16, 2]
    assert collect(dropped)[0] == [16, 16, 16]
    assert dropped.element_spec.shape.as_list() == [16, 28, 28, 1]  # static batch size
    assert int(dropped.cardinality()) == 3


@pytest.mark.parametrize("limit, count", [(10, 10), (1, 1), (N + 100, N)])
def test_limit_takes_the_first_images(arrays, limit, count):
    images, labels = arrays
    _, x, y = collect(dataset_from_arrays(images, labels, 8, limit=limit, shuffle=False,
                                          with_labels=True))
    assert len(x) == count
    np.testing.assert_allclose(x, expected_floats(images[:count], "0_1"), atol=1e-6)
    np.testing.assert_array_equal(y, labels[:count])
    # shuffled, the limit still picks the same first images
    _, _, y_shuffled = collect(dataset_from_arrays(images, labels, 8, limit=limit, seed=0,
                                                   with_labels=True))
    assert sorted(y_shuffled.tolist()) == sorted(labels[:count].tolist())


def _order(ds):
    """Identify each element of an epoch by its index (labels are set to 0..N-1)."""
    return collect(ds)[2].tolist()


def test_shuffle_determinism(arrays):
    images, _ = arrays
    ids = np.arange(N)  # unique "labels" to read the order

    def build(seed, shuffle=True):
        return dataset_from_arrays(images, ids, 8, with_labels=True, shuffle=shuffle, seed=seed)

    a, b, c = build(3), build(3), build(4)
    a1, a2 = _order(a), _order(a)
    assert sorted(a1) == list(range(N))  # a permutation: nothing lost or repeated
    assert a1 != list(range(N))  # actually shuffled
    assert a1 != a2  # reshuffled each epoch
    assert (_order(b), _order(b)) == (a1, a2)  # the same seed gives the same epochs
    assert _order(c) != a1  # a different seed a different order
    assert _order(build(3, shuffle=False)) == list(range(N))


@pytest.mark.parametrize("kwargs", [
    dict(batch_size=0), dict(batch_size=-4), dict(batch_size=2.5), dict(batch_size="8"),
    dict(value_range="0_255"), dict(value_range="[-1,1]"),
    dict(pad_to=27), dict(pad_to=31), dict(pad_to=32, resize_to=32),
    dict(resize_to=0), dict(resize_to=-3),
    dict(limit=0), dict(limit=-1),
])
def test_bad_options_raise_value_error(arrays, kwargs):
    images, labels = arrays
    kwargs = {"batch_size": 8, **kwargs}
    batch_size = kwargs.pop("batch_size")
    with pytest.raises(ValueError):
        dataset_from_arrays(images, labels, batch_size, **kwargs)


def test_preprocess_images_single_and_batched(arrays):
    images, _ = arrays
    one = preprocess_images(images[0], value_range="-1_1", pad_to=32)
    many = preprocess_images(images[:3], value_range="-1_1", pad_to=32)
    assert one.shape == (32, 32, 1) and many.shape == (3, 32, 32, 1)
    assert one.dtype == tf.float32
    np.testing.assert_array_equal(one.numpy(), many[0].numpy())


def test_make_dataset_forwards_options(data_env, fashion_sample, small_counts):
    images, labels = fashion_sample[0][:40], fashion_sample[1][:40]
    small_counts(40, 10)
    target = data_env.cache / "fashion_mnist"
    target.mkdir(parents=True)
    np.savez(target / "train.npz", images=images, labels=labels)
    (target / "source.json").write_text(json.dumps({"origin": "test"}))
    ds = make_dataset("fashion_mnist", "train", 16, value_range="-1_1", pad_to=32,
                      with_labels=True, drop_remainder=True, shuffle=False, limit=35)
    sizes, x, y = collect(ds)
    assert sizes == [16, 16]
    assert x.shape == (32, 32, 32, 1) and x.min() == -1.0 and x.max() == 1.0
    np.testing.assert_allclose(x[:, 2:30, 2:30], expected_floats(images[:32], "-1_1"), atol=1e-6)
    np.testing.assert_array_equal(y, labels[:32])
    with pytest.raises(sources.DataError):
        make_dataset("fashion_mnist", "test", 16)  # not cached, every other source fails


def test_make_dataset_on_real_cached_mnist(offline):
    """The real MNIST from the cache (`make test` runs `keras-gen data fetch all` first)."""
    ds = make_dataset("mnist", "train", 256, value_range="-1_1", pad_to=32, with_labels=True,
                      drop_remainder=True, seed=0)
    assert int(ds.cardinality()) == 60000 // 256
    x, y = next(iter(ds))
    assert x.shape == (256, 32, 32, 1) and x.dtype == tf.float32
    assert y.shape == (256,) and y.dtype == tf.int32
    x, y = x.numpy(), y.numpy()
    assert x.min() == -1.0 and x.max() == 1.0
    assert np.all(x[:, :2] == -1.0) and np.all(x[:, :, -2:] == -1.0)
    assert set(y.tolist()) == set(range(10))  # a shuffled batch of 256 holds every digit
    test = make_dataset("mnist", "test", 1000, shuffle=False, with_labels=True)
    sizes, x_test, y_test = collect(test)
    assert sizes == [1000] * 10 and x_test.shape == (10000, 28, 28, 1)
    assert 0.0 == x_test.min() and x_test.max() == 1.0
    assert np.bincount(y_test, minlength=10).min() > 800  # every class well represented
