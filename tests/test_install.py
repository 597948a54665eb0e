"""keras_gen installed for real: `pip install <repo>` (not editable) into a fresh venv, used from
another folder.

The venv reuses the heavy dependencies (TensorFlow, Keras, ...) of the venv running the tests, so
nothing is downloaded: a .pth file adds a folder of links to that venv's site-packages, less every
keras_gen entry there (`make test` installs keras_gen editable, and that copy must not be seen).
The package itself is built from a copy of the checkout with `--no-deps --no-build-isolation`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import SimpleNamespace

import pytest

from keras_gen import locations
from keras_gen.evaluation import classifier as classifier_module
from subprocess_jobs import explain, run_all

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "saved_models"
# Not part of a source tree: left out of the copy that is installed.
NOT_SOURCE = (".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "outputs", "runs")

# Run by the venv's python from another folder: where keras_gen comes from, what its import loads,
# where the shipped classifiers and named models resolve, then (one TensorFlow import for all) the
# CLI's error when no classifier can be found: argv[1] is an export, argv[2] an empty folder.
CHECK = r'''
import contextlib, io, json, os, sys
import keras_gen
light = {"matplotlib": "matplotlib" in sys.modules, "tensorflow": "tensorflow" in sys.modules}
from keras_gen.cli import main
from keras_gen.evaluation.classifier import classifier_path, models_dir
from keras_gen.zoo import shipped_models
info = {"file": keras_gen.__file__, "light": light, "models_dir": str(models_dir()),
        "classifier": str(classifier_path("mnist")), "zoo": {m.name: str(m.path) for m in shipped_models()}}
os.environ["KERAS_GEN_MODELS"] = sys.argv[2]
err = io.StringIO()
with contextlib.redirect_stderr(err):
    info["no_classifier_rc"] = main(["evaluate", sys.argv[1], "--n", "10", "--no-references", "--ddim-steps", "10"])
info["no_classifier_stderr"] = err.getvalue()
print(json.dumps(info))
'''


def _is_keras_gen(name: str) -> bool:
    """A site-packages entry of an installed keras_gen (package, dist-info, editable hooks)."""
    lowered = name.lower().replace("-", "_")
    return lowered.startswith("keras_gen") or ("__editable__" in lowered and "keras_gen" in lowered)


def _dependencies_folder(root: Path) -> Path:
    """A folder of links to every entry of this venv's site-packages except keras_gen's."""
    folder = root / "deps"
    folder.mkdir()
    sources = dict.fromkeys(Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib"))
    for site in sources:
        for entry in site.iterdir():
            if not _is_keras_gen(entry.name) and not (folder / entry.name).exists():
                (folder / entry.name).symlink_to(entry)
    return folder


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv in which keras_gen is a regular (non-editable) install of this checkout."""
    root = tmp_path_factory.mktemp("install")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    deps = _dependencies_folder(root)
    # addsitedir (not a bare path line) so that the dependencies' own .pth files are processed too.
    (site / "_keras_gen_test_dependencies.pth").write_text(f"import site; site.addsitedir({str(deps)!r})\n")
    source = root / "src"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    build = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                            "--no-index", "--no-cache-dir", "--quiet", str(source)],
                           cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, f"pip install failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return venv, site, elsewhere


@pytest.fixture(scope="module")
def runs(installed):
    """The installed package's checks and commands, run side by side from another folder."""
    venv, site, elsewhere = installed
    bin_dir = venv / "bin"
    empty = elsewhere / "no_models"
    empty.mkdir()
    commands = {
        "check": [str(bin_dir / "python"), "-c", CHECK, str(SHIPPED / "vae"), str(empty)],
        "sample": [str(bin_dir / "keras-gen"), "sample", "vae_mnist", "--n", "4", "--out", "x.png"],
        "evaluate": [str(bin_dir / "keras-gen"), "evaluate", str(SHIPPED / "vae"), "--n", "50",
                     "--no-references", "--ddim-steps", "10", "--batch-size", "50"],
    }
    # The children must see neither this checkout nor a models folder chosen outside the test.
    with pytest.MonkeyPatch.context() as patch:
        for name in ("PYTHONPATH", "KERAS_GEN_MODELS"):
            patch.delenv(name, raising=False)
        results = run_all(commands, elsewhere, elsewhere, timeout=300)
    return SimpleNamespace(results=results, venv=venv, site=site, elsewhere=elsewhere, empty=empty)


def test_the_installed_package_is_imported_and_light(runs):
    result = runs.results["check"]
    assert result.rc == 0, explain(result)
    info = json.loads(result.stdout.strip().splitlines()[-1])
    package = Path(info["file"]).resolve()
    assert package.is_relative_to(runs.site.resolve()), info  # the venv's copy ...
    assert not package.is_relative_to(REPO), info  # ... not the checkout (nor the editable install)
    assert info["light"] == {"matplotlib": False, "tensorflow": False}, info
    installed_models = (runs.venv / "share" / "keras-gen" / "saved_models").resolve()
    assert Path(info["models_dir"]).resolve() == installed_models, info
    assert Path(info["classifier"]).resolve() == installed_models / "mnist_classifier.keras", info


def shipped_files(folder: Path) -> set[str]:
    """The files under a saved_models/ folder, relative to it (no hidden placeholders)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def test_the_wheel_carries_saved_models(runs):
    """Every shipped file (classifiers, exports, model card) lands in <prefix>/share/keras-gen,
    byte for byte and in its own folder (setup.cfg's data_files flatten what one key matches)."""
    installed_models = runs.venv / "share" / "keras-gen" / "saved_models"
    assert shipped_files(installed_models) == shipped_files(SHIPPED)
    for name in shipped_files(SHIPPED):
        assert (installed_models / name).read_bytes() == (SHIPPED / name).read_bytes(), name
    assert not (runs.site / "saved_models").exists()


def test_the_installed_package_names_its_installed_models(runs):
    result = runs.results["check"]
    assert result.rc == 0, explain(result)
    zoo = json.loads(result.stdout.strip().splitlines()[-1])["zoo"]
    installed_models = (runs.venv / "share" / "keras-gen" / "saved_models").resolve()
    assert {"vae_mnist", "dcgan_mnist", "ddpm_mnist", "flow_mnist"} <= set(zoo), zoo
    assert all(Path(path).resolve().parent == installed_models for path in zoo.values()), zoo


def test_installed_cli_samples_a_model_by_name_from_another_folder(runs):
    result = runs.results["sample"]
    assert result.rc == 0, explain(result)
    assert (runs.elsewhere / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote x.png (4 images)" in result.stdout


def test_installed_cli_evaluates_with_the_packaged_classifier(runs):
    result = runs.results["evaluate"]
    assert result.rc == 0, explain(result)
    assert "vae (VAE)" in result.stdout and "FID" in result.stdout, explain(result)


def test_installed_cli_says_where_it_looked_for_the_classifier(runs):
    result = runs.results["check"]
    assert result.rc == 0, explain(result)
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["no_classifier_rc"] == 2, info
    errors = info["no_classifier_stderr"].splitlines()
    assert len(errors) == 1 and errors[0].startswith("keras-gen: error: no mnist classifier"), errors
    assert f"$KERAS_GEN_MODELS ({runs.empty})" in errors[0]
    assert "set $KERAS_GEN_MODELS" in errors[0] and "train-classifier" in errors[0]


# ------------------------------------------------------------------ the error, without a venv

def test_missing_classifier_names_every_place_looked_in(tmp_path, monkeypatch):
    """No $KERAS_GEN_MODELS, no checkout folder, no installed copy: all three are named."""
    monkeypatch.delenv(locations.MODELS_ENV, raising=False)
    checkout = tmp_path / "checkout" / "saved_models"
    monkeypatch.setattr(locations, "_checkout_models_dir", lambda: checkout)
    monkeypatch.setattr(locations, "_installed_models_dir", lambda: None)
    assert locations.models_dirs() == []
    with pytest.raises(classifier_module.ClassifierNotFound) as caught:
        classifier_module.load_classifier("fashion_mnist")
    message = str(caught.value)
    assert isinstance(caught.value, FileNotFoundError) and isinstance(caught.value, ValueError)
    assert f"{checkout}: no such folder" in message
    assert "installed without them" in message
    assert "set $KERAS_GEN_MODELS to a folder that holds fashion_mnist_classifier.keras" in message
    assert "keras-gen evaluate train-classifier --dataset fashion_mnist" in message


def test_installed_classifiers_are_found_after_the_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv(locations.MODELS_ENV, raising=False)
    checkout, installed = tmp_path / "checkout", tmp_path / "share"
    checkout.mkdir()
    installed.mkdir()
    (installed / "mnist_classifier.keras").write_bytes(b"x")
    monkeypatch.setattr(locations, "_checkout_models_dir", lambda: checkout)
    monkeypatch.setattr(locations, "_installed_models_dir", lambda: installed)
    assert locations.models_dir() == checkout
    assert classifier_module.classifier_path("mnist") == installed / "mnist_classifier.keras"
    (checkout / "mnist_classifier.keras").write_bytes(b"y")
    assert classifier_module.classifier_path("mnist") == checkout / "mnist_classifier.keras"
    monkeypatch.setenv(locations.MODELS_ENV, str(tmp_path / "elsewhere"))
    assert classifier_module.classifier_path("mnist") == tmp_path / "elsewhere" / "mnist_classifier.keras"
