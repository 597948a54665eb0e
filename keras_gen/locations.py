"""Where the shipped models live: the metrics' classifiers and the exported generators.

One place answers it for every part of keras_gen that reads shipped files (the classifiers of
keras_gen.evaluation, the exports that keras_gen.zoo names), so it sits low in the dependency
order and imports nothing but the standard library. The folders, in order:

1. ``$KERAS_GEN_MODELS``, when set (and then nothing else: an explicit choice is not second-
   guessed);
2. ``saved_models/`` next to the package, i.e. the repository checkout (a source tree, or a
   ``pip install -e`` install);
3. ``<prefix>/share/keras-gen/saved_models/``, where a non-editable ``pip install`` puts a copy of
   the checkout's saved_models/ (setup.cfg's ``[options.data_files]``): the classifiers and every
   shipped export.
"""

from __future__ import annotations

import os
from pathlib import Path

MODELS_ENV = "KERAS_GEN_MODELS"

# Where `pip install` puts saved_models/, relative to the installation's data folder (sys.prefix
# in a venv).
INSTALLED_MODELS = Path("share") / "keras-gen" / "saved_models"


def _package_parent() -> Path:
    import keras_gen
    return Path(keras_gen.__file__).resolve().parents[1]


def _checkout_models_dir() -> Path:
    """saved_models/ of the source checkout the package is imported from (may not exist)."""
    return _package_parent() / "saved_models"


def _installed_models_dir() -> Path | None:
    """The folder the installed wheel put saved_models/ in, from the package's RECORD (or None).

    Read from the dist-info next to the imported package (not the first keras-gen on sys.path), so
    it follows wherever pip put the files (a venv, --user or --prefix install alike). With
    ``pip install --target DIR`` the RECORD's relative paths no longer point at the data files
    (pip moves them after writing it), which land beside the package in DIR/share/...: that
    folder is the answer then.
    """
    from importlib.metadata import PathDistribution

    site = _package_parent()
    marker = INSTALLED_MODELS.as_posix() + "/"
    for info in sorted(site.glob("keras_gen-*.dist-info")):
        distribution = PathDistribution(info)
        for file in distribution.files or ():
            posix = file.as_posix()
            if marker in posix:
                recorded = Path(distribution.locate_file(posix[:posix.index(marker) + len(marker)]))
                beside = site / INSTALLED_MODELS
                return (recorded if recorded.is_dir() or not beside.is_dir() else beside).resolve()
    return None


def models_dirs() -> list[tuple[str, Path]]:
    """The places searched for shipped models, in order, as (what it is, folder) pairs.

    ``$KERAS_GEN_MODELS`` alone when it is set; otherwise the checkout's saved_models/ (if it
    exists) and the copy installed with the package (if there is one).
    """
    env = os.environ.get(MODELS_ENV)
    if env:
        return [(f"${MODELS_ENV}", Path(env).expanduser())]
    places = []
    checkout = _checkout_models_dir()
    if checkout.is_dir():
        places.append(("the source checkout", checkout))
    installed = _installed_models_dir()
    if installed is not None and installed.is_dir():
        places.append(("installed with the package", installed))
    return places


def models_dir() -> Path:
    """The first folder of `models_dirs` (see the module docstring for the order).

    When none exists, the checkout path is returned (where ``train_classifier`` writes by
    default); the readers then name every place they looked in (`describe_places`).
    """
    places = models_dirs()
    return places[0][1] if places else _checkout_models_dir()


def describe_places() -> str:
    """The places searched, for an error message: each folder, or why there is none."""
    def where(folder: Path) -> str:
        return f"{folder}" if folder.is_dir() else f"{folder}: no such folder"

    env = os.environ.get(MODELS_ENV)
    if env:
        return f"${MODELS_ENV} ({where(Path(env).expanduser())})"
    installed = _installed_models_dir()
    return (f"the source checkout ({where(_checkout_models_dir())}) and the models installed with the "
            "package (" + (where(installed) if installed is not None else
                           "none: this keras_gen was installed without them") + ")")
