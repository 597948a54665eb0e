"""Training throughput (images/s) of candidate U-Net sizes for the DDPM cpu preset.

Usage: python benchmarks/unet_candidates.py [--precision float32|mixed_bfloat16] [--json out.json]
Times compiled DDPM train steps (batch 64, 32x32) after warm-up: median of 3 repeats of 10 steps.
"""

import argparse
import json
import time

import keras
import numpy as np
import tensorflow as tf

CANDIDATES = {
    "article_32M": dict(dim=64, dim_mults=(1, 2, 4, 8), attention_levels=None),
    "d32_122_attn_low": dict(dim=32, dim_mults=(1, 2, 2), attention_levels=(False, True, True)),
    "d32_1222_attn_low": dict(dim=32, dim_mults=(1, 2, 2, 2), attention_levels=(False, False, True, True)),
    "d48_122_attn_low": dict(dim=48, dim_mults=(1, 2, 2), attention_levels=(False, True, True)),
    "d64_124_attn_low": dict(dim=64, dim_mults=(1, 2, 4), attention_levels=(False, True, True)),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--json")
    args = parser.parse_args()
    keras.mixed_precision.set_global_policy(args.precision)
    from keras_gen.models.ddpm import build_ddpm
    x = tf.random.uniform((args.batch, 32, 32, 1), -1, 1)
    ds = tf.data.Dataset.from_tensors(x).repeat()
    results = {}
    for name, cfg in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        model = build_ddpm(dict(cfg, timesteps=1000, seed=0))
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)  # trace + warm up
        times = []
        for _ in range(3):
            start = time.perf_counter()
            model.fit(ds, steps_per_epoch=10, epochs=1, verbose=0)
            times.append(time.perf_counter() - start)
        ips = [10 * args.batch / t for t in times]
        results[name] = {"params": model.unet.count_params(), "images_per_s_median": float(np.median(ips)),
                         "min": float(min(ips)), "max": float(max(ips))}
        print(name, results[name], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"precision": args.precision, "batch": args.batch, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
