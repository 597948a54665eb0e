"""Training cost of the VAE and the two DCGAN loops in CPU-seconds, beside the wall clock.

On a virtual machine that throttles CPU, short training calls can take a wall time set by the
throttling rather than by the work (see benchmarks/README.md). CPU-seconds (``os.times()``, user +
system, all threads of this process) count the work itself.

Usage:
    python benchmarks/cpu_seconds_probe.py [--steps 100] [--batch 64] [--repeats 3]
Builds the same items as train_throughput.py (vae, dcgan_fused, dcgan_alternating), runs one
untimed call, then --repeats timed calls, and prints each call's wall and CPU seconds and the
images per CPU-second of the median call.
"""

import argparse
import os
import statistics
import time

import train_throughput


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    items = {"vae": train_throughput.vae_item, "dcgan_fused": train_throughput.dcgan_fused_item,
             "dcgan_alternating": train_throughput.dcgan_alternating_item}
    for name, build in items.items():
        run, images = build(args)
        run()  # warm-up: tracing
        calls = []
        for _ in range(args.repeats):
            wall, cpu = time.perf_counter(), cpu_seconds()
            run()
            calls.append((time.perf_counter() - wall, cpu_seconds() - cpu))
        per_cpu_second = images / statistics.median(cpu for _, cpu in calls)
        print(f"{name}: " + ", ".join(f"wall {w:.2f} s / cpu {c:.2f} s" for w, c in calls)
              + f"; {per_cpu_second:.0f} images per CPU-second", flush=True)


if __name__ == "__main__":
    main()
