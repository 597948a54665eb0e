"""The SavedModel serving contract (DESIGN.md, "Export") for the VAE and the DCGAN, and the CLI.

Exports are loaded in a child process that never imports keras_gen (an import hook there refuses
it, and the child asserts it is absent from sys.modules), and listed with saved_model_cli. The CLI
tests run `keras-gen train ... --preset tiny` on the cached real MNIST (`make test` fetches it
first; the runs are the session's, conftest.tiny_train_runs) and `keras-gen sample` on the results
(in one child process, subprocess_jobs.run_cli_commands).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import check_export_in_child, export_call, tiny_dcgan, tiny_vae
from keras_gen.export import ASSET_NAME, export_saved_model, read_export_info
from keras_gen.models.dcgan import DCGAN
from keras_gen.models.serving import MAX_IMAGES
from keras_gen.models.vae import VAE
from subprocess_jobs import explain, run_cli_commands

KINDS = ("vae", "dcgan")
LATENT_SIGNATURE = {"vae": "decode", "dcgan": "generate"}
ENCODER_SIGNATURES = {"vae": ["encode"], "dcgan": []}  # the VAE also serves its posterior
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

def saved_model_cli_path():
    path = Path(sys.executable).parent / "saved_model_cli"
    if not path.exists():
        path = Path(shutil.which("saved_model_cli") or "saved_model_cli")
    assert path.exists(), "saved_model_cli not found beside the interpreter or on PATH"
    return str(path)


def tree_digest(path: Path):
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- exported tiny models


def served_calls(kind, z):
    """What the export child asks of each export: serving_default draws (two of them the same),
    the latent signature on given codes, and out-of-range num_images (10**6: the check must come
    before any work)."""
    calls = {f"{kind}/{name}": export_call("serving_default", export=kind, output="images", num_images=n, seed=seed)
             for name, n, seed in (("seed7", 5, 7), ("seed7_again", 5, 7), ("seed8", 5, 8), ("one", 1, 7))}
    calls[f"{kind}/from_z"] = export_call(LATENT_SIGNATURE[kind], export=kind, output="images", z=z)
    errors = {f"{kind}/{n}": export_call("serving_default", export=kind, output="images", num_images=n, seed=0)
              for n in (0, -3, MAX_IMAGES + 1, 1000000)}
    return calls, errors


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tiny_vae_run, tiny_dcgan_run, tiny_exports):
    """Both tiny trained models exported (conftest.tiny_exports: metadata dataset mnist, training
    steps 12) and served by one child process without keras_gen, while saved_model_cli lists each
    export."""
    root = tmp_path_factory.mktemp("exports")
    models = {"vae": tiny_vae_run.model, "dcgan": tiny_dcgan_run.model}
    paths = {kind: tiny_exports[kind] for kind in KINDS}
    z = {kind: np.random.default_rng(3).normal(size=(4, model.latent_dim)).astype("float32")
         for kind, model in models.items()}
    calls, errors = {}, {}
    for kind in KINDS:
        kind_calls, kind_errors = served_calls(kind, z[kind])
        calls.update(kind_calls)
        errors.update(kind_errors)

    def expected():
        out = {}
        for kind, model in models.items():
            latent_fn = model.decode if kind == "vae" else model.generate
            out[kind] = {"seed7": np.asarray(model.sample(5, 7)), "seed8": np.asarray(model.sample(5, 8)),
                         "from_z": np.asarray(latent_fn(z[kind]))}
        return out

    cli = {f"{kind}_cli": [saved_model_cli_path(), "show", "--dir", str(path), "--all"]
           for kind, path in paths.items()}
    served = check_export_in_child(paths, calls, root, errors=errors, while_running=expected, alongside=cli)
    info = {}
    for kind in KINDS:
        prefix = f"{kind}/"
        info[kind] = SimpleNamespace(
            model=models[kind], path=paths[kind], expected=served.expected[kind], cli=served.alongside[f"{kind}_cli"],
            result={"keras_gen_in_sys_modules": served.result["keras_gen_in_sys_modules"],
                    "refused_imports": served.result["refused_imports"], **served.result["exports"][kind],
                    "errors": {k.removeprefix(prefix): v for k, v in served.result["errors"].items()
                               if k.startswith(prefix)}},
            arrays={k.removeprefix(prefix): v for k, v in served.arrays.items() if k.startswith(prefix)})
    return info


@pytest.mark.parametrize("kind", KINDS)
def test_export_serves_without_keras_gen(exports, kind):
    run = exports[kind]
    assert run.result["keras_gen_in_sys_modules"] is False
    assert run.result["refused_imports"] == []
    assert run.result["signatures"] == sorted(["serving_default", LATENT_SIGNATURE[kind], *ENCODER_SIGNATURES[kind]])


@pytest.mark.parametrize("kind", KINDS)
def test_serving_default_matches_model_sample(exports, kind):
    run = exports[kind]
    arrays, expected = run.arrays, run.expected
    np.testing.assert_allclose(arrays["seed7"], expected["seed7"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(arrays["seed8"], expected["seed8"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(arrays["seed7_again"], arrays["seed7"])  # deterministic per seed
    assert not np.allclose(arrays["seed8"], arrays["seed7"], atol=1e-3)  # seeds differ


@pytest.mark.parametrize("kind", KINDS)
def test_serving_default_output_contract(exports, kind):
    run = exports[kind]
    assert run.result["inputs"]["serving_default"] == {"num_images": ["int32", []], "seed": ["int32", []]}
    assert run.result["outputs"]["serving_default"] == {"images": ["float32", [None, 28, 28, 1]]}
    for name in ("seed7", "seed8", "one"):
        images = run.arrays[name]
        assert images.dtype == np.float32
        assert images.shape == ((1 if name == "one" else 5), 28, 28, 1)
        assert images.min() >= 0.0 and images.max() <= 1.0
        assert np.all(np.isfinite(images))


@pytest.mark.parametrize("kind", KINDS)
def test_latent_signature_matches_model(exports, kind):
    """VAE `decode` = model.decode(z); DCGAN `generate` = model.generate(z) (images in [0, 1])."""
    run = exports[kind]
    assert run.result["inputs"][LATENT_SIGNATURE[kind]] == {"z": ["float32", [None, run.model.latent_dim]]}
    got = run.arrays["from_z"]
    assert got.dtype == np.float32 and got.shape == (4, 28, 28, 1)
    np.testing.assert_allclose(got, run.expected["from_z"], rtol=0, atol=1e-6)
    assert got.min() >= 0.0 and got.max() <= 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_num_images_out_of_range_fails(exports, kind):
    errors = exports[kind].result["errors"]
    assert errors == {"0": "InvalidArgumentError", "-3": "InvalidArgumentError",
                      str(MAX_IMAGES + 1): "InvalidArgumentError", "1000000": "InvalidArgumentError"}


def signature_block(text, name):
    start = text.index(f"signature_def['{name}']:")
    end = text.find("signature_def[", start + 1)
    if end < 0:
        end = text.index("The MetaGraph", start)
    return text[start:end]


@pytest.mark.parametrize("kind", KINDS)
def test_saved_model_cli_lists_the_signatures(exports, kind):
    run = exports[kind]
    assert run.cli.rc == 0, explain(run.cli)
    text = run.cli.stdout
    serving = signature_block(text, "serving_default")
    for needle in ("inputs['num_images']", "inputs['seed']", "outputs['images']", "DT_FLOAT",
                   "shape: (-1, 28, 28, 1)"):
        assert needle in serving, needle
    assert serving.count("dtype: DT_INT32") == 2 and serving.count("shape: ()") == 2
    latent = signature_block(text, LATENT_SIGNATURE[kind])
    assert "inputs['z']" in latent and f"shape: (-1, {run.model.latent_dim})" in latent
    assert "outputs['images']" in latent


@pytest.mark.parametrize("kind", KINDS)
def test_assets_describe_the_model(exports, kind):
    run = exports[kind]
    asset = run.path / "assets" / ASSET_NAME
    assert asset.is_file()
    info = json.loads(asset.read_text())
    assert info["kind"] == kind
    assert info["config"]["latent_dim"] == run.model.latent_dim
    assert info["config"] == json.loads(json.dumps(run.model.get_config(), default=str))
    assert info["signatures"] == sorted(["serving_default", LATENT_SIGNATURE[kind], *ENCODER_SIGNATURES[kind]])
    assert info["dataset"] == "mnist" and info["training"] == {"steps": 12}  # metadata kept
    assert info["network_passes"] == 1  # one generator / decoder pass per sample
    assert read_export_info(run.path) == info
    # the rebuilt model from the recorded config has the same architecture
    rebuilt = {"vae": VAE, "dcgan": DCGAN}[kind].from_config(info["config"])
    assert [w.shape for w in rebuilt.weights] == [w.shape for w in run.model.weights]


def test_a_mixed_precision_model_is_exported_in_float32(tmp_path):
    """An export's speed must not depend on its training machine's precision: a mixed_bfloat16
    model is exported as a float32 copy with the same weights."""
    from keras_gen.export import float32_model

    keras.mixed_precision.set_global_policy("mixed_bfloat16")  # as during a mixed-precision run
    try:
        model = tiny_vae()
        model.sample(2, 0)  # builds it
        copy = float32_model(model)
        path = export_saved_model(model, tmp_path / "vae")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.dtype_policy.name == "mixed_bfloat16" and model.decoder.layers[-1].dtype_policy.name == "mixed_bfloat16"
    layers = [copy] + list(copy._flatten_layers(include_self=False))
    assert len(layers) > 5 and {layer.dtype_policy.name for layer in layers} == {"float32"}
    for got, want in zip(copy.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert float32_model(copy) is copy
    info = read_export_info(path)
    assert "mixed" not in json.dumps(info["config"])
    served = tf.saved_model.load(str(path)).signatures["serving_default"](
        num_images=tf.constant(4), seed=tf.constant(3))["images"].numpy()
    np.testing.assert_allclose(served, copy.sample(4, 3), rtol=0, atol=1e-5)
    np.testing.assert_allclose(served, model.sample(4, 3), rtol=0, atol=0.05)  # bf16 rounding only


# ----------------------------------------------------------------------------- atomic writes


def fresh_model(kind, seed):
    keras.utils.set_random_seed(seed)  # different initial weights per seed
    return tiny_vae() if kind == "vae" else tiny_dcgan()


def served(path, n=3, seed=5):
    loaded = tf.saved_model.load(str(path))
    return loaded.signatures["serving_default"](num_images=tf.constant(n), seed=tf.constant(seed))["images"].numpy()


@pytest.mark.parametrize("kind", KINDS)
def test_reexport_replaces_the_previous_export(kind, tmp_path):
    first, second = fresh_model(kind, 1), fresh_model(kind, 2)
    path = tmp_path / "saved_model"
    export_saved_model(first, path)
    (path / "stale.txt").write_text("left by the first export")
    export_saved_model(second, path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved_model"]  # no temp/old dirs
    assert not (path / "stale.txt").exists()  # replaced, not merged
    images = served(path)
    np.testing.assert_allclose(images, np.asarray(second.sample(3, 5)), atol=1e-6)
    assert not np.allclose(images, np.asarray(first.sample(3, 5)), atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_failed_export_keeps_the_previous_one(kind, tmp_path, monkeypatch):
    first, second = fresh_model(kind, 1), fresh_model(kind, 2)
    path = tmp_path / "saved_model"
    export_saved_model(first, path)
    before = tree_digest(path)

    def write_out_then_fail(self, filepath, *args, **kwargs):
        Path(filepath).mkdir(parents=True, exist_ok=True)
        (Path(filepath) / "saved_model.pb").write_bytes(b"half written")
        raise RuntimeError("disk full (simulated)")

    # ExportArchive.__new__ hands back a backend class (TFExportArchive) that does not inherit
    # from ExportArchive: patch the class export_saved_model really gets, and the public one.
    for cls in {keras.export.ExportArchive, type(keras.export.ExportArchive())}:
        monkeypatch.setattr(cls, "write_out", write_out_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(second, path, overwrite=True)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved_model"]  # no temp dirs behind
    assert tree_digest(path) == before  # byte for byte the first export
    np.testing.assert_allclose(served(path), np.asarray(first.sample(3, 5)), atol=1e-6)


# ----------------------------------------------------------------------------- the CLI


CLI_JOBS = {"vae": "vae", "dcgan": "dcgan", "alternating": "dcgan"}  # conftest.TINY_TRAIN_JOBS: name -> kind


@pytest.fixture(scope="module", autouse=True)
def cli_train_jobs(request, tiny_train_runs):
    """The tiny training runs started in the background as the module begins (when its CLI tests
    are selected), so that they overlap the in-process tests."""
    if any("cli_runs" in item.fixturenames for item in request.session.items if item.module is request.module):
        tiny_train_runs.start(*CLI_JOBS)


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, tiny_train_runs):
    """`keras-gen train <model> --preset tiny` for the VAE, the DCGAN (fit) and the DCGAN
    (alternating) (the session's conftest.tiny_train_runs), then `keras-gen sample` on each
    saved_model (and on the alternating run's model.keras), those four in one child process."""
    root = tmp_path_factory.mktemp("cli")
    trains = {name: tiny_train_runs.result(name) for name in CLI_JOBS}
    samples = {name: ["sample", str(trains[name].out / "saved_model"), "--n", "16",
                      "--out", str(root / f"{name}_samples.png")] for name in CLI_JOBS}
    samples["alternating_keras"] = ["sample", str(trains["alternating"].out / "model.keras"),
                                    "--n", "16", "--out", str(root / "alternating_keras.png")]
    sampled = run_cli_commands({f"sample_{k}": v for k, v in samples.items()}, root, cwd=root)
    return SimpleNamespace(root=root, trains=trains, samples=sampled)


def assert_png(path: Path):
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_MAGIC, path


@pytest.mark.parametrize("name", list(CLI_JOBS))
def test_cli_train_tiny_writes_every_output(cli_runs, name):
    result = cli_runs.trains[name]
    assert result.rc == 0, explain(result)
    out = result.out
    for png in ("samples.png", "loss_curve.png", "samples/epoch_000.png", "samples/epoch_002.png"):
        assert_png(out / png)
    assert (out / "model.keras").is_file() and (out / "model.keras").stat().st_size > 0
    assert (out / "saved_model" / "saved_model.pb").is_file()
    kind = CLI_JOBS[name]
    assert read_export_info(out / "saved_model")["kind"] == kind
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2  # the tiny preset's 2 epochs
    loss_columns = ["loss", "reconstruction_loss", "kl_loss"] if kind == "vae" else ["d_loss", "g_loss"]
    for row in rows:
        for column in loss_columns:
            assert np.isfinite(float(row[column])), (column, row)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_config"]["preset"] == "tiny"
    assert summary["train_config"]["loop"] == ("alternating" if name == "alternating" else "fit")
    if kind == "vae":  # latent_dim 2: the article's manifold figure
        assert_png(out / "latent_manifold.png")


def test_cli_train_tensorboard_logs_the_losses_rates_and_one_grid_per_epoch(cli_runs):
    """The DCGAN run's --tensorboard folder (conftest.TINY_TRAIN_JOBS), read back event by event:
    each epoch's losses equal history.csv's, both optimizers' learning rates are there, and the
    samples run holds one PNG grid per epoch (the 64 fixed-seed samples tiled 8 x 8)."""
    import tensorflow as tf

    result = cli_runs.trains["dcgan"]
    assert result.rc == 0, explain(result)
    board = result.out.parent / "dcgan_tensorboard"

    def events(run):
        found = {}
        for path in sorted((board / run).glob("events.out.tfevents.*")):
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                for value in event.summary.value:
                    found.setdefault(value.tag, {})[event.step] = tf.make_ndarray(value.tensor)
        return found

    scalars, images = events("train"), events("samples")
    with open(result.out / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    for key in ("d_loss", "g_loss", "d_real_acc"):
        assert sorted(scalars[f"epoch_{key}"]) == [0, 1]
        for epoch, row in enumerate(history):
            assert float(scalars[f"epoch_{key}"][epoch]) == pytest.approx(float(row[key]), rel=1e-5), key
    for name in ("d_optimizer", "g_optimizer"):  # the tiny preset's 2e-4 for both
        assert [float(v) for v in scalars[f"epoch_learning_rate_{name}"].values()] == pytest.approx([2e-4, 2e-4])
    assert "learning_rate" not in history[0]  # the rates go to TensorBoard, not into the history CSV
    assert sorted(images["samples"]) == [0, 1]
    grids = []
    for epoch, (width, height, png) in sorted(images["samples"].items()):
        grids.append(tf.io.decode_png(png).numpy())
        assert grids[-1].shape == (231, 231, 1) == (int(height), int(width), 1)
        assert grids[-1].std() > 0.5  # not one flat colour (the tiny DCGAN draws grey noise yet)
    assert not np.array_equal(*grids)  # the same draws, after another epoch of training


def test_the_tensorboard_grid_puts_image_i_at_row_i_div_cols_and_column_i_mod_cols(tmp_path):
    import tensorflow as tf

    from keras_gen.callbacks import TrainingBoard

    images = np.zeros((7, 4, 5, 1), "float32")  # 7 images of 4 x 5 pixels: a 3 x 3 grid, 2 cells empty
    for i in range(7):
        images[i] = (i + 1) / 10
        images[i, 0, 0] = 1.0  # a corner mark: a transposed image would move it
    TrainingBoard(tmp_path, {}).log_images(images, epoch=3)
    [path] = (tmp_path / "samples").glob("events.out.tfevents.*")
    [(step, png)] = [(e.step, v.tensor) for e in tf.compat.v1.train.summary_iterator(str(path))
                     for v in e.summary.value]
    grid = tf.io.decode_png(tf.make_ndarray(png)[2]).numpy()[..., 0].astype(int)
    assert step == 3 and grid.shape == (3 * 5 - 1, 3 * 6 - 1)  # plotting.tile: 1-pixel white gaps
    assert np.all(grid[4] == 255) and np.all(grid[:, 5] == 255)
    for i in range(9):
        cell = grid[5 * (i // 3):5 * (i // 3) + 4, 6 * (i % 3):6 * (i % 3) + 5]
        want = round((i + 1) / 10 * 255) if i < 7 else 255  # an empty cell stays white
        assert cell[0, 0] == 255 and np.all(np.abs(cell[1:, 1:] - want) <= 1), i


@pytest.mark.parametrize("name", list(CLI_JOBS) + ["alternating_keras"])
def test_cli_sample_writes_a_grid(cli_runs, name):
    result = cli_runs.samples[f"sample_{name}"]
    assert result.rc == 0, explain(result)
    target = cli_runs.root / f"{name}_samples.png" if name != "alternating_keras" \
        else cli_runs.root / "alternating_keras.png"
    assert_png(target)
    assert "(16 images)" in result.stdout


def test_export_command_turns_a_keras_file_into_a_served_export(tiny_vae_run, tmp_path, capsys):
    from keras_gen.cli import main

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    tiny_vae_run.model.save(run_dir / "model.keras")
    facts = {"dataset": "mnist", "preset": "tiny", "training": {"epochs": 3, "wall_seconds": 1.5}}
    (run_dir / "summary.json").write_text(json.dumps({**facts, "outputs": {}}))
    assert main(["export", str(run_dir / "model.keras"), "--out", str(tmp_path / "exported")]) == 0
    info = read_export_info(tmp_path / "exported")
    assert {k: info[k] for k in facts} == facts and "outputs" not in info  # the run's facts, only those
    np.testing.assert_allclose(served(tmp_path / "exported"), np.asarray(tiny_vae_run.model.sample(3, 5)),
                               atol=1e-6)
    assert main(["export", str(run_dir / "summary.json"), "--out", str(tmp_path / "x")]) == 2
    assert "is not a .keras file" in capsys.readouterr().err
    assert main(["export", str(run_dir / "model.keras"), "--out", str(tmp_path / "x"), "--ddim-eta", "1"]) == 2
    assert "ddim_eta does not apply to a vae export" in capsys.readouterr().err


def test_export_command_writes_an_earlier_export_again_in_place(tiny_vae_run, tmp_path, capsys):
    """`keras-gen export EXPORT --out EXPORT --force`: the same weights through this release's
    exporter, its training facts kept and its evaluation (a measurement of the old graph) dropped."""
    from keras_gen.cli import main
    from keras_gen.export import write_export_info

    path = export_saved_model(tiny_vae_run.model, tmp_path / "vae")
    old = read_export_info(path)
    facts = {"dataset": "mnist", "training": {"epochs": 3}, "likelihood": {"rows": [1]}}
    write_export_info(path, {**old, "keras_gen_version": "0.0.9", **facts, "evaluation": {"fid": 1.0}})
    assert main(["export", str(path), "--out", str(path)]) == 2  # an export is not replaced unasked
    assert "--force" in capsys.readouterr().err
    assert main(["export", str(path), "--out", str(path), "--force", "--ddim-eta", "1"]) == 2
    assert "--ddim-eta applies to a .keras file" in capsys.readouterr().err
    assert main(["export", str(path), "--out", str(path), "--force"]) == 0
    info = read_export_info(path)
    assert {k: info[k] for k in facts} == facts and "evaluation" not in info
    assert info["reexported"] == {"from_keras_gen_version": "0.0.9", "evaluation_dropped": True}
    assert info["config"] == old["config"] and info["signatures"] == old["signatures"]
    np.testing.assert_allclose(served(path), np.asarray(tiny_vae_run.model.sample(3, 5)), atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae"]  # replaced atomically, nothing left over


def test_exporting_an_epoch_checkpoint_records_that_epoch(tiny_vae_run, tmp_path):
    from keras_gen.export import export_keras_file

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    tiny_vae_run.model.save(run_dir / "checkpoints" / "epoch_002.keras")
    (run_dir / "summary.json").write_text(json.dumps({
        "dataset": "mnist", "preset": "tiny", "train_config": {"epochs": 3, "latent_dim": 2},
        "training": {"epochs": 3, "steps": 24, "wall_seconds": 9.0}}))
    (run_dir / "history.csv").write_text("epoch,loss,wall_seconds\n0,5.0,3.0\n1,4.0,6.5\n2,3.0,9.0\n")
    info = read_export_info(export_keras_file(run_dir / "checkpoints" / "epoch_002.keras", tmp_path / "e2"))
    assert info["training"]["epochs"] == 2 and info["training"]["steps"] == 16
    assert info["training"]["wall_seconds"] == 6.5 and info["training"]["final_metrics"] == {"loss": 4.0}
    assert info["train_config"] == {"epochs": 2, "latent_dim": 2}
