"""Training stability: each family trained with several seeds at one equal CPU-time budget.

The survey table this project measures (issue 17) marks the GAN "unstable" by hand. Here every
kind is trained with the cpu preset and seeds 0, 1, 2, each run ended by the same budget of CPU
time (`keras-gen train --max-cpu-minutes`: CPU time, not wall time, so that a run beside other
jobs on this shared machine gets the same compute), then scored by the classifier FID on n
samples of its export, with the classes it covers (>= 2% of the samples).

One JSON file per run goes to the results folder as soon as the run is scored, and runs already
there are skipped, so the script can be stopped and started again (a run half trained is resumed
from its run folder). ``--summary`` aggregates what is there into stability.json (FID mean,
standard deviation, min, max; how many seeds covered all ten digits) and stability.png.

    python benchmarks/stability.py --kinds vae dcgan flow ddpm --seeds 0 1 2 --cpu-minutes 10
    python benchmarks/stability.py --summary
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "stability"
KINDS = ("vae", "dcgan", "flow", "ddpm")


def run_name(kind: str, seed: int) -> str:
    return f"{kind}_seed{seed}"


def train(kind: str, seed: int, minutes: float, runs: Path) -> Path:
    """Train (or finish training) one budgeted run; its folder."""
    out = runs / run_name(kind, seed)
    keras_gen = [sys.executable, "-m", "keras_gen", "train", kind]
    if (out / "summary.json").exists():
        return out
    if (out / "resume").exists():
        cmd = keras_gen + ["--resume", "--out", str(out), "--verbose", "2"]
    else:
        cmd = keras_gen + ["--preset", "cpu", "--seed", str(seed), "--max-cpu-minutes", str(minutes),
                           "--out", str(out), "--verbose", "2"]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return out


def score(out: Path, n: int) -> dict:
    """FID, precision / recall and coverage of the run's export at its default sampler."""
    from keras_gen.evaluation import evaluate_paths

    info = json.loads((out / "saved_model" / "assets" / "keras_gen.json").read_text())
    default_steps = info["config"].get("ddim_steps")
    report = evaluate_paths(str(out / "saved_model"), n=n, ddim_steps=(default_steps,) if default_steps else (),
                            ddpm_full=False, references=False, speed_repeats=1, verbose=False)
    row = report["rows"][0]
    summary = json.loads((out / "summary.json").read_text())
    return {"kind": info["kind"], "seed": summary["train_config"]["seed"],
            "cpu_minutes_budget": summary["train_config"].get("max_cpu_minutes"),
            "training": summary["training"], "machine": summary["machine"], "n": n,
            **{k: row[k] for k in ("label", "fid", "precision", "recall", "classes_covered",
                                   "normalized_entropy", "nfe_per_sample") if k in row}}


def summarize(results: Path) -> dict:
    """Aggregate the per-run files: per kind the FID statistics and the seeds covering 10 digits."""
    import numpy as np

    runs = [json.loads(p.read_text()) for p in sorted(results.glob("*_seed*.json"))]
    table = {}
    for kind in dict.fromkeys(r["kind"] for r in runs):
        rows = [r for r in runs if r["kind"] == kind]
        fids = np.array([r["fid"] for r in rows])
        table[kind] = {"seeds": [r["seed"] for r in rows], "fid": fids.tolist(),
                       "fid_mean": float(fids.mean()), "fid_std": float(fids.std(ddof=1)) if len(fids) > 1 else None,
                       "fid_min": float(fids.min()), "fid_max": float(fids.max()),
                       "seeds_covering_all_ten": sum(r["classes_covered"] == 10 for r in rows),
                       "cpu_minutes_budget": sorted({r["cpu_minutes_budget"] for r in rows}),
                       "training_steps": [r["training"]["steps"] for r in rows], "n": rows[0]["n"]}
    return table


def draw(table: dict, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, (kind, row) in enumerate(table.items()):
        ax.scatter([i] * len(row["fid"]), row["fid"], label=kind, zorder=3)
        ax.hlines(row["fid_mean"], i - 0.2, i + 0.2, color="black", zorder=2)
    ax.set_xticks(range(len(table)), list(table))
    ax.set_ylabel("classifier FID (lower is better)")
    budgets = sorted({b for row in table.values() for b in row["cpu_minutes_budget"]})
    ax.set_title(f"FID over seeds at {', '.join(f'{b:g}' for b in budgets)} CPU-minutes of training")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--cpu-minutes", type=float, default=10.0, help="training budget per run")
    parser.add_argument("--n", type=int, default=1000, help="samples per FID")
    parser.add_argument("--runs", default="runs/stability", help="run folders (not committed)")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--summary", action="store_true", help="only aggregate the results there")
    args = parser.parse_args(argv)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    if not args.summary:
        for seed in args.seeds:  # seed-major: an interrupted sweep has every kind at the first seeds
            for kind in args.kinds:
                target = results / f"{run_name(kind, seed)}.json"
                if target.exists():
                    continue
                out = train(kind, seed, args.cpu_minutes, Path(args.runs))
                target.write_text(json.dumps(score(out, args.n), indent=2))
                print(f"{target}: FID {json.loads(target.read_text())['fid']:.1f}", flush=True)
    table = summarize(results)
    (results / "stability.json").write_text(json.dumps(table, indent=2))
    draw(table, results / "stability.png")
    for kind, row in table.items():
        spread = f" +- {row['fid_std']:.1f}" if row["fid_std"] is not None else ""
        print(f"{kind:8s} FID {row['fid_mean']:.1f}{spread} over seeds {row['seeds']}, "
              f"{row['seeds_covering_all_ten']} covering all ten digits")


if __name__ == "__main__":
    main()
