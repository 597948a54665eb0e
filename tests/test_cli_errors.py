"""Every kind of bad input to the command line ends in exit code 2 and one readable line.

Table-driven: each row is an argv (with {export}, {ddpm}, {tmp} placeholders) and a piece of the
message the user must see. The command runs in-process through ``keras_gen.cli.main``; none of
these reaches any training, so the table is fast.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import tiny_vae

from keras_gen.cli import main

SHIPPED = Path(__file__).resolve().parent.parent / "saved_models"

BAD_INPUTS = [
    # numbers that must be positive
    (["train", "vae", "--out", "{tmp}/o", "--epochs", "0"], "--epochs: must be a positive integer, got 0"),
    (["train", "vae", "--out", "{tmp}/o", "--epochs", "-2"], "--epochs: must be a positive integer, got -2"),
    (["train", "dcgan", "--out", "{tmp}/o", "--batch-size", "0"], "--batch-size: must be a positive integer"),
    (["train", "vae", "--out", "{tmp}/o", "--latent-dim", "-1"], "--latent-dim: must be a positive integer"),
    (["train", "ddpm", "--out", "{tmp}/o", "--timesteps", "0"], "--timesteps: must be a positive integer"),
    (["train", "vae", "--out", "{tmp}/o", "--epochs", "two"], "'two' is not an integer"),
    (["sample", "{ddpm}", "--steps", "0"], "--steps: must be a positive integer, got 0"),
    (["sample", "{export}", "--n", "0"], "--n: must be a positive integer, got 0"),
    (["evaluate", "{export}", "--n", "-5"], "--n: must be a positive integer"),
    # unknown names
    (["train", "vae", "--out", "{tmp}/o", "--dataset", "cifar10"], "invalid choice: 'cifar10'"),
    (["train", "vae", "--out", "{tmp}/o", "--preset", "huge"], "unknown preset 'huge' for vae"),
    (["train", "gan", "--out", "{tmp}/o"], "unknown model kind 'gan'; choose from autoencoder, dcgan, ddpm, distilled, distilled_latent, flow, latent_ddpm, vae"),
    (["sample", "{ddpm}", "--sampler", "euler"], "invalid choice: 'euler'"),
    (["train", "vae"], "the following arguments are required: --out"),
    # DDIM steps beyond the model's T, and sampler options on models without them
    (["sample", "{ddpm}", "--steps", "5000", "--out", "{tmp}/s.png"], "DDIM steps must be in [1, 1000]"),
    (["sample", "{ddpm}", "--sampler", "ddpm", "--steps", "10", "--out", "{tmp}/s.png"],
     "the DDPM sampler runs all T steps"),
    (["sample", "{export}", "--steps", "5", "--out", "{tmp}/s.png"], "a vae model does not take steps (options: label)"),
    (["sample", "{export}", "--temperature", "0.5", "--out", "{tmp}/s.png"],
     "a vae model does not take temperature (options: label)"),
    (["sample", "{export}", "--temperature", "nan", "--out", "{tmp}/s.png"], "--temperature: must be a finite number"),
    # absurd image counts: capped, and said so
    (["sample", "{export}", "--n", "100000", "--out", "{tmp}/s.png"], "n must be an integer in [1, 4096] per call, got 100000"),
    # paths that are not exported models
    (["sample", "{tmp}/missing"], "missing does not exist"),
    (["sample", "{tmp}/empty_dir"], "is not an exported SavedModel (no saved_model.pb)"),
    (["sample", "{tmp}/not_a_model.txt"], "is neither an exported SavedModel directory nor a .keras file"),
    (["sample", "{tmp}/no_assets"], "has no assets/keras_gen.json: not a keras_gen export"),
    (["sample", "{tmp}/newer"], "was exported by a newer keras_gen (format 99 > 1)"),
    (["evaluate", "{tmp}/empty_dir", "--n", "10"], "is not an exported SavedModel"),
    # resuming
    (["train", "vae", "--out", "{tmp}/fresh", "--resume"], "nothing to resume"),
    (["train", "vae", "--out", "{tmp}/o", "--resume", "--epochs", "3"], "drop --epochs"),
    # unusable output folder: refused before any training
    (["train", "vae", "--out", "{tmp}/not_a_model.txt/run"], "is not writable"),
    (["train", "vae", "--out", "{tmp}/not_a_model.txt"], "is a file, not a folder"),
    # values checked before work starts (reliability round two)
    (["train", "vae", "--out", "{tmp}/o", "--learning-rate", "nan"], "--learning-rate: must be a finite positive number"),
    (["train", "vae", "--out", "{tmp}/o", "--learning-rate", "inf"], "--learning-rate: must be a finite positive number"),
    (["train", "vae", "--out", "{tmp}/o", "--learning-rate", "0"], "--learning-rate: must be a finite positive number"),
    (["train", "vae", "--out", "{tmp}/o", "--learning-rate=-1e-3"], "--learning-rate: must be a finite positive"),
    (["train", "vae", "--out", "{tmp}/o", "--learning-rate", "fast"], "'fast' is not a number"),
    (["train", "vae", "--out", "{tmp}/o", "--epochs", "1000000000"], "epochs must be at most 100000"),
    (["train", "vae", "--out", "{tmp}/o", "--seed", "-1"], "--seed: must be an integer in [0, 2147483647]"),
    (["train", "vae", "--out", "{tmp}/o", "--seed", "4294967296"], "--seed: must be an integer in [0, 2147483647]"),
    (["train", "dcgan", "--preset", "tiny", "--out", "{tmp}/o", "--limit", "10"],
     "--batch-size 64 is larger than the 10 training images"),
    (["train", "vae", "--out", "{tmp}/o", "--resume", "--force"], "--force would replace it"),
    (["train", "vae", "--out", "{tmp}/o", "--resume", "--max-cpu-minutes", "5"], "drop --max-cpu-minutes"),
    (["train", "vae", "--out", "{tmp}/o", "--max-cpu-minutes", "0"], "--max-cpu-minutes"),
    (["train", "dcgan", "--out", "{tmp}/o", "--loop", "alternating", "--num-classes", "10"],
     "alternating loop trains unconditional DCGANs only"),
    (["sample", "{export}", "--seed", "-5", "--out", "{tmp}/s.png"], "--seed: must be an integer in [0, 2147483647]"),
    (["sample", "{export}", "--seed", "2147483648", "--out", "{tmp}/s.png"], "must be an integer in [0, 2147483647]"),
    (["sample", "{export}", "--guidance", "nan", "--out", "{tmp}/s.png"], "--guidance: must be a finite number"),
    (["sample", "{export}", "--label", "3", "--out", "{tmp}/s.png"], "this model is unconditional: it takes no label"),
    (["sample", "{ddpm}", "--guidance", "2", "--out", "{tmp}/s.png"], "guidance applies to a conditional DDPM"),
    (["sample", "{export}", "--out", "{tmp}/grid.jpg"], "give a .png path"),
    (["sample", "{export}", "--out", "{tmp}/empty_dir"], "give a .png path"),
    (["sample", "{export}", "--out", "{tmp}/not_a_model.txt"], "give a .png path"),
    (["export", "{tmp}/not_a_model.txt", "--out", "{tmp}/e"], "is not a .keras file"),
    (["export", "{tmp}/missing.keras", "--out", "{tmp}/e"], "is not a .keras file"),
    (["export", "{tmp}/vae.keras", "--out", "{tmp}/e", "--ddim-eta", "1"], "ddim_eta does not apply to a vae export"),
    (["distill", "--out", "{tmp}/d"], "distill needs a TEACHER"),
    (["distill", "{ddpm}", "--out", "{tmp}/d", "--resume"], "--resume continues the distillation"),
    (["distill", "--out", "{tmp}/d", "--resume"], "holds no distillation"),
    (["distill", "{export}", "--out", "{tmp}/d"], "only diffusion models can be distilled"),
    (["distill", "{ddpm}", "--out", "{tmp}/d", "--from-steps", "8", "--to-steps", "3"], "halved"),
    (["distill", "{tmp}/not_a_model.txt", "--out", "{tmp}/d"], "is not a DDPM export"),
    (["distill", "{ddpm}", "--out", "{tmp}/d", "--fid-n", "-1"], "must be 0 or a positive integer"),
    (["evaluate", "{export}", "--seed", "-1"], "--seed: must be an integer in [0, 2147483647]"),
    (["evaluate", "{export}", "--batch-size", "0"], "--batch-size: must be a positive integer"),
]


@pytest.fixture(scope="module")
def bad_paths(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad_inputs")
    (tmp / "empty_dir").mkdir()
    (tmp / "not_a_model.txt").write_text("hello")
    shutil.copytree(SHIPPED / "vae", tmp / "no_assets")
    shutil.rmtree(tmp / "no_assets" / "assets")
    shutil.copytree(SHIPPED / "vae", tmp / "newer")
    asset = tmp / "newer" / "assets" / "keras_gen.json"
    asset.write_text(json.dumps({**json.loads(asset.read_text()), "format_version": 99}))
    vae = tiny_vae()
    vae.sample(1, 0)  # builds it
    vae.save(tmp / "vae.keras")
    return {"tmp": str(tmp), "export": str(SHIPPED / "vae"), "ddpm": str(SHIPPED / "ddpm")}


@pytest.mark.parametrize("argv, message", BAD_INPUTS, ids=[" ".join(a[:3]) + f" #{i}" for i, (a, _) in
                                                          enumerate(BAD_INPUTS)])
def test_bad_input_exits_2_with_one_line(bad_paths, capsys, argv, message):
    argv = [a.format(**bad_paths) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse reports misuse by exiting
        code = exc.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1, captured.err  # one line: no usage block, no traceback
    assert "error:" in lines[0] and message in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_the_cli_seed_bound_is_the_samplers():
    """cli.py keeps its own copy of the seed bound (importing the samplers would load TensorFlow)."""
    from keras_gen import cli
    from keras_gen.diffusion.samplers import MAX_SEED

    assert cli.MAX_SEED == MAX_SEED == 2**31 - 1
