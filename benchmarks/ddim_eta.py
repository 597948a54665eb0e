"""Classifier FID of a DDPM's DDIM samples at several eta (stochasticity) and step counts.

Usage:
    python benchmarks/ddim_eta.py runs/ddpm_cpu6/model.keras 0:50 1:50 [--n 400] [--seed 5] \
        [--out benchmarks/results/ddim_eta]

Each ETA:STEPS draws n samples from the same seed (the same starting noise), prints the classifier
FID against the 10,000 MNIST test images and writes a grid of the first 64 to OUT/eta{ETA}_s{STEPS}.png.
This is how the cpu preset's ddim_eta=1 was chosen (keras_gen/presets.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras

import keras_gen  # noqa: F401  (registers the model classes for load_model)
from keras_gen.evaluation.metrics import classifier_fid
from keras_gen.evaluation.report import write_json
from keras_gen.plotting import image_grid


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a DDPM .keras file")
    parser.add_argument("settings", nargs="+", help="ETA:STEPS pairs, e.g. 0:50 1:50")
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ddim_eta"))
    args = parser.parse_args()
    model = keras.saving.load_model(args.model)
    rows = []
    for setting in args.settings:
        eta, steps = float(setting.split(":")[0]), int(setting.split(":")[1])
        images = model.sample(args.n, seed=args.seed, eta=eta, steps=steps, progress=False)
        fid = classifier_fid(images)
        rows.append({"eta": eta, "steps": steps, "fid": fid})
        print(f"eta {eta} steps {steps} FID {fid:.1f}", flush=True)
        image_grid(images[:64], args.out / f"eta{eta}_s{steps}.png", ncols=8,
                   title=f"{args.model}: DDIM {steps} steps, eta {eta:g} (FID {fid:.1f}, n={args.n})")
    write_json({"model": str(args.model), "n": args.n, "seed": args.seed, "rows": rows}, args.out / "ddim_eta.json")


if __name__ == "__main__":
    main()
