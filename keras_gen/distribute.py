"""tf.distribute strategies for training: one device, all local devices, several workers, TPU.

``make_strategy(name)`` returns the strategy ``keras-gen train --strategy NAME`` trains under.
Models, optimizers and metrics are created inside ``strategy.scope()`` and Keras ``fit`` splits
each (global) batch across the replicas; the batch size in presets and flags is the global one.

- ``default``: no distribution (the current device).
- ``mirrored``: MirroredStrategy over every local GPU, or over every logical CPU device when
  there is no GPU (split a CPU with ``split_cpu(n)`` before TensorFlow starts, as the tests do).
- ``multiworker``: MultiWorkerMirroredStrategy; the cluster comes from the ``TF_CONFIG``
  environment variable (see README, "Several devices and hosts").
- ``tpu``: TPUStrategy on the TPU that TPUClusterResolver finds.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")


def split_cpu(n: int):
    """Present the CPU as ``n`` logical devices (must run before TensorFlow initialises devices)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(n))


def make_strategy(name: str = "default") -> tf.distribute.Strategy:
    """The tf.distribute strategy called ``name`` (one of STRATEGIES), with clear errors."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        # CPU devices share memory: reduce on one device. (The default collective all-reduce can
        # pair up a DCGAN step's two gradient reductions differently on each replica and abort.)
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")],
                                              cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multiworker":
        config = os.environ.get("TF_CONFIG")
        if not config:
            raise ValueError("--strategy multiworker needs the TF_CONFIG environment variable "
                             "(cluster addresses and this worker's task); see the README")
        try:
            json.loads(config)
        except ValueError as exc:
            raise ValueError(f"TF_CONFIG is not valid JSON: {exc}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as exc:
            raise ValueError(f"--strategy tpu: no TPU found ({exc})") from None
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")

