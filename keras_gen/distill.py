"""``keras-gen distill``: progressive distillation rounds from a teacher DDPM down to few-step students.

Round k trains a student of N steps on a teacher of 2N (keras_gen.models.distillation), as one
ordinary training run (keras_gen.training.train, kind "distilled") in ``<out>/round_<k>_<2N>_to_<N>/``
with its checkpoints, ``--resume``, history, per-epoch sample grids and exported student. The
next round's teacher is this round's student. After each round the student's classifier FID is
measured (``fid_n`` samples, the evaluation's protocol) and appended to ``<out>/rounds.json``;
``<out>/fid_vs_steps.png`` draws FID against steps for the teacher (DDIM on the same trailing grid)
and the students. ``resume=True`` skips finished rounds and resumes the unfinished one, with the
settings the distillation was started with (``<out>/distill.json``).

``data="teacher"`` distils without data: before the first round the first teacher draws
``teacher_samples`` points of its diffusion space with deterministic DDIM at ``from_steps`` (the
sampler the rounds compress), saved in ``<out>/teacher_data/`` chunk by chunk (a kill loses one
chunk), and every round noises those instead of training images (``ProgressiveDistillation``'s
``data_bank``). It is what distils an export that lacks a layer ``diffusion_data`` reads (a latent
DDPM's encoder), and it trains the student where the teacher's own samples live.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from keras_gen.files import atomic_write_bytes, save_keras_atomically

SETTINGS = "distill.json"
ROUNDS = "rounds.json"
TEACHER_DATA = "teacher_data"
DATA_SOURCES = ("dataset", "teacher")
TEACHER_DATA_SEED = 1_000_000  # the bank's noise seeds start here, away from the FID runs' (0, 250, ...)


def round_steps(from_steps: int, to_steps: int) -> list[int]:
    """The students' step counts, halving from ``from_steps`` (the first teacher's) to ``to_steps``."""
    for name, value in (("from_steps", from_steps), ("to_steps", to_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    steps, n = [], from_steps
    while n > to_steps and n % 2 == 0:
        n //= 2
        steps.append(n)
    if not steps or n != to_steps:
        raise ValueError(f"--to-steps {to_steps} is not --from-steps {from_steps} halved one or more times "
                         "(e.g. 64 -> 32 -> 16 -> 8 -> 4 -> 2 -> 1)")
    return steps


def _check_teacher_path(teacher):
    """ValueError unless ``teacher`` is a .keras file, a run folder or a diffusion export."""
    from keras_gen.export import is_export, read_export_info
    from keras_gen.models.kinds import get_model_kind
    from keras_gen.models.ddpm import DDPMKind

    teacher = Path(teacher)
    if is_export(teacher):
        kind = read_export_info(teacher)["kind"]
        if not isinstance(get_model_kind(kind), DDPMKind):
            raise ValueError(f"{teacher} is a {kind} export: only diffusion models can be distilled")
    elif not (teacher.suffix == ".keras" and teacher.is_file()) and not (teacher / "model.keras").is_file():
        raise ValueError(f"{teacher} is not a DDPM export, a .keras file or a finished run folder")


def teacher_from_export(export):
    """The DDPM of a diffusion export (keras_gen.sampling.model_from_export), refused (ValueError)
    when the export does not hold a layer that `diffusion_data` reads (e.g. a latent DDPM's
    encoder): an export keeps only what sampling reads, so such a layer would keep its random
    initial weights and every round would silently train on meaningless data."""
    from keras_gen.export_weights import weight_names
    from keras_gen.sampling import model_from_export

    model = model_from_export(export)
    names = weight_names(model)
    not_restored = set(model.not_restored_from_export)
    for what, layer in model.diffusion_data_layers().items():
        if any(names[id(w)] in not_restored for w in layer.weights):
            raise ValueError(
                f"{export} does not hold the weights of {what}: an export keeps only what sampling "
                "reads, and distillation encodes its training images with it, so rebuilt from the export "
                "it would keep its random initial weights and every round would train on meaningless "
                "data. Distil from the training run's model.keras instead (`keras-gen distill "
                "RUN/model.keras`), or on the teacher's own samples: add `--data teacher`.")
    return model


def _write_npy(path: Path, array):
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())


def teacher_data(out: Path, teacher_file: Path, n: int, steps: int, chunk: int = 500) -> Path:
    """``<out>/teacher_data.npy``: n deterministic DDIM samples (``steps`` trailing steps) of the
    teacher in its diffusion space, drawn chunk by chunk into ``<out>/teacher_data/`` (chunk k
    from noise seed TEACHER_DATA_SEED + k * chunk), so an interrupted draw resumes at its first
    missing chunk."""
    import keras
    import numpy as np

    from keras_gen.models.distillation import load_teacher, trailing_diffusion_samples

    target = out / f"{TEACHER_DATA}.npy"
    if target.exists():
        return target
    parts = out / TEACHER_DATA
    parts.mkdir(exist_ok=True)
    starts = list(range(0, n, chunk))
    missing = [i for i in starts if not (parts / f"{i:07d}.npy").exists()]
    if missing:
        print(f"drawing {n} samples of the teacher (DDIM, {steps} steps) to distil on: {len(missing)} of "
              f"{len(starts)} chunks to go")
        teacher = load_teacher(teacher_file)
        bar = keras.utils.Progbar(len(starts), unit_name="chunk")
        bar.update(len(starts) - len(missing))
        for i in missing:
            x = trailing_diffusion_samples(teacher, min(chunk, n - i), steps, TEACHER_DATA_SEED + i)
            _write_npy(parts / f"{i:07d}.npy", np.asarray(x, np.float32))
            bar.add(1)
    _write_npy(target, np.concatenate([np.load(parts / f"{i:07d}.npy") for i in starts]))
    return target


def teacher_keras_file(teacher, out: Path, rebuilt=None) -> Path:
    """The teacher as a .keras file: the file itself, a run folder's model.keras, or an export
    rebuilt once (`teacher_from_export`, unless ``rebuilt`` is that model) into
    ``<out>/teacher.keras``."""
    from keras_gen.export import is_export

    teacher = Path(teacher)
    if teacher.suffix == ".keras" and teacher.is_file():
        return teacher
    if teacher.is_dir() and (teacher / "model.keras").is_file() and not is_export(teacher):
        return teacher / "model.keras"
    if is_export(teacher):
        target = out / "teacher.keras"
        if not target.exists():
            save_keras_atomically(rebuilt if rebuilt is not None else teacher_from_export(teacher), target)
        return target
    raise ValueError(f"{teacher} is not a DDPM export, a .keras file or a finished run folder")


def teacher_config(keras_file: Path) -> dict:
    """The teacher's model config read from its .keras file (a zip holding config.json), without
    building it (a round builds and type-checks its teacher itself, and building one costs
    seconds), with ``data_kind``: the kind whose batches the rounds train on. Refuses a file
    that holds no diffusion model."""
    import zipfile

    import keras

    from keras_gen.models.distillation import data_kind

    with zipfile.ZipFile(keras_file) as archive:
        saved = json.loads(archive.read("config.json"))
    config = saved.get("config", {})
    model_class = keras.saving.get_registered_object(saved.get("registered_name") or "")
    if "schedule" not in config or model_class is None:
        raise ValueError(f"{keras_file} holds a {saved.get('class_name', 'model')}, not a DDPM: "
                         "only diffusion models can be distilled")
    return {**config, "data_kind": data_kind(model_class)}


def _round_dir(out: Path, k: int, steps: int) -> Path:
    return out / f"round_{k}_{2 * steps}_to_{steps}"


def _check_out(out: Path, resume: bool):
    """Refuse an --out that the distillation may not write to (or, with resume, continue)."""
    if (out / SETTINGS).exists():
        if not resume:
            raise ValueError(f"{out} holds a distillation already: pass --resume to continue it, or choose "
                             "a new --out")
    elif resume:
        raise ValueError(f"--resume: {out} holds no distillation to continue ({SETTINGS} is missing)")
    elif out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is a non-empty folder that is not a distillation: choose a new or empty --out")


def _load_settings(out: Path, settings: dict) -> dict:
    """The distillation's settings: those written when it started, or ``settings`` written now
    (``out`` passed _check_out)."""
    path = out / SETTINGS
    if path.exists():
        return json.loads(path.read_text())
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(settings, indent=2).encode())
    return settings


def measure_fid(sample_fn, n: int, dataset: str = "mnist", batch_size: int = 250) -> dict:
    """{fid, n, samples_per_s} of n samples drawn in batches (the evaluation's classifier FID):
    ``sample_fn(count, seed)`` is called for each batch with the batch's first index as its seed
    (0, 250, 500, ...), so the same model and n give the same images and FID as the rounds record."""
    import numpy as np

    from keras_gen.evaluation import classifier_fid

    start = time.perf_counter()
    images = np.concatenate([sample_fn(min(batch_size, n - i), i) for i in range(0, n, batch_size)])
    seconds = time.perf_counter() - start
    return {"fid": float(classifier_fid(images, dataset)), "n": n, "samples_per_s": n / seconds}


def _chart(out: Path, records: list):
    from keras_gen.plotting import fid_vs_steps

    series = {}
    for record in records:
        if record.get("fid") is not None:
            series.setdefault(record["model"], []).append((record["steps"], record["fid"]))
    if series:
        fid_vs_steps(series, out / "fid_vs_steps.png", title="Progressive distillation: FID vs steps")


def _record_lineage(export, record: dict):
    """Write into a student's export the rounds that made it and their total training time."""
    from keras_gen.export import read_export_info, write_export_info

    rounds = [{k: r[k] for k in ("round", "steps", "wall_seconds", "training_steps")}
              for r in record["records"] if r["model"] == "student"]
    info = read_export_info(export)
    info["distillation"] = {"teacher": record["teacher"], "rounds": rounds,
                            "wall_seconds_total": round(sum(r["wall_seconds"] for r in rounds), 1)}
    write_export_info(export, info)


def distill(teacher, out, *, to_steps: int = 1, from_steps: int | None = None, preset: str = "cpu",
            resume: bool = False, fid_n: int = 1000, verbose: int = 1, checkpoint_every: int = 500,
            data: str = "dataset", teacher_samples: int = 10_000, **overrides) -> dict:
    """Run (or, with ``resume``, continue) the distillation rounds; returns the rounds record.

    Args:
        teacher: a DDPM export folder (e.g. saved_models/ddpm), a .keras file or a run folder.
        out: the distillation's folder (new or empty, or an earlier one with ``resume``).
        to_steps: the last student's steps. from_steps: the first teacher's (default: the
            preset's ``from_steps``); it must be ``to_steps`` doubled one or more times.
        preset: the "distilled" kind's preset for every round ("cpu" or "tiny").
        fid_n: samples per classifier-FID measurement after each round (0: none).
        data: "dataset" (noise the training images, as in the paper) or "teacher" (noise
            ``teacher_samples`` samples of the first teacher: module docstring).
        overrides: preset keys to change for every round (epochs, limit, batch_size, ...).
    """
    from keras_gen import sampling
    from keras_gen.export import is_export
    from keras_gen.models.distillation import load_teacher, trailing_samples
    from keras_gen.presets import get_preset
    from keras_gen.runs import RunFolder
    from keras_gen.training import train

    out = Path(out)
    rebuilt = None
    _check_out(out, resume)
    if not resume:  # every check, before anything is written
        if data not in DATA_SOURCES:
            raise ValueError(f"data must be one of {DATA_SOURCES}, got {data!r}")
        if isinstance(teacher_samples, bool) or not isinstance(teacher_samples, int) or teacher_samples < 1:
            raise ValueError(f"teacher_samples must be a positive integer, got {teacher_samples!r}")
        round_steps(from_steps or get_preset("distilled", preset, **overrides)["from_steps"], to_steps)
        _check_teacher_path(teacher)
        if is_export(teacher):
            rebuilt = (sampling.model_from_export(teacher) if data == "teacher" else teacher_from_export(teacher))
    settings = _load_settings(out, dict(teacher=str(teacher), to_steps=to_steps, from_steps=from_steps,
                                        preset=preset, fid_n=fid_n, data=data, teacher_samples=teacher_samples,
                                        overrides=overrides))
    base = get_preset("distilled", settings["preset"], **settings["overrides"])
    from_steps = settings["from_steps"] or base["from_steps"]
    steps_per_round = round_steps(from_steps, settings["to_steps"])
    teacher_file = teacher_keras_file(settings["teacher"], out, rebuilt)
    first_config = teacher_config(teacher_file)
    timesteps = first_config["schedule"]["timesteps"]
    if from_steps > timesteps:
        raise ValueError(f"--from-steps {from_steps} exceeds the teacher's T={timesteps}")
    dataset = base["dataset"]
    rounds_path = out / ROUNDS
    record = json.loads(rounds_path.read_text()) if rounds_path.exists() else {"teacher": str(teacher_file),
                                                                                "records": []}
    measured = {(r["model"], r["steps"]) for r in record["records"]}
    first_teacher = None
    for steps in [from_steps] + steps_per_round if settings["fid_n"] else []:
        if ("teacher", steps) not in measured:  # the baseline: the teacher's DDIM at the same steps
            print(f"classifier FID of the teacher's DDIM with {steps} steps (n={settings['fid_n']})")
            first_teacher = first_teacher or load_teacher(teacher_file)
            record["records"].append({"model": "teacher", "steps": steps, **measure_fid(
                lambda n, seed: trailing_samples(first_teacher, n, steps, seed), settings["fid_n"], dataset)})
            atomic_write_bytes(rounds_path, json.dumps(record, indent=2).encode())
    bank = None
    if settings.get("data", "dataset") == "teacher":
        bank = teacher_data(out, teacher_file, settings["teacher_samples"], from_steps)
    previous = teacher_file
    for k, steps in enumerate(steps_per_round, start=1):
        folder = _round_dir(out, k, steps)
        if not (folder / "summary.json").exists():
            config = get_preset("distilled", settings["preset"], teacher=str(previous), steps=steps,
                                data_mode=first_config.get("data_mode", "pad"),
                                data_kind=first_config["data_kind"], teacher_data=bank and str(bank),
                                **settings["overrides"])
            # resumed only from a checkpoint: a round killed before its first one starts again
            started = (RunFolder(folder).resume_dir / "state.json").is_file()
            print(f"round {k}/{len(steps_per_round)}: {2 * steps} -> {steps} steps ({folder})")
            summary = train("distilled", None if started else config, folder, resume=started, verbose=verbose,
                            checkpoint_every=checkpoint_every)
            entry = {"model": "student", "steps": steps, "round": k, "folder": str(folder),
                     "wall_seconds": summary["training"]["wall_seconds"],
                     "training_steps": summary["training"]["steps"]}
            if settings["fid_n"]:
                from keras_gen.sampling import load_keras_model
                student = load_keras_model(folder / "model.keras")
                entry.update(measure_fid(lambda n, seed: student.sample(n, seed, progress=False),
                                          settings["fid_n"], dataset))
            record["records"] = [r for r in record["records"] if r.get("round") != k] + [entry]
            atomic_write_bytes(rounds_path, json.dumps(record, indent=2).encode())
            _record_lineage(folder / "saved_model", record)
            _chart(out, record["records"])
        previous = folder / "model.keras"
    _chart(out, record["records"])
    return record
