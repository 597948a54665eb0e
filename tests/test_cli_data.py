"""`keras-gen data ...`: info and fetch, in a subprocess and in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_gen.cli import main


def run_cli(args, env_updates, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env_updates}
    return subprocess.run([sys.executable, "-m", "keras_gen", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def status_lines(stdout):
    """{'mnist/train': 'status text', ...} from `data info` output."""
    lines = {}
    for line in stdout.splitlines():
        key, _, status = line.strip().partition(" ")
        lines[key] = status.strip()
    return lines


def test_data_info_subprocess(tmp_path, mnist_sample):
    """A full-size mnist cache, a corrupt fashion_mnist/train and a missing fashion_mnist/test."""
    images, labels = mnist_sample
    cache = tmp_path / "cache"
    (cache / "mnist").mkdir(parents=True)
    for split, reps in (("train", 30), ("test", 5)):  # 2000 real images tiled to 60000 / 10000
        np.savez(cache / "mnist" / f"{split}.npz", images=np.tile(images, (reps, 1, 1)),
                 labels=np.tile(labels, reps))
    (cache / "mnist" / "source.json").write_text(json.dumps({"origin": "the test suite"}))
    (cache / "fashion_mnist").mkdir()
    (cache / "fashion_mnist" / "train.npz").write_bytes(b"not an npz")

    result = run_cli(["data", "info"], {"KERAS_GEN_DATA": str(cache)}, tmp_path)
    assert result.returncode == 0, result.stderr
    status = status_lines(result.stdout)
    assert set(status) == {"mnist/train", "mnist/test", "fashion_mnist/train", "fashion_mnist/test"}
    assert status["mnist/train"].startswith("60000 images, 10 classes")
    assert status["mnist/test"].startswith("10000 images, 10 classes")
    assert str(cache / "mnist" / "train.npz") in status["mnist/train"]
    assert "the test suite" in status["mnist/train"]
    assert status["fashion_mnist/train"].startswith("cache unusable")
    assert str(cache / "fashion_mnist" / "train.npz") in status["fashion_mnist/train"]
    assert status["fashion_mnist/test"] == "not cached: run `keras-gen data fetch fashion_mnist`"
    assert not (cache / "fashion_mnist" / "test.npz").exists()  # info only looks, never fetches


def test_data_fetch_unknown_dataset_exits_2(tmp_path):
    cache = tmp_path / "cache"
    result = run_cli(["data", "fetch", "cifar10"], {"KERAS_GEN_DATA": str(cache)}, tmp_path)
    assert result.returncode == 2
    assert "invalid choice: 'cifar10'" in result.stderr
    assert result.stdout == ""
    assert not cache.exists()


def test_data_fetch_in_process_reports_sources(data_env, mnist_sample, small_counts, capsys):
    images, labels = mnist_sample
    small_counts(20, 10)
    keras_dir = data_env.keras_datasets
    keras_dir.mkdir(parents=True)
    np.savez(keras_dir / "mnist.npz", x_train=images[:20], y_train=labels[:20],
             x_test=images[20:30], y_test=labels[20:30])
    assert main(["data", "fetch", "mnist"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert out[0].split()[:3] == ["mnist/train", "20", "images"] and "local files" in out[0]
    assert out[1].split()[:3] == ["mnist/test", "10", "images"] and "from cache" in out[1]
    assert (data_env.cache / "mnist" / "train.npz").exists()


def test_data_fetch_in_process_all_sources_fail_exits_2(data_env, capsys):
    assert main(["data", "fetch", "fashion_mnist"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("keras-gen: error: could not load fashion_mnist/train")
    for source in ("cache:", "local files:", "tfds:", "registry:"):
        assert source in captured.err


@pytest.mark.parametrize("argv", [["data"], ["data", "fetch", "mnist", "extra"], ["data", "nope"]])
def test_data_misuse_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
