"""Shared test helpers (in the spirit of keras-hub's TestCase): tiny model builders, the `.keras`
round trip and the "serve the export in a process without keras_gen" check.

Import them as ``from helpers import ...``: pytest puts tests/ on sys.path for its rootdir
conftest (tests/ has no __init__.py), whether run as ``python -m pytest`` from the repository
root or as ``make test``, as it does for subprocess_jobs.
"""

from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np

import subprocess_jobs
from subprocess_jobs import REFUSE_KERAS_GEN, explain

# ----------------------------------------------------------------------------- weights


def weights_of(model_or_variables, trainable_only=False):
    """NumPy copies of a model's weights (all of them, or only the trainable ones), or of a list
    of variables."""
    if isinstance(model_or_variables, (list, tuple)):
        variables = model_or_variables
    else:
        model = model_or_variables
        variables = model.trainable_weights if trainable_only else model.weights
    return [np.array(v.numpy()) for v in variables]


def weights_changed(before, after):
    """True when any array differs between two weights_of() snapshots."""
    assert len(before) == len(after)
    return any(not np.array_equal(b, a) for b, a in zip(before, after))


# ----------------------------------------------------------------------------- tiny models
# The smallest models the test files share. Weight initialisation draws from Keras' global RNG:
# seed it (keras.utils.set_random_seed) first where the initial weights matter.

TINY_T = 20  # timesteps of every tiny DDPM
CONDITIONAL_CLASSES = 10  # classes of conftest.conditional_trained's models
CONDITIONAL_DDIM_STEPS = 3  # its DDPM's ddim_steps (as in tests/data/unconditional_golden.json)


def tiny_vae(num_classes=None, **kwargs):
    """VAE(latent_dim=2, seed=0): the model of tiny_vae_run and tests/data/unconditional_golden.*."""
    from keras_gen.models.vae import VAE

    return VAE(**{"latent_dim": 2, "seed": 0, "num_classes": num_classes, **kwargs})


def tiny_dcgan(num_classes=None, **kwargs):
    """DCGAN(latent_dim=8, seed=0): the model of tiny_dcgan_run and tests/data/unconditional_golden.*."""
    from keras_gen.models.dcgan import DCGAN

    return DCGAN(**{"latent_dim": 8, "seed": 0, "num_classes": num_classes, **kwargs})


def tiny_unet(num_classes=None, cls=None, **kwargs):
    """UNet(dim=8, dim_mults=(1, 2)) with linear attention at the 16x16 level only."""
    if cls is None:
        from keras_gen.layers.unet import UNet as cls
    return cls(**{"dim": 8, "dim_mults": (1, 2), "attention_levels": (False, True),
                  "num_classes": num_classes, **kwargs})


def tiny_ddpm(unet=None, *, num_classes=None, ddim_steps, **kwargs):
    """DDPM on a `tiny_unet` with T = TINY_T, ema_decay 0.9 and seed 0 (each file fixes its own
    ``ddim_steps``: tests/data/unconditional_golden.* was made with 3)."""
    from keras_gen.diffusion import NoiseSchedule
    from keras_gen.models.ddpm import DDPM

    kwargs = {"ema_decay": 0.9, "seed": 0, **kwargs}
    return DDPM(tiny_unet(num_classes) if unet is None else unet, NoiseSchedule(TINY_T),
                ddim_steps=ddim_steps, **kwargs)


# ----------------------------------------------------------------------------- run folders


def read_state(run: Path):
    """A run folder's resume/state.json, or None while it is not written yet."""
    path = run / "resume" / "state.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet
        return None


def final_arrays(run: Path):
    """(state, {variable key: array}) of a run folder's latest resume checkpoint."""
    state = read_state(run)
    with np.load(run / "resume" / state["variables_file"]) as data:
        return state, {k: data[k] for k in data.files}


# ----------------------------------------------------------------------------- configs


def jsonable(config):
    """A config as it reads back from JSON (tuples become lists, other objects strings)."""
    return json.loads(json.dumps(config, default=str))


def unnumbered(config):
    """A config with the per-process numbering of auto-generated names dropped ("dense_3" ->
    "dense"), so configs made in different processes (or after other models) compare equal."""
    return json.loads(re.sub(r'("name": "[^"]*?)_\d+"', r'\1"', json.dumps(config, default=str)))


def unnumbered_layout(weights):
    """[[path, shape], ...] of weights with the per-process numbering dropped from the paths."""
    return [[re.sub(r"_\d+(?=/|$)", "", path), list(shape)] for path, shape in weights]


# ----------------------------------------------------------------------------- .keras round trip


def _assert_same(got, want, atol, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    if atol:
        np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def assert_keras_round_trip(model, tmp_path, sample_kwargs=None, *, outputs=None, atol=0.0,
                            filename="model.keras"):
    """Save ``model`` to ``tmp_path / filename``, load it in this process and compare.

    Checks: the loaded object has the model's class; its config equals the model's (as JSON,
    after `unnumbered`); nothing was skipped while loading the weights (Keras warns "Skipping
    variable loading" and goes on); ``sample(**kwargs)`` gives the same arrays for each of
    ``sample_kwargs`` (a dict or a list of dicts; None: no sample() calls); and so does each
    ``outputs`` function ({name: fn(model) -> array}, e.g. encode or call). ``atol`` 0: equal
    bit for bit; otherwise |loaded - model| <= atol.

    Returns the loaded model, for the caller's own checks (optimizer state, attributes...).
    """
    import keras

    path = Path(tmp_path) / filename
    model.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.models.load_model(path)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "Skipping variable loading" in m], messages
    assert type(loaded) is type(model), (type(loaded), type(model))
    assert unnumbered(loaded.get_config()) == unnumbered(model.get_config())
    if isinstance(sample_kwargs, dict):
        sample_kwargs = [sample_kwargs]
    for kwargs in sample_kwargs or ():
        _assert_same(loaded.sample(**kwargs), model.sample(**kwargs), atol, f"sample(**{kwargs})")
    for name, fn in (outputs or {}).items():
        got, want = fn(loaded), fn(model)
        if isinstance(want, (list, tuple)):
            assert len(got) == len(want), name
            for i, (g, w) in enumerate(zip(got, want)):
                _assert_same(g, w, atol, f"{name}[{i}]")
        else:
            _assert_same(got, want, atol, name)
    return loaded


# ----------------------------------------------------------------------------- exports in a child

# Runs in a fresh interpreter that refuses to import keras_gen. argv: spec.json, inputs.npz,
# out.npz, result.json. The spec names the exports to load and the signature calls to make
# ({"export", "signature", "inputs": {argument: key in inputs.npz}, "output"}); "calls" are
# saved to out.npz, "errors" only record how they fail.
EXPORT_CHILD = REFUSE_KERAS_GEN + r'''
spec_path, inputs_path, out_path, result_path = sys.argv[1:5]
with open(spec_path) as f:
    spec = json.load(f)
with np.load(inputs_path) as data:
    inputs = {k: data[k] for k in data.files}

def tensor_spec(s):
    return [s.dtype.name, s.shape.as_list()]

loaded, described = {}, {}
for key, path in spec["exports"].items():
    loaded[key] = tf.saved_model.load(path)
    signatures = loaded[key].signatures
    described[key] = {
        "signatures": sorted(signatures),
        "inputs": {name: {k: tensor_spec(v) for k, v in fn.structured_input_signature[1].items()}
                   for name, fn in signatures.items()},
        "outputs": {name: {k: tensor_spec(v) for k, v in fn.structured_outputs.items()}
                    for name, fn in signatures.items()},
    }

def call(c):
    fn = loaded[c["export"]].signatures[c["signature"]]
    outputs = fn(**{arg: tf.constant(inputs[key]) for arg, key in c["inputs"].items()})
    if c["output"] is None:
        (output,) = outputs.values()  # the signature's only output
    else:
        output = outputs[c["output"]]
    return output.numpy()

arrays = {name: call(c) for name, c in spec["calls"].items()}
errors = {}
for name, c in spec["errors"].items():
    try:
        errors[name] = "returned an output of shape %s" % (call(c).shape,)
    except tf.errors.InvalidArgumentError:
        errors[name] = "InvalidArgumentError"
    except Exception as exc:
        errors[name] = type(exc).__name__
np.savez(out_path, **arrays)
result = {"keras_gen_in_sys_modules": "keras_gen" in sys.modules,
          "refused_imports": RefuseKerasGen.attempts, "exports": described, "errors": errors}
with open(result_path, "w") as f:
    json.dump(result, f)
assert "keras_gen" not in sys.modules, "serving the export pulled in keras_gen"
'''


def export_call(signature, *, export=None, output=None, **inputs):
    """One signature call for `check_export_in_child`: ``export_call("sample_ddim", num_images=3,
    seed=7, steps=3)``. Python ints are sent as int32, floats as float32, arrays as they are.
    ``export``: which export (needed when the child loads several); ``output``: the output to
    keep (default: the signature's only output)."""
    return {"signature": signature, "export": export, "output": output, "inputs": inputs}


def _as_input(value):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"no bool inputs in export calls: {value!r}")
    if isinstance(value, int):
        return np.int32(value)
    if isinstance(value, float):
        return np.float32(value)
    return np.asarray(value)


def check_export_in_child(exports, calls, tmp_path, *, errors=None, metadata=None, while_running=None,
                          alongside=None, name="export_child"):
    """Serve exports in a child process that never imports keras_gen; return what it computed.

    Args:
        exports: {key: a SavedModel path, or a model to export to ``tmp_path / key`` first (with
            ``metadata``)}; one child loads them all.
        calls: {name: `export_call`(...)}: the outputs come back as ``.arrays[name]``.
        errors: {name: `export_call`(...)} expected to fail: ``.result["errors"][name]`` says how
            ("InvalidArgumentError", another exception's name, or "returned an output of shape ...").
        while_running: a function run in this process while the child works (e.g. computing the
            in-process outputs to compare with); its return value is ``.expected``.
        alongside: {name: command} to run in parallel with the child (subprocess_jobs), their
            results in ``.alongside[name]``.

    The child's script asserts that keras_gen is not in sys.modules (and an import hook refuses
    it); this asserts the child succeeded. Returns SimpleNamespace(paths={key: Path}, arrays,
    result={"keras_gen_in_sys_modules", "refused_imports", "errors", "exports": {key:
    {"signatures": sorted names, "inputs"/"outputs": {signature: {name: [dtype, shape]}}}}},
    expected, alongside, child) (child: the subprocess_jobs result).
    """
    from keras_gen.export import export_saved_model

    root = Path(tmp_path)
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, export in exports.items():
        if isinstance(export, (str, Path)):
            paths[key] = Path(export)
        else:
            paths[key] = export_saved_model(export, root / key, metadata=metadata)
    only = next(iter(paths)) if len(paths) == 1 else None
    arrays_in, spec = {}, {"exports": {k: str(p) for k, p in paths.items()}, "calls": {}, "errors": {}}
    for group, named in (("calls", calls), ("errors", errors or {})):
        for call_name, c in named.items():
            export = c["export"] or only
            assert export in paths, f"{call_name}: say which export (export=...) among {sorted(paths)}"
            keys = {}
            for arg, value in c["inputs"].items():
                keys[arg] = f"{group}/{call_name}/{arg}"
                arrays_in[keys[arg]] = _as_input(value)
            spec[group][call_name] = {"export": export, "signature": c["signature"], "output": c["output"],
                                      "inputs": keys}
    files = {k: root / f"{name}.{k}" for k in ("spec.json", "inputs.npz", "out.npz", "result.json")}
    files["spec.json"].write_text(json.dumps(spec))
    np.savez(files["inputs.npz"], **arrays_in)
    commands = {name: [sys.executable, "-c", EXPORT_CHILD, *(str(files[k]) for k in
                                                            ("spec.json", "inputs.npz", "out.npz", "result.json"))],
                **(alongside or {})}
    # cwd: the repository is not on the children's path
    jobs = subprocess_jobs.start_all(commands, root, cwd=root)
    try:
        expected = while_running() if while_running is not None else None
    except BaseException:  # leave no child behind
        for process, _, _ in jobs.values():
            process.kill()
            process.wait()
        raise
    results = subprocess_jobs.finish_all(jobs)
    child = results.pop(name)
    assert child.rc == 0, explain(child)
    with np.load(files["out.npz"]) as data:
        arrays = {k: data[k] for k in data.files}
    return SimpleNamespace(paths=paths, arrays=arrays, result=json.loads(files["result.json"].read_text()),
                           expected=expected, alongside=results, child=child)
