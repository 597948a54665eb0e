"""Class-conditional accuracy and per-class FID of conditional models (exports or .keras files).

Usage:
    python benchmarks/conditional_accuracy.py runs/cvae_cpu/saved_model runs/cdcgan_cpu/saved_model \
        [--n-per-class 100] [--guidance 0 1 3 5] [--json benchmarks/results/conditional/accuracy.json] \
        [--figures benchmarks/results/conditional]

For each model: n images of every class 0-9 (`keras_gen.evaluation.draw_per_class`), the
share the shipped classifier assigns to the requested class (accuracy, overall and per class),
the FID of each class's samples against the real test images of that class, and the overall
FID / coverage. A model whose kind takes a ``guidance`` option (the pixel and latent DDPMs) is
scored once per --guidance scale (the quality / diversity sweep). Prints a markdown table. With
--figures: one grid per model and guidance scale (a row per class, 8 of the scored samples each)
and, for a guided model, the guidance curve.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from keras_gen.evaluation.conditional import conditional_metrics, draw_per_class
from keras_gen.evaluation.report import write_json
from keras_gen.sampling import load_sampler
from keras_gen.plotting import guidance_curve, image_grid

GRID_COLUMNS = 8


def save_class_grid(images, labels, folder: Path, kind: str, guidance, accuracy: float):
    """The first GRID_COLUMNS samples of every class, one row per class 0-9."""
    order = np.concatenate([np.flatnonzero(labels == c)[:GRID_COLUMNS] for c in range(10)])
    suffix = "" if guidance is None else f"_w{guidance:g}"
    where = "" if guidance is None else f", guidance w={guidance:g}"
    image_grid(images[order], folder / f"{kind}_classes{suffix}.png", ncols=GRID_COLUMNS,
               title=f"conditional {kind.upper()}{where}: rows = classes 0-9 (accuracy {accuracy:.3f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--n-per-class", type=int, default=100)
    parser.add_argument("--guidance", type=float, nargs="+", default=[0.0, 1.0, 3.0, 5.0],
                        help="guidance scales for guided models (default 0 1 3 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/conditional/accuracy.json"))
    parser.add_argument("--figures", type=Path, help="folder for the class grids and guidance curves")
    args = parser.parse_args()
    rows = []
    guided = {}  # path -> kind name, for the models that take a guidance scale
    for path in args.paths:
        sample = load_sampler(path)
        kind = sample.kind.name
        takes_guidance = "guidance" in sample.kind.sample_options  # a diffusion kind's option
        if takes_guidance:
            guided[path] = kind
        for guidance in (args.guidance if takes_guidance else [None]):
            options = {} if guidance is None else {"guidance": guidance}
            images, labels = draw_per_class(sample, 10, args.n_per_class, seed=args.seed, **options)
            scores = conditional_metrics(images, labels, seed=args.seed)
            rows.append({"path": str(path), "kind": kind, "guidance": guidance, **scores})
            if args.figures:
                save_class_grid(images, labels, args.figures, kind, guidance, scores["accuracy"])
            print(f"{path} {kind} guidance={guidance}: accuracy {scores['accuracy']:.3f}, "
                  f"FID {scores['fid']:.1f}, mean class FID {scores['mean_class_fid']:.1f}", flush=True)
    if args.figures:
        for path, kind in guided.items():
            sweep = [row for row in rows if row["path"] == str(path)]
            guidance_curve(sweep, args.figures / f"{kind}_guidance_curve.png",
                           title=f"Classifier-free guidance ({path}, {args.n_per_class} per class)")
    write_json({"n_per_class": args.n_per_class, "seed": args.seed, "rows": rows}, args.json)
    print("\n| model | guidance | accuracy | FID | mean per-class FID | classes >= 2% |"
          + "".join(f" acc {c} |" for c in range(10)))
    print("|---|---|---|---|---|---|" + "---|" * 10)
    for row in rows:
        per_class = "".join(f" {row['per_class_accuracy'][c]:.2f} |" for c in sorted(row["per_class_accuracy"]))
        guidance = "-" if row["guidance"] is None else f"{row['guidance']:g}"
        print(f"| {row['kind']} ({row['path']}) | {guidance} | {row['accuracy']:.3f} | {row['fid']:.1f} | "
              f"{row['mean_class_fid']:.1f} | {row['classes_covered']} |{per_class}")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
