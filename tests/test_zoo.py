"""Shipped models by name (keras_gen.zoo): from_preset, `keras-gen models`, names in the CLI, and
what ships: every file of saved_models/ in the package's data files, and the 60 MB budget.

The real shipped exports are sampled in process. The unknown name's one-line error is checked on
the console command (a child process); the other commands run through keras_gen.cli.main in
process, one of them on a folder holding an untrained conditional export, to sample a name with
--label.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from helpers import tiny_vae
from subprocess_jobs import explain, finish_all, start_all

import keras_gen
from keras_gen.export import is_export, read_export_info
from keras_gen.zoo import UnknownModelName, model_name, resolve_model_path, shipped_models

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "saved_models"
BUDGET_BYTES = 60 * 2**20  # issue 20: saved_models/ under 60 MB (MB as the model card counts them)
TODAY = {"vae_mnist", "dcgan_mnist", "ddpm_mnist", "flow_mnist", "latent_ddpm_mnist",
         "latent_ddpm_mnist_conditional", "distilled_latent_mnist_4step", "vae_mnist_conditional",
         "dcgan_mnist_conditional", "dcgan_fashion_mnist", "latent_ddpm_fashion_mnist"}  # today's exports
CONDITIONAL = "vae_fashion_mnist_conditional"


def test_every_shipped_model_resolves_by_name_and_samples(monkeypatch):
    monkeypatch.delenv("KERAS_GEN_MODELS", raising=False)
    models = shipped_models()
    assert TODAY <= {m.name for m in models}
    # every export in saved_models/ has a name, and each name is its own export's
    assert {m.path for m in models} == {p for p in SHIPPED.iterdir() if is_export(p)}
    for model in models:
        sampler = keras_gen.from_preset(model.name)
        assert isinstance(sampler, keras_gen.Sampler) and sampler.path == model.path
        assert sampler.info["kind"] == model.kind and model.dataset == read_export_info(model.path)["dataset"]
        options = {"steps": 2} if "steps" in sampler.kind.sample_options else {}  # diffusion: 2 DDIM steps
        images = sampler(2, seed=0, **options)
        assert images.shape == (2, 28, 28, 1) and images.dtype == np.float32, model.name
        assert 0 <= images.min() and images.max() <= 1 and images.std() > 0.05, model.name  # not blank
        assert np.array_equal(images, sampler(2, seed=0, **options)), model.name


def test_an_unknown_name_raises_listing_the_names(monkeypatch):
    monkeypatch.delenv("KERAS_GEN_MODELS", raising=False)
    with pytest.raises(UnknownModelName) as caught:
        keras_gen.from_preset("ddpm_mnsit")
    error = caught.value
    assert isinstance(error, ValueError) and len(str(error).splitlines()) == 1
    assert set(error.names) == {m.name for m in shipped_models()}
    assert f"known names: {', '.join(sorted(error.names))}" in str(error)


def test_names_come_from_the_assets():
    """kind, dataset, the kind's tags and conditioning: the scheme the shipped models to come use."""
    info = read_export_info(SHIPPED / "ddpm")
    assert model_name(info) == "ddpm_mnist"
    assert model_name({**info, "dataset": "fashion_mnist"}) == "ddpm_fashion_mnist"
    assert model_name({**info, "num_classes": 10}) == "ddpm_mnist_conditional"
    student = {**info, "kind": "distilled", "config": {**info["config"], "ddim_steps": 4}}
    assert model_name(student) == "distilled_mnist_4step"
    assert model_name({k: v for k, v in info.items() if k != "dataset"}) is None  # not nameable


def test_names_ignore_folder_names_and_refuse_duplicates(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_GEN_MODELS", str(tmp_path / "zoo"))
    shutil.copytree(SHIPPED / "vae", tmp_path / "zoo" / "my_first_vae")
    assert [(m.name, m.path.name) for m in shipped_models()] == [("vae_mnist", "my_first_vae")]
    # an existing path wins over a name; a path-like argument that does not exist stays a path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vae_mnist").mkdir()
    assert resolve_model_path("vae_mnist") == Path("vae_mnist")
    assert resolve_model_path("gone/vae_mnist") == Path("gone/vae_mnist")
    shutil.copytree(SHIPPED / "vae", tmp_path / "zoo" / "vae_again")
    with pytest.raises(ValueError, match="two shipped exports are both named 'vae_mnist'"):
        shipped_models()


# ------------------------------------------------------------------ the command line

@pytest.fixture(scope="module")
def console(tmp_path_factory):
    """`keras-gen sample ddpm_mnst` as the console command (a child process), while this process
    exports an untrained conditional VAE (enough to route --label by name) into a models folder:
    SimpleNamespace(result, models)."""
    from keras_gen.export import export_saved_model

    root = tmp_path_factory.mktemp("zoo_cli")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("KERAS_GEN_MODELS", raising=False)
        jobs = start_all({"unknown": [str(Path(sys.executable).parent / "keras-gen"), "sample", "ddpm_mnst"]},
                         root, root)
    models = root / "models"
    try:
        export_saved_model(tiny_vae(10), models / "cvae", metadata={"dataset": "fashion_mnist"})
    finally:
        result = finish_all(jobs, timeout=300)["unknown"]
    return SimpleNamespace(result=result, models=models)


def run_cli(argv, capsys):
    """keras_gen.cli.main in this process: (exit code, stdout, stderr)."""
    from keras_gen.cli import main

    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_unknown_name_is_one_line_listing_the_names(console, capsys, monkeypatch):
    result = console.result
    assert result.rc == 2, explain(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-gen: error: unknown model name 'ddpm_mnst'; known names: ")
    assert all(name in lines[0] for name in TODAY)
    monkeypatch.delenv("KERAS_GEN_MODELS", raising=False)
    rc, _, err = run_cli(["evaluate", "vae_mnst", "--n", "10"], capsys)  # every command taking a model
    assert rc == 2 and err.count("\n") == 1 and "unknown model name 'vae_mnst'; known names: " in err


def test_cli_a_missing_path_keeps_its_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli(["sample", "gone/vae_mnist"], capsys) == (2, "", "keras-gen: error: gone/vae_mnist does not exist\n")


def test_cli_lists_the_models(console, capsys, monkeypatch):
    monkeypatch.delenv("KERAS_GEN_MODELS", raising=False)
    rc, out, _ = run_cli(["models"], capsys)
    assert rc == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(rows) == {m.name for m in shipped_models()}
    assert rows["ddpm_mnist"].split()[1:4] == ["ddpm", "mnist", "no"]
    assert "12.6 (1000), DDIM 50 (50)" in rows["ddpm_mnist"]  # the assets' recorded FID, default sampler
    assert rows["ddpm_mnist"].rstrip().endswith(str(SHIPPED / "ddpm"))
    monkeypatch.setenv("KERAS_GEN_MODELS", str(console.models))
    listed = run_cli(["models"], capsys)[1].splitlines()
    assert len(listed) == 2 and listed[1].split()[:4] == [CONDITIONAL, "vae", "fashion_mnist", "yes,"]
    assert "not measured" in listed[1]


def test_cli_samples_by_name(console, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KERAS_GEN_MODELS", raising=False)
    assert run_cli(["sample", "vae_mnist", "--n", "2", "--out", "vae.png"], capsys)[:2] == (0, "wrote vae.png (2 images)\n")
    monkeypatch.setenv("KERAS_GEN_MODELS", str(console.models))
    assert run_cli(["sample", CONDITIONAL, "--label", "7", "--n", "2", "--out", "7.png"], capsys)[:2] == (
        0, "wrote 7.png (2 images)\n")
    for png in ("vae.png", "7.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc, _, err = run_cli(["sample", CONDITIONAL, "--label", "12", "--n", "2"], capsys)
    assert rc == 2 and "label" in err and err.count("\n") == 1, err


# ------------------------------------------------------------------ what ships

def test_saved_models_stay_under_the_size_budget():
    total = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert total < BUDGET_BYTES, f"saved_models/ holds {total / 2**20:.1f} MB, over the 60 MB budget"


def test_setup_cfg_installs_every_shipped_file(monkeypatch):
    """setup.cfg's data_files (as setuptools reads them) put each file of saved_models/ at
    share/keras-gen/<its path>: a new export that is not listed fails here with the lines to add."""
    from setuptools.dist import Distribution

    monkeypatch.chdir(REPO)  # setuptools expands the globs from the project's folder
    dist = Distribution()
    dist.parse_config_files(["setup.cfg"])
    installed = {f"{folder}/{Path(file).name}": file for folder, files in dist.data_files for file in files}
    wanted = {f"share/keras-gen/{p.relative_to(REPO).as_posix()}": p.relative_to(REPO).as_posix()
              for p in SHIPPED.rglob("*") if p.is_file() and not p.name.startswith(".")}
    missing = sorted({f"share/keras-gen/{Path(source).parent.as_posix()} = {Path(source).parent.as_posix()}/*"
                      for target, source in wanted.items() if target not in installed})
    assert not missing, "add to setup.cfg's [options.data_files]:\n" + "\n".join(missing)
    assert installed == wanted
