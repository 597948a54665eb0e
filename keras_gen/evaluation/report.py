"""The trilemma report: score exported generators on quality, speed and coverage, side by side.

``evaluate_paths(paths)`` loads each export (keras_gen.sampling.load_sampler), draws n samples
(a DDPM once with its full ancestral sampler and once per DDIM step count), scores them with the
dataset's shipped classifier against the real test split, adds the reference rows (real training
images, uniform noise, a single class) scored the same way, prints a table, and writes a JSON
report and, in ``report_dir``, the trilemma chart, one predicted-class histogram and sample grid
per row, and index.html: all of it on one self-contained page (report_page.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from keras_gen.evaluation.classifier import load_classifier
from keras_gen.files import atomic_write_bytes
from keras_gen.evaluation.metrics import (coverage_metrics, feature_statistics,
                                          frechet_distance_from_statistics,
                                          kernel_inception_distance, precision_recall)
from keras_gen.evaluation.references import RealReference, real_reference, reference_sets
from keras_gen.evaluation.report_page import write_report_page
from keras_gen.evaluation.speed import measure_sampling_speed
from keras_gen.evaluation.table import format_table
from keras_gen.machine import machine_info

DEFAULT_DDIM_STEPS = (10, 25, 50, 100)
DEFAULT_BATCH_SIZE = 500
# Samples of the slow rows (a DDPM's full T-step chain: T network passes each) unless told otherwise:
# 100 samples of the shipped DDPM's 1000 steps take ~12 min on 2 cores; n of them would take hours.
DEFAULT_FULL_CHAIN_N = 100
PROBE_N = 8  # samples of the one timed batch per model that the time estimate is made from


# ------------------------------------------------------------------------------ scoring images

def evaluate_images(images, real: RealReference, *, seed: int = 0, kid_subsets: int = 100,
                    kid_subset_size: int = 1000, k: int = 3) -> dict:
    """Quality and coverage numbers of one image set against a real reference (JSON-ready dict).

    Keys: n, fid, kid_mean, kid_std, precision, recall (the real side subsampled to the same
    size as ``images``, as the method requires) and everything coverage_metrics returns.
    """
    probs, feats = real.classifier.probs_and_features(images)
    fid = frechet_distance_from_statistics(*feature_statistics(feats), real.mu, real.sigma)
    kid = kernel_inception_distance(feats, real.feats, subsets=kid_subsets,
                                    subset_size=kid_subset_size, seed=seed)
    rng = np.random.default_rng(seed)
    real_feats = real.feats if len(real.feats) <= len(feats) else \
        real.feats[rng.choice(len(real.feats), len(feats), replace=False)]
    pr = precision_recall(real_feats, feats, k=k)
    return {"n": int(len(feats)), "fid": fid, "kid_mean": kid.mean, "kid_std": kid.std,
            "precision": pr.precision, "recall": pr.recall, **coverage_metrics(probs)}


def sample_images(sample_fn, n: int, batch_size: int, seed: int = 0, *, progress: str | None = None,
                  **options) -> np.ndarray:
    """n images from ``sample_fn(num_images, seed, **options)``, batch i drawn with seed + i.

    ``progress``: a label for a tqdm bar counting images (an export's DDPM batch is one silent
    graph call of minutes); None draws quietly.
    """
    out, done, i = [], 0, 0
    with tqdm(total=n, desc=progress, unit="img", disable=progress is None, leave=False) as bar:
        while done < n:
            b = min(batch_size, n - done)
            out.append(np.asarray(sample_fn(b, seed + i, **options), dtype=np.float32))
            done, i = done + b, i + 1
            bar.update(b)
    return np.concatenate(out)


# ------------------------------------------------------------------------------- the exports

def _plan(name: str, kind, info: dict, ddim_steps, ddpm_full: bool = True,
          ddpm_full_n: int | None = None) -> tuple[list[dict], list[str]]:
    """The sampling runs of one model: [{label, short_label, group, options, nfe_per_sample, n,
    and the kind's row fields}], notes. The runs are the kind's (``ModelKind.evaluation_runs``:
    e.g. a DDPM's full chain, on ``ddpm_full_n`` samples when given, and one DDIM run per count
    in ``ddim_steps``)."""
    group = f"{name} ({kind.name.upper()})"
    runs, notes = kind.evaluation_runs(info, ddim_steps=ddim_steps, full_chain=ddpm_full,
                                       full_chain_n=ddpm_full_n)
    plan = []
    for run in runs:
        single = len(runs) == 1 and not run["options"]
        plan.append({"sampler": None, "steps": None, **run["row"],
                     "label": group if single else f"{name} {run['short_label']}",
                     "short_label": run["short_label"], "group": group, "options": run["options"],
                     "n": run.get("n"), "slow": run.get("slow", False),
                     "nfe_per_sample": kind.network_passes(info, run["options"])})
    return plan, [f"{name}: {note}" for note in notes]


def _probe_seconds_per_pass(fn, info) -> float:
    """Seconds per sample and network pass of ``fn``'s default call, from the faster of two timed
    batches of PROBE_N (the first one also traces)."""
    seconds = []
    for i in range(2):
        start = time.perf_counter()
        np.asarray(fn(PROBE_N, i))
        seconds.append(time.perf_counter() - start)
    return min(seconds) / (PROBE_N * max(1, fn.kind.network_passes(info, {})))


def _print_plan(log, planned):
    """The sampling runs with their estimated minutes, before any of them starts."""
    total = 0.0
    log("[evaluate] plan (estimates from one timed batch per model; larger batches run faster):")
    for run, n, estimate in planned:
        total += estimate
        log(f"  {run['label']:<32} n={n:<6} NFE {run['nfe_per_sample']:<5} ~{estimate / 60:6.1f} min")
    log(f"  {'total sampling':<32} {'':<15}~{total / 60:6.1f} min (plus scoring)")


def _load(paths, samplers=None):
    from keras_gen.sampling import load_sampler

    loaded, names = [], set()
    for path in paths:
        path = Path(path)
        sampler = (samplers or {}).get(path) or load_sampler(path)
        name = path.name[:-len(".keras")] if path.name.endswith(".keras") else path.name
        base, i = name, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.add(name)
        loaded.append((path, name, sampler, sampler.info))
    return loaded


def _dataset_of(loaded, dataset):
    if dataset is not None:
        return dataset, []
    found = {info.get("dataset") for _, _, _, info in loaded}
    known = found - {None}
    if len(known) > 1:
        raise ValueError(f"the exports were trained on different datasets {sorted(known)}: "
                         "evaluate one dataset at a time or pass dataset=")
    if not known:
        return "mnist", ["no export names its dataset: assumed mnist"]
    return known.pop(), []


# ------------------------------------------------------------------------------------ report

def evaluate_paths(paths, n: int = 10000, ddim_steps=DEFAULT_DDIM_STEPS, json_path=None,
                   report_dir=None, dataset: str | None = None, seed: int = 0,
                   batch_size: int = DEFAULT_BATCH_SIZE, *, n_real: int | None = None,
                   speed_repeats: int = 3, references: bool = True, ddpm_full: bool = True,
                   ddpm_full_n: int | None = None,
                   kid_subsets: int = 100, kid_subset_size: int = 1000, command: str | None = None,
                   verbose: bool = True, samplers: dict | None = None) -> dict:
    """Score exported generators on the three axes of the trilemma and write the report.

    Args:
        paths: exported SavedModel directories or .keras model files (one path or a list).
        n: samples per model and sampler (and per reference row).
        ddim_steps: DDIM step counts to evaluate each DDPM at (besides full ancestral DDPM);
            counts above the DDPM's T are skipped with a note.
        json_path: where to write the report JSON (default: report_dir/report.json if report_dir).
        report_dir: folder for trilemma.png, histogram_<row>.png, samples_<row>.png and the page
            index.html that shows them all with the table.
        dataset: the dataset whose classifier and test split to use (default: the exports'
            info["dataset"]; they must agree).
        seed: sampling seed (batch i uses seed + i, the same for every sampler of a model).
        batch_size: images per sampling call (<= 4096, the serving cap).
        n_real: real test images to compare against (default all 10,000).
        speed_repeats: timed runs of one batch each for the speed numbers (after the quality
            sampling, which serves as the warm-up); a slow row (the full-step DDPM) is not run
            again: its speed is that of its quality sampling.
        references: add the real-train / uniform-noise / single-class rows.
        ddpm_full: also sample DDPMs with the full T-step ancestral sampler (the slow one; False
            evaluates the DDIM step counts only).
        ddpm_full_n: samples for the full-step DDPM rows (default min(n, DEFAULT_FULL_CHAIN_N):
            the full chain is T passes a sample). FID and KID of a smaller set are noisier and FID
            is biased upward, so the table shows each row's n and a note says so.
        kid_subsets, kid_subset_size: KID's random subsets (size capped at n).
        command: the command line that ran this evaluation, for the report and its page
            (default: this process's, sys.argv).
        verbose: print progress and the table.
        samplers: {Path: keras_gen.sampling.Sampler} already loaded for some of ``paths``, used
            instead of loading them again (an export takes seconds to load).
    Returns: the report dict (also what the JSON holds): dataset, n, classifier, rows,
        references, notes, command, machine, ...
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("give at least one exported model path")
    if n < 4:
        raise ValueError(f"n must be at least 4 (precision/recall use 3 neighbours), got {n}")
    if ddpm_full_n is not None and ddpm_full_n < 4:
        raise ValueError(f"ddpm_full_n must be at least 4, got {ddpm_full_n}")
    if not 1 <= batch_size <= 4096:
        raise ValueError(f"batch_size must be in [1, 4096], got {batch_size}")
    log = print if verbose else (lambda *a, **k: None)
    loaded = _load(paths, samplers)
    dataset, notes = _dataset_of(loaded, dataset)
    classifier = load_classifier(dataset)
    real = real_reference(dataset, classifier=classifier, n=n_real)
    log(f"[evaluate] {dataset}: classifier test accuracy {classifier.info.get('test_accuracy')}, "
        f"{real.n} real test images, n={n} samples per row")
    report_dir = Path(report_dir) if report_dir is not None else None
    scoring = dict(seed=seed, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size)

    full_n = min(n, DEFAULT_FULL_CHAIN_N) if ddpm_full_n is None else ddpm_full_n
    planned = []
    for path, name, fn, info in loaded:
        runs, run_notes = _plan(name, fn.kind, info, ddim_steps, ddpm_full, full_n)
        notes += run_notes
        per_pass = _probe_seconds_per_pass(fn, info)
        planned += [((path, name, fn, info), run, run.get("n") or n,
                     (run.get("n") or n) * run["nfe_per_sample"] * per_pass) for run in runs]
    _print_plan(log, [(run, run_n, estimate) for _, run, run_n, estimate in planned])
    if any(run["slow"] and run_n < n for _, run, run_n, _ in planned):
        notes.append(f"the full-chain rows use n={full_n} samples (T network passes each; --ddpm-full-n to "
                     "change it): their FID is noisier and biased upward against rows with more samples")

    rows, samples = [], {}
    for (path, name, fn, info), run, run_n, _ in planned:
        start = time.perf_counter()
        images = sample_images(fn, run_n, batch_size, seed, progress=run["label"] if verbose else None,
                               **run["options"])
        sampling_seconds = time.perf_counter() - start
        if run["slow"]:  # timing the full chain again would double its cost: reuse this run
            speed = {"samples_per_s": run_n / sampling_seconds, "seconds": [round(sampling_seconds, 6)],
                     "n": run_n, "batch_size": batch_size, "repeats": 1, "warmup": 0,
                     "nfe_per_sample": run["nfe_per_sample"],
                     "nfe_per_s": run_n * run["nfe_per_sample"] / sampling_seconds, "from": "quality sampling"}
        else:
            speed = measure_sampling_speed(lambda b, s, o=run["options"]: fn(b, s, **o),
                                           n=min(run_n, batch_size), batch_size=min(run_n, batch_size),
                                           repeats=speed_repeats, warmup=0, seed=seed,
                                           nfe_per_sample=run["nfe_per_sample"])
        row = {k: run.get(k) for k in ("label", "short_label", "group", "sampler", "steps", "eta",
                                       "nfe_per_sample")}
        row.update(path=str(path), model=name, kind=info["kind"],
                   **evaluate_images(images, real, **scoring),
                   samples_per_s=speed["samples_per_s"], sampling_seconds=sampling_seconds, speed=speed)
        rows.append(row)
        samples[row["label"]] = images[:64]
        log(f"[evaluate] {row['label']}: FID {row['fid']:.3f}, classes {row['classes_covered']}, "
            f"{row['samples_per_s']:.4g} samples/s")

    ref_rows = []
    if references:
        for label, images in reference_sets(dataset, n, seed).items():
            ref_rows.append({"label": label, "short_label": label, "group": label, "kind": "reference",
                             "sampler": None, "steps": None, "nfe_per_sample": None,
                             **evaluate_images(images, real, **scoring), "samples_per_s": None})
            samples[label] = images[:64]

    report = {"dataset": dataset, "n": n, "seed": seed, "batch_size": batch_size,
              "ddim_steps": [int(s) for s in ddim_steps], "ddpm_full": ddpm_full,
              "ddpm_full_n": full_n,
              "classifier": {"path": str(classifier.path), **{k: classifier.info.get(k) for k in (
                  "test_accuracy", "epochs", "features_layer")}},
              "real": {"split": real.split, "n": real.n},
              "metrics": {"fid": "Frechet distance on classifier features vs the real test split",
                          "kid": f"unbiased MMD^2, cubic kernel, {kid_subsets} subsets",
                          "precision_recall": "Kynkaanniemi et al. 2019, k=3 (a set collapsed "
                                              "inside the real manifold, e.g. noise, gets precision ~1: "
                                              "read it with recall)",
                          "classes_covered": "classes with >= 2% of samples (classifier argmax)",
                          "entropy": "nats; normalized_entropy = entropy / log(10)",
                          "samples_per_s": f"median of {speed_repeats} timed runs of one batch"},
              "rows": rows, "references": ref_rows, "notes": notes,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "platform": sys.platform,
              "command": shlex.join(sys.argv) if command is None else command, "machine": machine_info()}
    from keras_gen.plotting import nearest_the_corner

    corner = nearest_the_corner(rows)
    report["nearest_the_corner"] = None if corner is None else corner["label"]
    log(format_table(report))
    if corner is not None:
        log(f"nearest the corner of quality, speed and coverage: {corner['label']}")
    for note in notes:
        log(f"note: {note}")
    if json_path is None and report_dir is not None:
        json_path = report_dir / "report.json"
    if json_path is not None:
        write_json(report, json_path)
    if report_dir is not None:
        write_report_page(report, report_dir, draw_report(report, report_dir, samples))
    return report


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_json(report: dict, path) -> Path:
    """Write the report as JSON atomically (temporary file, then rename)."""
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(report, indent=2, default=_json_default) + "\n").encode())
    return path


def slug(label: str) -> str:
    """A file-name-safe form of a row label."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "row"


def draw_report(report: dict, report_dir, samples: dict | None = None) -> dict:
    """trilemma.png, histogram_<row>.png per row and (given samples) samples_<row>.png.

    Returns the files written: {"trilemma": path, "rows": {label: {"histogram": path, and
    "samples": path where samples has the label}}}.
    """
    from keras_gen import plotting
    from keras_gen.data import CLASS_NAMES

    report_dir = Path(report_dir)
    names = CLASS_NAMES.get(report["dataset"])
    written = {"trilemma": report_dir / "trilemma.png", "rows": {}}
    plotting.trilemma_chart(report["rows"], written["trilemma"], references=report["references"],
                            title=f"The generative trilemma on {report['dataset']} (n={report['n']}, "
                                  f"classifier accuracy {report['classifier'].get('test_accuracy')})")
    for r in report["rows"] + report["references"]:
        files = written["rows"].setdefault(r["label"], {})
        files["histogram"] = report_dir / f"histogram_{slug(r['label'])}.png"
        plotting.predicted_class_histogram(r["histogram"], files["histogram"], class_names=names,
                                           title=f"Predicted classes: {r['label']}",
                                           min_fraction=r.get("min_class_fraction", 0.02))
    for label, images in (samples or {}).items():
        files = written["rows"].setdefault(label, {})
        files["samples"] = report_dir / f"samples_{slug(label)}.png"
        plotting.image_grid(images, files["samples"], ncols=8, title=label)
    return written
