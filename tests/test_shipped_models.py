"""The models shipped in saved_models/: they serve without keras_gen, carry complete assets, and
`keras-gen demo` runs on them end to end.

These are the files a new user gets from a fresh clone, so the tests load the real ones (no
retraining): each export in a child process that refuses any keras_gen import, and the demo as
the console command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from subprocess_jobs import REFUSE_KERAS_GEN, explain, run_all

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "saved_models"
KINDS = ("vae", "dcgan", "ddpm")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CHILD = REFUSE_KERAS_GEN + r'''
path, result_path = sys.argv[1], sys.argv[2]
loaded = tf.saved_model.load(path)
serve = loaded.signatures["serving_default"]

def run(signature, **kwargs):
    args = {k: tf.constant(v, tf.int32) for k, v in kwargs.items()}
    return signature(**args)["images"].numpy()

a, b, c = run(serve, num_images=16, seed=0), run(serve, num_images=16, seed=0), run(serve, num_images=16, seed=1)
result = {"signatures": sorted(loaded.signatures), "shape": list(a.shape), "dtype": str(a.dtype),
          "min": float(a.min()), "max": float(a.max()), "std": float(a.std()),
          "same_seed_equal": bool(np.array_equal(a, b)), "other_seed_differs": bool(np.abs(a - c).max() > 1e-3),
          "refused_imports": []}
if "sample_ddim" in loaded.signatures:
    d = run(loaded.signatures["sample_ddim"], num_images=4, seed=0, steps=5)
    result["ddim5_shape"] = list(d.shape)
    result["ddim5_in_range"] = bool(d.min() >= 0 and d.max() <= 1)
result["refused_imports"] = RefuseKerasGen.attempts
result["keras_gen_in_sys_modules"] = "keras_gen" in sys.modules
with open(result_path, "w") as f:
    json.dump(result, f)
'''


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Every shipped export called by a child process without keras_gen: {kind: (run, result)}."""
    root = tmp_path_factory.mktemp("shipped")
    commands = {kind: [sys.executable, "-c", CHILD, str(SHIPPED / kind), str(root / f"{kind}.json")]
                for kind in KINDS}
    runs = run_all(commands, root, cwd=root)
    return {kind: (runs[kind], json.loads((root / f"{kind}.json").read_text()) if runs[kind].rc == 0 else None)
            for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_shipped_model_serves_without_keras_gen(served, kind):
    run, result = served[kind]
    assert run.rc == 0, explain(run)
    assert result["refused_imports"] == [] and result["keras_gen_in_sys_modules"] is False
    assert result["shape"] == [16, 28, 28, 1] and result["dtype"] == "float32"
    assert 0.0 <= result["min"] and result["max"] <= 1.0 and result["std"] > 0.05  # not blank
    assert result["same_seed_equal"] and result["other_seed_differs"]
    if kind == "ddpm":
        assert {"sample_ddim", "sample_ddpm", "sample_trajectory"} <= set(result["signatures"])
        assert result["ddim5_shape"] == [4, 28, 28, 1] and result["ddim5_in_range"]


@pytest.mark.parametrize("kind", KINDS)
def test_shipped_model_assets_are_complete(kind):
    info = json.loads((SHIPPED / kind / "assets" / "keras_gen.json").read_text())
    assert info["kind"] == kind and info["dataset"] == "mnist" and info["preset"] == "cpu"
    assert info["train_config"]["preset"] == "cpu" and info["config"]
    training = info["training"]
    assert training["epochs"] >= 1 and training["steps"] >= training["epochs"] and training["wall_seconds"] > 0
    assert info["machine"]["cpu_count"] >= 1 and info["machine"]["tensorflow"]
    assert "serving_default" in info["signatures"]
    evaluation = info["evaluation"]
    assert evaluation["dataset"] == "mnist" and evaluation["classifier"]["test_accuracy"] > 0.99
    for row in evaluation["rows"]:  # the 1000-step sampler is scored on fewer samples
        assert row["n"] >= (64 if row["sampler"] == "ddpm" else 1000)
        assert row["fid"] > 0 and row["samples_per_s"] > 0
        assert 1 <= row["classes_covered"] <= 10 and 0 <= row["normalized_entropy"] <= 1
    samplers = {(row["sampler"], row["steps"]) for row in evaluation["rows"]}
    if kind == "ddpm":  # the default sampler (DDIM at the recorded steps) is among the rows
        assert ("ddim", info["config"]["ddim_steps"]) in samplers
    else:
        assert samplers == {(None, None)}


def test_model_card_table_matches_the_assets():
    from keras_gen.evaluation import model_card
    from keras_gen.evaluation.model_card import CARD_END, CARD_START

    card = (SHIPPED / "README.md").read_text()
    table = card.split(CARD_START, 1)[1].split(CARD_END, 1)[0].strip()
    assert table == model_card([SHIPPED / kind for kind in KINDS])  # regenerated, not typed in
    assert "not measured" not in table


def test_demo_runs_on_the_shipped_models(tmp_path):
    out = tmp_path / "outputs"
    runs = run_all({"demo": [str(Path(sys.executable).parent / "keras-gen"), "demo", "--out", str(out),
                             "--n", "48", "--ddim-steps", "5"]}, tmp_path, cwd=tmp_path)
    run = runs["demo"]
    assert run.rc == 0, explain(run)
    for name in ("mnist_training_images.png", "vae_samples.png", "dcgan_samples.png", "ddpm_samples.png",
                 "ddpm_reverse_process.png", "trilemma/trilemma.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
        assert str(out / name) in run.stdout  # the demo says where everything is
    report = json.loads((out / "trilemma" / "report.json").read_text())
    assert [r["label"] for r in report["rows"]] == ["vae (VAE)", "dcgan (DCGAN)", "ddpm DDIM 5"]
    assert report["n"] == 48 and len(report["references"]) == 3
