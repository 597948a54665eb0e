"""The families table: VAE, DCGAN, flow, DDPM (and any newer kind) on likelihood, stability,
fidelity and speed, regenerated into the README and drawn as docs/figures/families.png.

    python benchmarks/families.py

It measures nothing: it reads what the measuring commands recorded (the exports' assets, written by
`keras-gen evaluate --record` and `keras-gen evaluate --likelihood-only --record`, and the stability
summary of `python benchmarks/stability.py --summary`), so it takes seconds and can run after each
of them. It is a script here rather than a `keras-gen evaluate` option because one of its sources
is this folder's stability sweep and its targets are the checkout's README and docs, which an
installed package has neither of. The table goes between the README's
`<!-- families:start -->` / `<!-- families:end -->` markers (keras_gen.evaluation.write_families);
rerunning it on unchanged sources changes nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STABILITY = REPO / "benchmarks" / "results" / "stability" / "stability.json"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="*", help="exports to tabulate (default: the shipped unconditional MNIST ones)")
    parser.add_argument("--stability", default=str(STABILITY), help="stability summary JSON")
    parser.add_argument("--readme", default=str(REPO / "README.md"), help="markdown file to write the table into")
    parser.add_argument("--figure", default=str(REPO / "docs" / "figures" / "families.png"))
    args = parser.parse_args(argv)

    from keras_gen.evaluation import write_families
    from keras_gen.zoo import family_models

    table, _ = write_families(args.readme, args.exports or [model.path for model in family_models()], args.stability, args.figure)
    print(table)
    print(f"\nwrote the table to {args.readme} and the figure to {args.figure}")


if __name__ == "__main__":
    main()
