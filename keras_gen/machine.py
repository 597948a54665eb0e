"""The facts about this machine that decide how fast our numbers come out.

Training summaries, benchmarks and the evaluation report record them beside every timing, so a
reader can tell a slow model from a slow machine. Nothing here imports the models: any layer of
the package (evaluation, training, the CLI) may use it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The instruction sets that decide this code's speed on a CPU (fp32 vs bf16 matmuls differ ~4x
# between an AVX2-only and an AVX-512 BF16 machine of the same kind), recorded with every run.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_flags() -> list[str]:
    """Which of SPEED_FLAGS this CPU has (Linux /proc/cpuinfo; [] where it cannot tell)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return [flag for flag in SPEED_FLAGS if flag in flags]


def machine_info() -> dict:
    """Platform, processor, core count, SPEED_FLAGS present, TensorFlow / Keras versions, devices."""
    import keras
    import tensorflow as tf
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "cpu_flags": cpu_flags(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "devices": [d.device_type for d in tf.config.list_physical_devices()]}


def cpu_supports_bf16() -> bool:
    """True when this CPU has bfloat16 instructions (AVX512_BF16 or AMX-BF16; Linux only)."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))
