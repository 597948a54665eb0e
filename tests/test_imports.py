"""`import keras_gen` is light (no TensorFlow, no matplotlib) and every public name and submodule
still resolves.

The CLI's entry point imports the package before keras_gen/cli.py runs, and cli.py sets
TF_CPP_MIN_LOG_LEVEL at its top: that only works while nothing before it imports TensorFlow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import keras_gen

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "keras_gen"
# Modules the lazy map names before they exist in every branch (they are being written): their
# names are checked once the module is there.
PENDING_MODULES = {"keras_gen.models.kinds", "keras_gen.runs", "keras_gen.sampling"}

CHILD = r'''
import json, os, sys
os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
import keras_gen
after_package = {"matplotlib": "matplotlib" in sys.modules, "tensorflow": "tensorflow" in sys.modules}
import keras_gen.cli
after_cli = {"tensorflow": "tensorflow" in sys.modules, "log_level": os.environ.get("TF_CPP_MIN_LOG_LEVEL")}
keras_gen.__version__, dir(keras_gen)
still = {"matplotlib": "matplotlib" in sys.modules, "tensorflow": "tensorflow" in sys.modules}
# Submodules are attributes on first use, as when __init__ imported them all (tutorials rely on it).
submodules = {"models.build_ddpm": callable(keras_gen.models.build_ddpm),
              "evaluation.class_histogram": callable(keras_gen.evaluation.class_histogram),
              "data.load_dataset": keras_gen.data.load_dataset is keras_gen.load_dataset,
              "export.read_export_info": callable(keras_gen.export.read_export_info),
              "presets.get_preset": keras_gen.presets.get_preset is keras_gen.get_preset}
print(json.dumps({"file": keras_gen.__file__, "after_package": after_package, "after_cli": after_cli,
                  "after_dir": still, "submodules": submodules}))
'''


def _module_file_exists(module: str) -> bool:
    """Whether this checkout has the module (not: whether some keras_gen on sys.path has it)."""
    path = REPO.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_import_keras_gen_loads_neither_tensorflow_nor_matplotlib():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(info["file"]).resolve() == PACKAGE / "__init__.py"  # this checkout's package
    assert info["after_package"] == {"matplotlib": False, "tensorflow": False}
    # cli.py has set the log level and TensorFlow is still to come.
    assert info["after_cli"] == {"tensorflow": False, "log_level": "2"}
    assert info["after_dir"] == {"matplotlib": False, "tensorflow": False}
    assert all(info["submodules"].values()), info["submodules"]


def test_every_public_name_resolves():
    lazy = keras_gen._LAZY
    assert set(keras_gen.__all__) == set(lazy) | {"__version__"}
    assert set(keras_gen.__all__) <= set(dir(keras_gen))
    missing = {lazy[name] for name in lazy if not _module_file_exists(lazy[name])}
    assert missing <= PENDING_MODULES, f"the lazy map names modules that do not exist: {missing - PENDING_MODULES}"
    checked = [name for name in keras_gen.__all__ if name == "__version__" or _module_file_exists(lazy[name])]
    for name in checked:
        value = getattr(keras_gen, name)
        assert value is not None, name
        if name in lazy and lazy[name] != f"keras_gen.{name}":
            assert value is getattr(sys.modules[lazy[name]], name), name
    # The names of today's API, spelled the ways callers use them.
    from keras_gen import DDPM, VAE, load_sampler, make_dataset, plotting  # noqa: F401
    assert keras_gen.VAE is VAE and keras_gen.plotting is plotting is sys.modules["keras_gen.plotting"]
    assert keras_gen.callbacks.SampleGrid and keras_gen.diffusion.NoiseSchedule
    assert callable(make_dataset) and callable(load_sampler) and DDPM.__name__ == "DDPM"


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        keras_gen.not_a_name  # noqa: B018
    assert not hasattr(keras_gen, "annotations")
    assert not hasattr(keras_gen, "__main__")  # never runs the CLI by probing


def test_the_cli_keeps_tensorflows_start_up_lines_off_stderr(tmp_path):
    """TensorFlow prints oneDNN / CUDA lines before its logging is set up, whatever
    TF_CPP_MIN_LOG_LEVEL says: a keras-gen command's stderr must not open with them (`data`
    included: its pipeline module imports TensorFlow too)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")}
    for command in (["sample", str(REPO / "saved_models" / "vae"), "--n", "2", "--out", str(tmp_path / "grid.png")],
                    ["data", "fetch", "mnist"]):
        result = subprocess.run([sys.executable, "-m", "keras_gen", *command], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
        for line in ("oneDNN", "cuda", "cuInit", "absl::InitializeLog", "I0000", "E0000"):
            assert line not in result.stderr, (command, result.stderr[-3000:])
    assert (tmp_path / "grid.png").is_file()
