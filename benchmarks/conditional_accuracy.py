"""Class-conditional accuracy and per-class FID of conditional models (exports or .keras files).

Usage:
    python benchmarks/conditional_accuracy.py runs/cvae_cpu/saved_model runs/cdcgan_cpu/saved_model \
        [--n-per-class 100] [--guidance 0 1 3 5] [--json benchmarks/results/conditional_accuracy.json]

For each model: n images of every class 0-9 (`keras_gen.evaluation.evaluate_conditional`), the
share the shipped classifier assigns to the requested class (accuracy, overall and per class),
the FID of each class's samples against the real test images of that class, and the overall
FID / coverage. A conditional DDPM is scored once per --guidance scale (the quality / diversity
sweep). Prints a markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from keras_gen.evaluation.conditional import evaluate_conditional
from keras_gen.evaluation.report import write_json
from keras_gen.export import load_sampler, read_export_info


def model_kind(path: Path) -> str:
    """"vae" / "dcgan" / "ddpm" from an export's assets (a .keras file: from its name)."""
    if path.is_dir():
        return read_export_info(path)["kind"]
    return next((kind for kind in ("vae", "dcgan", "ddpm") if kind in path.name), "model")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--n-per-class", type=int, default=100)
    parser.add_argument("--guidance", type=float, nargs="+", default=[0.0, 1.0, 3.0, 5.0],
                        help="guidance scales for conditional DDPMs (default 0 1 3 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/conditional_accuracy.json"))
    args = parser.parse_args()
    rows = []
    for path in args.paths:
        kind = model_kind(path)
        sample = load_sampler(path)
        for guidance in (args.guidance if kind == "ddpm" else [None]):
            options = {} if guidance is None else {"guidance": guidance}
            scores = evaluate_conditional(sample, 10, args.n_per_class, seed=args.seed, **options)
            rows.append({"path": str(path), "kind": kind, "guidance": guidance, **scores})
            print(f"{path} {kind} guidance={guidance}: accuracy {scores['accuracy']:.3f}, "
                  f"FID {scores['fid']:.1f}, mean class FID {scores['mean_class_fid']:.1f}", flush=True)
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
