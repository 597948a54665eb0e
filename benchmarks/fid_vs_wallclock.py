"""Classifier FID against training wall-clock time, from the per-epoch checkpoints of training runs.

Every ``keras-gen train`` run keeps ``checkpoints/epoch_XXX.keras`` and ``history.csv`` (with the
cumulative ``wall_seconds`` at the end of each epoch). This script samples each checkpoint, scores
the samples with the shipped classifier against the real test split (keras_gen.evaluation) and
draws the curve that the cpu presets were chosen from.

Usage:
    python benchmarks/fid_vs_wallclock.py runs/vae_cpu runs/dcgan_cpu runs/ddpm_cpu \
        [--n 1000] [--epochs 1 3 6] [--out outputs/fid_vs_wallclock]
Writes out/fid_vs_wallclock.json and out/fid_vs_wallclock.png. A DDPM checkpoint is sampled with
DDIM at the model's default step count (its EMA weights). The wall time is the one recorded while
training, on whatever the machine was doing then (see the runs' logs).
"""

import argparse
import csv
import time
from pathlib import Path

import keras
import numpy as np

import keras_gen  # noqa: F401  (registers the model classes for load_model)
from keras_gen.evaluation import real_reference
from keras_gen.evaluation.report import evaluate_images, sample_images, write_json
from keras_gen.plotting import quality_vs_time


def epoch_wall_seconds(run: Path) -> dict[int, float]:
    """{epoch number (1-based): cumulative training seconds} at the end of each epoch.

    From history.csv's ``wall_seconds`` column; runs written before that column existed fall
    back to file times: each checkpoint's modification time minus that of samples/epoch_000.png
    (drawn just before the first step), which also counts the per-epoch sample grids.
    """
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    if rows and "wall_seconds" in rows[0]:
        return {int(row["epoch"]) + 1: float(row["wall_seconds"]) for row in rows}
    start = (run / "samples" / "epoch_000.png").stat().st_mtime
    return {int(p.stem.split("_")[1]): p.stat().st_mtime - start
            for p in (run / "checkpoints").glob("epoch_*.keras")}


def checkpoint_points(run: Path, n: int, epochs=None, seed: int = 0, batch_size: int = 250) -> list[dict]:
    """FID, coverage and wall time of each (selected) epoch checkpoint of one run."""
    walls = epoch_wall_seconds(run)
    real = real_reference("mnist")
    points = []
    for ckpt in sorted((run / "checkpoints").glob("epoch_*.keras")):
        epoch = int(ckpt.stem.split("_")[1])
        if epochs and epoch not in epochs:
            continue
        model = keras.models.load_model(ckpt)
        start = time.perf_counter()
        images = sample_images(lambda b, s: model.sample(b, s), n, batch_size, seed)
        scores = evaluate_images(images, real, seed=seed)
        points.append({"epoch": epoch, "minutes": walls[epoch] / 60.0, "fid": scores["fid"],
                       "classes_covered": scores["classes_covered"],
                       "normalized_entropy": scores["normalized_entropy"],
                       "precision": scores["precision"], "recall": scores["recall"],
                       "sampling_seconds": time.perf_counter() - start})
        print(f"{run.name} epoch {epoch}: {points[-1]['minutes']:.1f} min, FID {scores['fid']:.2f}, "
              f"{scores['classes_covered']} classes", flush=True)
        keras.backend.clear_session()
    return points


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training output folders")
    parser.add_argument("--n", type=int, default=1000, help="samples per checkpoint (default 1000)")
    parser.add_argument("--epochs", type=int, nargs="*", help="only these epochs (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/fid_vs_wallclock"))
    args = parser.parse_args()
    results = {}
    for run in args.runs:
        if not (run / "history.csv").exists():
            parser.error(f"{run} has no history.csv: not a keras-gen training folder")
        results[run.name] = checkpoint_points(run, args.n, args.epochs, args.seed)
    real = real_reference("mnist")
    train_images = keras_gen.load_dataset("mnist", "train")[0]
    picked = np.random.default_rng(args.seed).choice(len(train_images), args.n, replace=False)
    real_fid = evaluate_images(train_images[picked], real, seed=args.seed)["fid"]
    report = {"n": args.n, "seed": args.seed, "real_train_fid": real_fid, "runs": results}
    write_json(report, args.out / "fid_vs_wallclock.json")
    quality_vs_time({name: [(p["minutes"], p["fid"]) for p in pts] for name, pts in results.items()},
                    args.out / "fid_vs_wallclock.png", references=[("real training images", real_fid)],
                    title=f"Classifier FID vs training time (n={args.n} samples per checkpoint)")
    print(f"wrote {args.out / 'fid_vs_wallclock.json'} and {args.out / 'fid_vs_wallclock.png'}")


if __name__ == "__main__":
    main()
