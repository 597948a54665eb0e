"""Loss scaling for training under a tf.distribute strategy.

Under MirroredStrategy (and the multi-worker one) each replica computes the loss on its share of
the global batch and the optimizer *sums* the replicas' gradients. So the loss a replica
differentiates must be its batch-mean loss divided by the number of replicas, while the loss it
reports to the metrics stays the plain batch mean (the metrics average over replicas).
"""

import tensorflow as tf
from keras import ops


def replica_share(loss):
    """``loss / num_replicas_in_sync``: what to differentiate in a custom ``train_step``."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss if replicas == 1 else loss * ops.cast(1.0 / replicas, loss.dtype)


def step_logs(logs: dict) -> dict:
    """A train/test step's logs, shaped for Keras ``fit`` under the current strategy.

    Under MultiWorkerMirroredStrategy, Keras 3.15 reduces each log across workers with
    ``strategy.reduce("MEAN", value, axis=0)``, which fails on scalars ("Invalid reduction
    dimension 0"): there each value is given as shape (1,), which that reduction turns back into
    a scalar. Elsewhere the logs are returned unchanged.
    """
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {k: ops.reshape(v, (1,)) for k, v in logs.items()}
    return logs
