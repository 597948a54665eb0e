"""Training throughput (images/s) and early bits/dim of candidate RealNVP sizes for the flow cpu preset.

Usage: python benchmarks/flow_candidates.py [--seconds 90] [--only NAME ...] [--json out.json]
Each candidate trains with the cpu preset's optimizer on real MNIST (batch 64) for about
``--seconds`` of wall-clock after a warm-up of 3 steps; reported: training images/s, the last
training bits/dim, and the dequantised bits/dim of the first 1000 test images.
"""

import argparse
import json
import os
import time

import keras
import numpy as np

# filters: the width at 28x28, doubled at 14x14 and again at 7x7
CANDIDATES = {
    "s2_c3_f16_b2": dict(num_scales=2, stage_couplings=3, final_couplings=4, filters=16, num_blocks=2),
    "s2_c2_f16_b1": dict(num_scales=2, stage_couplings=2, final_couplings=3, filters=16, num_blocks=1),
    "s3_c2_f16_b1": dict(num_scales=3, stage_couplings=2, final_couplings=2, filters=16, num_blocks=1),
    "s3_c3_f16_b1": dict(num_scales=3, stage_couplings=3, final_couplings=3, filters=16, num_blocks=1),
    "s3_c2_f24_b1": dict(num_scales=3, stage_couplings=2, final_couplings=2, filters=24, num_blocks=1),
}


class StepTimes(keras.callbacks.Callback):
    """Stops fit after ``seconds`` of steps; records the steps done and each step's loss (fit logs
    the epoch's running mean: step k's loss is k m_k - (k - 1) m_(k-1))."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds, self.steps, self.start, self.losses, self.last_mean = seconds, 0, None, [], 0.0

    def on_train_batch_begin(self, batch, logs=None):
        if self.start is None:
            self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        self.losses.append(self.steps * float(logs["loss"]) - (self.steps - 1) * self.last_mean)
        self.last_mean = float(logs["loss"])
        if time.perf_counter() - self.start > self.seconds:
            self.model.stop_training = True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--json")
    args = parser.parse_args()
    from keras_gen.data import load_dataset, make_dataset
    from keras_gen.models.kinds import get_model_kind
    from keras_gen.presets import get_preset

    kind = get_model_kind("flow")
    test_images, _ = load_dataset("mnist", "test")
    results = {}
    for name, sizes in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        keras.utils.set_random_seed(0)
        config = get_preset("flow", "cpu", batch_size=args.batch, **sizes)
        config["steps_per_epoch"] = 60000 // args.batch
        model = kind.build(config)
        kind.compile(model, config)
        data = make_dataset("mnist", "train", args.batch, seed=0).repeat()
        model.fit(data, steps_per_epoch=3, epochs=1, verbose=0)  # trace + warm up
        timer = StepTimes(args.seconds)
        model.fit(data, steps_per_epoch=10**6, epochs=1, verbose=0, callbacks=[timer])
        elapsed = time.perf_counter() - timer.start
        results[name] = {"params": model.count_params(), "steps": timer.steps, "load_average": os.getloadavg(),
                         "images_per_s": timer.steps * args.batch / elapsed,
                         "train_bpd_last_20_steps": float(np.mean(timer.losses[-20:])),
                         "test_bpd_1000": model.bits_per_dim(test_images[:1000])}
        print(name, results[name], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"batch": args.batch, "seconds": args.seconds, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
