"""The models shipped in saved_models/: they serve without keras_gen, carry complete assets, and
`keras-gen demo` runs on them end to end.

These are the files a new user gets from a fresh clone, so the tests load the real ones (no
retraining): all exports served by one child process that refuses any keras_gen import, and
the demo as the console command beside it.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from helpers import check_export_in_child, export_call
from subprocess_jobs import explain

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "saved_models"
# export folder -> its model kind
EXPORTS = {"vae": "vae", "dcgan": "dcgan", "ddpm": "ddpm", "flow": "flow", "latent_ddpm": "latent_ddpm",
           "latent_ddpm_conditional": "latent_ddpm", "distilled_latent_4step": "distilled_latent",
           "vae_conditional": "vae", "dcgan_conditional": "dcgan", "fashion_dcgan": "dcgan",
           "fashion_latent_ddpm": "latent_ddpm"}
FASHION = ("fashion_dcgan", "fashion_latent_ddpm")  # the others model MNIST
# sample_class images per conditional kind: the one-pass models' class accuracy is ~0.92-0.95
# (README), the latent DDPM's 0.999, so they are judged on more images.
CLASS_N = {"vae": 32, "dcgan": 32, "latent_ddpm": 8}
CONDITIONAL = tuple(export for export in EXPORTS if export.endswith("_conditional"))
DIFFUSION = ("ddpm", "latent_ddpm")
STUDENTS = ("distilled_latent",)  # distilled few-step diffusion: DDIM at their own steps only
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

DEMO_N = 16  # samples per row of the demo's trilemma table (at least 4)
DEMO_GRID = 8  # samples in each model's grid (the demo's default is 64)


# Images per serving_default call: the DDPMs' default sampler is 50 U-Net passes per image.
SERVED_N = {"vae": 16, "dcgan": 16, "ddpm": 4, "flow": 16, "latent_ddpm": 8, "latent_ddpm_conditional": 8,
            "distilled_latent_4step": 16, "vae_conditional": 16, "dcgan_conditional": 16, "fashion_dcgan": 16,
            "fashion_latent_ddpm": 8}


def served_calls():
    """Per export: serving_default twice with seed 0 and once with seed 1 (SERVED_N images each);
    the DDPM also sample_ddim with 5 steps, every conditional export sample_class (label 7)."""
    calls = {}
    for export in EXPORTS:
        for name, seed in (("a", 0), ("b", 0), ("c", 1)):
            calls[f"{export}/{name}"] = export_call("serving_default", export=export, output="images",
                                                    num_images=SERVED_N[export], seed=seed)
    calls["ddpm/ddim5"] = export_call("sample_ddim", export="ddpm", output="images", num_images=4, seed=0, steps=5)
    for export in CONDITIONAL:
        guidance = {"guidance": 3.0} if EXPORTS[export] in DIFFUSION else {}  # the DDPM's default, required
        calls[f"{export}/class7"] = export_call("sample_class", export=export, output="images",
                                                num_images=CLASS_N[EXPORTS[export]], seed=0, label=7, **guidance)
    return calls


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Every shipped export called by one child process without keras_gen (check_export_in_child),
    with `keras-gen demo` run beside it as the console command: SimpleNamespace(child, result,
    arrays, demo, demo_out, demo_argv)."""
    root = tmp_path_factory.mktemp("shipped")
    demo_out = root / "outputs"
    demo = [str(Path(sys.executable).parent / "keras-gen"), "demo", "--out", str(demo_out),
            "--n", str(DEMO_N), "--ddim-steps", "5", "--grid", str(DEMO_GRID)]
    run = check_export_in_child({export: SHIPPED / export for export in EXPORTS}, served_calls(), root,
                                alongside={"demo": demo})
    return SimpleNamespace(child=run.child, result=run.result, arrays=run.arrays, demo=run.alongside["demo"],
                           demo_out=demo_out, demo_argv=demo[1:])


@pytest.mark.parametrize("export", EXPORTS)
def test_shipped_model_serves_without_keras_gen(served, export):
    result, arrays = served.result, served.arrays
    assert result["refused_imports"] == [] and result["keras_gen_in_sys_modules"] is False
    a, b, c = (arrays[f"{export}/{name}"] for name in "abc")
    assert list(a.shape) == [SERVED_N[export], 28, 28, 1] and str(a.dtype) == "float32"
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0 and float(a.std()) > 0.05  # not blank
    assert np.array_equal(a, b) and np.abs(a - c).max() > 1e-3  # same seed equal, other seed differs
    if EXPORTS[export] in DIFFUSION:
        assert {"sample_ddim", "sample_ddpm", "sample_trajectory"} <= set(result["exports"][export]["signatures"])
    if EXPORTS[export] in STUDENTS:  # not trained for the all-T chain
        assert "sample_ddim" in result["exports"][export]["signatures"]
        assert "sample_ddpm" not in result["exports"][export]["signatures"]
    if export == "ddpm":
        d = arrays["ddpm/ddim5"]
        assert list(d.shape) == [4, 28, 28, 1] and d.min() >= 0 and d.max() <= 1
    if export in CONDITIONAL:
        assert "sample_class" in result["exports"][export]["signatures"]
        sevens = arrays[f"{export}/class7"]
        assert list(sevens.shape) == [CLASS_N[EXPORTS[export]], 28, 28, 1]
        assert not np.array_equal(sevens[:len(a)], a[:len(sevens)])


@pytest.mark.parametrize("export", CONDITIONAL)
def test_shipped_class_samples_are_the_requested_digit(served, export):
    """Each conditional export's sample_class(label=7), served without keras_gen, draws sevens
    (the shipped classifier's verdict on CLASS_N images)."""
    from keras_gen.evaluation import load_classifier

    predicted = load_classifier("mnist").probs(served.arrays[f"{export}/class7"]).argmax(axis=1)
    assert (predicted == 7).mean() >= 0.75, predicted


@pytest.mark.parametrize("export", EXPORTS)
def test_shipped_model_assets_are_complete(export):
    kind = EXPORTS[export]
    info = json.loads((SHIPPED / export / "assets" / "keras_gen.json").read_text())
    dataset = "fashion_mnist" if export in FASHION else "mnist"
    assert info["kind"] == kind and info["dataset"] == dataset and info["preset"].startswith("cpu")
    assert (info.get("num_classes") is not None) == export.endswith("_conditional")
    assert info["train_config"]["preset"] == info["preset"] and info["config"]
    training = info["training"]
    assert training["epochs"] >= 1 and training["steps"] >= training["epochs"] and training["wall_seconds"] > 0
    assert info["machine"]["cpu_count"] >= 1 and info["machine"]["tensorflow"]
    assert "serving_default" in info["signatures"]
    evaluation = info["evaluation"]
    assert evaluation["dataset"] == dataset  # scored by that dataset's classifier (test accuracy in its .json)
    assert evaluation["classifier"]["test_accuracy"] > (0.9 if dataset == "fashion_mnist" else 0.99)
    for row in evaluation["rows"]:  # the 1000-step sampler is scored on fewer samples
        assert row["n"] >= (64 if row["sampler"] == "ddpm" else 1000)
        assert row["fid"] > 0 and row["samples_per_s"] > 0
        assert 1 <= row["classes_covered"] <= 10 and 0 <= row["normalized_entropy"] <= 1
    samplers = {(row["sampler"], row["steps"]) for row in evaluation["rows"]}
    if kind in DIFFUSION + STUDENTS:  # the default sampler (DDIM at the recorded steps) is among the rows
        assert ("ddim", info["config"]["ddim_steps"]) in samplers
    else:
        assert samplers == {(None, None)}


def test_model_card_table_matches_the_assets():
    from keras_gen.evaluation import model_card
    from keras_gen.evaluation.model_card import CARD_END, CARD_START

    card = (SHIPPED / "README.md").read_text()
    table = card.split(CARD_START, 1)[1].split(CARD_END, 1)[0].strip()
    assert table == model_card([SHIPPED / export for export in EXPORTS])  # regenerated, not typed in
    assert "not measured" not in table


def test_demo_runs_on_the_shipped_models(served):
    run, out = served.demo, served.demo_out
    assert run.rc == 0, explain(run)
    for name in ("mnist_training_images.png", "fashion_mnist_training_images.png", "vae_samples.png",
                 "dcgan_samples.png", "ddpm_samples.png", "fashion_dcgan_samples.png", "ddpm_reverse_process.png",
                 "trilemma/trilemma.png", "trilemma_fashion_mnist/trilemma.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
        assert str(out / name) in run.stdout  # the demo says where everything is
    assert f"vae: {DEMO_GRID} samples in" in run.stdout
    rows = {"trilemma": ["vae (VAE)", "vae_conditional (VAE)", "dcgan (DCGAN)", "dcgan_conditional (DCGAN)",
                         "ddpm DDIM 5", "flow (FLOW)", "latent_ddpm DDIM 5", "latent_ddpm_conditional DDIM 5",
                         "distilled_latent_4step (DISTILLED_LATENT)"],
            "trilemma_fashion_mnist": ["fashion_dcgan (DCGAN)", "fashion_latent_ddpm DDIM 5"]}
    for folder, labels in rows.items():  # one trilemma per dataset, each with its own classifier
        report = json.loads((out / folder / "report.json").read_text())
        assert [r["label"] for r in report["rows"]] == labels
        assert report["dataset"] == ("mnist" if folder == "trilemma" else "fashion_mnist")
        assert report["n"] == DEMO_N and len(report["references"]) == 3
        assert shlex.split(report["command"]) == ["keras-gen", *served.demo_argv]  # as given to the CLI
        page = (out / folder / "index.html").read_text()  # the browser test: test_evaluation.py
        assert page.count("<img ") == 1 + 2 * (len(report["rows"]) + len(report["references"]))


def test_the_shipped_exports_rebuild_into_keras_models():
    """model_from_export on shipped files: what `keras-gen distill saved_models/ddpm`, `keras-gen
    export OLD_EXPORT` and tutorial 06 start from. model_from_export itself checks the rebuilt
    model's images."""
    from keras_gen.export_weights import weight_names
    from keras_gen.sampling import model_from_export

    ddpm = model_from_export(SHIPPED / "ddpm")
    assert ddpm.kind == "ddpm"
    names = weight_names(ddpm)
    assert set(ddpm.not_restored_from_export) == {names[id(w)] for w in ddpm.unet.weights}  # the raw, non-EMA U-Net
    assert model_from_export(SHIPPED / "vae").kind == "vae"
